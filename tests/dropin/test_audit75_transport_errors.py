"""Audit 75: a bot that retries on `requests`' timeout or connection error retries under the guard.

alpaca-py lets a read timeout or a dropped or refused connection through as `requests`' own
exception, never as an `APIError`; bots written for it retry in ``except
requests.exceptions.Timeout`` / ``ConnectionError``. The guard answered the same failures with
`APIError` only, so that handler never ran: the bot crashed (or dropped the decision) where on
alpaca-py it retried. The guard's answer is now both, and the retry is safe: one order.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide

import tradeguard
from tests.dropin.bot import PRICES
from tests.dropin.kit import as_order, guarded_client, lost_answer, market, plain_client, store_url
from tradeguard import GuardedTradingClient, Settings
from tradeguard.faults import FaultPlan
from tradeguard.testing import FixedPrices, orders_of, paper_server

TRANSPORT = (requests.exceptions.Timeout, requests.exceptions.ConnectionError)

# The first order POST is processed and answered too late for the client's 0.5 s read timeout,
# and the lookups by client_order_id fail until the test clears the injector: the order may exist.
LATE_ANSWER = FaultPlan.parse(
    """
seed: 1
faults:
  - route: POST /v2/orders
    nth: 1
    action: accept_then_timeout
    delay_secs: 2
  - route: GET /v2/orders:by_client_order_id
    action: error
    status: 503
"""
)


def first_attempt(client: TradingClient) -> BaseException:
    """The bot's first attempt at its entry; returns the transport error its retry handler catches."""
    try:
        client.submit_order(market("SPY", 10, OrderSide.BUY, "spy-entry-1"))
    except TRANSPORT as exc:  # the bot's retry branch, written for alpaca-py
        return exc
    raise AssertionError("the late answer was not a transport error")


def test_a_timed_out_submit_reaches_the_bots_timeout_handler_and_its_retry_places_one_order(
    tmp_path: Path,
) -> None:
    with (
        paper_server(prices=FixedPrices(PRICES), faults=LATE_ANSWER) as server,
        plain_client(server, timeout_secs=0.5) as plain,
    ):
        assert isinstance(first_attempt(plain), requests.exceptions.ReadTimeout)
    with (
        paper_server(prices=FixedPrices(PRICES), faults=LATE_ANSWER) as server,
        guarded_client(server, store_url(tmp_path), timeout_secs=0.5) as client,
    ):
        error = first_attempt(client)
        # Still the guard's answer: an APIError a bot's other handler knows, outcome unknown.
        assert isinstance(error, requests.exceptions.ReadTimeout)
        assert isinstance(error, APIError) and isinstance(error, tradeguard.OutcomeUnknown)
        assert error.status_code == 504 and "may exist" in str(error)
        server.injector = None  # the lookups answer again
        retried = as_order(client.submit_order(market("SPY", 10, OrderSide.BUY, "spy-entry-1")))
        [order] = orders_of(server.broker)
        assert str(retried.id) == order.id and order.client_order_id == "spy-entry-1"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_refused_connection_reaches_the_bots_connection_handler_and_nothing_is_sent(
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    plain = TradingClient("paper-key", "paper-secret", url_override=url)
    assert isinstance(first_attempt(plain), requests.exceptions.ConnectionError)
    with GuardedTradingClient(
        "paper-key", "paper-secret", url_override=url, store=store_url(tmp_path),
        settings=Settings(request_timeout_secs=2),
    ) as client:  # fmt: skip
        error = first_attempt(client)
        assert isinstance(error, requests.exceptions.ConnectionError)
        assert isinstance(error, APIError) and isinstance(error, tradeguard.BrokerUnavailable)
        assert "not sent" in str(error)
        assert [c.state.value for c in client.gateway.store.list_claims()] in ([], ["NOT_SENT"])


def test_the_guards_other_answers_stay_plain_api_errors(tmp_path: Path) -> None:
    # No transport failure behind it: a broker refusal is alpaca-py's own APIError, no more.
    with paper_server(prices=FixedPrices(PRICES)) as server, guarded_client(server, store_url(tmp_path)) as c:
        with pytest.raises(APIError) as refused:
            c.submit_order(market("SPY", 1000, OrderSide.BUY))  # more than the account's buying power
        assert not isinstance(refused.value, requests.exceptions.RequestException)


def test_an_answer_lost_in_a_5xx_page_stays_an_api_error_only(tmp_path: Path) -> None:
    # Alpaca answered 504 (alpaca-py raises APIError for it, from inside its HTTPError handler):
    # the guard's "outcome unknown" is no requests exception either, as on alpaca-py.
    with (
        paper_server(prices=FixedPrices(PRICES), faults=lost_answer("{symbol: SPY}")) as server,
        guarded_client(server, store_url(tmp_path), timeout_secs=0.5) as client,
        pytest.raises(APIError) as lost,
    ):
        client.submit_order(market("SPY", 1, OrderSide.BUY))
    assert isinstance(lost.value, tradeguard.OutcomeUnknown) and lost.value.status_code == 504
    assert not isinstance(lost.value, requests.exceptions.RequestException)
