"""Audit 43: a dedup window reopened at the very instant it was first opened (a clock that stands still).

A bot without client_order_ids, run where the clock does not move between its calls (`tradeguard
run`'s bar clock, a test's `ManualClock`), named a content window's claim after the window and that
instant: the same order again at the same instant computed the very same claim name, so the guard
took it for the window's own first call and answered it from the first claim even after the bot had
ended that decision itself: a limit order it canceled through the guard came back CANCELED and
nothing was placed; a re-entry after it sold the position came back as the old filled buy (the bot
then believed it held shares it had sold). alpaca-py places both. The decision-ended rules
(`ContentWindows._after_ended`) must apply whatever the clock says.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

from tests.dropin.kit import guarded_client, held, ledger_qty, store_url
from tradeguard import GuardedTradingClient, ManualClock
from tradeguard.paper.server import PaperServer
from tradeguard.testing import FixedPrices, paper_server

PRICES = {"SPY": "455.10"}
WHEN = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)  # a Monday, market open; the clock never moves


@contextmanager
def _bot(tmp_path: Path) -> Iterator[tuple[PaperServer, GuardedTradingClient]]:
    """A paper account and the drop-in on a SQLite file, sharing one clock that never moves."""
    clock = ManualClock(WHEN)
    with (
        paper_server(prices=FixedPrices(PRICES), clock=clock) as server,
        guarded_client(server, store_url(tmp_path), clock=clock) as client,
    ):
        yield server, client


def test_a_limit_order_canceled_and_placed_again_at_the_same_instant_is_placed(tmp_path: Path) -> None:
    with _bot(tmp_path) as (server, client):
        limit = LimitOrderRequest(
            symbol="SPY", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=440
        )
        first = client.submit_order(limit)
        client.cancel_order_by_id(first.id)
        again = client.submit_order(limit)  # the bot re-places the order it canceled itself
        retry = client.submit_order(limit)  # and that call's retry is answered from it

        assert again.id != first.id
        assert again.status is OrderStatus.NEW
        assert retry.id == again.id
        orders = server.broker.orders()
        assert sorted(o.status.value for o in orders) == ["canceled", "new"]


def test_a_re_entry_after_the_bot_sold_at_the_same_instant_is_placed(tmp_path: Path) -> None:
    with _bot(tmp_path) as (server, client):
        buy = MarketOrderRequest(symbol="SPY", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        sell = MarketOrderRequest(symbol="SPY", qty=10, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
        first = client.submit_order(buy)
        client.submit_order(sell)
        again = client.submit_order(buy)  # a new entry: the first one's position was sold

        assert again.id != first.id
        assert held(server, "SPY") == 10
        assert ledger_qty(client, "SPY") == 10
        assert len(server.broker.orders()) == 3


def test_the_same_sell_after_a_re_entry_at_the_same_instant_closes_the_new_position(tmp_path: Path) -> None:
    with _bot(tmp_path) as (server, client):
        buy = MarketOrderRequest(symbol="SPY", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        sell = MarketOrderRequest(symbol="SPY", qty=10, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
        client.submit_order(buy)
        first_sell = client.submit_order(sell)
        client.submit_order(buy)
        again = client.submit_order(sell)  # the new position's exit, not the first sell's retry

        assert again.id != first_sell.id
        assert held(server, "SPY") == 0
        assert ledger_qty(client, "SPY") == 0
        assert len(server.broker.orders()) == 4
