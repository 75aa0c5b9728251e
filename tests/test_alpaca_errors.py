"""The one mapping from alpaca-py / requests / pydantic failures to tradeguard's BrokerError.

Table-driven over every row of ALPACA.md's error table (real bodies, produced by the real
TradingClient over requests-mock) and over every exception class requests defines.
"""

from __future__ import annotations

import http.client
import inspect
import json
import socket
import ssl
from collections.abc import Iterator

import pytest
import requests
import requests.exceptions as rex
import requests_mock
import urllib3.exceptions as u3
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.requests import MarketOrderRequest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.alpaca_bodies import ALPACA_ERRORS, HTML_502, ORDERS_URL
from tradeguard.broker.alpaca import AlpacaBroker
from tradeguard.broker.alpaca.convert import MalformedResponse
from tradeguard.broker.alpaca.errors import Stage, map_alpaca_error
from tradeguard.broker.alpaca.errors_map import (
    AlpacaErrorKind,
    error_kind,
    is_duplicate_client_order_id,
    is_not_found,
    is_position_rejection,
    reject_kind,
)
from tradeguard.domain import RejectKind
from tradeguard.errors import BrokerError, BrokerUnavailable, OrderRejected, OutcomeUnknown

SENDING_STAGES = [Stage.SUBMIT, Stage.READ, Stage.CANCEL]

# What each row of ALPACA.md's table must become: (class, Alpaca code, kind).
EXPECTED: dict[str, tuple[type[BrokerError], int | None, AlpacaErrorKind | None]] = {
    "duplicate_client_order_id": (OutcomeUnknown, 40010001, AlpacaErrorKind.DUPLICATE_CLIENT_ORDER_ID),
    "position_intent_mismatch": (OrderRejected, 42210000, AlpacaErrorKind.POSITION_INTENT_MISMATCH),
    "position_does_not_exist": (OrderRejected, 40410000, AlpacaErrorKind.POSITION_NOT_FOUND),
    "order_not_found": (OrderRejected, 40410000, AlpacaErrorKind.ORDER_NOT_FOUND),
    "insufficient_qty": (OrderRejected, 40310000, AlpacaErrorKind.INSUFFICIENT_QTY),
    "insufficient_buying_power": (OrderRejected, 40310000, AlpacaErrorKind.INSUFFICIENT_BUYING_POWER),
    "not_allowed_to_short": (OrderRejected, 40310000, AlpacaErrorKind.NOT_ALLOWED_TO_SHORT),
    "wash_trade_403": (OrderRejected, 40310000, AlpacaErrorKind.WASH_TRADE),
    "wash_trade_422": (OrderRejected, 42210000, AlpacaErrorKind.WASH_TRADE),
    "pattern_day_trading": (OrderRejected, 40310100, AlpacaErrorKind.PATTERN_DAY_TRADING),
    "qty_required": (OrderRejected, 40010001, None),
    "qty_or_notional_required": (OrderRejected, 40010001, None),
    "sub_penny_limit": (OrderRejected, 42210000, None),
    "body_format_invalid": (OrderRejected, 40010000, None),
    "unauthorized": (BrokerUnavailable, 40110000, None),
    "rate_limited": (BrokerUnavailable, None, None),  # refused unprocessed; the hidden retry is off
    "server_error_empty": (OutcomeUnknown, None, None),
    "bad_gateway_html": (OutcomeUnknown, None, None),
    "unavailable_empty": (OutcomeUnknown, None, None),
    "gateway_timeout_html": (OutcomeUnknown, None, None),
}

POSITION_ROWS = {
    "position_intent_mismatch",
    "position_does_not_exist",
    "insufficient_qty",
    "not_allowed_to_short",
}


@pytest.fixture
def alpaca() -> Iterator[tuple[TradingClient, requests_mock.Mocker]]:
    """A real TradingClient (transport policy applied) over requests-mock."""
    client = TradingClient("key", "secret", paper=True)
    AlpacaBroker(client)
    with requests_mock.Mocker() as mocker:
        yield client, mocker


def raised_by_alpaca(alpaca: tuple[TradingClient, requests_mock.Mocker], status: int, text: str) -> APIError:
    """Return the APIError alpaca-py itself raises for this HTTP answer to POST /v2/orders."""
    client, mocker = alpaca
    mocker.post(ORDERS_URL, status_code=status, text=text)
    with pytest.raises(APIError) as info:
        client.post("/orders", {"symbol": "TQQQ"})
    return info.value


def test_the_table_covers_every_row_of_alpaca_md() -> None:
    assert EXPECTED.keys() == ALPACA_ERRORS.keys()


@pytest.mark.parametrize("stage", SENDING_STAGES)
@pytest.mark.parametrize("row", sorted(ALPACA_ERRORS))
def test_every_alpaca_error_row_maps_to_its_class(alpaca, row: str, stage: Stage) -> None:
    status, text = ALPACA_ERRORS[row]
    cls, code, kind = EXPECTED[row]

    err = map_alpaca_error(raised_by_alpaca(alpaca, status, text), stage)

    assert type(err) is cls
    assert (err.status_code, err.code) == (status, code)
    assert error_kind(err) is kind
    try:
        assert err.body == json.loads(text)
    except ValueError:  # plain text, HTML or empty: kept raw, never parsed by alpaca-py
        assert err.body == {"raw": text}
    assert stage in err.message


def test_alpaca_py_apierror_accessors_really_raise_on_html_and_empty_bodies(alpaca) -> None:
    # The reason the mapping never calls .code / .message (ALPACA.md).
    for text in (HTML_502, ""):
        exc = raised_by_alpaca(alpaca, 502, text)
        with pytest.raises(json.JSONDecodeError):
            _ = exc.code
        with pytest.raises(json.JSONDecodeError):
            _ = exc.message


def test_mapping_never_touches_apierror_code_or_message(alpaca, monkeypatch: pytest.MonkeyPatch) -> None:
    exc = raised_by_alpaca(alpaca, *ALPACA_ERRORS["insufficient_qty"])

    def forbidden(self: APIError) -> None:
        pytest.fail("APIError.code/.message json.loads the body and raise on HTML")

    monkeypatch.setattr(APIError, "code", property(forbidden))
    monkeypatch.setattr(APIError, "message", property(forbidden))

    err = map_alpaca_error(exc, Stage.SUBMIT)

    assert err.code == 40310000


def test_insufficient_qty_keeps_the_body_fields_the_gateway_sizes_exits_with(alpaca) -> None:
    err = map_alpaca_error(raised_by_alpaca(alpaca, *ALPACA_ERRORS["insufficient_qty"]), Stage.SUBMIT)

    assert isinstance(err, OrderRejected)
    assert err.body["available"] == "6"
    assert err.body["held_for_orders"] == "6"
    assert err.body["existing_qty"] == "12"
    assert err.body["symbol"] == "TQQQ"
    assert "insufficient qty available" in err.message


def test_an_apierror_without_a_response_is_outcome_unknown() -> None:
    err = map_alpaca_error(APIError('{"code":40010001,"message":"qty is required"}'), Stage.SUBMIT)

    assert type(err) is OutcomeUnknown
    assert err.status_code is None
    assert err.code == 40010001


# --- transport failures -------------------------------------------------------------------------


def _pool_error(reason: Exception) -> u3.MaxRetryError:
    return u3.MaxRetryError(None, "/v2/orders", reason)


def refused() -> rex.ConnectionError:
    """What requests raises when nothing listens (see test_alpaca_broker for the real one)."""
    reason = u3.NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] Connection refused"
    )
    return rex.ConnectionError(_pool_error(reason))


TRANSPORT_CASES: dict[str, tuple[BaseException, type[BrokerError]]] = {
    "read_timeout": (rex.ReadTimeout("Read timed out. (read timeout=10.0)"), OutcomeUnknown),
    "connect_timeout": (
        rex.ConnectTimeout("Connection to paper-api.alpaca.markets timed out"),
        BrokerUnavailable,
    ),
    "generic_timeout": (rex.Timeout("timed out"), OutcomeUnknown),
    "connection_refused": (refused(), BrokerUnavailable),
    "dns_failure": (
        rex.ConnectionError(
            _pool_error(
                u3.NameResolutionError("paper-api.alpaca.markets", None, socket.gaierror(-2, "Name unknown"))
            )
        ),
        BrokerUnavailable,
    ),
    "refused_os_error": (
        rex.ConnectionError(ConnectionRefusedError(111, "Connection refused")),
        BrokerUnavailable,
    ),
    "reset_after_sending": (
        rex.ConnectionError(
            u3.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset by peer"))
        ),
        OutcomeUnknown,
    ),
    "remote_disconnected": (
        rex.ConnectionError(
            u3.ProtocolError("Connection aborted.", http.client.RemoteDisconnected("closed without response"))
        ),
        OutcomeUnknown,
    ),
    "bare_connection_error": (rex.ConnectionError("connection broken"), OutcomeUnknown),
    "ssl_certificate_refused": (
        rex.SSLError(_pool_error(u3.SSLError(ssl.SSLCertVerificationError(1, "certificate verify failed")))),
        BrokerUnavailable,
    ),
    "ssl_error_mid_stream": (
        rex.SSLError(_pool_error(u3.SSLError(ssl.SSLError(1, "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC]")))),
        OutcomeUnknown,
    ),
    "proxy_error": (rex.ProxyError("Unable to connect to proxy"), OutcomeUnknown),
    "chunked_encoding": (
        rex.ChunkedEncodingError(u3.ProtocolError("Response ended prematurely")),
        OutcomeUnknown,
    ),
    "content_decoding": (
        rex.ContentDecodingError("Received response with content-encoding: gzip"),
        OutcomeUnknown,
    ),
    "generic_request_exception": (rex.RequestException("something went wrong"), OutcomeUnknown),
    "json_decode_of_a_200": (rex.JSONDecodeError("Expecting value", "<html>", 0), OutcomeUnknown),
    "invalid_url": (rex.InvalidURL("Invalid URL 'https://'"), BrokerUnavailable),
    "missing_schema": (rex.MissingSchema("No scheme supplied"), BrokerUnavailable),
}


@pytest.mark.parametrize("stage", SENDING_STAGES)
@pytest.mark.parametrize("case", sorted(TRANSPORT_CASES))
def test_transport_failures_map_by_whether_the_request_could_have_been_sent(case: str, stage: Stage) -> None:
    exc, expected = TRANSPORT_CASES[case]

    err = map_alpaca_error(exc, stage)

    assert type(err) is expected
    assert err.status_code is None
    assert type(exc).__name__ in err.message


def _requests_exception_classes() -> list[type[rex.RequestException]]:
    return sorted(
        (obj for _, obj in inspect.getmembers(rex, inspect.isclass) if issubclass(obj, rex.RequestException)),
        key=lambda cls: cls.__name__,
    )


def _instance(cls: type[rex.RequestException]) -> rex.RequestException:
    if issubclass(cls, rex.JSONDecodeError):
        return cls("Expecting value", "", 0)
    return cls("failure")


@pytest.mark.parametrize("cls", _requests_exception_classes(), ids=lambda cls: cls.__name__)
def test_every_requests_exception_class_maps_to_a_broker_error(cls: type[rex.RequestException]) -> None:
    err = map_alpaca_error(_instance(cls), Stage.SUBMIT)

    not_sent = (
        rex.ConnectTimeout,  # the connection never opened
        rex.InvalidURL,  # the request could not be prepared...
        rex.MissingSchema,
        rex.InvalidSchema,
        rex.URLRequired,
        rex.InvalidHeader,
        rex.InvalidJSONError,  # ...not even its JSON body
    )
    sent = issubclass(cls, rex.JSONDecodeError) or not issubclass(cls, not_sent)
    assert type(err) is (OutcomeUnknown if sent else BrokerUnavailable)


def test_a_new_requests_exception_class_gets_looked_at() -> None:
    # A requests upgrade that adds a class fails here: decide whether it means "not sent".
    names = {cls.__name__ for cls in _requests_exception_classes()}
    assert names == {
        "RequestException", "HTTPError", "ConnectionError", "ProxyError", "SSLError", "Timeout",
        "ConnectTimeout", "ReadTimeout", "URLRequired", "TooManyRedirects", "MissingSchema",
        "InvalidSchema", "InvalidURL", "InvalidHeader", "InvalidProxyURL", "ChunkedEncodingError",
        "ContentDecodingError", "StreamConsumedError", "RetryError", "UnrewindableBodyError",
        "InvalidJSONError", "JSONDecodeError",
    }  # fmt: skip


# --- pydantic and the unforeseen ----------------------------------------------------------------


def _validation_error() -> ValidationError:
    with pytest.raises(ValidationError) as info:
        MarketOrderRequest(symbol="TQQQ", side="buy", time_in_force="day")  # neither qty nor notional
    return info.value


def test_a_validation_error_while_building_the_order_is_a_rejection() -> None:
    err = map_alpaca_error(_validation_error(), Stage.PREPARE)

    assert type(err) is OrderRejected
    assert "not sent" in err.message


@pytest.mark.parametrize("stage", SENDING_STAGES)
def test_a_validation_error_after_sending_is_outcome_unknown(stage: Stage) -> None:
    assert type(map_alpaca_error(_validation_error(), stage)) is OutcomeUnknown


UNFORESEEN = [
    KeyError("id"),
    AttributeError("'NoneType' object has no attribute 'json'"),
    RuntimeError("boom"),
    MalformedResponse("side 'short_exempt' is neither buy nor sell"),
    OSError("disk full"),
]


@pytest.mark.parametrize("stage", SENDING_STAGES)
@pytest.mark.parametrize("exc", UNFORESEEN, ids=lambda exc: type(exc).__name__)
def test_an_unforeseen_exception_after_sending_is_outcome_unknown(exc: Exception, stage: Stage) -> None:
    err = map_alpaca_error(exc, stage)

    assert type(err) is OutcomeUnknown
    assert type(exc).__name__ in err.message


def test_an_unforeseen_exception_before_sending_is_broker_unavailable() -> None:
    assert type(map_alpaca_error(RuntimeError("boom"), Stage.PREPARE)) is BrokerUnavailable
    assert type(map_alpaca_error(ValueError("bad qty"), Stage.PREPARE)) is OrderRejected


def test_a_broker_error_passes_through_unchanged() -> None:
    original = OrderRejected("no", status_code=403)

    assert map_alpaca_error(original, Stage.SUBMIT) is original


def _api_error(status: int, text: str) -> APIError:
    """Build the APIError the way alpaca-py's RESTClient._one_request does."""
    response = requests.Response()
    response.status_code = status
    response._content = text.encode()
    response.encoding = "utf-8"
    return APIError(text, requests.HTTPError(response=response))


@given(
    status=st.integers(min_value=400, max_value=599),
    text=st.one_of(
        st.text(max_size=200),
        st.builds(
            lambda code, message: json.dumps({"code": code, "message": message}),
            st.one_of(st.integers(), st.text(max_size=20), st.none()),
            st.one_of(st.text(max_size=80), st.none(), st.integers()),
        ),
    ),
)
def test_any_http_error_maps_by_status_and_never_raises(status: int, text: str) -> None:
    err = map_alpaca_error(_api_error(status, text), Stage.SUBMIT)

    assert err.status_code == status
    if status in (401, 429):
        assert type(err) is BrokerUnavailable
    elif status == 408 or status >= 500:
        assert type(err) is OutcomeUnknown
    elif is_duplicate_client_order_id(err):
        assert status == 422
    else:
        assert type(err) is OrderRejected


# --- the classifiers the gateway uses -----------------------------------------------------------


@pytest.mark.parametrize("row", sorted(ALPACA_ERRORS))
def test_is_position_rejection_only_for_rows_that_say_the_position_differs(alpaca, row: str) -> None:
    err = map_alpaca_error(raised_by_alpaca(alpaca, *ALPACA_ERRORS[row]), Stage.SUBMIT)

    assert is_position_rejection(err) is (row in POSITION_ROWS)


@pytest.mark.parametrize("row", sorted(ALPACA_ERRORS))
def test_is_duplicate_client_order_id_only_for_the_duplicate_row(alpaca, row: str) -> None:
    err = map_alpaca_error(raised_by_alpaca(alpaca, *ALPACA_ERRORS[row]), Stage.SUBMIT)

    assert is_duplicate_client_order_id(err) is (row == "duplicate_client_order_id")


@pytest.mark.parametrize("row", sorted(ALPACA_ERRORS))
def test_is_not_found_only_for_alpacas_own_404(alpaca, row: str) -> None:
    err = map_alpaca_error(raised_by_alpaca(alpaca, *ALPACA_ERRORS[row]), Stage.READ)

    assert is_not_found(err) is (row in {"order_not_found", "position_does_not_exist"})


def test_a_404_page_without_alpacas_code_is_not_a_definite_miss(alpaca) -> None:
    err = map_alpaca_error(raised_by_alpaca(alpaca, 404, "<html><body>Not Found</body></html>"), Stage.READ)

    assert type(err) is OrderRejected
    assert not is_not_found(err)


def test_position_rejections_are_read_from_the_kind_the_adapter_set() -> None:
    # The core reads RejectKind, never the message: the adapter maps Alpaca's words once.
    paper = OrderRejected(
        "position intent mismatch, inferred: sell_to_open",
        kind=reject_kind(422, "position intent mismatch, inferred: sell_to_open"),
        status_code=422,
        code=42210000,
    )
    unmapped = OrderRejected("insufficient qty available for order (requested: 18, available: 6)")

    assert paper.kind is RejectKind.POSITION
    assert is_position_rejection(paper)
    assert not is_position_rejection(unmapped)
    assert not is_position_rejection(OutcomeUnknown("position intent mismatch", status_code=422))


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (422, "client_order_id must be unique", RejectKind.DUPLICATE_ID),
        (422, "position intent mismatch, inferred: sell_to_open", RejectKind.POSITION),
        (404, "position does not exist", RejectKind.POSITION),
        (403, "insufficient qty available for order (requested: 18, available: 6)", RejectKind.POSITION),
        (403, "account is not allowed to short", RejectKind.POSITION),
        (403, "insufficient buying power", RejectKind.BUYING_POWER),
        # Crypto (wording assumed): coins short of a sell are the position's, dollars a buy's.
        (403, "insufficient balance for BTC (requested: 1, available: 0.5)", RejectKind.POSITION),
        (403, "insufficient balance for USD (requested: 60000, available: 10)", RejectKind.BUYING_POWER),
        (403, "potential wash trade detected. use complex orders", RejectKind.WASH_TRADE),
        (422, "potential wash trade detected. use complex orders", RejectKind.WASH_TRADE),
        (403, "trade denied due to pattern day trading protection", RejectKind.PATTERN_DAY_TRADING),
        (422, "asset not found", RejectKind.ASSET),
        (422, 'asset "LYC.AX" not found', RejectKind.ASSET),
        (422, 'asset "RGC" is not tradable', RejectKind.ASSET),
        (422, "requested asset is not fractionable", RejectKind.ASSET),
        (422, 'asset "EIDO" cannot be sold short', RejectKind.POSITION),
        (422, "fractional orders cannot be sold short", RejectKind.POSITION),
        (422, "bracket orders must be entry orders", RejectKind.INVALID),
        (422, "take_profit.limit_price must be >= base_price + 0.01", RejectKind.INVALID),
        (422, "qty is required", RejectKind.INVALID),
        (400, "request body format is invalid", RejectKind.INVALID),
        (403, "something new", RejectKind.OTHER),
    ],
)
def test_every_alpaca_refusal_maps_to_a_broker_neutral_kind(
    status: int, message: str, kind: RejectKind
) -> None:
    assert reject_kind(status, message) is kind
