"""AlpacaBroker over the real alpaca-py TradingClient: requests-mock with real Alpaca bodies,
plus loopback sockets for the two things a mock cannot prove (timeouts, refused connections).
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import requests.exceptions as rex
import requests_mock
from alpaca.common import rest as alpaca_rest
from alpaca.common.constants import DEFAULT_RETRY_EXCEPTION_CODES
from alpaca.trading.client import TradingClient
from pydantic import ValidationError

from tests.alpaca_bodies import (
    ALPACA_ERRORS,
    BY_CLIENT_ID_URL,
    CLIENT_ORDER_ID,
    HTML_504,
    INSUFFICIENT_QTY,
    ORDER_NOT_FOUND,
    ORDERS_URL,
    PAPER_URL,
    POSITIONS_URL,
    FakeAlpaca,
    filled_sell_body,
    order_body,
    position_body,
)
from tradeguard.broker.alpaca import AlpacaBroker
from tradeguard.broker.alpaca.errors_map import is_duplicate_client_order_id, is_position_rejection
from tradeguard.config import Settings
from tradeguard.domain import OrderRequest, OrderStatus, OrderType, PositionIntent, Side, TimeInForce
from tradeguard.errors import BrokerUnavailable, ConfigError, OrderRejected, OutcomeUnknown
from tradeguard.ports import Broker

SETTINGS = Settings(connect_timeout_secs=3.05, request_timeout_secs=10.0)


@pytest.fixture
def client(trading_client: TradingClient) -> TradingClient:
    """The shared paper TradingClient, under the name these tests use."""
    return trading_client


@pytest.fixture
def broker(client: TradingClient) -> AlpacaBroker:
    return AlpacaBroker(client, settings=SETTINGS)


@pytest.fixture(autouse=True)
def no_sleeping(monkeypatch: pytest.MonkeyPatch) -> None:
    """alpaca-py's hidden retry sleeps 3 s between attempts; with it off, nothing may sleep."""

    def fail(seconds: float) -> None:
        pytest.fail(f"alpaca-py slept {seconds}s: its hidden retry is still on")

    monkeypatch.setattr(alpaca_rest.time, "sleep", fail)


def buy(**changes: object) -> OrderRequest:
    fields: dict[str, object] = {
        "symbol": "TQQQ",
        "side": Side.BUY,
        "client_order_id": CLIENT_ORDER_ID,
        "qty": Decimal("12"),
        "position_intent": PositionIntent.BUY_TO_OPEN,
    }
    fields.update(changes)
    return OrderRequest(**fields)


def sell_to_close(qty: str = "18") -> OrderRequest:
    return buy(side=Side.SELL, qty=Decimal(qty), position_intent=PositionIntent.SELL_TO_CLOSE)


# --- transport policy ---------------------------------------------------------------------------


def test_alpaca_py_still_has_the_private_retry_switches_we_turn_off(client: TradingClient) -> None:
    # If this fails, alpaca-py changed its internals: re-check RESTClient._request before upgrading.
    assert isinstance(client._retry, int) and client._retry > 0
    assert isinstance(client._retry_codes, list)
    assert set(client._retry_codes) == {429, 504} == set(DEFAULT_RETRY_EXCEPTION_CODES)
    assert isinstance(client._retry_wait, int)
    assert isinstance(client._session, requests.Session)

    AlpacaBroker(client)

    assert (client._retry, client._retry_codes, client._retry_wait) == (0, [], 0)


@pytest.mark.parametrize("status", [429, 504])
def test_a_retryable_status_on_post_is_sent_exactly_once(
    broker: AlpacaBroker, mocker: requests_mock.Mocker, status: int
) -> None:
    mocker.post(ORDERS_URL, status_code=status, text=HTML_504 if status == 504 else "rate limit exceeded")

    # A 504 may hide a placed order; a 429 answers the one POST, refused before processing.
    with pytest.raises(OutcomeUnknown if status == 504 else BrokerUnavailable) as info:
        broker.submit_order(buy())

    assert mocker.call_count == 1
    assert info.value.status_code == status


def test_without_the_adapter_alpaca_py_would_post_the_order_again(
    client: TradingClient, mocker: requests_mock.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The control for the test above: the hidden retry exists and re-POSTs after a 504.
    monkeypatch.setattr(alpaca_rest.time, "sleep", lambda seconds: None)
    mocker.post(ORDERS_URL, [{"status_code": 504, "text": HTML_504}, {"json": order_body()}])

    client.post("/orders", {"symbol": "TQQQ"})

    assert mocker.call_count == 2


@pytest.mark.parametrize("name", ["_retry", "_retry_codes", "_retry_wait", "_session"])
def test_the_adapter_refuses_a_client_whose_internals_changed(name: str) -> None:
    client = TradingClient("key", "secret", paper=True)
    client._session.close()
    setattr(client, name, None)

    with pytest.raises(ConfigError, match=name):
        AlpacaBroker(client)


def test_every_request_carries_the_connect_and_read_timeouts(
    broker: AlpacaBroker, fake: FakeAlpaca, mocker
) -> None:
    fake.add_position("TQQQ", "12")
    order = broker.submit_order(buy())
    broker.get_order_by_client_id(CLIENT_ORDER_ID)
    broker.list_orders(status="all")
    broker.list_positions()
    broker.get_position("TQQQ")
    broker.cancel_order(order.id)

    assert [r.method for r in mocker.request_history] == ["POST", "GET", "GET", "GET", "GET", "DELETE"]
    assert {r.timeout for r in mocker.request_history} == {(3.05, 10.0)}


def test_a_second_adapter_on_the_same_client_replaces_the_timeout(client: TradingClient, mocker) -> None:
    AlpacaBroker(client, settings=SETTINGS)
    broker = AlpacaBroker(client, settings=Settings(connect_timeout_secs=1.0, request_timeout_secs=2.0))
    mocker.get(POSITIONS_URL, json=[])

    broker.list_positions()

    assert mocker.last_request.timeout == (1.0, 2.0)


def test_the_timeout_also_applies_to_direct_session_calls(broker: AlpacaBroker, mocker) -> None:
    mocker.get(POSITIONS_URL, json=[])
    session = broker.client._session

    session.get(POSITIONS_URL)
    session.request("GET", POSITIONS_URL, None, None, None, None, None, None, None)
    session.request("GET", POSITIONS_URL, timeout=1.5)

    assert [r.timeout for r in mocker.request_history] == [(3.05, 10.0), (3.05, 10.0), 1.5]


def test_a_zero_timeout_is_refused(client: TradingClient) -> None:
    with pytest.raises(ConfigError, match="positive"):
        AlpacaBroker(client, settings=Settings(request_timeout_secs=0))


def test_a_request_without_a_response_really_times_out() -> None:
    # A listening socket that never accepts: the kernel completes the handshake, the request is
    # written, and no answer ever comes. Without the adapter's timeout this call would hang.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        broker = AlpacaBroker.from_credentials(
            "key",
            "secret",
            url_override=f"http://127.0.0.1:{port}",
            settings=Settings(connect_timeout_secs=1.0, request_timeout_secs=0.05),
        )
        try:
            with pytest.raises(OutcomeUnknown) as submit:
                broker.submit_order(buy())
            with pytest.raises(OutcomeUnknown) as read:
                broker.list_positions()
        finally:
            broker.client._session.close()

    assert isinstance(submit.value.__cause__, rex.ReadTimeout)
    assert isinstance(read.value.__cause__, rex.ReadTimeout)


def test_a_refused_connection_is_broker_unavailable() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    broker = AlpacaBroker.from_credentials("key", "secret", url_override=f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(BrokerUnavailable) as info:
            broker.submit_order(buy())
    finally:
        broker.client._session.close()

    assert isinstance(info.value.__cause__, rex.ConnectionError)


def test_a_read_timeout_on_post_is_outcome_unknown(broker: AlpacaBroker, mocker) -> None:
    mocker.post(ORDERS_URL, exc=rex.ReadTimeout("Read timed out. (read timeout=10.0)"))

    with pytest.raises(OutcomeUnknown):
        broker.submit_order(buy())


def test_a_connect_timeout_on_post_is_broker_unavailable(broker: AlpacaBroker, mocker) -> None:
    mocker.post(ORDERS_URL, exc=rex.ConnectTimeout("Connection to paper-api.alpaca.markets timed out"))

    with pytest.raises(BrokerUnavailable):
        broker.submit_order(buy())


# --- submitting ---------------------------------------------------------------------------------


def test_submit_a_market_order(broker: AlpacaBroker, mocker) -> None:
    mocker.post(ORDERS_URL, json=order_body())

    order = broker.submit_order(buy())

    assert mocker.last_request.json() == {
        "symbol": "TQQQ",
        "qty": "12",
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
        "extended_hours": False,
        "client_order_id": CLIENT_ORDER_ID,
        "position_intent": "buy_to_open",
    }
    assert (order.id, order.client_order_id, order.symbol) == (order_body()["id"], CLIENT_ORDER_ID, "TQQQ")
    assert (order.side, order.status, order.order_type) == (Side.BUY, OrderStatus.ACCEPTED, OrderType.MARKET)
    assert order.qty == Decimal("12") and order.filled_qty == Decimal(0)
    assert order.position_intent is PositionIntent.BUY_TO_OPEN
    assert order.created_at == datetime(2026, 5, 21, 13, 30, 1, 942282, tzinfo=UTC)
    assert order.raw == order_body()


def test_submit_a_limit_sell_to_close_sends_exact_decimal_strings(broker: AlpacaBroker, mocker) -> None:
    mocker.post(ORDERS_URL, json=order_body(type="limit", side="sell", limit_price="290.12", qty="0.1"))

    order = broker.submit_order(
        buy(
            side=Side.SELL,
            qty=Decimal("0.1"),
            order_type=OrderType.LIMIT,
            limit_price=Decimal("290.12"),
            time_in_force=TimeInForce.GTC,
            position_intent=PositionIntent.SELL_TO_CLOSE,
            extended_hours=True,
        )
    )

    sent = json.loads(mocker.last_request.text)
    assert sent["qty"] == "0.1" and sent["limit_price"] == "290.12"
    assert (sent["type"], sent["side"], sent["time_in_force"]) == ("limit", "sell", "gtc")
    assert (sent["position_intent"], sent["extended_hours"]) == ("sell_to_close", True)
    assert order.limit_price == Decimal("290.12") and order.qty == Decimal("0.1")
    assert order.order_type is OrderType.LIMIT


def test_submit_stop_and_stop_limit_orders(broker: AlpacaBroker, mocker) -> None:
    mocker.post(ORDERS_URL, json=order_body())

    broker.submit_order(buy(order_type=OrderType.STOP, stop_price=Decimal("70.5")))
    stop = mocker.last_request.json()
    broker.submit_order(
        buy(order_type=OrderType.STOP_LIMIT, stop_price=Decimal("70.5"), limit_price=Decimal("70"))
    )
    stop_limit = mocker.last_request.json()

    assert (stop["type"], stop["stop_price"], "limit_price" in stop) == ("stop", "70.5", False)
    assert (stop_limit["type"], stop_limit["stop_price"], stop_limit["limit_price"]) == (
        "stop_limit",
        "70.5",
        "70",
    )


def test_submit_a_notional_order(broker: AlpacaBroker, mocker) -> None:
    mocker.post(ORDERS_URL, json=order_body(qty=None, notional="500.25"))

    order = broker.submit_order(buy(qty=None, notional=Decimal("500.25")))

    sent = mocker.last_request.json()
    assert sent["notional"] == "500.25" and "qty" not in sent
    assert order.notional == Decimal("500.25") and order.qty is None


@pytest.mark.parametrize(
    "request_",
    [
        buy(order_type=OrderType.TRAILING_STOP),
        buy(order_type=OrderType.LIMIT),  # no limit_price
        buy(qty=None),  # neither qty nor notional
        buy(limit_price=Decimal("70")),  # a price on a market order
        buy(client_order_id=""),  # Alpaca would invent one nobody can look up
        buy(qty=Decimal("NaN")),
    ],
    ids=["trailing_stop", "limit_without_price", "no_quantity", "price_on_market", "no_client_id", "nan"],
)
def test_an_order_alpaca_py_cannot_express_is_rejected_without_sending(
    broker: AlpacaBroker, mocker, request_: OrderRequest
) -> None:
    with pytest.raises(OrderRejected, match="not sent") as info:
        broker.submit_order(request_)

    assert mocker.call_count == 0
    assert info.value.status_code is None


def test_an_acknowledgement_that_does_not_parse_is_outcome_unknown(broker: AlpacaBroker, mocker) -> None:
    mocker.post(ORDERS_URL, [{"text": "<html>OK</html>"}, {"json": order_body(side=None)}, {"text": ""}])

    for _ in range(3):
        with pytest.raises(OutcomeUnknown):
            broker.submit_order(buy())


def test_an_acknowledgement_for_another_client_order_id_is_outcome_unknown(
    broker: AlpacaBroker, mocker
) -> None:
    mocker.post(ORDERS_URL, json=order_body(client_order_id="someone-else"))

    with pytest.raises(OutcomeUnknown, match="someone-else"):
        broker.submit_order(buy())


def test_insufficient_qty_is_a_position_rejection_with_the_body_preserved(
    broker: AlpacaBroker, mocker
) -> None:
    status, text = INSUFFICIENT_QTY
    mocker.post(ORDERS_URL, status_code=status, text=text)

    with pytest.raises(OrderRejected) as info:
        broker.submit_order(sell_to_close("18"))

    err = info.value
    assert (err.status_code, err.code) == (403, 40310000)
    assert (err.body["available"], err.body["held_for_orders"], err.body["existing_qty"]) == ("6", "6", "12")
    assert is_position_rejection(err)


def test_position_intent_mismatch_on_an_exit_is_a_position_rejection(broker: AlpacaBroker, mocker) -> None:
    status, text = ALPACA_ERRORS["position_intent_mismatch"]
    mocker.post(ORDERS_URL, status_code=status, text=text)

    with pytest.raises(OrderRejected) as info:
        broker.submit_order(sell_to_close())

    assert is_position_rejection(info.value)
    assert info.value.code == 42210000


def test_unauthorized_is_broker_unavailable(broker: AlpacaBroker, mocker) -> None:
    mocker.post(ORDERS_URL, status_code=401, text=ALPACA_ERRORS["unauthorized"][1])

    with pytest.raises(BrokerUnavailable):
        broker.submit_order(buy())


# --- a lost answer, then the duplicate: adoption ------------------------------------------------


def test_a_504_after_acceptance_then_a_resubmit_adopts_the_existing_order(
    broker: AlpacaBroker, fake: FakeAlpaca, mocker
) -> None:
    fake.lose_next_answer(504, HTML_504)

    with pytest.raises(OutcomeUnknown) as first:
        broker.submit_order(buy())
    adopted = broker.submit_order(buy())

    assert first.value.status_code == 504
    assert len(fake.orders) == 1
    assert adopted.client_order_id == CLIENT_ORDER_ID
    assert adopted.id == fake.orders[CLIENT_ORDER_ID]["id"]
    assert adopted.status is OrderStatus.PENDING_NEW
    assert [(r.method, r.path) for r in mocker.request_history] == [
        ("POST", "/v2/orders"),
        ("POST", "/v2/orders"),
        ("GET", "/v2/orders:by_client_order_id"),
    ]


def test_a_read_timeout_after_acceptance_then_a_resubmit_adopts(
    broker: AlpacaBroker, fake: FakeAlpaca
) -> None:
    fake.raise_on_next_post(rex.ReadTimeout("Read timed out."), accept=True)

    with pytest.raises(OutcomeUnknown):
        broker.submit_order(buy())

    assert broker.submit_order(buy()).id == fake.orders[CLIENT_ORDER_ID]["id"]
    assert len(fake.orders) == 1


def test_a_duplicate_whose_lookup_misses_stays_outcome_unknown(broker: AlpacaBroker, mocker) -> None:
    status, text = ALPACA_ERRORS["duplicate_client_order_id"]
    mocker.post(ORDERS_URL, status_code=status, text=text)
    mocker.get(BY_CLIENT_ID_URL, status_code=ORDER_NOT_FOUND[0], text=ORDER_NOT_FOUND[1])

    with pytest.raises(OutcomeUnknown, match="no order was found") as info:
        broker.submit_order(buy())

    assert (info.value.status_code, info.value.code) == (422, 40010001)


def test_a_duplicate_whose_lookup_fails_stays_outcome_unknown(broker: AlpacaBroker, mocker) -> None:
    status, text = ALPACA_ERRORS["duplicate_client_order_id"]
    mocker.post(ORDERS_URL, status_code=status, text=text)
    mocker.get(BY_CLIENT_ID_URL, status_code=503, text="")

    with pytest.raises(OutcomeUnknown, match="lookup failed") as info:
        broker.submit_order(buy())

    assert isinstance(info.value.__cause__, OutcomeUnknown)
    assert info.value.__cause__.status_code == 503


def test_a_duplicate_owned_by_a_different_order_is_not_adopted(broker: AlpacaBroker, mocker) -> None:
    status, text = ALPACA_ERRORS["duplicate_client_order_id"]
    mocker.post(ORDERS_URL, status_code=status, text=text)
    mocker.get(BY_CLIENT_ID_URL, json=order_body(symbol="SQQQ"))

    with pytest.raises(OrderRejected, match="different order") as info:
        broker.submit_order(buy())

    assert not is_duplicate_client_order_id(info.value)


# --- reads --------------------------------------------------------------------------------------


def test_lookup_by_client_order_id_found(broker: AlpacaBroker, mocker) -> None:
    mocker.get(
        BY_CLIENT_ID_URL, json=order_body(status="partially_filled", filled_qty="5", filled_avg_price="75.2")
    )

    order = broker.get_order_by_client_id(CLIENT_ORDER_ID)

    assert mocker.last_request.url.endswith(f"?client_order_id={CLIENT_ORDER_ID}")
    assert order is not None
    assert (order.status, order.filled_qty, order.filled_avg_price) == (
        OrderStatus.PARTIALLY_FILLED,
        Decimal("5"),
        Decimal("75.2"),
    )


def test_lookup_by_client_order_id_404_is_none(broker: AlpacaBroker, mocker) -> None:
    mocker.get(BY_CLIENT_ID_URL, status_code=404, text=ORDER_NOT_FOUND[1])

    assert broker.get_order_by_client_id(CLIENT_ORDER_ID) is None


@pytest.mark.parametrize(
    ("status", "text", "expected"),
    [
        (404, "<html><body>404 Not Found</body></html>", OrderRejected),  # a proxy, not Alpaca
        (500, "", OutcomeUnknown),
        (401, ALPACA_ERRORS["unauthorized"][1], BrokerUnavailable),
    ],
)
def test_a_failed_lookup_raises_instead_of_saying_absent(
    broker: AlpacaBroker, mocker, status, text, expected
) -> None:
    mocker.get(BY_CLIENT_ID_URL, status_code=status, text=text)

    with pytest.raises(expected):
        broker.get_order_by_client_id(CLIENT_ORDER_ID)


def test_list_orders_survives_values_alpaca_adds_later(
    broker: AlpacaBroker, client: TradingClient, mocker
) -> None:
    strange = order_body(
        status="some_new_status", asset_class="tokenized_equity", time_in_force="gtd", type="peg"
    )
    strange["exchange"] = "NEWX"
    mocker.get(ORDERS_URL, json=[strange, filled_sell_body()])

    orders = broker.list_orders(status="all")

    assert [order.status for order in orders] == [OrderStatus.OTHER, OrderStatus.FILLED]
    assert orders[0].status.is_open
    assert orders[0].raw["status"] == "some_new_status"
    assert orders[1].filled_avg_price == Decimal("75.335")
    assert orders[1].position_intent is PositionIntent.SELL_TO_CLOSE
    with pytest.raises(ValidationError):  # what alpaca-py's own models do with the same answer
        client.get_orders()


def test_list_orders_sends_the_filters(broker: AlpacaBroker, mocker) -> None:
    mocker.get(ORDERS_URL, json=[])
    after = datetime(2026, 5, 21, 9, 30, tzinfo=UTC) + timedelta(hours=4)

    assert broker.list_orders(status="closed", symbols=["TQQQ", "SQQQ"], after=after, limit=50) == []

    assert parse_qs(urlparse(mocker.last_request.url).query) == {
        "status": ["closed"],
        "symbols": ["TQQQ,SQQQ"],
        "after": ["2026-05-21T13:30:00Z"],
        "limit": ["51"],  # one more than accepted: a full page means "more than the limit"
        "direction": ["asc"],
    }


def test_list_orders_refuses_to_truncate(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    for _ in range(4):
        fake.add_order()

    assert len(broker.list_orders(status="all", limit=4)) == 4
    with pytest.raises(OutcomeUnknown, match="more than 3 orders"):
        broker.list_orders(status="all", limit=3)


def test_list_orders_reads_every_page_including_orders_tied_at_a_page_boundary(
    broker: AlpacaBroker, fake: FakeAlpaca, mocker
) -> None:
    start = datetime(2026, 5, 21, 13, 30, tzinfo=UTC)
    for n in range(499):
        fake.add_order(submitted_at=start + timedelta(milliseconds=n))
    for _ in range(3):  # the 500th, 501st and 502nd order share one instant
        fake.add_order(submitted_at=start + timedelta(seconds=1))
    for n in range(100):
        fake.add_order(submitted_at=start + timedelta(seconds=2, milliseconds=n))

    orders = broker.list_orders(status="all", limit=10_000)

    assert len(orders) == 602
    assert {order.id for order in orders} == {body["id"] for body in fake.orders.values()}
    assert mocker.call_count == 2


@pytest.mark.parametrize(
    "kwargs",
    [{"status": "pending"}, {"limit": 0}, {"after": datetime(2026, 5, 21, 13, 30)}],  # noqa: DTZ001
)
def test_list_orders_refuses_bad_arguments(broker: AlpacaBroker, kwargs) -> None:
    with pytest.raises(ConfigError):
        broker.list_orders(**kwargs)


def test_list_orders_with_no_symbols_asks_nothing(broker: AlpacaBroker, mocker) -> None:
    assert broker.list_orders(symbols=[]) == []
    assert mocker.call_count == 0


@pytest.mark.parametrize(
    ("status", "text"),
    [(500, ""), (200, "[{}]"), (200, '{"orders": []}'), (200, "[")],
)
def test_a_failed_or_malformed_order_list_raises_never_empty(
    broker: AlpacaBroker, mocker, status, text
) -> None:
    mocker.get(ORDERS_URL, status_code=status, text=text)

    with pytest.raises(OutcomeUnknown):
        broker.list_orders()


def test_list_positions_with_qty_available_and_a_short(broker: AlpacaBroker, mocker) -> None:
    mocker.get(
        POSITIONS_URL,
        json=[
            position_body("TQQQ", "12", "6"),
            position_body("SQQQ", "-12", "-12"),
            position_body("QQQ", "5", None),
        ],
    )

    positions = {p.symbol: p for p in broker.list_positions()}

    assert (positions["TQQQ"].qty, positions["TQQQ"].qty_available) == (Decimal(12), Decimal(6))
    assert (positions["SQQQ"].qty, positions["SQQQ"].qty_available, positions["SQQQ"].side) == (
        Decimal(-12),
        Decimal(-12),
        "short",
    )
    assert positions["QQQ"].qty_available == Decimal(5)  # an older body without qty_available
    assert positions["TQQQ"].avg_entry_price == Decimal("75.21")


def test_a_short_sent_with_a_positive_qty_is_still_short(broker: AlpacaBroker, mocker) -> None:
    mocker.get(POSITIONS_URL, json=[position_body("SQQQ", "12", "12", side="short")])

    (position,) = broker.list_positions()

    assert (position.qty, position.qty_available) == (Decimal(-12), Decimal(-12))


def test_list_positions_survives_a_new_exchange_and_asset_class(broker: AlpacaBroker, client, mocker) -> None:
    mocker.get(POSITIONS_URL, json=[position_body(exchange="NEWX", asset_class="tokenized_equity")])

    assert broker.list_positions()[0].qty == Decimal(12)
    with pytest.raises(ValidationError):
        client.get_all_positions()


@pytest.mark.parametrize(("status", "text"), [(503, ""), (200, "{}"), (200, '[{"symbol": "TQQQ"}]')])
def test_a_failed_position_read_raises_never_flat(broker: AlpacaBroker, mocker, status, text) -> None:
    mocker.get(POSITIONS_URL, status_code=status, text=text)

    with pytest.raises(OutcomeUnknown):
        broker.list_positions()


def test_get_position_found_and_flat(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    fake.add_position("TQQQ", "12", "6")

    held = broker.get_position("TQQQ")

    assert held is not None and held.qty_available == Decimal(6)
    assert broker.get_position("SQQQ") is None


def test_get_position_of_a_crypto_pair_uses_the_symbol_without_slash(broker: AlpacaBroker, mocker) -> None:
    mocker.get(f"{POSITIONS_URL}/BTCUSD", json=position_body("BTC/USD", "0.5", "0.5", asset_class="crypto"))

    held = broker.get_position("BTC/USD")

    assert held is not None and held.qty == Decimal("0.5")


def test_get_position_for_another_symbol_raises(broker: AlpacaBroker, mocker) -> None:
    mocker.get(f"{POSITIONS_URL}/TQQQ", json=position_body("SQQQ"))

    with pytest.raises(OutcomeUnknown, match="SQQQ"):
        broker.get_position("TQQQ")


def test_cancel_an_open_order(broker: AlpacaBroker, fake: FakeAlpaca, mocker) -> None:
    body = fake.add_order()

    broker.cancel_order(body["id"])

    assert (mocker.last_request.method, mocker.last_request.path) == ("DELETE", f"/v2/orders/{body['id']}")
    assert fake.orders[body["client_order_id"]]["status"] == "pending_cancel"


def test_cancel_a_filled_or_unknown_order_is_rejected(broker: AlpacaBroker, fake: FakeAlpaca) -> None:
    filled = fake.add_order(status="filled")

    with pytest.raises(OrderRejected) as not_cancelable:
        broker.cancel_order(filled["id"])
    with pytest.raises(OrderRejected) as unknown:
        broker.cancel_order("00000000-0000-0000-0000-000000000000")

    assert not_cancelable.value.status_code == 422
    assert unknown.value.status_code == 404


# --- construction -------------------------------------------------------------------------------


def test_it_is_a_broker(broker: AlpacaBroker) -> None:
    assert isinstance(broker, Broker)


def test_from_credentials_targets_paper_live_or_an_override() -> None:
    brokers = [
        AlpacaBroker.from_credentials("key", "secret"),
        AlpacaBroker.from_credentials("key", "secret", paper=False),
        AlpacaBroker.from_credentials("key", "secret", url_override="http://127.0.0.1:8765"),
    ]

    assert [getattr(b.client._base_url, "value", b.client._base_url) for b in brokers] == [
        PAPER_URL,
        "https://api.alpaca.markets",
        "http://127.0.0.1:8765",
    ]
    assert all(b.client._retry == 0 for b in brokers)


def test_from_credentials_reads_nothing_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", "from-env")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "from-env")

    with pytest.raises(ConfigError):
        AlpacaBroker.from_credentials("", "")
    broker = AlpacaBroker.from_credentials("key", "secret")
    assert broker.client._api_key == "key"
