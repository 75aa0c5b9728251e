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

from tests.mothers import limit
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
    # Alpaca values a market short at 3% above the ask: 200 x 500 x 1.03.
    assert refused.value.body is not None and refused.value.body.get("cost_basis") == "103000"
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


# Audit 19: a short's proceeds came into cash and counted as buying power again, so shorts
# compounded (on $1,000: short $1,000, then $2,000, then $4,000, ... every one accepted); open
# short sales reserved nothing; a buy to cover reserved cash Alpaca does not reserve.


def _limit(side: Side, cid: str, price: int, qty: int = 1) -> OrderRequest:
    return limit("SPY", side, qty, str(price), cid)  # GTC: it rests on the book


def test_a_shorts_proceeds_never_raise_the_buying_power() -> None:
    broker = _broker()
    broker.submit_order(OrderRequest("SPY", Side.SELL, "first", qty=Decimal(1)))  # $515 of $1,000
    assert broker.account()["buying_power"] == "500"  # cash 1,500 less the short's 500, twice
    with pytest.raises(OrderRejected) as refused:
        broker.submit_order(OrderRequest("SPY", Side.SELL, "second", qty=Decimal(1)))
    assert (refused.value.status_code, refused.value.message) == (403, "insufficient buying power")
    assert broker.position_qty("SPY") == -1


def test_a_market_short_is_valued_three_percent_above_the_market() -> None:
    with pytest.raises(OrderRejected) as refused:
        _broker().submit_order(OrderRequest("SPY", Side.SELL, "edge", qty=Decimal(2)))  # 1,000 of 1,000
    assert refused.value.body is not None and refused.value.body.get("cost_basis") == "1030"


def test_an_open_short_sale_reserves_buying_power() -> None:
    broker = _broker()
    broker.submit_order(_limit(Side.SELL, "rests", 600))  # above the market: rests, holds $600
    assert broker.account()["buying_power"] == "400"
    with pytest.raises(OrderRejected) as refused:
        broker.submit_order(_limit(Side.SELL, "again", 600))
    assert refused.value.message == "insufficient buying power"


def test_an_open_buy_to_cover_reserves_nothing() -> None:
    broker = PaperBroker(prices=FixedPrices({"SPY": "500"}), allow_short=True, cash=2_000)
    broker.submit_order(OrderRequest("SPY", Side.SELL, "short", qty=Decimal(1)))
    assert broker.account()["buying_power"] == "1500"
    broker.submit_order(_limit(Side.BUY, "cover", 400))  # below the market: rests
    assert broker.account()["buying_power"] == "1500"


def test_over_http_shorts_stop_at_the_buying_power() -> None:
    with paper_server(_broker()) as server, alpaca_client(server.url) as client:
        short = MarketOrderRequest(symbol="SPY", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
        accepted = 0
        for _ in range(4):
            try:
                client.submit_order(short)
                accepted += 1
            except APIError as refused:
                assert (refused.status_code, refused.message) == (403, "insufficient buying power")
        assert accepted == 1
