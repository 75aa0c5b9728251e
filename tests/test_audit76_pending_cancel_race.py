"""Audit 76: a partly filled order canceled (`pending_cancel`, still filling) raced with an exit (G2, G3).

Alpaca answers ``DELETE /v2/orders/{id}`` with 204 and finishes the cancel later; until then the
order reads `pending_cancel`, its shares stay held, and it can still fill (ALPACA.md). Agent A's
order has filled in part; one process of A cancels it while another exits the whole position and
a reconcile pass runs in a third; then the order fills more before the cancel is done. The exit
must never sell shares A does not hold (the account never goes short, the exit's size never
exceeds what A's fills hold), the fills after the cancel must be booked (G2), and the views must
converge (G4). Real processes, the paper server over HTTP with the real alpaca-py client (its
cancels deferred as Alpaca's), SQLite and PostgreSQL.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.audit76_checks import Bot, gateway, settings, settle_and_check
from tests.audit76_kit import LateAccount
from tests.test_audit67_lagging_order_listing import MovingPrices
from tradeguard.domain.intents import Kind
from tradeguard.store import ClaimStore
from tradeguard.testing import paper_server

pytestmark = [pytest.mark.slow]

LAG = 0.5


def _account() -> LateAccount:
    return LateAccount(LAG, defer_cancels=True, max_fill_qty=Decimal(4), prices=MovingPrices({"SPY": "590"}))


def _race(store_url: str, paper_url: str, order_id: str, folder: Path) -> list[dict[str, object]]:
    """A cancels `order_id` in one process while it exits everything in another and a pass runs in a third."""
    cancel = Bot(store_url, paper_url, "a", [{"op": "cancel", "order_id": order_id}], folder, "cancel")
    out = Bot(store_url, paper_url, "a", [{"op": "exit", "symbol": "SPY", "intent": "a-out"}], folder, "out")
    passes = Bot(store_url, paper_url, "r", [{"op": "reconcile"}] * 2, folder, "passes")
    done = [*cancel.result(), *out.result(), *passes.result()]
    assert all(d.get("raised") in (None, "OrderRejected") for d in done), done
    return done


def test_an_entry_partly_filled_then_canceled_while_the_agent_exits_books_every_fill(
    store_url: str, tmp_path: Path
) -> None:
    with paper_server(_account()) as server:
        account = server.broker
        assert isinstance(account, LateAccount)
        with ClaimStore(store_url, settings=settings()) as store:
            a = gateway(store, server.url, "a")
            bid = a.enter("SPY", qty=10, intent="a-in", order_type="limit", limit_price=590)
            assert bid.claim is not None and bid.claim.filled_qty == 4, bid  # 4 of 10 at once
            order_id = bid.claim.broker_order_id
        assert order_id is not None
        done = _race(store_url, server.url, order_id, tmp_path)
        exit_qty = [
            Decimal(str(d["qty"])) for d in done if d.get("op") == "exit" and d.get("outcome") == "submitted"
        ]
        assert sum(exit_qty, Decimal(0)) <= 4, done  # only what had filled was A's to sell
        account.step()  # the order still fills while its cancel is pending
        account.finish_cancels()
        with ClaimStore(store_url, settings=settings()) as store:
            [entry] = store.list_claims(kind=Kind.ENTRY, agent_id="a")
        assert entry.filled_qty <= 8
        settle_and_check(store_url, account, server.url, "SPY", ["a"])
        assert account.true_qty("SPY") == 8 - sum(exit_qty, Decimal(0))


def test_an_exit_partly_filled_then_canceled_while_another_exit_races_never_oversells(
    store_url: str, tmp_path: Path
) -> None:
    with paper_server(_account()) as server:
        account = server.broker
        assert isinstance(account, LateAccount)
        with ClaimStore(store_url, settings=settings()) as store:
            a = gateway(store, server.url, "a")
            assert a.enter("SPY", qty=10, intent="a-in").outcome.value == "submitted"
            while account.true_qty("SPY") < 10:
                account.step()
            assert (
                gateway(store, server.url, "b").enter("SPY", qty=3, intent="b-in").outcome.value
                == "submitted"
            )
            account.step()
        settle_and_check(store_url, account, server.url, "SPY", ["a", "b"])
        with ClaimStore(store_url, settings=settings()) as store:
            a = gateway(store, server.url, "a")
            first = a.exit("SPY", qty=10, intent="a-x1", order_type="limit", limit_price=590)
            assert first.claim is not None and first.claim.filled_qty == 4, first
            order_id = first.claim.broker_order_id
        assert order_id is not None
        done = _race(store_url, server.url, order_id, tmp_path)
        sold_by_race = sum(
            (
                Decimal(str(d["qty"]))
                for d in done
                if d.get("op") == "exit" and d.get("outcome") == "submitted"
            ),
            Decimal(0),
        )
        account.step()  # the first exit still fills while its cancel is pending
        account.step()
        account.finish_cancels()
        assert account.true_qty("SPY") >= 3, "B's shares were sold"
        ledgers = settle_and_check(store_url, account, server.url, "SPY", ["a", "b"])
        assert ledgers["b"] == 3 and ledgers["a"] >= 0, (ledgers, done, sold_by_race)
