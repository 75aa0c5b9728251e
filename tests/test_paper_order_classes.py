"""PaperBroker's bracket, OTO and OCO orders: legs, their life, the group's rules, Alpaca's refusals."""

from __future__ import annotations

import uuid
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tradeguard.domain import (
    BrokerOrder,
    OrderClass,
    OrderRequest,
    OrderStatus,
    OrderType,
    PositionIntent,
    Side,
    TimeInForce,
)
from tradeguard.errors import OrderRejected
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.testing import make_request


def spy(**options: Any) -> PaperBroker:
    return PaperBroker(prices=FixedPrices({"SPY": 100}), **options)


def bracket(
    side: str = "buy", qty: int = 10, profit: str = "110", loss: str = "95", **fields: Any
) -> OrderRequest:
    values: dict[str, Any] = {
        "client_order_id": "entry",
        "order_class": OrderClass.BRACKET,
        "time_in_force": TimeInForce.GTC,
        "take_profit_limit_price": Decimal(profit),
        "stop_loss_stop_price": Decimal(loss),
    }
    values.update(fields)
    return make_request("SPY", side, qty, **values)


def oco(qty: int = 10, profit: str = "110", loss: str = "95", **fields: Any) -> OrderRequest:
    values: dict[str, Any] = {
        "client_order_id": "exits",
        "order_type": OrderType.LIMIT,
        "order_class": OrderClass.OCO,
        "time_in_force": TimeInForce.GTC,
        "take_profit_limit_price": Decimal(profit),
        "stop_loss_stop_price": Decimal(loss),
    }
    values.update(fields)
    return make_request("SPY", "sell", qty, **values)


def refusal(broker: PaperBroker, request: OrderRequest) -> OrderRejected:
    with pytest.raises(OrderRejected) as info:
        broker.submit_order(request)
    return info.value


def legs_of(broker: PaperBroker, parent: BrokerOrder) -> tuple[BrokerOrder, BrokerOrder]:
    order = broker.get_order(parent.id)
    assert order is not None
    profit, loss = order.legs
    return profit, loss


# ---- brackets ---------------------------------------------------------------------------------


def test_a_bracket_makes_two_legs_of_its_own_held_until_the_entry_fills() -> None:
    broker = spy(fill_on_submit=False)
    entry = broker.submit_order(bracket())
    assert (entry.order_class, entry.status, entry.raw["order_class"]) == (
        OrderClass.BRACKET,
        OrderStatus.NEW,
        "bracket",
    )
    profit, loss = entry.legs
    for leg in (profit, loss):
        assert leg.status is OrderStatus.HELD
        assert (leg.side, leg.qty, leg.order_class) == (Side.SELL, 10, OrderClass.BRACKET)
        assert leg.position_intent is PositionIntent.SELL_TO_CLOSE
        assert leg.id not in {entry.id} and uuid.UUID(leg.client_order_id)  # Alpaca names legs with uuids
        assert leg.legs == () and leg.raw["legs"] is None
        assert broker.get_order(leg.id) == leg
        assert broker.get_order_by_client_id(leg.client_order_id) == leg
    assert (profit.order_type, profit.limit_price) == (OrderType.LIMIT, 110)
    assert (loss.order_type, loss.stop_price) == (OrderType.STOP, 95)
    assert [leg["id"] for leg in entry.raw["legs"]] == [profit.id, loss.id]
    assert entry.raw["legs"][0] == profit.raw


def test_when_the_entry_fills_the_take_profit_goes_new_and_the_stop_loss_stays_held() -> None:
    broker = spy()
    entry = broker.submit_order(bracket())
    assert entry.status is OrderStatus.FILLED
    profit, loss = legs_of(broker, entry)
    assert (profit.status, loss.status) == (OrderStatus.NEW, OrderStatus.HELD)
    position = broker.get_position("SPY")
    assert position is not None
    assert (position.qty, position.qty_available) == (10, 0)  # the legs hold the shares, once


def test_the_take_profit_filling_cancels_the_stop_loss() -> None:
    broker = spy()
    entry = broker.submit_order(bracket())
    broker.set_price("SPY", "111")
    profit, loss = legs_of(broker, entry)
    assert (profit.status, profit.filled_avg_price, loss.status) == (
        OrderStatus.FILLED,
        111,
        OrderStatus.CANCELED,
    )
    assert broker.get_position("SPY") is None


def test_the_stop_loss_triggering_sells_and_cancels_the_take_profit() -> None:
    broker = spy()
    entry = broker.submit_order(bracket())
    broker.set_price("SPY", "94")
    profit, loss = legs_of(broker, entry)
    assert (loss.status, loss.filled_avg_price, profit.status) == (
        OrderStatus.FILLED,
        94,
        OrderStatus.CANCELED,
    )
    assert broker.get_position("SPY") is None


def test_a_partly_filled_take_profit_shrinks_the_stop_loss_to_what_is_left() -> None:
    broker = spy(max_fill_qty=4)
    entry = broker.submit_order(bracket(qty=10))
    while broker.step():  # the entry fills 4 at a time
        pass
    broker.set_price("SPY", "111")  # the take-profit fills 4 of 10
    profit, loss = legs_of(broker, entry)
    assert (profit.status, profit.filled_qty) == (OrderStatus.PARTIALLY_FILLED, 4)
    assert (loss.status, loss.qty) == (OrderStatus.HELD, 6)


def test_a_stop_limit_loss_leg() -> None:
    broker = spy()
    entry = broker.submit_order(bracket(stop_loss_limit_price=Decimal("94.5")))
    _, loss = legs_of(broker, entry)
    assert (loss.order_type, loss.stop_price, loss.limit_price) == (OrderType.STOP_LIMIT, 95, Decimal("94.5"))
    broker.set_price("SPY", "94")  # triggered, but below its limit
    assert legs_of(broker, entry)[1].status is OrderStatus.NEW
    broker.set_price("SPY", "94.6")
    assert legs_of(broker, entry)[1].status is OrderStatus.FILLED


@pytest.mark.parametrize("which", ["entry", "profit", "loss"])
def test_canceling_any_order_of_an_open_bracket_cancels_the_rest(which: str) -> None:
    broker = spy(fill_on_submit=False)
    entry = broker.submit_order(bracket())
    profit, loss = entry.legs
    broker.cancel_order({"entry": entry.id, "profit": profit.id, "loss": loss.id}[which])
    assert {o.status for o in broker.orders()} == {OrderStatus.CANCELED}


def test_canceling_a_leg_after_the_entry_filled_cancels_its_sibling_only() -> None:
    broker = spy()
    entry = broker.submit_order(bracket())
    profit, _ = legs_of(broker, entry)
    broker.cancel_order(profit.id)
    profit, loss = legs_of(broker, entry)
    assert (profit.status, loss.status) == (OrderStatus.CANCELED, OrderStatus.CANCELED)
    assert broker.get_order(entry.id).status is OrderStatus.FILLED  # type: ignore[union-attr]
    position = broker.get_position("SPY")
    assert position is not None and position.qty_available == 10


def test_legs_waiting_for_their_entry_hold_nothing_then_hold_their_shares_once() -> None:
    broker = spy()
    broker.submit_order(make_request("SPY", qty=10, client_order_id="held-before"))
    entry = broker.submit_order(
        bracket(order_type=OrderType.LIMIT, limit_price=Decimal(99), profit="105", loss="90")
    )
    position = broker.get_position("SPY")
    assert position is not None and position.qty_available == 10
    broker.set_price("SPY", "99")
    assert broker.get_order(entry.id).status is OrderStatus.FILLED  # type: ignore[union-attr]
    position = broker.get_position("SPY")
    assert position is not None and (position.qty, position.qty_available) == (20, 10)


def test_a_bracket_is_exempt_from_wash_trade_protection_but_its_live_legs_are_resting_orders() -> None:
    broker = spy()
    broker.submit_order(make_request("SPY", qty=5, client_order_id="long"))
    broker.submit_order(
        make_request(
            "SPY",
            "sell",
            5,
            client_order_id="ask",
            order_type=OrderType.LIMIT,
            limit_price=Decimal(120),
            time_in_force=TimeInForce.GTC,
        )
    )
    assert broker.submit_order(bracket(profit="130")).status is OrderStatus.FILLED
    error = refusal(broker, make_request("SPY", qty=1, client_order_id="more"))
    assert error.message == "potential wash trade detected. use complex orders"


def test_an_oto_is_not_exempt_from_wash_trade_protection() -> None:
    broker = spy()
    broker.submit_order(make_request("SPY", qty=5, client_order_id="long"))
    broker.submit_order(
        make_request(
            "SPY",
            "sell",
            5,
            client_order_id="ask",
            order_type=OrderType.LIMIT,
            limit_price=Decimal(120),
            time_in_force=TimeInForce.GTC,
        )
    )
    oto = bracket(order_class=OrderClass.OTO, take_profit_limit_price=None)
    assert refusal(broker, oto).message == "potential wash trade detected. use complex orders"


def test_an_oto_carries_one_leg() -> None:
    broker = spy()
    entry = broker.submit_order(bracket(order_class=OrderClass.OTO, take_profit_limit_price=None))
    [loss] = entry.legs
    assert (loss.order_type, loss.status, loss.order_class) == (
        OrderType.STOP,
        OrderStatus.HELD,
        OrderClass.OTO,
    )
    broker.set_price("SPY", "90")
    assert broker.get_order(loss.id).status is OrderStatus.FILLED  # type: ignore[union-attr]


def test_a_short_bracket_buys_its_legs_back() -> None:
    broker = spy(allow_short=True)
    entry = broker.submit_order(bracket("sell", profit="90", loss="105"))
    profit, loss = legs_of(broker, entry)
    assert (profit.side, loss.side, profit.position_intent) == (
        Side.BUY,
        Side.BUY,
        PositionIntent.BUY_TO_CLOSE,
    )
    broker.set_price("SPY", "89")
    assert broker.get_position("SPY") is None


def test_only_the_entry_of_a_bracket_spends_buying_power() -> None:
    broker = spy(cash=1000)
    assert refusal(broker, bracket(qty=11)).message == "insufficient buying power"
    broker.submit_order(
        bracket(qty=10, order_type=OrderType.LIMIT, limit_price=Decimal(99), profit="105", loss="90")
    )
    assert broker.account()["buying_power"] == "10"  # 1000 - 10 x 99; the sell legs reserve nothing


# ---- OCO --------------------------------------------------------------------------------------


def test_an_oco_is_a_limit_exit_with_a_stop_loss_leg_on_a_held_position() -> None:
    broker = spy()
    broker.submit_order(make_request("SPY", qty=10, client_order_id="long"))
    exits = broker.submit_order(oco())
    [loss] = exits.legs
    assert (exits.order_type, exits.limit_price, exits.status, exits.order_class) == (
        OrderType.LIMIT,
        110,
        OrderStatus.NEW,
        OrderClass.OCO,
    )
    assert (loss.order_type, loss.stop_price, loss.status, loss.side) == (
        OrderType.STOP,
        95,
        OrderStatus.HELD,
        Side.SELL,
    )
    position = broker.get_position("SPY")
    assert position is not None and position.qty_available == 0
    broker.set_price("SPY", "90")
    assert broker.get_order(loss.id).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert broker.get_order(exits.id).status is OrderStatus.CANCELED  # type: ignore[union-attr]


def test_an_oco_limit_filling_cancels_its_stop_loss() -> None:
    broker = spy()
    broker.submit_order(make_request("SPY", qty=10, client_order_id="long"))
    exits = broker.submit_order(oco())
    broker.set_price("SPY", "112")
    assert [o.status for o in (broker.get_order(exits.id), broker.get_order(exits.legs[0].id))] == [  # type: ignore[union-attr]
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
    ]


def test_an_oco_is_exempt_from_wash_trade_protection() -> None:
    broker = spy()
    broker.submit_order(make_request("SPY", qty=10, client_order_id="long"))
    broker.submit_order(
        make_request(
            "SPY",
            "buy",
            1,
            client_order_id="bid",
            order_type=OrderType.LIMIT,
            limit_price=Decimal(99),
            time_in_force=TimeInForce.GTC,
        )
    )
    assert broker.submit_order(oco(profit="101", loss="98")).status is OrderStatus.NEW


# ---- Alpaca's refusals ------------------------------------------------------------------------


def long_broker() -> PaperBroker:
    broker = spy(allow_short=True)
    broker.submit_order(make_request("SPY", qty=10, client_order_id="long"))
    return broker


REFUSALS: list[tuple[str, Any, int, int, str, dict[str, str]]] = [
    (
        "no take-profit",
        bracket(take_profit_limit_price=None),
        422,
        40010001,
        "bracket orders require take_profit.limit_price",
        {},
    ),
    (
        "no stop-loss",
        bracket(stop_loss_stop_price=None),
        422,
        40010001,
        "bracket orders require stop_loss.stop_price",
        {},
    ),
    (
        "ioc bracket",
        bracket(time_in_force=TimeInForce.IOC),
        422,
        42210000,
        "bracket orders must be DAY or GTC orders",
        {},
    ),
    (
        "exit bracket",
        bracket("sell", profit="90", loss="105"),
        422,
        42210000,
        "bracket orders must be entry orders",
        {},
    ),
    (
        "profit below base",
        bracket(profit="100"),
        422,
        42210000,
        "take_profit.limit_price must be >= base_price + 0.01",
        {"base_price": "100"},
    ),
    (
        "loss above base",
        bracket(loss="99.995"),
        422,
        42210000,
        "invalid stop_loss.stop_price 99.995. sub-penny increment does not fulfill minimum pricing criteria",
        {},
    ),
    (
        "loss at base",
        bracket(loss="100"),
        422,
        42210000,
        "stop_loss.stop_price must be <= base_price - 0.01",
        {"base_price": "100"},
    ),
    (
        "limit entry is the base",
        bracket(order_type=OrderType.LIMIT, limit_price=Decimal(90), profit="95", loss="90"),
        422,
        42210000,
        "stop_loss.stop_price must be <= base_price - 0.01",
        {"base_price": "90"},
    ),
    (
        "profit under loss",
        bracket(profit="90", loss="95"),
        422,
        42210000,
        "take_profit.limit_price must be > stop_loss.stop_price",
        {},
    ),
    (
        "fractional bracket",
        replace(bracket(), qty=Decimal("1.5")),
        422,
        42210000,
        "fractional orders must be simple orders",
        {},
    ),
    (
        "oto with both",
        bracket(order_class=OrderClass.OTO),
        422,
        40010001,
        "oto orders take one of take_profit or stop_loss, not both",
        {},
    ),
    ("market oco", oco(order_type=OrderType.MARKET), 422, 40010001, "oco orders must be limit orders", {}),
    (
        "oco without profit",
        oco(take_profit_limit_price=None),
        422,
        40010001,
        "oco orders require take_profit.limit_price",
        {},
    ),
    (
        "oco entry",
        replace(oco(), side=Side.BUY, take_profit_limit_price=Decimal(90), stop_loss_stop_price=Decimal(105)),
        422,
        42210000,
        "oco orders must be exit orders",
        {},
    ),
    (
        "legs on a simple order",
        make_request("SPY", client_order_id="x", take_profit_limit_price=Decimal(110)),
        422,
        40010001,
        "take_profit and stop_loss need order_class bracket, oco or oto",
        {},
    ),
]


@pytest.mark.parametrize(
    ("request_", "status", "code", "message", "extra"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
def test_alpacas_refusals_of_order_classes(
    request_: OrderRequest, status: int, code: int, message: str, extra: dict[str, str]
) -> None:
    broker = long_broker()
    if request_.side is Side.BUY and request_.order_class is not OrderClass.OCO:
        broker = spy(allow_short=True)  # entries on a flat account
    before = broker.orders()
    error = refusal(broker, request_)
    assert (error.status_code, error.code, error.message) == (status, code, message)
    assert error.body == dict(sorted({"code": code, "message": message, **extra}.items()))
    assert broker.orders() == before


# ---- listing and the state file ---------------------------------------------------------------


def test_listing_shows_legs_as_orders_or_nested_and_open_leaves_held_legs_out() -> None:
    broker = spy()
    entry = broker.submit_order(bracket())
    profit, loss = legs_of(broker, entry)
    flat = broker.list_orders(status="all", direction="asc")
    assert [o.id for o in flat] == [entry.id, profit.id, loss.id]
    assert all(o.legs == () and o.raw["legs"] is None for o in flat)
    assert [o.id for o in broker.list_orders(status="open")] == [
        profit.id
    ]  # the held stop-loss is not listed
    [nested] = broker.list_orders(status="all", nested=True)
    assert (nested.id, [leg.id for leg in nested.legs]) == (entry.id, [profit.id, loss.id])
    assert broker.list_orders(status="open", nested=True) == []  # the filled entry is closed
    assert [o.id for o in broker.list_orders(status="closed", nested=True)] == [entry.id]


def test_brackets_and_ocos_survive_a_restart_and_keep_working(tmp_path: Path) -> None:
    path = tmp_path / "paper.json"
    prices = FixedPrices({"SPY": 100, "QQQ": 100})
    broker = PaperBroker(prices=prices, state_path=path)
    entry = broker.submit_order(bracket())
    broker.submit_order(make_request("QQQ", qty=5, client_order_id="qqq"))
    exits = broker.submit_order(replace(oco(qty=5, profit="120", loss="90"), symbol="QQQ"))
    again = PaperBroker(prices=prices, state_path=path)
    assert again.orders() == broker.orders()
    assert again.get_order(entry.id) == broker.get_order(entry.id)
    assert again.list_positions() == broker.list_positions()
    again.set_price("SPY", "94")
    profit, loss = legs_of(again, entry)
    assert (profit.status, loss.status) == (OrderStatus.CANCELED, OrderStatus.FILLED)
    again.set_price("QQQ", "89")
    assert again.get_order(exits.legs[0].id).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert again.list_positions() == []
