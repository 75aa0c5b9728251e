"""Audit 75: an order the guard refuses for its shape is Alpaca's 422, word for word and code for code.

The guard checks an order's shape before it claims it (`orders.build_spec`); where alpaca-py's
request models let a malformed order through, Alpaca refuses it with a 422 of its own. The
guard answered in its own words ("... (Alpaca's rule)") and always with code 40010001, where
Alpaca says "notional orders must be market orders" with 42210000: a bot that reads the
message or the code saw something else than on alpaca-py. Compared with plain alpaca-py on the
paper server; nothing is sent by either.
"""

from __future__ import annotations

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderClass, OrderSide, TimeInForce
from alpaca.trading.requests import (
    MarketOrderRequest,
    OrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
)

from tests.dropin.kit import plain_client
from tradeguard import GuardedTradingClient
from tradeguard.paper.server import PaperServer

BUY, DAY = OrderSide.BUY, TimeInForce.DAY
TAKE, STOP = TakeProfitRequest(limit_price=210), StopLossRequest(stop_price=180)

MALFORMED: dict[str, OrderRequest] = {
    "notional-stop": StopOrderRequest(
        symbol="AAPL", notional=100, side=BUY, time_in_force=DAY, stop_price=200
    ),
    "notional-bracket": MarketOrderRequest(
        symbol="AAPL", notional=500, side=BUY, time_in_force=DAY,
        order_class=OrderClass.BRACKET, take_profit=TAKE, stop_loss=STOP,
    ),
    "notional-oto": MarketOrderRequest(
        symbol="AAPL", notional=500, side=BUY, time_in_force=DAY, order_class=OrderClass.OTO, stop_loss=STOP
    ),
    "oto-both-legs": MarketOrderRequest(
        symbol="AAPL", qty=1, side=BUY, time_in_force=DAY,
        order_class=OrderClass.OTO, take_profit=TAKE, stop_loss=STOP,
    ),
    "legs-without-class": MarketOrderRequest(
        symbol="AAPL", qty=1, side=BUY, time_in_force=DAY, take_profit=TAKE, stop_loss=STOP
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_order_is_refused_with_alpacas_own_422(
    client: GuardedTradingClient, server: PaperServer, name: str
) -> None:
    order = MALFORMED[name]
    with plain_client(server) as plain, pytest.raises(APIError) as alpaca:
        plain.submit_order(order)
    with pytest.raises(APIError) as guarded:
        client.submit_order(order)
    got, want = guarded.value, alpaca.value
    assert want.status_code == 422
    assert (got.status_code, got.code, got.message) == (want.status_code, want.code, want.message)
    assert server.broker.orders() == [] and client.gateway.store.list_claims() == []
