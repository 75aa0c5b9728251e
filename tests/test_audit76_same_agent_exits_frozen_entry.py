"""Audit 76: an agent frozen after its entry's POST filled while another process of it exits (G1-G4).

Agent A runs two processes on one account beside agent B. A's first process stops (SIGSTOP) right
after the broker filled its entry, before it records the answer: the claim is PENDING under its
lease, A's ledger empty. A's second process exits the whole position at once (inside the lease,
and again after it lapsed) while the positions read trails and a reconcile pass runs in a third
process. The exit may sell A's shares once it has found them (by client_order_id), never B's; the
resumed first process must neither resend nor book the fill again, nor move the claim back. Real
processes, the paper server over HTTP with the real alpaca-py client, SQLite and PostgreSQL.
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
from tradeguard.store import ClaimStore
from tradeguard.testing import paper_server

pytestmark = [pytest.mark.slow]

LAG = 0.8


@pytest.mark.parametrize("when", ["inside-lease", "lease-lapsed"])
def test_an_exit_beside_a_frozen_filled_entry_of_the_same_agent_sells_only_its_shares_once(
    store_url: str, tmp_path: Path, when: str
) -> None:
    with paper_server(LateAccount(LAG, listing_lag_secs=LAG)) as server:
        account = server.broker
        assert isinstance(account, LateAccount)
        with ClaimStore(store_url, settings=settings()) as store:
            assert (
                gateway(store, server.url, "b").enter("SPY", qty=4, intent="b-in").outcome.value
                == "submitted"
            )
        time.sleep(settings().position_settle_secs)
        entry = {"op": "enter", "symbol": "SPY", "qty": 10, "intent": "a-in"}
        first = Bot(store_url, server.url, "a", [entry], tmp_path, "first", freeze="after_post")
        try:
            assert account.true_qty("SPY") == 14
            if when == "lease-lapsed":
                with ClaimStore(store_url, settings=settings()) as store:
                    [claim] = store.list_claims(kind=Kind.ENTRY, agent_id="a")
                wait_for(lambda: datetime.now(UTC) > claim.lease_expires_at, 30, "A's lease to lapse")
            out = Bot(store_url, server.url, "a", [{"op": "exit", "symbol": "SPY", "intent": "a-out"}],
                      tmp_path, "out")  # fmt: skip
            passes = Bot(store_url, server.url, "r", [{"op": "reconcile"}] * 2, tmp_path, "passes")
            [a_out] = out.result()
            assert all("raised" not in p for p in passes.result())
            assert "raised" not in a_out or a_out["raised"] in ("ClaimInProgress",), a_out
            sold = Decimal(a_out["qty"]) if a_out.get("outcome") == "submitted" else Decimal(0)
            assert sold in (0, 10), a_out  # A's own 10 or nothing yet, never B's
            assert account.true_qty("SPY") == 14 - sold
        finally:
            first.resume()
        [a_in] = first.result()
        assert "raised" not in a_in, a_in
        if account.true_qty("SPY") > 4:
            # The exit had nothing to sell yet: now that the entry is recorded, it sells A's 10.
            again = Bot(store_url, server.url, "a", [{"op": "exit", "symbol": "SPY", "intent": "a-out2"}],
                        tmp_path, "again")  # fmt: skip
            [a_out2] = again.result()
            assert a_out2.get("outcome") == "submitted" and a_out2["qty"] == "10", a_out2
        ledgers = settle_and_check(store_url, account, server.url, "SPY", ["a", "b"])
        assert ledgers == {"a": 0, "b": 4}
        assert account.true_qty("SPY") == 4
