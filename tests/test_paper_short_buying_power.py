"""A short sale needs buying power, as a buy does (audit 11b D4).

Alpaca "applies a buying power check to both buy long and sell short positions" (its
buying-power docs). The double checked buys only: on $1,000 of cash a $100,000 short filled, a
position no Alpaca account could open, and a guard test standing on it would pass on a double
more lenient than the broker. Real parts: the paper broker in process and over HTTP through the
real alpaca-py client.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from tradeguard.domain import OrderRequest, Side
from tradeguard.errors import OrderRejected
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.testing import alpaca_client, paper_server


def _broker() -> PaperBroker:
    return PaperBroker(prices=FixedPrices({"SPY": "500"}), allow_short=True, cash=1_000)


def test_a_short_beyond_buying_power_is_refused_with_alpacas_body() -> None:
    broker = _broker()
    with pytest.raises(OrderRejected) as refused:
        broker.submit_order(OrderRequest("SPY", Side.SELL, "big-short", qty=Decimal(200)))
    assert (refused.value.status_code, refused.value.message) == (403, "insufficient buying power")
    assert refused.value.body is not None and refused.value.body.get("cost_basis") == "100000"
    assert broker.get_position("SPY") is None
    small = broker.submit_order(OrderRequest("SPY", Side.SELL, "small-short", qty=Decimal(1)))
    assert small.filled_qty == 1


def test_over_http_the_plain_client_gets_the_same_403() -> None:
    with paper_server(_broker()) as server, alpaca_client(server.url) as client:
        with pytest.raises(APIError) as refused:
            client.submit_order(
                MarketOrderRequest(symbol="SPY", qty=200, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
            )
        assert refused.value.status_code == 403 and refused.value.message == "insufficient buying power"
        assert client.get_all_positions() == []
