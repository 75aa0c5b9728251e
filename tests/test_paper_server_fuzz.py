"""The paper server survives bad input: randomized requests, socket garbage, short bodies.

Every answer to a bad request is Alpaca's JSON error, never a 500, and the server keeps serving.
Loopback only, bounded by Hypothesis example counts.
"""

from __future__ import annotations

import json
import socket
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradeguard.paper.server import PaperServer
from tradeguard.testing import paper_server

pytestmark = pytest.mark.slow

AUTH = {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}

_ROUTES = [
    ("POST", "/v2/orders"),
    ("GET", "/v2/orders"),
    ("DELETE", "/v2/orders"),
    ("GET", "/v2/orders:by_client_order_id"),
    ("GET", "/v2/orders/6f1d2a8e-3c1b-4d55-9a55-2f0c7e1a9b10"),
    ("DELETE", "/v2/orders/not-a-uuid"),
    ("GET", "/v2/positions"),
    ("DELETE", "/v2/positions"),
    ("GET", "/v2/positions/TQQQ"),
    ("DELETE", "/v2/positions/TQQQ"),
    ("GET", "/v2/account"),
    ("GET", "/v2/clock"),
]
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _mostly(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a plausible value, one time in twelve any JSON value at all."""
    return st.integers(0, 11).flatmap(lambda n: _json_values if n == 11 else good)


_order_fields = {
    "symbol": _mostly(st.sampled_from(["TQQQ", "sqqq", "", " "])),
    "qty": _mostly(st.integers(-3, 30) | st.decimals(allow_nan=True).map(str)),
    "notional": _mostly(st.integers(-3, 3000)),
    "side": _mostly(st.sampled_from(["buy", "sell", "SELL", "hold"])),
    "type": _mostly(st.sampled_from(["market", "limit", "stop", "x"])),
    "time_in_force": _mostly(st.sampled_from(["day", "gtc", "ioc", "fok", "opg", "x"])),
    "limit_price": _mostly(st.decimals(allow_nan=False, allow_infinity=False).map(str) | st.floats(0, 200)),
    "client_order_id": _mostly(st.text(max_size=140)),
    "position_intent": _mostly(st.sampled_from(["buy_to_open", "sell_to_close", "sell_to_open", "x"])),
    "extended_hours": _mostly(st.booleans()),
    "order_class": _mostly(st.sampled_from(["", "simple", "bracket"])),
}
_REQUIRED = {"symbol", "side", "type", "time_in_force"}
_order_bodies = st.fixed_dictionaries(
    {k: v for k, v in _order_fields.items() if k in _REQUIRED},
    optional={k: v for k, v in _order_fields.items() if k not in _REQUIRED},
).map(lambda d: json.dumps(d).encode())
_queries = st.dictionaries(
    st.sampled_from(
        [
            "status",
            "limit",
            "after",
            "until",
            "direction",
            "side",
            "symbols",
            "client_order_id",
            "qty",
            "percentage",
        ]
    ),
    st.sampled_from(["open", "all", "closed", "asc", "true", "TQQQ", "2026-05-21T13:30:00Z", "50", "-1"])
    | st.text(max_size=16)
    | st.integers().map(str),
    max_size=4,
)
_requests = st.one_of(
    # An order body, usually almost valid, so the checks behind the parser are reached too.
    st.tuples(st.just("POST"), st.just("/v2/orders"), st.just({}), _order_bodies),
    st.tuples(st.just("POST"), st.just("/v2/orders"), st.just({}), _order_bodies),
    st.tuples(st.sampled_from(_ROUTES), _queries, st.binary(max_size=60)).map(lambda r: (*r[0], r[1], r[2])),
    st.tuples(
        st.sampled_from(["GET", "POST", "DELETE", "PATCH", "PUT"]),
        st.text(max_size=20).map(lambda t: "/v2/" + quote(t)),
        _queries,
        st.binary(max_size=120) | _json_values.map(lambda v: json.dumps(v).encode()),
    ),
)


def test_the_server_survives_a_thousand_randomized_bad_requests() -> None:
    with paper_server(allow_short=True) as running, requests.Session() as session:
        statuses: set[int] = set()

        @settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(request=_requests, authorized=st.integers(0, 19).map(lambda n: n != 19))
        def bad_request(request: tuple[str, str, dict[str, str], bytes], authorized: bool) -> None:
            method, path, query, body = request
            headers = AUTH if authorized else {}
            response = session.request(
                method, running.url + path, params=query, data=body, headers=headers, timeout=10
            )
            assert response.status_code != 500, response.text  # a 500 is a handler that crashed
            statuses.add(response.status_code)
            if response.status_code >= 400:
                error = response.json()
                assert isinstance(error["code"], int) and isinstance(error["message"], str)

        bad_request()
        assert session.get(running.url + "/v2/account", headers=AUTH, timeout=10).status_code == 200
    assert {200, 400, 404, 422} <= statuses  # the inputs got past parsing, not only refused


def test_the_server_survives_garbage_on_the_socket() -> None:
    with paper_server() as running, requests.Session() as session:
        host, port = running.url.removeprefix("http://").split(":")

        @settings(max_examples=200, deadline=None)
        @given(garbage=st.binary(min_size=1, max_size=300))
        def send_garbage(garbage: bytes) -> None:
            with socket.create_connection((host, int(port)), timeout=10) as raw:
                raw.sendall(garbage)
                raw.shutdown(socket.SHUT_WR)
                while raw.recv(65536):
                    pass

        send_garbage()
        assert session.get(running.url + "/v2/clock", headers=AUTH, timeout=10).status_code == 200


def test_a_body_that_claims_more_bytes_than_it_sends_does_not_wedge_the_server() -> None:
    with paper_server() as server:
        _short_body(server)


def _short_body(server: PaperServer) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(
            b"POST /v2/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nAPCA-API-KEY-ID: k\r\n\r\n{"
        )
        raw.shutdown(socket.SHUT_WR)
        reply = b"".join(iter(lambda: raw.recv(65536), b""))
    assert b" 400 " in reply.split(b"\r\n", 1)[0]
    with requests.Session() as session:
        assert session.get(server.url + "/v2/clock", headers=AUTH, timeout=10).status_code == 200
    assert Decimal(server.broker.account()["cash"]) == 100_000
