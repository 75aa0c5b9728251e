"""Audit 76: a sender frozen after its POST filled, while another agent exits and a reconciler runs (G1-G4).

Agent A's entry is filled at the broker the moment its POST lands; its process stops (SIGSTOP)
before it records the answer, so its claim is PENDING and its ledger books nothing. Meanwhile, on
the same account and symbol, agent B (another process) exits its whole position and a reconcile
pass runs in a third process, while the positions endpoint trails fills. B's ledger may be a
phantom (a person sold its shares by hand before A bought). Nobody may sell A's shares (B's exit
sells B's own shares or nothing), A's fill must not be lost (the pass adopts it once A's lease
lapsed; A, resumed, neither resends nor books it twice), and no pass clears a position the broker
holds. Real processes, the paper server over HTTP with the real alpaca-py client, SQLite and
PostgreSQL.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tests.audit76_checks import Bot, gateway, settings, settle_and_check, wait_for
from tests.audit76_kit import LateAccount
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.store import ClaimStore
from tradeguard.testing import paper_server

pytestmark = [pytest.mark.slow]

LAG = 0.8  # the positions endpoint trails fills by this much wall time (within position_settle_secs)


@pytest.mark.parametrize("b_is_phantom", [False, True], ids=["b-holds", "b-phantom"])
def test_a_frozen_filled_entry_is_never_sold_by_another_agent_nor_lost_nor_cleared(
    store_url: str, tmp_path: Path, b_is_phantom: bool
) -> None:
    with paper_server(LateAccount(LAG)) as server:
        account = server.broker
        assert isinstance(account, LateAccount)
        with ClaimStore(store_url, settings=settings()) as store:
            assert (
                gateway(store, server.url, "b").enter("SPY", qty=10, intent="b-in").outcome.value
                == "submitted"
            )
        if b_is_phantom:
            account.close_by_hand("SPY")  # B's 10 are gone; B's ledger still holds them
        a = Bot(store_url, server.url, "a", [{"op": "enter", "symbol": "SPY", "qty": 7, "intent": "a-in"}],
                tmp_path, "a", freeze="after_post")  # fmt: skip
        try:
            assert account.true_qty("SPY") == (7 if b_is_phantom else 17)  # A's order filled at once
            # B exits everything while A is frozen; a reconcile pass runs in a third process.
            b = Bot(
                store_url,
                server.url,
                "b",
                [{"op": "exit", "symbol": "SPY", "intent": "b-out"}],
                tmp_path,
                "b",
            )
            r1 = Bot(store_url, server.url, "r", [{"op": "reconcile"}] * 3, tmp_path, "r1")
            [b_exit] = b.result()
            passes = r1.result()
            assert all("raised" not in p and p["aborted"] is None for p in passes), passes
            assert "raised" not in b_exit, b_exit
            b_sold = Decimal(b_exit["qty"]) if b_exit["outcome"] == "submitted" else Decimal(0)
            if b_is_phantom:
                assert b_sold == 0, b_exit  # A's 7 are not B's to sell
            else:
                assert b_sold == 10, b_exit  # all B holds: A's fresh fill is not taken off twice
            assert account.true_qty("SPY") == 17 - b_sold - (10 if b_is_phantom else 0), (
                "A's shares were sold"
            )
            # A's lease lapses while it is still frozen; another pass adopts its order.
            with ClaimStore(store_url, settings=settings()) as store:
                [entry] = store.list_claims(kind=Kind.ENTRY, agent_id="a")
                wait_for(lambda: datetime.now(UTC) > entry.lease_expires_at, 30, "A's lease to lapse")
            time.sleep(LAG)
            r2 = Bot(store_url, server.url, "r", [{"op": "reconcile"}], tmp_path, "r2")
            assert all("raised" not in p for p in r2.result())
            with ClaimStore(store_url, settings=settings()) as store:
                adopted = store.get(entry.key)
                assert adopted is not None and adopted.state is ClaimState.FILLED, adopted
                assert store.position("a", "SPY").qty == 7  # the fill is not lost, nor cleared
        finally:
            a.resume()
        [a_entry] = a.result()
        assert "raised" not in a_entry, a_entry
        # One reconcile interval later (past every settle horizon), a pass has the view right.
        time.sleep(settings().position_settle_secs + LAG)
        r3 = Bot(store_url, server.url, "r", [{"op": "reconcile"}], tmp_path, "r3")
        assert all("raised" not in p for p in r3.result())
        with ClaimStore(store_url, settings=settings()) as store:
            assert store.position("a", "SPY").qty == 7
            assert store.position("b", "SPY").qty == (0 if b_is_phantom else 10 - b_sold)
        # A, resumed, exits its own shares (exactly its 7); B exits what it still holds.
        out = Bot(
            store_url, server.url, "a", [{"op": "exit", "symbol": "SPY", "intent": "a-out"}], tmp_path, "a2"
        )
        [a_exit] = out.result()
        assert a_exit.get("outcome") == "submitted" and a_exit["qty"] == "7", a_exit
        if not b_is_phantom and b_sold < 10:
            rest = Bot(
                store_url,
                server.url,
                "b",
                [{"op": "exit", "symbol": "SPY", "intent": "b-rest"}],
                tmp_path,
                "b2",
            )
            [b_rest] = rest.result()
            assert b_rest.get("outcome") == "submitted" and Decimal(b_rest["qty"]) == 10 - b_sold, b_rest
        lost = {"b": Decimal(10)} if b_is_phantom else None
        ledgers = settle_and_check(store_url, account, server.url, "SPY", ["a", "b"], by_hand=lost)
        assert ledgers == {"a": 0, "b": 0}
        assert account.true_qty("SPY") == 0
