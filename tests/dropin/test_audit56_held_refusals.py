"""Audit 56: the guard's own 403 for shares held by open orders reads as Alpaca's.

When every share is held by open orders the guard refuses a close (or a closing sell) itself,
with Alpaca's 403 body. It left out `related_orders`, the ids of the orders holding the shares,
which Alpaca's body carries (a bot may cancel them and close again), and named a crypto pair's
refusal "insufficient qty available for order" where Alpaca says "insufficient balance for BTC".
Each is compared with what plain alpaca-py raises on the paper server for the same account.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

from tests.dropin.kit import as_order, guarded_client, plain_client, store_url
from tradeguard import ManualClock
from tradeguard.testing import FixedPrices, paper_server

PRICES = {"SPY": "500", "BTC/USD": "60000"}
BUY, SELL = OrderSide.BUY, OrderSide.SELL


def _order(symbol: str, qty: float, side: OrderSide, limit_price: float | None = None) -> Any:
    tif = TimeInForce.GTC
    if limit_price is None:
        return MarketOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=tif)
    return LimitOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=tif, limit_price=limit_price)


def _held_up(client: TradingClient, clock: ManualClock, symbol: str, qty: float, ask: float) -> str:
    """Buy `qty`, then rest a sell of all of it above the market; return the resting order's id."""
    client.submit_order(_order(symbol, qty, BUY))
    clock.advance(2)
    resting = as_order(client.submit_order(_order(symbol, qty, SELL, ask)))
    clock.advance(2)
    return str(resting.id)


def _body(call: Callable[[], object], resting: str) -> dict[str, Any]:
    """The 403 `call` raises, as its JSON body with the resting order's id named "RESTING"."""
    with pytest.raises(APIError) as refused:
        call()
    assert refused.value.status_code == 403, refused.value
    body = json.loads(str(refused.value))
    body.pop("detail", None)  # what only the guard knows, beside Alpaca's words
    body["related_orders"] = ["RESTING" if i == resting else i for i in body.get("related_orders", [])]
    return body


Account = tuple[TradingClient, ManualClock]


@contextmanager
def _both(tmp_path: Any) -> Iterator[tuple[Account, Account]]:
    plain_clock, guard_clock = ManualClock(), ManualClock()
    with (
        paper_server(prices=FixedPrices(PRICES), clock=plain_clock) as plain_server,
        paper_server(prices=FixedPrices(PRICES), clock=guard_clock) as guard_server,
        plain_client(plain_server) as plain,
        guarded_client(guard_server, store_url(tmp_path), clock=guard_clock) as guarded,
    ):
        yield (plain, plain_clock), (guarded, guard_clock)


@pytest.mark.parametrize(
    ("symbol", "qty", "ask", "close_as"),
    [("SPY", 10, 600, "SPY"), ("BTC/USD", 0.5, 70000, "BTCUSD")],
)
def test_a_close_with_every_share_held_by_an_order_is_alpacas_403_body_on_both_clients(
    tmp_path: Any, symbol: str, qty: float, ask: float, close_as: str
) -> None:
    with _both(tmp_path) as ((plain, plain_clock), (guarded, guard_clock)):
        bodies = []
        for client, clock in ((plain, plain_clock), (guarded, guard_clock)):
            resting = _held_up(client, clock, symbol, qty, ask)
            bodies.append(
                (
                    _body(lambda c=client: c.close_position(close_as), resting),
                    _body(lambda c=client: c.submit_order(_order(symbol, qty / 5, SELL)), resting),
                )
            )
    expected, got = bodies
    assert got == expected
    assert expected[0]["related_orders"] == ["RESTING"]
    if symbol == "BTC/USD":
        assert expected[0]["message"].startswith("insufficient balance for BTC ")
