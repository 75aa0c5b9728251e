"""Audit 43: a whole-position close called again after the first closed only part of it.

Where Alpaca refuses `close_position` with 403 while open orders hold some of the shares, the
guard closes what is free (README: "the rest of a position can always be closed"). A bot then
does what it does on alpaca-py: cancels the resting orders and closes again, or ends its day with
`close_all_positions(cancel_orders=True)`. That second close, made inside the dedup window, had
the same arguments and the same ledger turn as the first, so it was answered as the first's
retry with the first (partial) order: the rest of the position stayed open while the bot
believed it was flat. On alpaca-py it closes the rest. A whole close whose earlier close filled
and left the agent holding on that same turn has not done its decision: it closes the rest,
sized as every exit (never more than is held and free), while a close of a given qty or percentage
called again in the window is still its retry.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import ClosePositionRequest, LimitOrderRequest, MarketOrderRequest

from tests.dropin.kit import guarded_client, held, ledger_qty, store_url
from tradeguard import GuardedTradingClient, ManualClock
from tradeguard.paper.server import PaperServer
from tradeguard.testing import FixedPrices, paper_server

PRICES = {"SPY": "455.10"}
WHEN = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)  # a Monday, market open


@contextmanager
def _bot(tmp_path: Path) -> Iterator[tuple[PaperServer, GuardedTradingClient, ManualClock]]:
    """A paper account and the drop-in on a SQLite file, sharing one clock."""
    clock = ManualClock(WHEN)
    with (
        paper_server(prices=FixedPrices(PRICES), clock=clock) as server,
        guarded_client(server, store_url(tmp_path), clock=clock) as client,
    ):
        yield server, client, clock


def _long_with_a_resting_sell(client: GuardedTradingClient) -> str:
    """Buy 10 SPY and rest a limit sell of 4 above the market; return the limit order's id."""
    client.submit_order(
        MarketOrderRequest(symbol="SPY", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    resting = client.submit_order(
        LimitOrderRequest(
            symbol="SPY", qty=4, side=OrderSide.SELL, time_in_force=TimeInForce.DAY, limit_price=480
        )
    )
    return str(resting.id)


def test_close_position_again_after_canceling_the_resting_sell_closes_the_rest(tmp_path: Path) -> None:
    with _bot(tmp_path) as (server, client, clock):
        resting = _long_with_a_resting_sell(client)
        first = client.close_position("SPY")  # the 6 free shares (Alpaca: 403)
        assert first.qty == "6"
        client.cancel_order_by_id(resting)
        clock.advance(2)
        second = client.close_position("SPY")  # the bot closes what is left, as on alpaca-py

        assert second.id != first.id
        assert second.qty == "4"
        assert held(server, "SPY") == 0
        assert ledger_qty(client, "SPY") == 0
        with pytest.raises(APIError) as again:  # flat now: Alpaca's 404, as on alpaca-py
            client.close_position("SPY")
        assert again.value.status_code == 404
        assert len(server.broker.orders()) == 4


def test_close_all_positions_with_cancel_after_a_partial_close_leaves_nothing_open(tmp_path: Path) -> None:
    with _bot(tmp_path) as (server, client, clock):
        _long_with_a_resting_sell(client)
        first = client.close_all_positions()  # SPY: the 6 free shares
        clock.advance(2)
        second = client.close_all_positions(cancel_orders=True)  # the end-of-day flatten

        assert [r.symbol for r in first] == ["SPY"] and [r.symbol for r in second] == ["SPY"]
        assert second[0].body.qty == "4"
        assert held(server, "SPY") == 0
        assert ledger_qty(client, "SPY") == 0


def test_a_partial_close_by_qty_called_again_is_still_its_retry(tmp_path: Path) -> None:
    with _bot(tmp_path) as (server, client, clock):
        client.submit_order(
            MarketOrderRequest(symbol="SPY", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        )
        first = client.close_position("SPY", ClosePositionRequest(qty="3"))
        clock.advance(2)
        retry = client.close_position("SPY", ClosePositionRequest(qty="3"))  # its retry: one order

        assert retry.id == first.id
        assert held(server, "SPY") == 7
        assert len(server.broker.orders()) == 2


def test_a_trimmed_sell_sent_again_after_canceling_the_resting_sell_sells_the_rest(tmp_path: Path) -> None:
    with _bot(tmp_path) as (server, client, clock):
        _long_with_a_resting_sell(client)
        sell = MarketOrderRequest(symbol="SPY", qty=10, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
        first = client.submit_order(sell)  # trimmed to the 6 free shares (Alpaca: 403)
        assert first.qty == "6"
        client.cancel_orders()
        clock.advance(2)
        second = client.submit_order(sell)  # the bot sells again, as it would on alpaca-py
        clock.advance(2)
        retry = client.submit_order(sell)  # that sell's retry: answered with it, nothing sent

        assert second.id != first.id
        assert second.qty == "4"  # the rest of the 10 asked, no more
        assert retry.id == second.id
        assert held(server, "SPY") == 0
        assert ledger_qty(client, "SPY") == 0
        assert len(server.broker.orders()) == 4


def test_the_rest_of_a_trimmed_sell_is_never_more_than_it_asked(tmp_path: Path) -> None:
    with _bot(tmp_path) as (server, client, clock):
        _long_with_a_resting_sell(client)
        sell = MarketOrderRequest(symbol="SPY", qty=8, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
        first = client.submit_order(sell)  # 6 of the 8 asked
        assert first.qty == "6"
        client.cancel_orders()
        clock.advance(2)
        second = client.submit_order(sell)

        assert second.qty == "2"  # 8 in all for the one decision, though 4 were free
        assert held(server, "SPY") == 2
        assert ledger_qty(client, "SPY") == 2


def test_an_ioc_sell_the_broker_filled_in_part_sent_again_is_still_its_retry(tmp_path: Path) -> None:
    clock = ManualClock(WHEN)
    with (
        paper_server(prices=FixedPrices(PRICES), clock=clock, max_fill_qty=6) as server,
        guarded_client(server, store_url(tmp_path), clock=clock) as client,
    ):
        client.submit_order(
            MarketOrderRequest(symbol="SPY", qty=6, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        )
        client.submit_order(
            MarketOrderRequest(symbol="SPY", qty=4, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        )
        sell = MarketOrderRequest(symbol="SPY", qty=10, side=OrderSide.SELL, time_in_force=TimeInForce.IOC)
        first = client.submit_order(sell)  # 6 filled, the rest canceled by the broker
        assert (first.status.value, first.filled_qty) == ("canceled", "6")
        clock.advance(2)
        retry = client.submit_order(sell)

        assert retry.id == first.id
        assert held(server, "SPY") == 4
        assert len(server.broker.orders()) == 3
