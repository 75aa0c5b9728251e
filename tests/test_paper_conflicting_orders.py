"""Alpaca blocks an opening order while the account is flat and an order on the other side is open.

Seen in Alpaca's answers (403 40310000): "cannot open a long buy while a short sell order is
open" and "cannot open a short sell while a long buy order is open", for orders that could
never cross as well (Alpaca's staff: an account is never long and short one symbol at once, so
such orders conflict). The paper account refused only orders that could cross (its wash-trade
check), so a bot or a guard that places an exit before its entry filled, or a protective stop
next to a working short entry, passed on paper and failed at Alpaca. On an exit the refusal
means the broker is flat: it reads as a position refusal, which reconciles the symbol. Audit 19.
Real parts: the paper broker, the paper server and alpaca-py's `TradingClient`.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest

from tests.mothers import limit
from tradeguard.broker.alpaca.errors_map import reject_kind
from tradeguard.domain import OrderRequest, OrderType, RejectKind, Side
from tradeguard.errors import OrderRejected
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.testing import alpaca_client, paper_server

LONG_WHILE_SHORT = "cannot open a long buy while a short sell order is open"
SHORT_WHILE_LONG = "cannot open a short sell while a long buy order is open"


def _broker() -> PaperBroker:
    return PaperBroker(prices=FixedPrices({"SPY": "500"}), allow_short=True)


def _limit(side: Side, cid: str, price: int, qty: int = 1) -> OrderRequest:
    return limit("SPY", side, qty, str(price), cid)  # GTC: it rests on the book


def _refusal(broker: PaperBroker, request: OrderRequest) -> OrderRejected:
    with pytest.raises(OrderRejected) as refused:
        broker.submit_order(request)
    return refused.value


def test_a_short_sale_is_refused_while_a_buy_is_open_on_a_flat_account() -> None:
    broker = _broker()
    broker.submit_order(_limit(Side.BUY, "entry", 490))  # rests below the market
    refused = _refusal(broker, _limit(Side.SELL, "take-profit", 520))  # could never cross it
    assert (refused.status_code, refused.body) == (403, {"code": 40310000, "message": SHORT_WHILE_LONG})
    assert refused.kind is RejectKind.POSITION  # an exit of shares the broker does not hold


def test_a_protective_stop_is_refused_while_the_short_entry_works() -> None:
    broker = _broker()
    broker.submit_order(_limit(Side.SELL, "short-entry", 510))  # rests above the market
    stop = OrderRequest(
        "SPY",
        Side.BUY,
        "protect",
        qty=Decimal(1),
        order_type=OrderType.TRAILING_STOP,
        trail_percent=Decimal(2),
    )
    refused = _refusal(broker, stop)  # trailing stops skip the wash-trade check, not this one
    assert (refused.status_code, refused.message) == (403, LONG_WHILE_SHORT)
    assert [o.client_order_id for o in broker.orders()] == ["short-entry"]


def test_orders_of_both_sides_rest_together_once_a_position_is_held() -> None:
    broker = _broker()
    broker.submit_order(OrderRequest("SPY", Side.BUY, "entry", qty=Decimal(2)))
    broker.submit_order(_limit(Side.SELL, "take-profit", 520))
    broker.submit_order(_limit(Side.BUY, "add", 480))  # adds to the long: no conflict
    assert len(broker.list_orders(status="open")) == 2


def test_the_refusal_reads_as_a_position_refusal() -> None:
    assert reject_kind(403, SHORT_WHILE_LONG) is RejectKind.POSITION
    assert reject_kind(403, LONG_WHILE_SHORT) is RejectKind.POSITION


def test_over_http_the_plain_client_gets_alpacas_403() -> None:
    with paper_server(_broker()) as server, alpaca_client(server.url) as client:
        client.submit_order(
            LimitOrderRequest(
                symbol="SPY", qty=1, side=OrderSide.BUY, limit_price=490, time_in_force=TimeInForce.GTC
            )
        )
        with pytest.raises(APIError) as refused:
            client.submit_order(
                LimitOrderRequest(
                    symbol="SPY", qty=1, side=OrderSide.SELL, limit_price=520, time_in_force=TimeInForce.GTC
                )
            )
        assert (refused.value.status_code, refused.value.code, refused.value.message) == (
            403,
            40310000,
            SHORT_WHILE_LONG,
        )
