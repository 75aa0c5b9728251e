"""Every fault action through real HTTP, seen by the real alpaca-py TradingClient."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import AssetStatus, OrderSide, OrderStatus, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import (
    GetAssetsRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
)

from tradeguard.faults import FaultAction, FaultPlan
from tradeguard.testing import alpaca_client, orders_of, paper_server

AUTH = {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}


def plan(*faults: str, seed: int = 7) -> FaultPlan:
    """A plan from YAML fault entries, each a flow mapping: "{route: ..., action: ...}"."""
    return FaultPlan.parse(f"seed: {seed}\nfaults:\n" + "".join(f"  - {f}\n" for f in faults))


def buy(qty: float = 6, cid: str | None = None) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol="TQQQ", qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, client_order_id=cid
    )


def naive_bot(client: TradingClient, attempts: int = 3) -> Order | None:
    """A typical unguarded bot: on a timeout, send the order again."""
    for _ in range(attempts):
        try:
            return client.submit_order(buy())
        except requests.exceptions.Timeout:
            continue
    return None


def test_accept_then_timeout_makes_an_unguarded_retrying_bot_place_two_orders() -> None:
    # delay_secs far beyond the test: the stall must end when the server stops, not by itself.
    faults = plan("{route: POST /v2/orders, nth: 1, action: accept_then_timeout, delay_secs: 3600}")
    with paper_server(faults=faults) as server, alpaca_client(server.url, timeout_secs=1) as client:
        order = naive_bot(client)
        assert order is not None and order.status is OrderStatus.FILLED
        placed = orders_of(server.broker)
    assert len(placed) == 2  # one decision, two orders: the bug tradeguard exists to prevent
    assert [f.fault.action for f in server.fired_faults()] == [FaultAction.ACCEPT_THEN_TIMEOUT]


def test_accept_then_timeout_holds_the_reply_while_the_order_stands() -> None:
    faults = plan("{route: POST /v2/orders, action: accept_then_timeout, delay_secs: 3600}")
    with paper_server(faults=faults) as server, alpaca_client(server.url, timeout_secs=0.5) as client:
        with pytest.raises(requests.exceptions.ReadTimeout):
            client.submit_order(buy(cid="stalled"))
        # The order is already there while the POST still hangs: lookup by client id finds it.
        assert client.get_order_by_client_id("stalled").status is OrderStatus.FILLED


def test_accept_then_error_504_triggers_alpaca_py_hidden_retry_and_a_duplicate() -> None:
    faults = plan("{route: POST /v2/orders, nth: 1, action: accept_then_error, status: 504}")
    with paper_server(faults=faults) as server, alpaca_client(server.url, retry_wait_secs=0) as client:
        order = client.submit_order(buy())  # alpaca-py retries the 504 by itself
        assert len(orders_of(server.broker)) == 2
        assert str(order.id) == orders_of(server.broker)[1].id


def test_accept_then_error_with_a_client_id_ends_in_a_422_although_the_order_exists() -> None:
    faults = plan("{route: POST /v2/orders, nth: 1, action: accept_then_error}")
    with paper_server(faults=faults) as server, alpaca_client(server.url, retry_wait_secs=0) as client:
        with pytest.raises(APIError) as info:
            client.submit_order(buy(cid="tg-1"))
        assert (info.value.status_code, info.value.message) == (422, "client_order_id must be unique")
        assert [o.client_order_id for o in orders_of(server.broker)] == ["tg-1"]


def test_reject_answers_with_the_plans_status_and_body_and_places_nothing() -> None:
    faults = plan(
        "{route: POST /v2/orders, match: {symbol: TQQQ}, action: reject, status: 403,"
        " body: {code: 40310100, message: trade denied due to pattern day trading protection}}"
    )
    with paper_server(faults=faults) as server, alpaca_client(server.url) as client:
        with pytest.raises(APIError) as info:
            client.submit_order(buy())
        assert (info.value.status_code, info.value.code) == (403, 40310100)
        assert info.value.message == "trade denied due to pattern day trading protection"
        assert orders_of(server.broker) == []


def test_a_404_reject_on_lookup_hides_an_order_that_exists() -> None:
    faults = plan(
        "{route: GET /v2/orders:by_client_order_id, nth: 1, action: reject, status: 404,"
        " body: {code: 40410000, message: order not found}}"
    )
    with paper_server(faults=faults) as server, alpaca_client(server.url) as client:
        client.submit_order(buy(cid="late"))
        with pytest.raises(APIError) as info:
            client.get_order_by_client_id("late")
        assert info.value.message == "order not found"
        assert client.get_order_by_client_id("late").client_order_id == "late"


def test_error_is_a_bare_5xx_that_places_nothing() -> None:
    faults = plan("{route: POST /v2/orders, action: error, status: 503}")
    with paper_server(faults=faults) as server, alpaca_client(server.url) as client:
        with pytest.raises(APIError) as info:
            client.submit_order(buy())
        assert (info.value.status_code, str(info.value)) == (503, "")
        with pytest.raises(json.JSONDecodeError):
            _ = info.value.code  # alpaca-py cannot parse an empty body (ALPACA.md)
        assert orders_of(server.broker) == []


def test_delay_answers_normally_after_the_delay() -> None:
    faults = plan("{route: POST /v2/orders, action: delay, delay_secs: 0.05}")
    with paper_server(faults=faults) as server, alpaca_client(server.url) as client:
        assert client.submit_order(buy()).status is OrderStatus.FILLED
        assert len(orders_of(server.broker)) == 1


def test_drop_closes_the_connection_before_processing() -> None:
    faults = plan(
        "{route: POST /v2/orders, nth: 1, action: drop}", "{route: GET /v2/positions, action: drop}"
    )
    with paper_server(faults=faults) as server, alpaca_client(server.url) as client:
        with pytest.raises(requests.exceptions.ConnectionError):
            client.submit_order(buy())
        assert orders_of(server.broker) == []
        with pytest.raises(requests.exceptions.ConnectionError):
            client.get_all_positions()
        assert client.submit_order(buy()).status is OrderStatus.FILLED  # the server still serves


def test_rate_limit_once_is_absorbed_by_alpaca_py_hidden_retry() -> None:
    faults = plan("{route: POST /v2/orders, nth: 1, action: rate_limit}")
    with paper_server(faults=faults) as server, alpaca_client(server.url, retry_wait_secs=0) as client:
        client.submit_order(buy())
        assert len(orders_of(server.broker)) == 1
        assert len(server.fired_faults()) == 1


def test_rate_limit_every_time_surfaces_a_plain_text_429() -> None:
    faults = plan(
        "{route: POST /v2/orders, action: rate_limit}", "{route: GET /v2/account, action: rate_limit}"
    )
    with paper_server(faults=faults) as server, alpaca_client(server.url, retry_wait_secs=0) as client:
        with pytest.raises(APIError) as info:
            client.submit_order(buy())
        assert (info.value.status_code, str(info.value)) == (429, "rate limit exceeded")
        assert len(server.fired_faults()) == 4  # 1 try + 3 hidden retries
        with requests.Session() as session:
            response = session.get(server.url + "/v2/account", headers=AUTH, timeout=10)
        assert (response.status_code, response.text) == (429, "rate limit exceeded")
        assert response.headers["Content-Type"].startswith("text/plain")
        assert response.headers["X-Ratelimit-Limit"] == "200"
        assert response.headers["X-Ratelimit-Remaining"] == "0"
        assert int(response.headers["X-Ratelimit-Reset"]) > 0


def test_accept_then_error_on_cancel_cancels_anyway() -> None:
    faults = plan("{route: 'DELETE /v2/orders/{id}', action: accept_then_error, status: 500, body: ''}")
    with paper_server(faults=faults) as server, alpaca_client(server.url) as client:
        resting = client.submit_order(
            LimitOrderRequest(
                symbol="TQQQ", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=50
            )
        )
        with pytest.raises(APIError):
            client.cancel_order_by_id(resting.id)
        assert client.get_order_by_id(resting.id).status is OrderStatus.CANCELED


def test_match_picks_the_order_a_fault_hits() -> None:
    faults = plan("{route: POST /v2/orders, match: {symbol: SQQQ, qty: 2}, action: error}")
    with paper_server(faults=faults) as server, alpaca_client(server.url) as client:
        client.submit_order(buy(qty=2))  # TQQQ: untouched
        with pytest.raises(APIError):
            client.submit_order(
                MarketOrderRequest(symbol="SQQQ", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
            )
        client.submit_order(
            MarketOrderRequest(symbol="SQQQ", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        )
        assert [o.symbol for o in orders_of(server.broker)] == ["TQQQ", "SQQQ"]


def test_a_plan_file_drives_the_server(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("seed: 1\nfaults:\n  - route: GET /v2/clock\n    action: error\n    status: 502\n")
    with paper_server(faults=path) as server, alpaca_client(server.url) as client:
        with pytest.raises(APIError) as info:
            client.get_clock()
        assert info.value.status_code == 502


def test_a_probability_plan_fires_the_same_calls_on_every_run() -> None:
    def fired_calls() -> list[int]:
        faults = plan("{route: GET /v2/account, probability: 0.5, action: error}", seed=11)
        outcomes = []
        with paper_server(faults=faults) as server, alpaca_client(server.url) as client:
            for i in range(30):
                try:
                    client.get_account()
                except APIError:
                    outcomes.append(i)
        return outcomes

    first = fired_calls()
    assert first == fired_calls()
    assert 0 < len(first) < 30


def test_accept_then_error_504_on_a_replace_is_retried_by_alpaca_py_into_a_422() -> None:
    # The replacement happens, the 504 makes alpaca-py PATCH again, and the old order is no
    # longer open: the bot hears "not open" about a replacement that did take place.
    faults = plan("{route: 'PATCH /v2/orders/{id}', nth: 1, action: accept_then_error}")
    with paper_server(faults=faults) as server, alpaca_client(server.url, retry_wait_secs=0) as client:
        old = client.submit_order(
            LimitOrderRequest(
                symbol="TQQQ",
                qty=1,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.GTC,
                limit_price=50,
                client_order_id="bid",
            )
        )
        with pytest.raises(APIError) as info:
            client.replace_order_by_id(old.id, ReplaceOrderRequest(limit_price=51))
        assert (info.value.status_code, info.value.message) == (
            422,
            "unable to replace order, order is not open",
        )
        live = server.broker.get_order_by_client_id("bid")
        assert live is not None and (live.replaces, live.limit_price) == (str(old.id), 51)
    assert [f.path for f in server.fired_faults()] == [f"/v2/orders/{old.id}"]


def test_the_asset_routes_take_faults_too() -> None:
    faults = plan(
        "{route: 'GET /v2/assets/{symbol_or_asset_id}', match: {symbol_or_asset_id: SPY},"
        " action: error, status: 503}",
        "{route: GET /v2/assets, match: {status: active}, action: reject, status: 403}",
    )
    with paper_server(faults=faults) as server, alpaca_client(server.url) as client:
        assert client.get_asset("QQQ").symbol == "QQQ"
        with pytest.raises(APIError) as down:
            client.get_asset("SPY")
        with pytest.raises(APIError) as refused:
            client.get_all_assets(GetAssetsRequest(status=AssetStatus.ACTIVE))
        assert client.get_all_assets() != []
    assert (down.value.status_code, refused.value.status_code) == (503, 403)
