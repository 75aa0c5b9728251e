"""PaperBroker.replace_order: Alpaca's replace semantics, its refusals, and the chain `replaced_by` makes."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tradeguard.domain import OrderClass, OrderStatus, OrderType, ReplaceRequest, TimeInForce
from tradeguard.errors import OrderRejected
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.testing import make_request


def limit(side: str, qty: int, price: str, cid: str, **fields: Any) -> Any:
    return make_request(
        "SPY",
        side,
        qty,
        client_order_id=cid,
        order_type=OrderType.LIMIT,
        limit_price=Decimal(price),
        time_in_force=TimeInForce.GTC,
        **fields,
    )


def spy(**options: Any) -> PaperBroker:
    return PaperBroker(prices=FixedPrices({"SPY": 100}), **options)


def refused(broker: PaperBroker, order_id: str, **changes: Any) -> OrderRejected:
    before = broker.orders()
    with pytest.raises(OrderRejected) as info:
        broker.replace_order(order_id, ReplaceRequest(**changes))
    assert broker.orders() == before  # a refusal changes nothing
    return info.value


def test_a_replacement_is_a_new_order_and_the_old_one_names_it() -> None:
    broker = spy()
    old = broker.submit_order(limit("buy", 5, "95", "dip"))
    new = broker.replace_order(old.id, ReplaceRequest(limit_price=Decimal("96")))
    assert new.id != old.id and uuid.UUID(new.client_order_id)  # a new uuid when none is given
    assert (new.replaces, new.replaced_by, new.limit_price, new.qty, new.status) == (
        old.id,
        None,
        96,
        5,
        OrderStatus.NEW,
    )
    previous = broker.get_order(old.id)
    assert previous is not None
    assert (previous.status, previous.replaced_by) == (OrderStatus.REPLACED, new.id)
    assert previous.raw["replaced_at"] is not None
    assert [o.id for o in broker.list_orders()] == [new.id]


def test_the_client_order_id_of_a_decision_leads_to_its_live_order() -> None:
    broker = spy()
    old = broker.submit_order(limit("buy", 5, "95", "dip"))
    middle = broker.replace_order(old.id, ReplaceRequest(limit_price=Decimal("96"), client_order_id="dip-2"))
    last = broker.replace_order(middle.id, ReplaceRequest(qty=Decimal(6)))
    assert broker.get_order_by_client_id("dip") == last
    assert broker.get_order_by_client_id("dip-2") == last
    exact = broker.get_order_by_client_id("dip", follow=False)
    assert exact is not None and (exact.id, exact.status) == (old.id, OrderStatus.REPLACED)


def test_a_client_order_id_stays_unique_across_replacements() -> None:
    broker = spy()
    old = broker.submit_order(limit("buy", 5, "95", "dip"))
    error = refused(broker, old.id, limit_price=Decimal(96), client_order_id="dip")
    assert (error.status_code, error.message) == (422, "client_order_id must be unique")


def test_a_marketable_replacement_fills_at_once() -> None:
    broker = spy()
    old = broker.submit_order(limit("buy", 5, "95", "dip"))
    new = broker.replace_order(old.id, ReplaceRequest(limit_price=Decimal("101")))
    assert (new.status, new.filled_avg_price) == (OrderStatus.FILLED, 100)


def test_a_partly_filled_order_is_replaced_with_the_chains_total_and_fills() -> None:
    broker = spy(max_fill_qty=4)
    old = broker.submit_order(
        make_request("SPY", qty=10, client_order_id="big", time_in_force=TimeInForce.GTC)
    )
    assert old.filled_qty == 4
    error = refused(broker, old.id, qty=Decimal(4))
    assert (error.status_code, error.code, error.message) == (
        422,
        40010001,
        "unable to replace order, qty must be > filled_qty",
    )
    new = broker.replace_order(old.id, ReplaceRequest(qty=Decimal(9)))
    # The chain's 4 shares carry over; the replacement trades the 5 left, 4 at a time.
    assert (new.qty, new.filled_qty, new.status) == (9, 8, OrderStatus.PARTIALLY_FILLED)
    [done] = broker.step()
    assert (done.id, done.status, done.filled_qty) == (new.id, OrderStatus.FILLED, 9)
    position = broker.get_position("SPY")
    assert position is not None and position.qty == 9  # no share counted twice
    assert broker.account()["cash"] == "99100"


def test_orders_that_are_not_open_cannot_be_replaced() -> None:
    broker = spy()
    filled = broker.submit_order(make_request("SPY", client_order_id="f"))
    error = refused(broker, filled.id, qty=Decimal(3))
    assert (error.status_code, error.code, error.message) == (
        422,
        40010001,
        "unable to replace order, order is not open",
    )
    resting = broker.submit_order(limit("buy", 1, "90", "r"))
    broker.cancel_order(resting.id)
    assert (
        refused(broker, resting.id, limit_price=Decimal(91)).message
        == "unable to replace order, order is not open"
    )
    with pytest.raises(OrderRejected) as info:
        broker.replace_order("missing", ReplaceRequest(qty=Decimal(1)))
    assert info.value.body == {"code": 40410000, "message": "order not found"}


def test_a_replacement_that_changes_nothing_is_refused() -> None:
    broker = spy()
    old = broker.submit_order(limit("buy", 5, "95", "dip"))
    for changes in ({}, {"limit_price": Decimal(95)}, {"qty": Decimal(5), "time_in_force": TimeInForce.GTC}):
        error = refused(broker, old.id, **changes)
        assert (error.status_code, error.code, error.message) == (
            403,
            40310000,
            "order parameters are not changed",
        )


@pytest.mark.parametrize(
    ("order_type", "field", "message"),
    [
        (OrderType.LIMIT, "stop_price", "limit orders must not have stop_price"),
        (OrderType.LIMIT, "trail", "limit orders must not have trail"),
        (OrderType.STOP, "limit_price", "stop orders must not have limit_price"),
    ],
)
def test_a_field_the_order_type_does_not_take_is_refused(
    order_type: OrderType, field: str, message: str
) -> None:
    broker = spy()
    prices = {"limit_price": Decimal(95)} if order_type is OrderType.LIMIT else {"stop_price": Decimal(95)}
    request = make_request(
        "SPY", "buy", 1, client_order_id="o", order_type=order_type, time_in_force=TimeInForce.GTC, **prices
    )
    if order_type is OrderType.STOP:
        request = make_request(
            "SPY", "buy", 1, client_order_id="o", order_type=order_type, stop_price=Decimal(105)
        )
    old = broker.submit_order(request)
    assert refused(broker, old.id, **{field: Decimal(1)}).message == message


def test_an_exit_may_not_grow_past_what_is_held_but_may_keep_its_own_shares() -> None:
    broker = spy()
    broker.submit_order(make_request("SPY", qty=10, client_order_id="long"))
    exit_order = broker.submit_order(limit("sell", 6, "120", "tp"))
    bigger = broker.replace_order(exit_order.id, ReplaceRequest(qty=Decimal(10)))  # its own 6 count as free
    assert bigger.qty == 10
    error = refused(broker, bigger.id, qty=Decimal(11))
    assert error.status_code == 403
    assert error.body["available"] == "10" and error.body["held_for_orders"] == "0"


def test_a_buy_replacement_needs_buying_power_beyond_its_own_reservation() -> None:
    broker = spy(cash=1000)
    old = broker.submit_order(limit("buy", 9, "99", "bid"))  # reserves 891 of 1000
    assert broker.replace_order(old.id, ReplaceRequest(qty=Decimal(10))).qty == 10
    later = broker.get_order_by_client_id("bid")
    assert later is not None
    assert refused(broker, later.id, qty=Decimal(11)).message == "insufficient buying power"


def test_a_replacement_is_checked_for_wash_trades_but_not_against_itself() -> None:
    broker = spy()
    broker.submit_order(make_request("SPY", qty=5, client_order_id="long"))
    broker.submit_order(limit("sell", 5, "120", "ask"))
    bid = broker.submit_order(limit("buy", 1, "90", "bid"))
    raised = broker.replace_order(bid.id, ReplaceRequest(limit_price=Decimal(95)))
    assert refused(broker, raised.id, limit_price=Decimal(121)).message == (
        "potential wash trade detected. use complex orders"
    )


def test_a_bracket_leg_is_replaced_in_place_and_keeps_its_sibling() -> None:
    broker = spy()
    entry = broker.submit_order(
        make_request(
            "SPY",
            qty=10,
            client_order_id="entry",
            order_class=OrderClass.BRACKET,
            time_in_force=TimeInForce.GTC,
            take_profit_limit_price=Decimal(110),
            stop_loss_stop_price=Decimal(95),
        )
    )
    profit, loss = entry.legs
    new_profit = broker.replace_order(profit.id, ReplaceRequest(limit_price=Decimal(105)))
    assert (new_profit.order_class, new_profit.status, new_profit.replaces) == (
        OrderClass.BRACKET,
        OrderStatus.NEW,
        profit.id,
    )
    after = broker.get_order(entry.id)
    assert after is not None and [leg.id for leg in after.legs] == [new_profit.id, loss.id]
    error = refused(broker, loss.id, qty=Decimal(5))
    assert error.message == "only limit_price and stop_price of bracket orders can be replaced"
    broker.set_price("SPY", "106")
    assert broker.get_order(new_profit.id).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert broker.get_order(loss.id).status is OrderStatus.CANCELED  # type: ignore[union-attr]


def test_an_oto_cannot_be_replaced() -> None:
    broker = spy(fill_on_submit=False)
    entry = broker.submit_order(
        make_request(
            "SPY",
            qty=1,
            client_order_id="oto",
            order_class=OrderClass.OTO,
            take_profit_limit_price=Decimal(110),
        )
    )
    assert refused(broker, entry.id, qty=Decimal(2)).message == "oto orders cannot be replaced"


def test_a_trailing_stop_takes_a_new_trail_and_a_new_high_water_mark() -> None:
    broker = spy()
    broker.submit_order(make_request("SPY", qty=1, client_order_id="long"))
    old = broker.submit_order(
        make_request(
            "SPY", "sell", 1, client_order_id="t", order_type=OrderType.TRAILING_STOP, trail_price=Decimal(5)
        )
    )
    broker.set_price("SPY", "110")
    broker.set_price("SPY", "108")
    new = broker.replace_order(old.id, ReplaceRequest(trail=Decimal(2)))
    assert (new.trail_price, new.raw["hwm"], new.stop_price) == (2, "108", 106)


def test_a_chain_of_replacements_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "paper.json"
    broker = spy(state_path=path)
    old = broker.submit_order(limit("buy", 5, "95", "dip"))
    new = broker.replace_order(old.id, ReplaceRequest(limit_price=Decimal(96)))
    again = spy(state_path=path)
    assert again.orders() == broker.orders()
    assert again.get_order_by_client_id("dip") == new
