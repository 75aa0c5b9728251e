"""The drop-in keeps alpaca-py's errors and return types (issue 10, point 5).

A bot's `except APIError` must still see every failure, tradeguard's new ones included (unknown
outcome, store failure, invalid order, an order in progress); a broker refusal is alpaca-py's own
`APIError` with Alpaca's status, code and message; messages speak the caller's vocabulary
(client_order_id, qty), and ``raw_data=True`` returns the dicts alpaca-py returns. Lost answers
end in one order and an error a bot already handles.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import requests_mock
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide
from alpaca.trading.requests import ClosePositionRequest

import tradeguard
from tests.alpaca_bodies import ALPACA_ERRORS, PAPER_URL
from tests.dropin.bot import PRICES
from tests.dropin.kit import (
    as_order,
    guarded_client,
    ledger_qty,
    limit,
    market,
    outcome_of,
    plain_client,
    store_url,
)
from tradeguard import GuardedTradingClient, ManualClock, Settings
from tradeguard.faults import Fault, FaultAction, FaultPlan
from tradeguard.paper.server import PaperServer
from tradeguard.testing import FixedPrices, orders_of, paper_server

BUY = OrderSide.BUY


def test_tradeguard_errors_are_alpaca_api_errors_too() -> None:
    from tradeguard import client as drop_in

    expected = {
        "OrderOutcomeUnknown": tradeguard.OutcomeUnknown,
        "OrderNotSent": tradeguard.BrokerUnavailable,
        "OrderInProgress": tradeguard.ClaimInProgress,
        "ClaimStoreError": tradeguard.StoreError,
        "InvalidOrder": tradeguard.ConfigError,
    }
    for name, ours in expected.items():
        error = getattr(drop_in, name, None)
        assert isinstance(error, type), f"tradeguard.client.{name} is missing"
        assert issubclass(error, APIError) and issubclass(error, ours), name


@pytest.mark.parametrize("qty", [0, -3])
def test_a_non_positive_qty_is_alpacas_422_as_an_api_error(
    client: GuardedTradingClient, server: PaperServer, qty: int
) -> None:
    with plain_client(server) as plain, pytest.raises(APIError) as alpaca:
        plain.submit_order(market("SPY", qty, BUY))
    with pytest.raises(APIError) as guarded:
        client.submit_order(market("SPY", qty, BUY))
    assert guarded.value.status_code == alpaca.value.status_code == 422
    assert guarded.value.code == alpaca.value.code and "qty" in guarded.value.message
    assert server.broker.orders() == []


def test_an_overlong_client_order_id_is_refused_in_alpacas_words(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    too_long = "bot-" + "x" * 196  # Alpaca takes at most 128 characters
    with plain_client(server) as plain, pytest.raises(APIError) as alpaca:
        plain.submit_order(market("SPY", 1, BUY, too_long))
    with pytest.raises(APIError) as guarded:
        client.submit_order(market("SPY", 1, BUY, too_long))
    assert guarded.value.status_code == alpaca.value.status_code == 422
    assert "client_order_id" in guarded.value.message and "intent" not in guarded.value.message.lower()
    assert server.broker.orders() == []


def _shapes(client: TradingClient) -> list[tuple[str, str]]:
    """Run one short session and return the shape of each answer."""

    def shape(answer: object) -> str:
        if isinstance(answer, list):
            return "list[" + ",".join(sorted({shape(a) for a in answer})) + "]"
        return type(answer).__name__

    placed = client.submit_order(market("SPY", 10, BUY, "bot-spy-1"))
    resting = client.submit_order(limit("QQQ", 1, BUY, 300.00, "bot-qqq-bid"))
    assert isinstance(placed, dict) and isinstance(resting, dict), (placed, resting)
    client.submit_order(market("DIA", 2, BUY, "bot-dia-1"))
    return [
        ("submit_order", shape(placed)),
        ("get_order_by_id", shape(client.get_order_by_id(placed["id"]))),
        ("close_position qty", shape(client.close_position("SPY", ClosePositionRequest(qty="4")))),
        ("close_position", shape(client.close_position("SPY"))),
        ("cancel_orders", shape(client.cancel_orders())),
        ("close_all_positions", shape(client.close_all_positions(cancel_orders=True))),
    ]


def test_raw_data_true_returns_dicts_as_alpaca_py_does(tmp_path: Path) -> None:
    prices = FixedPrices(PRICES)
    with paper_server(prices=prices) as first, plain_client(first, raw_data=True) as plain:
        expected = _shapes(plain)
    with (
        paper_server(prices=prices) as second,
        guarded_client(second, store_url(tmp_path), raw_data=True) as guarded,
    ):
        assert _shapes(guarded) == expected
    assert {s for _, s in expected} == {"dict", "list[dict]"}


@pytest.mark.parametrize(
    "fault",
    [
        Fault("POST /v2/orders", FaultAction.ACCEPT_THEN_TIMEOUT, nth=1, delay_secs=0.9),
        Fault("POST /v2/orders", FaultAction.ACCEPT_THEN_ERROR, nth=1, status=500),
        Fault("POST /v2/orders", FaultAction.ACCEPT_THEN_ERROR, nth=1, status=504),
    ],
    ids=["timeout", "500", "504"],
)
@pytest.mark.parametrize("client_order_id", [None, "bot-spy-entry-1"], ids=["content", "client_order_id"])
def test_a_lost_answer_reaches_except_api_error_and_the_retry_returns_the_one_order(
    tmp_path: Path, fault: Fault, client_order_id: str | None
) -> None:
    with (
        paper_server(prices=FixedPrices(PRICES), faults=FaultPlan((fault,))) as server,
        guarded_client(server, store_url(tmp_path), timeout_secs=0.5) as client,
    ):
        request = market("SPY", 10, BUY, client_order_id)
        first = outcome_of(lambda: client.submit_order(request))
        if isinstance(first, APIError):  # the outcome was still unknown: a bot's handler sees it
            assert isinstance(first, tradeguard.OutcomeUnknown), first
        retry = as_order(client.submit_order(request))  # the naive bot sends the same request again
        [placed] = orders_of(server.broker)
        assert str(retry.id) == placed.id
        if not isinstance(first, APIError):
            assert as_order(first).id == retry.id
        assert ledger_qty(client, "SPY") == 10


def test_an_outcome_that_stays_unknown_is_an_api_error_a_bot_already_catches(tmp_path: Path) -> None:
    # The broker refuses the order while processing it, but the answer is lost behind a 504: no
    # order exists, and the guard cannot know that yet (G2). The bot's `except APIError` must see it.
    lost = Fault("POST /v2/orders", FaultAction.ACCEPT_THEN_ERROR, status=504)
    with (
        paper_server(prices=FixedPrices(PRICES), faults=FaultPlan((lost,))) as server,
        guarded_client(server, store_url(tmp_path)) as client,
    ):
        request = market("SPY", 1000, BUY, "bot-spy-too-big")  # refused: insufficient buying power
        with pytest.raises(APIError) as unknown:
            client.submit_order(request)
        assert isinstance(unknown.value, tradeguard.OutcomeUnknown), unknown.value
        with pytest.raises(APIError):  # the naive bot's retry: still unknown, or now refused
            client.submit_order(request)
        assert server.broker.orders() == []


def test_a_claim_store_failure_is_an_api_error_and_sends_nothing(
    server: PaperServer, tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "claims.db"
    settings = Settings(sqlite_busy_timeout_ms=100)
    with guarded_client(server, f"sqlite:///{path}", settings=settings, clock=clock) as client:
        client.submit_order(market("SPY", 1, BUY))  # the store works
        other = sqlite3.connect(path, isolation_level=None)  # another process holds the write lock
        try:
            other.execute("BEGIN EXCLUSIVE")
            with pytest.raises(APIError) as failed:
                client.submit_order(market("QQQ", 1, BUY))
            assert isinstance(failed.value, tradeguard.StoreError), failed.value
            assert orders_of(server.broker, symbol="QQQ") == []  # fail closed (G5)
        finally:
            other.rollback()
            other.close()
        as_order(client.submit_order(market("QQQ", 1, BUY)))  # once the store is back, it goes
        assert len(orders_of(server.broker, symbol="QQQ")) == 1


def test_a_broker_refusal_is_alpacas_own_api_error(client: GuardedTradingClient, server: PaperServer) -> None:
    with plain_client(server) as plain, pytest.raises(APIError) as alpaca:
        plain.submit_order(market("SPY", 1000, BUY))  # $500,000 on a $100,000 account
    with pytest.raises(APIError) as guarded:
        client.submit_order(market("SPY", 1000, BUY))
    got, want = guarded.value, alpaca.value
    assert (got.status_code, got.code, got.message) == (want.status_code, want.code, want.message)
    assert want.message == "insufficient buying power"


@pytest.mark.parametrize("client_order_id", [None, "bot-spy-entry-1"], ids=["content", "client_order_id"])
def test_a_rate_limited_submit_is_alpacas_429_and_its_retry_places_the_order_at_once(
    tmp_path: Path, client_order_id: str | None
) -> None:
    # The guard's sends have alpaca-py's hidden retry off, so Alpaca's 429 answers the one POST:
    # refused before processing, nothing placed. The bot sees alpaca-py's APIError 429, and its
    # retry is sent at once under the same id (no grace period to wait out, no made-up 504).
    limited = Fault("POST /v2/orders", FaultAction.RATE_LIMIT, nth=1)
    with (
        paper_server(prices=FixedPrices(PRICES), faults=FaultPlan((limited,))) as server,
        guarded_client(server, store_url(tmp_path)) as client,
    ):
        request = market("SPY", 10, BUY, client_order_id)
        with pytest.raises(APIError) as refused:
            client.submit_order(request)
        assert refused.value.status_code == 429 and "rate limit exceeded" in str(refused.value)
        assert isinstance(refused.value, tradeguard.BrokerUnavailable), refused.value
        assert server.broker.orders() == []
        placed = as_order(client.submit_order(request))  # the bot's retry, right away
        [order] = orders_of(server.broker)
        assert str(placed.id) == order.id and placed.status.value == "filled"
        [claim] = client.gateway.store.list_claims()
        assert claim.client_order_id == order.client_order_id and claim.attempts == 2
        assert ledger_qty(client, "SPY") == 10


def test_a_claim_store_kept_while_the_paper_account_is_new_says_so_instead_of_call_again(
    tmp_path: Path,
) -> None:
    # A store on disk outlives a paper account made afresh each run: its claims are another
    # account's. "Call again" would never help; the error names the mismatch, and nothing is sent.
    claims = store_url(tmp_path)
    request = market("SPY", 10, BUY, "spy-2026-05-21T09:42-breakout")
    with paper_server(prices=FixedPrices(PRICES)) as first, guarded_client(first, claims) as client:
        as_order(client.submit_order(request))
    with paper_server(prices=FixedPrices(PRICES)) as fresh, guarded_client(fresh, claims) as client:
        for _ in range(2):  # the same answer however often the bot calls again
            with pytest.raises(APIError) as mismatch:
                client.submit_order(request)
            assert mismatch.value.status_code == 409, mismatch.value
            assert isinstance(mismatch.value, tradeguard.ConfigError)
            assert (
                "another account" in str(mismatch.value) and "call again" not in str(mismatch.value).lower()
            )
        assert fresh.broker.orders() == []


@pytest.mark.parametrize("call", ["cancel_order_by_id", "replace_order_by_id"])
def test_a_malformed_order_id_is_alpaca_pys_value_error_before_anything_is_sent(
    client: GuardedTradingClient, server: PaperServer, call: str
) -> None:
    # Audit 16 #4: alpaca-py checks the id is a UUID before any request.
    before = len(server.broker.orders())
    with plain_client(server) as plain, pytest.raises(ValueError):
        getattr(plain, call)("not-a-uuid")
    with pytest.raises(ValueError):
        getattr(client, call)("not-a-uuid")
    assert len(server.broker.orders()) == before


def _refused_credentials(make: Callable[[], TradingClient]) -> tuple[int, int, str, object]:
    status, text = ALPACA_ERRORS["unauthorized"]
    with requests_mock.Mocker() as m:
        for method, path in (
            ("POST", "/v2/orders"), ("GET", "/v2/account"), ("GET", "/v2/orders:by_client_order_id"),
            ("GET", "/v2/positions/SPY"),
        ):  # fmt: skip
            m.register_uri(method, f"{PAPER_URL}{path}", status_code=status, text=text)
        with pytest.raises(APIError) as refused:
            make().submit_order(market("SPY", 1, BUY, "bot-spy-1"))
    e = refused.value
    return e.status_code, e.code, e.message, json.loads(str(e))


def test_refused_credentials_read_as_alpacas_own_401_and_str_is_its_json_body(tmp_path: Path) -> None:
    # Audit 16 #5: a bot that checks e.code == 40110000, or parses json.loads(str(e)), behaves
    # as on plain alpaca-py.
    plain = _refused_credentials(lambda: TradingClient("k", "s"))
    guarded = _refused_credentials(lambda: GuardedTradingClient("k", "s", store=store_url(tmp_path)))
    assert guarded == plain == (
        401, 40110000, "request is not authorized",
        {"code": 40110000, "message": "request is not authorized"},
    )  # fmt: skip


def test_the_guards_own_errors_str_is_alpacas_json_body_shape(client: GuardedTradingClient) -> None:
    with pytest.raises(APIError) as refused:
        client.submit_order(market("SPY", 0, BUY))
    body = json.loads(str(refused.value))
    assert body == {"code": refused.value.code, "message": refused.value.message}
