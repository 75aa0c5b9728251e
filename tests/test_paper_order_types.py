"""PaperBroker's stop, stop-limit and trailing stop orders: triggers, the high-water mark, refusals."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from tradeguard.domain import OrderRequest, OrderStatus, OrderType, ReplaceRequest, Side, TimeInForce
from tradeguard.errors import OrderRejected
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.testing import make_request


def long_spy(qty: int = 10, **options: Any) -> PaperBroker:
    """A broker holding `qty` SPY bought at 100."""
    broker = PaperBroker(prices=FixedPrices({"SPY": 100}), **options)
    broker.submit_order(make_request("SPY", qty=qty, client_order_id="entry"))
    while broker.step():  # fill the entry whole, however partial the fills
        pass
    return broker


def stop(side: str, qty: int, stop_price: str, cid: str, **fields: Any) -> Any:
    return make_request(
        "SPY",
        side,
        qty,
        client_order_id=cid,
        order_type=OrderType.STOP,
        stop_price=Decimal(stop_price),
        time_in_force=TimeInForce.GTC,
        **fields,
    )


def refusal(broker: PaperBroker, request: Any) -> tuple[int | None, int | None, str, dict[str, Any]]:
    with pytest.raises(OrderRejected) as info:
        broker.submit_order(request)
    return info.value.status_code, info.value.code, info.value.message, info.value.body


def test_a_sell_stop_rests_and_holds_shares_until_its_price_then_sells_at_market() -> None:
    broker = long_spy()
    order = broker.submit_order(stop("sell", 10, "95", "sl"))
    assert (order.status, order.stop_price, order.raw["type"]) == (OrderStatus.NEW, 95, "stop")
    position = broker.get_position("SPY")
    assert position is not None and position.qty_available == 0
    assert broker.set_price("SPY", "96") == []
    [filled] = broker.set_price("SPY", "94.5")
    assert (filled.status, filled.filled_avg_price) == (OrderStatus.FILLED, Decimal("94.5"))
    assert broker.get_position("SPY") is None


def test_a_triggered_stop_keeps_filling_when_the_price_comes_back() -> None:
    broker = long_spy(max_fill_qty=4)
    broker.submit_order(stop("sell", 10, "95", "sl"))
    [first] = broker.set_price("SPY", "94")
    assert (first.status, first.filled_qty) == (OrderStatus.PARTIALLY_FILLED, 4)
    broker.set_price("SPY", "99")  # back above the stop: it was triggered, it goes on trading
    assert broker.step()[0].filled_qty == 10


def test_a_stop_limit_becomes_a_limit_order_once_triggered() -> None:
    broker = long_spy()
    request = replace(stop("sell", 10, "95", "sl"), order_type=OrderType.STOP_LIMIT, limit_price=Decimal(94))
    order = broker.submit_order(request)
    assert order.raw["type"] == "stop_limit"
    [triggered] = broker.set_price("SPY", "93")  # triggered, but below its limit: no sale
    assert (triggered.status, triggered.filled_qty) == (OrderStatus.NEW, 0)
    [filled] = broker.set_price("SPY", "94.2")
    assert (filled.status, filled.filled_avg_price) == (OrderStatus.FILLED, Decimal("94.2"))


def test_a_buy_stop_triggers_when_the_price_rises() -> None:
    broker = PaperBroker(prices=FixedPrices({"SPY": 100}))
    order = broker.submit_order(stop("buy", 5, "105", "breakout"))
    assert broker.set_price("SPY", "104.99") == []
    [filled] = broker.set_price("SPY", "105")
    assert (filled.id, filled.status, filled.side) == (order.id, OrderStatus.FILLED, Side.BUY)


@pytest.mark.parametrize(
    ("side", "stop_price", "message"),
    [
        ("sell", "100", "stop price must be less than current price"),
        ("sell", "101", "stop price must be less than current price"),
        ("buy", "99.99", "stop price must be greater than current price"),
    ],
)
def test_a_stop_that_would_trigger_at_once_is_refused_with_the_market_price(
    side: str, stop_price: str, message: str
) -> None:
    broker = long_spy(allow_short=True)
    status, code, text, body = refusal(broker, stop(side, 1, stop_price, "s"))
    assert (status, code, text) == (422, 42210000, message)
    assert body == {"code": 42210000, "market_price": "100", "message": message, "stop_price": stop_price}


def trailing(side: str, qty: int, cid: str, **trail: Any) -> Any:
    return make_request(
        "SPY",
        side,
        qty,
        client_order_id=cid,
        order_type=OrderType.TRAILING_STOP,
        time_in_force=TimeInForce.DAY,
        **{k: Decimal(str(v)) for k, v in trail.items()},
    )


def test_a_trailing_sell_stop_follows_the_high_water_mark_and_never_moves_down() -> None:
    broker = long_spy()
    order = broker.submit_order(trailing("sell", 10, "trail", trail_price=5))
    assert (order.raw["hwm"], order.stop_price, order.trail_price) == ("100", 95, 5)
    [moved] = broker.set_price("SPY", "110")
    assert (moved.raw["hwm"], moved.stop_price, moved.status) == ("110", 105, OrderStatus.NEW)
    assert broker.set_price("SPY", "106") == []  # below the mark: the stop stays at 105
    [sold] = broker.set_price("SPY", "104")
    assert (sold.status, sold.filled_avg_price, sold.raw["hwm"]) == (OrderStatus.FILLED, 104, "110")


def test_a_trailing_percent_buy_stop_follows_the_low_water_mark() -> None:
    broker = PaperBroker(prices=FixedPrices({"SPY": 100}))
    order = broker.submit_order(trailing("buy", 2, "t", trail_percent=5))
    assert (order.raw["hwm"], order.stop_price, order.trail_percent) == ("100", 105, 5)
    [moved] = broker.set_price("SPY", "80")
    assert (moved.raw["hwm"], moved.stop_price) == ("80", 84)
    [bought] = broker.set_price("SPY", "84")
    assert (bought.status, bought.filled_avg_price) == (OrderStatus.FILLED, 84)


def test_a_trailing_stop_without_a_price_waits_for_one() -> None:
    broker = PaperBroker(prices=FixedPrices({"SPY": 100}))  # DIA is listed but has no price
    order = broker.submit_order(replace(trailing("buy", 1, "t", trail_price=1), symbol="DIA"))
    assert (order.raw["hwm"], order.stop_price) == (None, None)
    [moved] = broker.set_price("DIA", "50")
    assert (moved.raw["hwm"], moved.stop_price) == ("50", 51)


@pytest.mark.parametrize(
    ("fields", "status", "code", "message"),
    [
        ({}, 422, 40010001, "exactly one of trail_price or trail_percent is required"),
        (
            {"trail_price": 1, "trail_percent": 1},
            422,
            40010001,
            "exactly one of trail_price or trail_percent is required",
        ),
        ({"trail_price": 0}, 422, 40010001, "trail_price or trail_percent must be > 0"),
        ({"trail_percent": 100}, 422, 40010001, "trail_percent must be < 100"),
        (
            {"trail_price": "1.001"},
            422,
            42210000,
            "invalid trail_price 1.001. sub-penny increment does not fulfill minimum pricing criteria",
        ),
    ],
)
def test_trailing_stop_refusals(fields: dict[str, Any], status: int, code: int, message: str) -> None:
    assert refusal(long_spy(), trailing("sell", 1, "t", **fields))[:3] == (status, code, message)


def test_a_trailing_stop_takes_day_or_gtc_only() -> None:
    ioc = replace(trailing("sell", 1, "t", trail_price=1), time_in_force=TimeInForce.IOC)
    assert refusal(long_spy(), ioc)[:3] == (422, 42210000, "trailing stop orders must be DAY or GTC orders")


def test_trail_fields_on_another_order_type_are_refused() -> None:
    request = make_request("SPY", client_order_id="m", trail_price=Decimal(1))
    assert refusal(long_spy(), request)[2] == "market orders must not have trail_price or trail_percent"


def test_trailing_stops_are_exempt_from_wash_trade_protection() -> None:
    broker = long_spy()
    bid = replace(
        stop("buy", 1, "105", "bid"), order_type=OrderType.LIMIT, stop_price=None, limit_price=Decimal(90)
    )
    broker.submit_order(bid)
    plain = stop("sell", 1, "95", "plain-stop")
    assert refusal(broker, plain)[2] == "potential wash trade detected. use complex orders"
    assert broker.submit_order(trailing("sell", 1, "trail", trail_price=2)).status is OrderStatus.NEW


def test_stop_and_trailing_orders_survive_a_restart(tmp_path: Any) -> None:
    path = tmp_path / "paper.json"
    broker = long_spy(state_path=path, max_fill_qty=2)
    broker.submit_order(stop("sell", 5, "95", "sl"))
    broker.set_price("SPY", "94")  # triggered, 2 of 5 sold
    trail = broker.submit_order(trailing("sell", 1, "trail", trail_percent=10))
    assert (trail.raw["hwm"], trail.stop_price) == ("94", Decimal("84.6"))
    again = PaperBroker(state_path=path, prices=FixedPrices({"SPY": 100}), max_fill_qty=2)
    assert again.orders() == broker.orders()
    assert [o.raw for o in again.orders()] == [o.raw for o in broker.orders()]
    assert again.step()[0].filled_qty == 4  # the trigger survived the restart


@pytest.mark.parametrize(
    ("order_type", "prices", "message"),
    [
        (OrderType.MARKET, {"limit_price": 91}, "market orders must not have limit_price"),
        (OrderType.LIMIT, {"limit_price": 90, "stop_price": 91}, "limit orders must not have stop_price"),
        (OrderType.STOP, {"stop_price": 90, "limit_price": 91}, "stop orders must not have limit_price"),
    ],
)
def test_a_price_the_order_type_does_not_take_is_refused(
    order_type: OrderType, prices: dict[str, int], message: str
) -> None:
    fields = {name: Decimal(value) for name, value in prices.items()}
    request = make_request("SPY", client_order_id="o", order_type=order_type, **fields)
    assert refusal(long_spy(), request)[:3] == (422, 42210000, message)


# Audit 19: opg and cls are the auctions' times in force, for market and limit orders only
# (Alpaca's orders page); the paper account took a stop or a stop-limit "on open".
@pytest.mark.parametrize("tif", [TimeInForce.OPG, TimeInForce.CLS])
@pytest.mark.parametrize(
    "extra",
    [
        {"order_type": OrderType.STOP, "stop_price": Decimal("110")},
        {"order_type": OrderType.STOP_LIMIT, "stop_price": Decimal("110"), "limit_price": Decimal("111")},
    ],
)
def test_an_auction_order_must_be_market_or_limit(tif: TimeInForce, extra: dict[str, Any]) -> None:
    broker = PaperBroker(prices=FixedPrices({"SPY": "100"}))
    request = OrderRequest("SPY", Side.BUY, "auction", qty=Decimal(1), time_in_force=tif, **extra)
    with pytest.raises(OrderRejected) as refused:
        broker.submit_order(request)
    message = f"{tif} orders must be market or limit orders"
    assert (refused.value.status_code, refused.value.message) == (422, message)
    assert broker.orders() == []


def test_a_stop_cannot_be_replaced_into_an_auction_order() -> None:
    broker = PaperBroker(prices=FixedPrices({"SPY": "100"}))
    kind = OrderType.STOP
    stop = OrderRequest("SPY", Side.BUY, "s", qty=Decimal(1), order_type=kind, stop_price=Decimal(110))
    placed = broker.submit_order(stop)
    with pytest.raises(OrderRejected, match="opg orders must be market or limit orders"):
        broker.replace_order(placed.id, ReplaceRequest(time_in_force=TimeInForce.OPG))
