"""Audit 56: sizes and prices Alpaca cannot take are its 422 in its words, and nothing is sent.

Alpaca refuses a close whose qty is not a positive number with 422 ("qty must be > 0",
"invalid qty"); the guard sized such a close as an exit instead: qty 0 or -5 was a 403
"insufficient qty", qty "NaN" raised `decimal.InvalidOperation` (no `APIError`: a bot's
``except APIError`` did not catch it), and qty "Infinity" sold the whole position. Each is
compared with what plain alpaca-py gets from the paper server for the same position. An order
with a size or price not above zero was refused in the guard's words ("qty must be positive,
got -1.0") where Alpaca says "qty must be > 0".
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import (
    ClosePositionRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    OrderRequest,
    StopOrderRequest,
    TrailingStopOrderRequest,
)

from tests.dropin.kit import guarded_client, held, market, plain_client, store_url
from tradeguard import GuardedTradingClient, ManualClock
from tradeguard.paper.server import PaperServer
from tradeguard.testing import FixedPrices, paper_server

CLOSES = [
    {"qty": "0"},
    {"qty": "-5"},
    {"qty": "NaN"},
    {"qty": "Infinity"},
    {"qty": "abc"},
    {"percentage": "NaN"},
    {"percentage": "abc"},
]


@pytest.mark.parametrize("options", CLOSES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_a_close_with_an_impossible_size_is_alpacas_422_on_both_clients_and_sells_nothing(
    tmp_path: Path, options: dict[str, str]
) -> None:
    answers = []
    for guarded in (False, True):
        clock = ManualClock()
        with paper_server(prices=FixedPrices({"SPY": "500"}), clock=clock) as server:
            opened = (
                guarded_client(server, store_url(tmp_path), clock=clock) if guarded else plain_client(server)
            )
            with opened as client:
                client.submit_order(market("SPY", 10, OrderSide.BUY))
                clock.advance(5)
                with pytest.raises(APIError) as refused:
                    client.close_position("SPY", ClosePositionRequest(**options))
                error = refused.value
                answers.append((error.status_code, error.code, error.message))
                assert held(server, "SPY") == Decimal(10)
                assert [o.side.value for o in server.broker.orders()] == ["buy"]
    plain, guard = answers
    assert plain[0] == 422
    assert guard == plain


ORDERS: list[Callable[[], OrderRequest]] = [
    lambda: MarketOrderRequest(symbol="SPY", qty=-1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY),
    lambda: MarketOrderRequest(symbol="SPY", notional=-5, side=OrderSide.BUY, time_in_force=TimeInForce.DAY),
    lambda: LimitOrderRequest(
        symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=0
    ),
    lambda: StopOrderRequest(
        symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, stop_price=-1
    ),
    lambda: TrailingStopOrderRequest(
        symbol="SPY", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.DAY, trail_percent=0
    ),
    lambda: TrailingStopOrderRequest(
        symbol="SPY", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.DAY, trail_price=-2
    ),
]


@pytest.mark.parametrize("order", ORDERS)
def test_an_order_with_a_size_or_price_not_above_zero_is_refused_in_alpacas_words(
    client: GuardedTradingClient, server: PaperServer, order: Callable[[], OrderRequest]
) -> None:
    with plain_client(server) as plain, pytest.raises(APIError) as alpaca:
        plain.submit_order(order())
    with pytest.raises(APIError) as guarded:
        client.submit_order(order())
    expected = (alpaca.value.status_code, alpaca.value.code, alpaca.value.message)
    assert (guarded.value.status_code, guarded.value.code, guarded.value.message) == expected
    assert expected[0] == 422
    assert server.broker.orders() == []
