"""Crypto pairs on the paper venue: Alpaca's crypto rules, not the equity ones.

Every test goes through an unmodified alpaca-py `TradingClient` to the paper server over real
HTTP, so what the paper account accepts and refuses is what a bot meets (ALPACA.md; the
crypto facts: Alpaca's "Crypto Orders" page, alpaca-py PR #681 and issues #200, #490, #537).
Wording marked assumed in `paper/rules.py` is asserted as the paper broker words it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import AssetClass, AssetExchange, OrderClass, OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import (
    ClosePositionRequest,
    GetAssetsRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLimitOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)

from tradeguard.broker.alpaca.errors_map import reject_kind
from tradeguard.domain import RejectKind, canonical_symbol, crypto_pair
from tradeguard.paper import PaperBroker
from tradeguard.testing import FixedPrices, alpaca_client, paper_server

PRICES = {"BTC/USD": "60000", "ETH/USD": "3000", "ETH/BTC": "0.05", "SPY": "500"}
PAIRS = {"BTC/USD", "ETH/USD", "SOL/USD", "DOGE/USD", "LTC/USD", "ETH/BTC"}


@pytest.fixture
def broker() -> PaperBroker:
    """An account that may short equities (so a refused crypto short is crypto's own rule)."""
    return PaperBroker(prices=FixedPrices(PRICES), allow_short=True, cash=1_000_000)


@pytest.fixture
def client(broker: PaperBroker) -> Iterator[TradingClient]:
    with paper_server(broker) as server, alpaca_client(server.url) as c:
        yield c


def market(
    symbol: str = "BTC/USD", qty: float | None = 0.5, side: str = "buy", **fields: Any
) -> MarketOrderRequest:
    fields.setdefault("time_in_force", TimeInForce.GTC)
    return MarketOrderRequest(symbol=symbol, qty=qty, side=side, **fields)


def refused(client: TradingClient, request: Any) -> APIError:
    with pytest.raises(APIError) as info:
        client.submit_order(request)
    return info.value


def answer(error: APIError) -> tuple[int, int, str]:
    return error.status_code, error.code, error.message


# ---- the pairs --------------------------------------------------------------------------------


def test_a_pair_and_its_slashless_spelling_are_one_pair_and_nothing_else_is() -> None:
    assert crypto_pair("BTCUSD") == crypto_pair("btc/usd") == "BTC/USD"
    assert [crypto_pair(s) for s in ("ETHBTC", "BTCUSDT", "DOGEUSDC")] == ["ETH/BTC", "BTC/USDT", "DOGE/USDC"]
    # Equities (five letters at most, class shares with a dot), other quotes, option symbols.
    for symbol in ("SPY", "GOOGL", "BRK.B", "BRK/B", "BTC/EUR", "XUSD", "ABTC", "AAPL240119C00150000"):
        assert crypto_pair(symbol) is None, symbol
    assert canonical_symbol(" spy ") == "SPY"


def test_the_shipped_pairs_are_listed_as_alpaca_lists_crypto(client: TradingClient) -> None:
    listed = client.get_all_assets(GetAssetsRequest(asset_class=AssetClass.CRYPTO))
    assert {a.symbol for a in listed} == PAIRS
    for asset in listed:
        assert (asset.asset_class, asset.exchange) == (AssetClass.CRYPTO, AssetExchange.CRYPTO)
        assert asset.fractionable and asset.tradable
        assert not (asset.shortable or asset.marginable or asset.easy_to_borrow)
    assert PAIRS.isdisjoint(a.symbol for a in client.get_all_assets())  # us_equity by default
    by_either_name = client.get_asset("BTCUSD")
    assert (by_either_name.symbol, by_either_name.asset_class) == ("BTC/USD", AssetClass.CRYPTO)


# ---- accepted ---------------------------------------------------------------------------------


def test_a_fractional_gtc_market_buy_of_a_pair_is_accepted_and_listed_without_its_slash(
    client: TradingClient,
) -> None:
    order = client.submit_order(market("BTC/USD", 0.5))
    assert (order.symbol, order.status, order.filled_qty, order.asset_class) == (
        "BTC/USD",
        OrderStatus.FILLED,
        "0.5",
        AssetClass.CRYPTO,
    )
    [position] = client.get_all_positions()
    assert (position.symbol, position.qty, position.asset_class) == ("BTCUSD", "0.5", AssetClass.CRYPTO)
    assert position.exchange is AssetExchange.CRYPTO and position.asset_marginable is False
    assert str(position.asset_id) == str(client.get_asset("BTCUSD").id)
    assert client.get_open_position("BTCUSD").qty == "0.5"


def test_the_slashless_spelling_trades_the_same_pair_and_is_answered_with_the_slash(
    client: TradingClient,
) -> None:
    bought = client.submit_order(market("BTCUSD", 0.25))
    assert bought.symbol == "BTC/USD"
    client.submit_order(market("BTC/USD", 0.25))
    client.submit_order(market("BTCUSD", 0.5, side="sell"))
    assert client.get_all_positions() == []


@pytest.mark.parametrize(
    "request_",
    [
        market(time_in_force=TimeInForce.IOC),
        market(qty=0.123456789),  # nine decimals
        market(qty=None, notional=100),
        LimitOrderRequest(symbol="BTC/USD", qty=0.5, side="buy", time_in_force="gtc", limit_price=59000),
        LimitOrderRequest(symbol="ETH/BTC", qty=1.5, side="buy", time_in_force="ioc", limit_price=0.051234),
        StopLimitOrderRequest(
            symbol="BTC/USD", qty=0.5, side="buy", time_in_force="gtc", stop_price=61000, limit_price=61500
        ),
    ],
    ids=["ioc", "nine-decimals", "notional", "limit", "limit-sub-penny-eth-btc", "stop-limit"],
)
def test_alpacas_crypto_orders_are_accepted(client: TradingClient, request_: Any) -> None:
    order = client.submit_order(request_)
    assert order.asset_class is AssetClass.CRYPTO and order.symbol == canonical_symbol(request_.symbol)


def test_a_crypto_position_is_closed_good_till_canceled(client: TradingClient) -> None:
    client.submit_order(market("ETH/USD", 2))
    closing = client.close_position("ETHUSD", ClosePositionRequest(qty="0.5"))
    assert (closing.symbol, closing.time_in_force, closing.side) == (
        "ETH/USD",
        TimeInForce.GTC,
        OrderSide.SELL,
    )
    assert client.get_open_position("ETHUSD").qty == "1.5"
    [(symbol, status)] = [(r.symbol, r.status) for r in client.close_all_positions()]
    assert (symbol, status) == ("ETHUSD", 200) and client.get_all_positions() == []


def test_a_fractional_crypto_limit_order_may_be_replaced(client: TradingClient) -> None:
    """Replacing a fractional qty is refused for equities; every crypto order is fractional
    (assumed replaceable like a whole-share one). A replacement's time in force stays crypto's."""
    order = client.submit_order(
        LimitOrderRequest(symbol="BTC/USD", qty=0.5, side="buy", time_in_force="gtc", limit_price=50000)
    )
    new = client.replace_order_by_id(order.id, ReplaceOrderRequest(qty=1, limit_price=50500.5))
    assert (new.qty, new.limit_price, new.time_in_force) == ("1", "50500.5", TimeInForce.GTC)
    with pytest.raises(APIError) as error:
        client.replace_order_by_id(new.id, ReplaceOrderRequest(time_in_force=TimeInForce.DAY))
    assert answer(error.value) == (422, 42210000, "invalid crypto time_in_force")


# ---- refused ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tif", [TimeInForce.DAY, TimeInForce.FOK, TimeInForce.OPG, TimeInForce.CLS])
def test_a_crypto_order_other_than_gtc_or_ioc_is_refused(client: TradingClient, tif: TimeInForce) -> None:
    error = refused(client, market(time_in_force=tif, qty=1))
    assert answer(error) == (422, 42210000, "invalid crypto time_in_force")
    assert client.get_orders() == []


@pytest.mark.parametrize(
    "request_",
    [
        StopOrderRequest(symbol="BTC/USD", qty=0.5, side="buy", time_in_force="gtc", stop_price=61000),
        TrailingStopOrderRequest(
            symbol="BTC/USD", qty=0.5, side="sell", time_in_force="gtc", trail_percent=1
        ),
    ],
    ids=["stop", "trailing-stop"],
)
def test_a_plain_or_trailing_stop_on_a_pair_is_refused(client: TradingClient, request_: Any) -> None:
    assert answer(refused(client, request_)) == (422, 42210000, "invalid order type for crypto order")


def test_a_bracket_and_extended_hours_are_refused_for_a_pair(client: TradingClient) -> None:
    bracket = LimitOrderRequest(
        symbol="BTC/USD", qty=1, side="buy", time_in_force="gtc", limit_price=60000,
        order_class=OrderClass.BRACKET, take_profit=TakeProfitRequest(limit_price=65000),
        stop_loss=StopLossRequest(stop_price=55000),
    )  # fmt: skip
    assert answer(refused(client, bracket)) == (422, 42210000, "invalid order class for crypto order")
    late = LimitOrderRequest(
        symbol="BTC/USD", qty=1, side="buy", time_in_force="gtc", limit_price=60000, extended_hours=True
    )
    assert answer(refused(client, late)) == (
        422,
        42210000,
        "extended hours are not supported for crypto orders",
    )


def test_a_qty_finer_than_nine_decimals_is_refused(client: TradingClient) -> None:
    error = refused(client, market(qty=0.1234567891))
    assert error.status_code == 422 and "steps of 0.000000001" in error.message


def test_a_sell_beyond_the_balance_is_refused_with_the_balance_and_never_shorts(
    client: TradingClient, broker: PaperBroker
) -> None:
    """The account may short equities, never a pair: flat or holding 0.5, a sell of 1 is 403."""
    flat = refused(client, market(qty=1, side="sell"))
    assert answer(flat) == (403, 40310000, "insufficient balance for BTC (requested: 1, available: 0)")
    client.submit_order(market(qty=0.5))
    over = refused(client, market("BTCUSD", qty=1, side="sell"))
    assert answer(over) == (403, 40310000, "insufficient balance for BTC (requested: 1, available: 0.5)")
    body = json.loads(str(over))
    assert {k: body[k] for k in ("available", "existing_qty", "held_for_orders", "symbol")} == {
        "available": "0.5", "existing_qty": "0.5", "held_for_orders": "0", "symbol": "BTC/USD",
    }  # fmt: skip
    assert reject_kind(over.status_code, over.message) is RejectKind.POSITION  # the guard reconciles on it
    # Coins held by an open sell are not free: a second sell sees what is left.
    client.submit_order(
        LimitOrderRequest(symbol="BTC/USD", qty=0.3, side="sell", time_in_force="gtc", limit_price=70000)
    )
    held = refused(client, market(qty=0.3, side="sell"))
    assert answer(held) == (403, 40310000, "insufficient balance for BTC (requested: 0.3, available: 0.2)")
    assert broker.position_qty("BTCUSD") == Decimal("0.5")


def test_equities_keep_the_equity_rules(client: TradingClient) -> None:
    """The crypto rules are the pairs' only: a fractional gtc equity order is still refused."""
    error = refused(client, market("SPY", 0.5))
    assert answer(error) == (422, 42210000, "fractional orders must be DAY orders")
    assert client.submit_order(market("SPY", 1, side="sell")).status is OrderStatus.FILLED  # a short


def test_a_buy_of_a_usd_pair_under_ten_dollars_is_refused_and_a_sell_is_not(client: TradingClient) -> None:
    """Audit 11b D5: Alpaca refuses a USD-quoted crypto buy under $10 of cost basis (403 40310000
    "cost basis must be >= minimal amount of order 10", ccxt PR #30101, probed on the paper API);
    the double filled a $0.50 buy. A sell of a small remainder is taken."""
    tiny = refused(client, market("BTC/USD", 0.0001, OrderSide.BUY))  # $6 at 60,000
    assert answer(tiny) == (403, 40310000, "cost basis must be >= minimal amount of order 10")
    small_limit = LimitOrderRequest(
        symbol="ETH/USD", qty=0.003, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=3000
    )  # $9 at its own limit price
    assert answer(refused(client, small_limit))[0] == 403
    client.submit_order(market("BTC/USD", 0.001, OrderSide.BUY))  # $60: taken
    sold = client.submit_order(market("BTC/USD", 0.0001, OrderSide.SELL))
    assert sold.status is not None
