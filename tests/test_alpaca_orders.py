"""AlpacaBroker's order classes, trailing stops, legs and replacements.

The real alpaca-py TradingClient over requests-mock (`FakeAlpaca`, Alpaca's bodies), and over the
paper server through real HTTP for the round trip.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests_mock
from alpaca.trading.client import TradingClient

from tests.alpaca_bodies import (
    BY_CLIENT_ID_URL,
    HTML_504,
    ORDER_NOT_FOUND,
    ORDERS_URL,
    FakeAlpaca,
    error_text,
    order_body,
)
from tradeguard.broker.alpaca import AlpacaBroker
from tradeguard.config import Settings
from tradeguard.domain import (
    OrderClass,
    OrderRequest,
    OrderStatus,
    OrderType,
    ReplaceRequest,
    Side,
    TimeInForce,
)
from tradeguard.errors import OrderRejected, OutcomeUnknown
from tradeguard.paper.prices import FixedPrices
from tradeguard.testing import paper_server

CID = "tg-bracket-0001"


@pytest.fixture
def broker(trading_client: TradingClient) -> AlpacaBroker:
    return AlpacaBroker(trading_client, settings=Settings())


def request(**changes: Any) -> OrderRequest:
    fields: dict[str, Any] = {
        "symbol": "SPY",
        "side": Side.BUY,
        "client_order_id": CID,
        "qty": Decimal(10),
        "time_in_force": TimeInForce.GTC,
    }
    fields.update(changes)
    return OrderRequest(**fields)


def sent(mocker: requests_mock.Mocker) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(mocker.last_request.text)
    return body


# ---- what leaves for POST /v2/orders ----------------------------------------------------------


def test_a_bracket_is_sent_with_its_legs_as_alpaca_objects_in_exact_decimals(
    broker: AlpacaBroker, fake: FakeAlpaca, mocker: requests_mock.Mocker
) -> None:
    order = broker.submit_order(
        request(
            order_class=OrderClass.BRACKET,
            take_profit_limit_price=Decimal("110.1"),
            stop_loss_stop_price=Decimal("95.3"),
            stop_loss_limit_price=Decimal("95.1"),
        )
    )
    assert sent(mocker) == {
        "symbol": "SPY",
        "qty": "10",
        "side": "buy",
        "type": "market",
        "time_in_force": "gtc",
        "extended_hours": False,
        "client_order_id": CID,
        "order_class": "bracket",
        "take_profit": {"limit_price": "110.1"},
        "stop_loss": {"stop_price": "95.3", "limit_price": "95.1"},
    }
    assert order.order_class is OrderClass.BRACKET
    profit, loss = order.legs
    assert (profit.order_type, profit.limit_price, profit.status, profit.side) == (
        OrderType.LIMIT,
        Decimal("110.1"),
        OrderStatus.HELD,
        Side.SELL,
    )
    assert (loss.order_type, loss.stop_price, loss.limit_price) == (
        OrderType.STOP_LIMIT,
        Decimal("95.3"),
        Decimal("95.1"),
    )


def test_an_oco_and_an_oto_are_sent_as_alpaca_py_builds_them(
    broker: AlpacaBroker, fake: FakeAlpaca, mocker: requests_mock.Mocker
) -> None:
    broker.submit_order(
        request(
            side=Side.SELL,
            order_type=OrderType.LIMIT,
            order_class=OrderClass.OCO,
            take_profit_limit_price=Decimal(110),
            stop_loss_stop_price=Decimal(95),
        )
    )
    oco = sent(mocker)
    assert (oco["type"], oco["order_class"], "limit_price" in oco) == ("limit", "oco", False)
    assert (oco["take_profit"], oco["stop_loss"]) == ({"limit_price": "110"}, {"stop_price": "95"})
    broker.submit_order(
        request(client_order_id="oto", order_class=OrderClass.OTO, stop_loss_stop_price=Decimal("90.5"))
    )
    oto = sent(mocker)
    assert (oto["order_class"], oto["stop_loss"], "take_profit" in oto) == (
        "oto",
        {"stop_price": "90.5"},
        False,
    )


@pytest.mark.parametrize(("trail", "value"), [("trail_price", "1.25"), ("trail_percent", "0.1")])
def test_a_trailing_stop_is_sent_with_its_trail(
    broker: AlpacaBroker, fake: FakeAlpaca, mocker: requests_mock.Mocker, trail: str, value: str
) -> None:
    order = broker.submit_order(
        request(
            side=Side.SELL,
            order_type=OrderType.TRAILING_STOP,
            time_in_force=TimeInForce.DAY,
            **{trail: Decimal(value)},
        )
    )
    body = sent(mocker)
    assert (body["type"], body[trail]) == ("trailing_stop", value)
    assert "limit_price" not in body and "stop_price" not in body
    assert getattr(order, trail) == Decimal(value)


@pytest.mark.parametrize(
    "request_",
    [
        request(order_class=OrderClass.BRACKET, take_profit_limit_price=Decimal(110)),
        request(order_class=OrderClass.OTO),
        request(order_type=OrderType.TRAILING_STOP, trail_price=Decimal(1), trail_percent=Decimal(1)),
        request(order_type=OrderType.TRAILING_STOP),
        request(trail_price=Decimal(1)),
        request(
            order_class=OrderClass.BRACKET,
            take_profit_limit_price=Decimal("NaN"),
            stop_loss_stop_price=Decimal(1),
        ),
    ],
    ids=[
        "bracket_without_stop_loss",
        "oto_without_legs",
        "two_trails",
        "no_trail",
        "trail_on_market",
        "nan_leg",
    ],
)
def test_an_order_alpaca_py_refuses_is_not_sent(
    broker: AlpacaBroker, mocker: requests_mock.Mocker, request_: OrderRequest
) -> None:
    with pytest.raises(OrderRejected, match="not sent"):
        broker.submit_order(request_)
    assert mocker.call_count == 0


# ---- reading legs and links -------------------------------------------------------------------


def test_get_order_asks_for_nested_legs_and_reads_them(
    broker: AlpacaBroker, fake: FakeAlpaca, mocker: requests_mock.Mocker
) -> None:
    placed = broker.submit_order(request(order_class=OrderClass.OTO, stop_loss_stop_price=Decimal(95)))
    found = broker.get_order(placed.id)
    assert mocker.last_request.qs == {"nested": ["true"]}
    assert found is not None and [leg.id for leg in found.legs] == [leg.id for leg in placed.legs]
    assert broker.get_order("00000000-0000-4000-8000-000000000000") is None


def test_a_lookup_by_client_id_of_an_order_with_legs_reads_them_nested(
    broker: AlpacaBroker, fake: FakeAlpaca
) -> None:
    placed = broker.submit_order(request(order_class=OrderClass.OTO, stop_loss_stop_price=Decimal(95)))
    found = broker.get_order_by_client_id(CID)
    assert found is not None and found.legs == placed.legs and found.legs


def test_legs_nested_inside_a_leg_are_a_malformed_answer(
    broker: AlpacaBroker, mocker: requests_mock.Mocker
) -> None:
    leg = order_body(
        id="leg-1", client_order_id="leg-cid", legs=[order_body(id="leg-2", client_order_id="x")]
    )
    mocker.get(f"{ORDERS_URL}/parent", json=order_body(id="parent", order_class="bracket", legs=[leg]))
    with pytest.raises(OutcomeUnknown, match="legs nested inside a leg"):
        broker.get_order("parent")


def test_the_client_id_of_a_replaced_order_leads_to_its_live_order(
    broker: AlpacaBroker, fake: FakeAlpaca
) -> None:
    first = broker.submit_order(request(order_type=OrderType.LIMIT, limit_price=Decimal(90)))
    second = broker.replace_order(first.id, ReplaceRequest(limit_price=Decimal("90.5")))
    third = broker.replace_order(
        second.id, ReplaceRequest(qty=Decimal(12), client_order_id="tg-bracket-0002")
    )
    live = broker.get_order_by_client_id(CID)
    assert live is not None
    assert (live.id, live.replaces, live.qty, live.limit_price) == (third.id, second.id, 12, Decimal("90.5"))
    assert broker.get_order_by_client_id("tg-bracket-0002") == live


def test_a_replacement_alpaca_does_not_return_yet_is_outcome_unknown(
    broker: AlpacaBroker, mocker: requests_mock.Mocker
) -> None:
    mocker.get(BY_CLIENT_ID_URL, json=order_body(client_order_id=CID, status="replaced", replaced_by="newer"))
    mocker.get(f"{ORDERS_URL}/newer", status_code=ORDER_NOT_FOUND[0], text=ORDER_NOT_FOUND[1])
    with pytest.raises(OutcomeUnknown, match="replaced by newer"):
        broker.get_order_by_client_id(CID)


def test_an_endless_chain_of_replacements_is_not_followed_forever(
    broker: AlpacaBroker, mocker: requests_mock.Mocker
) -> None:
    mocker.get(
        BY_CLIENT_ID_URL, json=order_body(id="o0", client_order_id=CID, status="replaced", replaced_by="o1")
    )

    def hop(req: Any, context: Any) -> str:
        n = int(req.path.rsplit("/o", 1)[1])
        return json.dumps(
            order_body(id=f"o{n}", client_order_id=f"c{n}", status="replaced", replaced_by=f"o{n + 1}")
        )

    mocker.get(requests_mock.ANY, text=hop)
    mocker.get(
        BY_CLIENT_ID_URL, json=order_body(id="o0", client_order_id=CID, status="replaced", replaced_by="o1")
    )
    with pytest.raises(OutcomeUnknown, match="replaced more than 100 times"):
        broker.get_order_by_client_id(CID)
    assert mocker.call_count == 101


# ---- PATCH /v2/orders/{id} --------------------------------------------------------------------


def test_replace_sends_only_what_changes_in_exact_decimals(
    broker: AlpacaBroker, fake: FakeAlpaca, mocker: requests_mock.Mocker
) -> None:
    old = broker.submit_order(request(order_type=OrderType.LIMIT, limit_price=Decimal(90)))
    new = broker.replace_order(
        old.id,
        ReplaceRequest(qty=Decimal("1E+1"), limit_price=Decimal("90.10"), time_in_force=TimeInForce.DAY),
    )
    assert (mocker.last_request.method, sent(mocker)) == (
        "PATCH",
        {"qty": "10", "limit_price": "90.10", "time_in_force": "day"},
    )
    assert (new.replaces, new.status, new.time_in_force) == (old.id, OrderStatus.NEW, TimeInForce.DAY)
    replaced = broker.get_order(old.id)
    assert replaced is not None and (replaced.status, replaced.replaced_by) == (OrderStatus.REPLACED, new.id)


def test_a_refused_replacement_is_order_rejected(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    filled = fake.add_order(client_order_id="done", status="filled")
    with pytest.raises(OrderRejected) as info:
        broker.replace_order(filled["id"], ReplaceRequest(qty=Decimal(3)))
    assert info.value.body == {"code": 40010001, "message": "unable to replace order, order is not open"}


@pytest.mark.parametrize(
    ("status", "text", "kind"),
    [
        (504, HTML_504, OutcomeUnknown),
        (403, error_text(40310000, "order parameters are not changed"), OrderRejected),
    ],
)
def test_replace_failures_map_like_every_other_call(
    broker: AlpacaBroker, mocker: requests_mock.Mocker, status: int, text: str, kind: type[Exception]
) -> None:
    mocker.patch(f"{ORDERS_URL}/some-id", status_code=status, text=text)
    with pytest.raises(kind) as info:
        broker.replace_order("some-id", ReplaceRequest(limit_price=Decimal(1)))
    assert mocker.call_count == 1  # a PATCH is never retried behind the caller's back
    # Named for what failed (audit 24: a lost PATCH read "submit order failed: HTTP 504").
    assert str(info.value).startswith("replace order failed"), info.value


def test_an_answer_that_is_not_a_replacement_is_outcome_unknown(
    broker: AlpacaBroker, mocker: requests_mock.Mocker
) -> None:
    mocker.patch(f"{ORDERS_URL}/{order_body()['id']}", json=order_body())  # the same id back
    with pytest.raises(OutcomeUnknown, match="came back as"):
        broker.replace_order(order_body()["id"], ReplaceRequest(limit_price=Decimal(1)))


# ---- the round trip over the paper server -----------------------------------------------------


@pytest.fixture
def paper_alpaca() -> Iterator[tuple[AlpacaBroker, Any]]:
    with paper_server(prices=FixedPrices({"SPY": 100})) as server:
        adapter = AlpacaBroker.from_credentials("k", "s", url_override=server.url)
        try:
            yield adapter, server
        finally:
            adapter.client._session.close()


def test_brackets_trailing_stops_and_replacements_round_trip_over_the_paper_server(
    paper_alpaca: tuple[AlpacaBroker, Any],
) -> None:
    adapter, server = paper_alpaca
    entry = adapter.submit_order(
        request(
            client_order_id="entry",
            order_class=OrderClass.BRACKET,
            take_profit_limit_price=Decimal(110),
            stop_loss_stop_price=Decimal(95),
        )
    )
    profit, loss = entry.legs
    assert (entry.status, profit.status, loss.status) == (
        OrderStatus.FILLED,
        OrderStatus.NEW,
        OrderStatus.HELD,
    )
    assert adapter.get_order(entry.id) == server.broker.get_order(entry.id)
    assert adapter.get_order_by_client_id("entry") == server.broker.get_order_by_client_id("entry")
    better = adapter.replace_order(profit.id, ReplaceRequest(limit_price=Decimal(105)))
    assert [leg.id for leg in adapter.get_order(entry.id).legs] == [better.id, loss.id]  # type: ignore[union-attr]
    assert adapter.get_order_by_client_id(profit.client_order_id) == better
    trail = adapter.submit_order(
        request(
            client_order_id="trail",
            side=Side.BUY,
            qty=Decimal(1),
            order_type=OrderType.TRAILING_STOP,
            trail_percent=Decimal(2),
            time_in_force=TimeInForce.DAY,
        )
    )
    assert (trail.stop_price, trail.raw["hwm"]) == (Decimal(102), "100")
    server.broker.set_price("SPY", "106")
    assert adapter.get_order(better.id).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert adapter.get_order(loss.id).status is OrderStatus.CANCELED  # type: ignore[union-attr]
