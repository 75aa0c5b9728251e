"""Audit 76: two agents whose ledgers are phantoms exit at once beside a third agent's fresh fill (G3, G4).

Agents A and B each hold SPY by their ledgers; a person closes the whole position by hand, so both
ledgers are phantoms. Agent C then buys: its fill is fresh, the positions endpoint trails it, and
C's process may even freeze right after its POST (its claim PENDING, its shares in no ledger).
A and B exit everything at the same instant in processes of their own while a reconcile pass runs
in a fourth. Neither may sell C's shares (C's position stays whole), C's fill must be booked, and
both phantoms must be cleared once the reads settle (G4), never C's position. Real processes, the
paper server over HTTP with the real alpaca-py client, SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.audit76_checks import Bot, gateway, settings, settle_and_check
from tests.audit76_kit import LateAccount
from tradeguard.store import ClaimStore
from tradeguard.testing import paper_server

pytestmark = [pytest.mark.slow]

LAG = 0.8


@pytest.mark.parametrize("c_freezes", [False, True], ids=["c-booked", "c-frozen-after-post"])
def test_phantom_agents_exiting_at_once_never_sell_a_fresh_buyers_shares(
    store_url: str, tmp_path: Path, c_freezes: bool
) -> None:
    with paper_server(LateAccount(LAG, listing_lag_secs=LAG)) as server:
        account = server.broker
        assert isinstance(account, LateAccount)
        with ClaimStore(store_url, settings=settings()) as store:
            for agent, qty in (("a", 6), ("b", 4)):
                assert (
                    gateway(store, server.url, agent)
                    .enter("SPY", qty=qty, intent=f"{agent}-in")
                    .outcome.value
                    == "submitted"
                )
        time.sleep(settings().position_settle_secs)
        account.close_by_hand("SPY")  # A's 6 and B's 4 are gone
        buy = [{"op": "enter", "symbol": "SPY", "qty": 5, "intent": "c-in"}]
        c = Bot(store_url, server.url, "c", buy, tmp_path, "c", freeze="after_post" if c_freezes else "")
        try:
            if not c_freezes:
                [c_in] = c.result()
                assert c_in.get("outcome") == "submitted", c_in
            assert account.true_qty("SPY") == 5
            exits = [
                Bot(
                    store_url,
                    server.url,
                    agent,
                    [{"op": "exit", "symbol": "SPY", "intent": f"{agent}-out"}],
                    tmp_path,
                    f"{agent}-out",
                )
                for agent in ("a", "b")
            ]
            passes = Bot(store_url, server.url, "r", [{"op": "reconcile"}] * 3, tmp_path, "passes")
            done = [d for bot in (*exits, passes) for d in bot.result()]
            assert all("raised" not in d for d in done), done
            sold = [d for d in done if d.get("outcome") == "submitted"]
            print("DONE", done, account.true_qty("SPY"))
            assert not sold, done  # nothing was A's or B's to sell
            assert account.true_qty("SPY") == 5, done
        finally:
            if c_freezes:
                c.resume()
                c.result()
        ledgers = settle_and_check(store_url, account, server.url, "SPY", ["a", "b", "c"],
                                   by_hand={"a": Decimal(6), "b": Decimal(4)})  # fmt: skip
        assert ledgers == {"a": 0, "b": 0, "c": 5}
