"""PaperBroker in process: Alpaca's semantics and exact refusals, prices, persistence, threads."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.mothers import limit
from tradeguard.clock import ManualClock
from tradeguard.domain import OrderStatus, OrderType, PositionIntent, Side, TimeInForce
from tradeguard.errors import OrderRejected
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import DEFAULT_PRICE, FixedPrices
from tradeguard.ports import Broker
from tradeguard.testing import make_request


def rejected(broker: PaperBroker, **request: Any) -> OrderRejected:
    """Submit `make_request(**request)` and return the refusal it must get."""
    with pytest.raises(OrderRejected) as info:
        broker.submit_order(make_request(**request))
    return info.value


def test_paper_broker_implements_the_broker_port() -> None:
    assert isinstance(PaperBroker(), Broker)


def test_market_buy_fills_at_the_default_price_without_a_price_source() -> None:
    broker = PaperBroker()
    order = broker.submit_order(make_request("tqqq", "buy", 6, client_order_id="a"))
    assert (order.status, order.filled_qty, order.filled_avg_price) == (OrderStatus.FILLED, 6, DEFAULT_PRICE)
    assert order.symbol == "TQQQ"
    position = broker.get_position("TQQQ")
    assert position is not None
    assert (position.qty, position.qty_available, position.market_value) == (6, 6, 600)
    assert broker.account()["cash"] == "99400"


def test_order_raw_is_alpacas_json_document() -> None:
    order = PaperBroker().submit_order(make_request(client_order_id="a"))
    assert order.raw["client_order_id"] == "a"
    assert order.raw["status"] == "filled"
    assert order.raw["qty"] == "10"
    assert order.raw["filled_avg_price"] == "100"
    assert str(order.raw["created_at"]).endswith("Z")


def test_client_order_id_is_unique_forever_even_after_cancel() -> None:
    broker = PaperBroker()
    first = broker.submit_order(limit("TQQQ", "buy", 1, "90.00", "dup"))
    broker.cancel_order(first.id)
    error = rejected(broker, client_order_id="dup")
    assert (error.status_code, error.code) == (422, 40010001)
    assert error.body == {"code": 40010001, "message": "client_order_id must be unique"}
    assert len(broker.orders()) == 1


def test_a_rejected_order_does_not_use_up_its_client_order_id() -> None:
    broker = PaperBroker()
    rejected(broker, side="sell", client_order_id="x")
    assert broker.submit_order(make_request(client_order_id="x")).status is OrderStatus.FILLED


def test_lookup_by_client_id_returns_none_when_absent() -> None:
    broker = PaperBroker()
    assert broker.get_order_by_client_id("never") is None
    placed = broker.submit_order(make_request(client_order_id="c1"))
    assert broker.get_order_by_client_id("c1") == placed
    assert broker.get_order(placed.id) == placed
    assert broker.get_order("nope") is None


@pytest.mark.parametrize(
    ("held", "side", "intent", "inferred"),
    [
        (0, "sell", PositionIntent.SELL_TO_CLOSE, "sell_to_open"),
        (-5, "sell", PositionIntent.SELL_TO_CLOSE, "sell_to_open"),
        (0, "buy", PositionIntent.BUY_TO_CLOSE, "buy_to_open"),
        (5, "sell", PositionIntent.SELL_TO_OPEN, "sell_to_close"),
        (-5, "buy", PositionIntent.BUY_TO_OPEN, "buy_to_close"),
    ],
)
def test_position_intent_mismatch_names_the_inferred_intent(
    held: int, side: str, intent: PositionIntent, inferred: str
) -> None:
    broker = PaperBroker(allow_short=True)
    if held:
        broker.submit_order(
            make_request(side="buy" if held > 0 else "sell", qty=abs(held), client_order_id="p")
        )
    error = rejected(broker, side=side, qty=1, position_intent=intent)
    message = f"position intent mismatch, inferred: {inferred}"
    assert (error.status_code, error.code, error.message) == (422, 42210000, message)
    assert error.body == {"code": 42210000, "message": message}


def test_closing_a_flat_symbol_is_404_position_does_not_exist() -> None:
    with pytest.raises(OrderRejected) as info:
        PaperBroker().close_position("SQQQ")
    assert info.value.status_code == 404
    assert info.value.body == {"code": 40410000, "message": "position does not exist"}


def test_selling_more_than_held_is_403_with_alpacas_fields() -> None:
    broker = PaperBroker(allow_short=True)
    broker.submit_order(make_request(qty=6, client_order_id="buy"))
    error = rejected(broker, side="sell", qty=18, client_order_id="sell")
    message = "insufficient qty available for order (requested: 18, available: 6)"
    assert (error.status_code, error.code, error.message) == (403, 40310000, message)
    assert error.body == {
        "available": "6",
        "code": 40310000,
        "existing_qty": "6",
        "held_for_orders": "0",
        "message": message,
        "symbol": "TQQQ",
    }


def test_open_sell_orders_hold_shares_out_of_qty_available() -> None:
    broker = PaperBroker()
    broker.submit_order(make_request(qty=10, client_order_id="buy"))
    broker.submit_order(limit("TQQQ", "sell", 4, "150.00", "tp"))
    position = broker.get_position("TQQQ")
    assert position is not None
    assert (position.qty, position.qty_available) == (10, 6)
    error = rejected(broker, side="sell", qty=7, client_order_id="exit")
    assert error.body["held_for_orders"] == "4"
    assert error.body["available"] == "6"
    # Alpaca's body names the orders holding the shares (seen: "related_orders": [ids]). Audit 19.
    holder = broker.get_order_by_client_id("tp")
    assert holder is not None and error.body["related_orders"] == [holder.id]
    assert list(error.body) == sorted(error.body)  # Alpaca's key order
    with pytest.raises(OrderRejected, match=r"requested: 10, available: 6"):
        broker.close_position("TQQQ")


def test_buying_power_is_checked_and_reported() -> None:
    broker = PaperBroker(cash=1000)
    error = rejected(broker, qty=11)
    assert (error.status_code, error.code, error.message) == (403, 40310000, "insufficient buying power")
    assert error.body["buying_power"] == "1000"
    assert error.body["cost_basis"] == "1100"


def test_open_buy_orders_reserve_buying_power() -> None:
    broker = PaperBroker(cash=1000)
    broker.submit_order(limit("TQQQ", "buy", 9, "100.00", "rest"))
    assert rejected(broker, qty=2, client_order_id="more").message == "insufficient buying power"


def test_short_selling_is_refused_unless_allowed() -> None:
    error = rejected(PaperBroker(), side="sell", qty=1)
    assert error.body == {"code": 40310000, "message": "account is not allowed to short"}
    broker = PaperBroker(allow_short=True)
    broker.submit_order(make_request(side="sell", qty=12, client_order_id="s"))
    position = broker.get_position("TQQQ")
    assert position is not None
    assert (position.qty, position.qty_available, position.side) == (-12, -12, "short")


def test_one_order_never_crosses_through_zero() -> None:
    broker = PaperBroker(allow_short=True)
    broker.submit_order(make_request(qty=6, client_order_id="b"))
    assert rejected(broker, side="sell", qty=18, client_order_id="s").status_code == 403
    position = broker.get_position("TQQQ")
    assert position is not None and position.qty == 6


def test_wash_trade_against_an_open_opposite_order_is_refused() -> None:
    broker = PaperBroker()
    broker.submit_order(make_request(qty=10, client_order_id="b"))
    broker.submit_order(limit("TQQQ", "sell", 5, "120.00", "tp"))
    error = rejected(broker, qty=1, client_order_id="again")
    assert error.body == {"code": 40310000, "message": "potential wash trade detected. use complex orders"}
    # A buy limit below the resting sell cannot trade against it.
    broker.submit_order(limit("TQQQ", "buy", 1, "90.00", "low"))


@pytest.mark.parametrize(
    ("request_fields", "status", "code", "message"),
    [
        ({"qty": None}, 422, 40010001, "qty or notional is required"),
        ({"qty": 0}, 422, 40010001, "qty must be > 0"),
        ({"qty": "0.0000000001"}, 422, 40010001, "qty must be given in steps of 0.000000001"),
        (
            {"order_type": OrderType.LIMIT, "limit_price": Decimal("290.123")},
            422,
            42210000,
            "invalid limit_price 290.123. sub-penny increment does not fulfill minimum pricing criteria",
        ),
        ({"order_type": OrderType.LIMIT}, 422, 40010001, "limit_price is required"),
        ({"order_type": OrderType.STOP}, 422, 40010001, "stop_price is required"),
        ({"symbol": " "}, 422, 40010001, "symbol is required"),
    ],
)
def test_invalid_orders_get_alpacas_refusal(
    request_fields: dict[str, object], status: int, code: int, message: str
) -> None:
    error = rejected(PaperBroker(), **request_fields)
    assert (error.status_code, error.code, error.message) == (status, code, message)


def test_sub_dollar_limit_prices_take_four_decimals() -> None:
    broker = PaperBroker(prices=FixedPrices({"PENNY": "0.5"}))
    order = broker.submit_order(limit("PENNY", "buy", 10, "0.5123", "p"))
    assert order.status is OrderStatus.FILLED


def test_limit_orders_rest_until_the_price_crosses() -> None:
    broker = PaperBroker()
    order = broker.submit_order(limit("TQQQ", "buy", 5, "95.00", "dip"))
    assert order.status is OrderStatus.NEW
    assert broker.set_price("TQQQ", "96") == []
    filled = broker.set_price("TQQQ", "94.5")
    assert [o.client_order_id for o in filled] == ["dip"]
    assert (filled[0].status, filled[0].filled_avg_price) == (OrderStatus.FILLED, Decimal("94.5"))


def test_partial_fills_advance_one_step_at_a_time() -> None:
    broker = PaperBroker(max_fill_qty=4)
    order = broker.submit_order(make_request(qty=10, client_order_id="big"))
    assert (order.status, order.filled_qty) == (OrderStatus.PARTIALLY_FILLED, 4)
    assert broker.get_order_by_client_id("big") == order  # reads do not advance fills
    broker.step()
    after = broker.step()
    assert (after[0].status, after[0].filled_qty) == (OrderStatus.FILLED, 10)


def test_fill_on_submit_off_leaves_orders_new_until_step() -> None:
    broker = PaperBroker(fill_on_submit=False)
    assert broker.submit_order(make_request(client_order_id="slow")).status is OrderStatus.NEW
    assert broker.get_position("TQQQ") is None
    assert broker.step()[0].status is OrderStatus.FILLED


def test_ioc_cancels_the_unfilled_rest_and_fok_fills_all_or_nothing() -> None:
    broker = PaperBroker(max_fill_qty=4)
    ioc = broker.submit_order(make_request(qty=10, client_order_id="ioc", time_in_force=TimeInForce.IOC))
    assert (ioc.status, ioc.filled_qty) == (OrderStatus.CANCELED, 4)
    fok = broker.submit_order(make_request(qty=10, client_order_id="fok", time_in_force=TimeInForce.FOK))
    assert (fok.status, fok.filled_qty) == (OrderStatus.CANCELED, 0)


def test_notional_orders_are_sized_at_the_current_price() -> None:
    broker = PaperBroker(prices=FixedPrices({"QQQ": "400"}))
    order = broker.submit_order(make_request("QQQ", qty=None, notional=Decimal(1000), client_order_id="n"))
    assert (order.qty, order.notional, order.filled_qty) == (None, 1000, Decimal("2.5"))


def test_cancel_errors_and_cancel_all() -> None:
    broker = PaperBroker()
    with pytest.raises(OrderRejected) as info:
        broker.cancel_order("missing")
    assert info.value.body == {"code": 40410000, "message": "order not found"}
    filled = broker.submit_order(make_request(client_order_id="f"))
    with pytest.raises(OrderRejected) as info:
        broker.cancel_order(filled.id)
    assert (info.value.status_code, info.value.message) == (422, 'order is already in "filled" state')
    resting = broker.submit_order(limit("TQQQ", "buy", 1, "50.00", "r"))
    assert broker.cancel_all_orders() == [resting.id]
    assert broker.list_orders(status="open") == []


def test_close_all_positions_reports_each_symbol() -> None:
    broker = PaperBroker()
    broker.submit_order(make_request("SPY", qty=3, client_order_id="a"))
    broker.submit_order(make_request("QQQ", qty=2, client_order_id="b"))
    broker.submit_order(limit("QQQ", "sell", 2, "500.00", "held"))
    results = broker.close_all_positions()
    closing = results["SPY"]
    assert not isinstance(closing, OrderRejected)
    assert (closing.side, closing.qty, closing.position_intent) == (
        Side.SELL,
        3,
        PositionIntent.SELL_TO_CLOSE,
    )
    assert isinstance(results["QQQ"], OrderRejected)
    after_cancel = broker.close_all_positions(cancel_orders=True)["QQQ"]
    assert not isinstance(after_cancel, OrderRejected)
    assert after_cancel.status is OrderStatus.FILLED
    assert broker.list_positions() == []


def test_close_position_by_qty_or_percentage() -> None:
    broker = PaperBroker()
    broker.submit_order(make_request(qty=10, client_order_id="b"))
    assert broker.close_position("TQQQ", qty=Decimal(3)).qty == 3
    # Alpaca "would only sell fractional if position is originally fractional": 50% of 7 whole
    # shares is 3 (audit 19: the paper account sold 3.5, a fractional order Alpaca never sends).
    assert broker.close_position("TQQQ", percentage=Decimal(50)).qty == 3
    assert broker.position_qty("TQQQ") == 4


def test_a_percentage_of_a_fractional_position_closes_fractional_shares() -> None:
    broker = PaperBroker()
    broker.submit_order(make_request(qty=Decimal("2.5"), client_order_id="b"))
    assert broker.close_position("TQQQ", percentage=Decimal(50)).qty == Decimal("1.25")


def test_close_position_takes_qty_or_percentage_not_both() -> None:
    broker = PaperBroker()
    broker.submit_order(make_request(qty=10, client_order_id="b"))
    with pytest.raises(OrderRejected) as refused:
        broker.close_position("TQQQ", qty=Decimal(1), percentage=Decimal(10))
    assert refused.value.status_code == 422
    assert broker.position_qty("TQQQ") == 10


def test_list_orders_filters_like_alpaca() -> None:
    clock = ManualClock()
    broker = PaperBroker(clock=clock)
    start = clock.now()
    for i, symbol in enumerate(["SPY", "QQQ", "SPY"]):
        clock.advance(60)
        broker.submit_order(make_request(symbol, client_order_id=f"o{i}"))
    broker.submit_order(limit("DIA", "buy", 1, "1.00", "open"))
    assert [o.client_order_id for o in broker.list_orders()] == ["open"]
    assert [o.client_order_id for o in broker.list_orders(status="closed")] == ["o2", "o1", "o0"]
    assert [o.client_order_id for o in broker.list_orders(status="all", symbols=["spy"])] == ["o2", "o0"]
    assert [o.client_order_id for o in broker.list_orders(status="all", direction="asc", limit=2)] == [
        "o0",
        "o1",
    ]
    after = start + timedelta(seconds=90)
    until = start + timedelta(seconds=150)
    assert [o.client_order_id for o in broker.list_orders(status="all", after=after, until=until)] == ["o1"]
    # Alpaca: "after" and "until" are both exclusive (audit 19: until was inclusive).
    first = broker.get_order_by_client_id("o0")
    assert first is not None and first.created_at is not None
    on_the_dot = broker.list_orders(status="all", direction="asc", until=first.created_at)
    assert on_the_dot == []
    with pytest.raises(OrderRejected):
        broker.list_orders(status="weird")


def test_account_values_positions_at_the_current_price() -> None:
    broker = PaperBroker(cash=10_000)
    broker.submit_order(make_request(qty=10, client_order_id="b"))
    broker.set_price("TQQQ", 110)
    account = broker.account()
    assert (account["cash"], account["long_market_value"], account["equity"]) == ("9000", "1100", "10100")
    assert account["status"] == "ACTIVE"


def test_concurrent_submits_keep_client_ids_unique_and_positions_exact() -> None:
    broker = PaperBroker(cash=10_000_000)
    errors: list[OrderRejected] = []

    def worker(n: int) -> None:
        for i in range(25):
            broker.submit_order(make_request(qty=1, client_order_id=f"w{n}-{i}"))
            try:
                broker.submit_order(make_request(qty=1, client_order_id="contended"))
            except OrderRejected as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(broker.orders()) == 8 * 25 + 1
    assert len(errors) == 8 * 25 - 1
    position = broker.get_position("TQQQ")
    assert position is not None and position.qty == 8 * 25 + 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 20), st.booleans()), max_size=30))
def test_random_order_flow_never_shorts_and_conserves_value(steps: list[tuple[str, int, bool]]) -> None:
    broker = PaperBroker(cash=100_000)
    for i, (side, qty, resting) in enumerate(steps):
        # A resting order is a limit far from 100.00, so it holds shares or cash without filling.
        far = {"order_type": OrderType.LIMIT, "limit_price": Decimal(1 if side == "buy" else 999)}
        try:
            broker.submit_order(
                make_request(side=side, qty=qty, client_order_id=f"o{i}", **(far if resting else {}))
            )
        except OrderRejected as exc:
            assert exc.status_code in {403, 422}
        position = broker.get_position("TQQQ")
        held = position.qty if position else Decimal(0)
        assert held >= 0
        if position:
            assert 0 <= position.qty_available <= position.qty
        # Every fill is at 100.00, so cash plus shares at 100 never changes.
        assert Decimal(str(broker.account()["cash"])) + held * 100 == 100_000
