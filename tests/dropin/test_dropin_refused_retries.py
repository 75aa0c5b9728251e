"""A retry of an order the broker refused is sent again, as plain alpaca-py would send it.

A definite refusal of a POST (403 insufficient buying power, ...) placed nothing under its
client_order_id, so Alpaca takes a retry under the same id. The guard sends such a retry again
under the same id (with a client_order_id, and inside the dedup window without one), answering
with the broker's own refusal when it is refused again. A first attempt whose outcome was lost
(timeout) is never sent twice: its retry is looked up (G1).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, suppress
from pathlib import Path

import pytest
import requests_mock
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide

from tests.alpaca_bodies import FakeAlpaca
from tests.dropin.bot import PRICES
from tests.dropin.kit import as_order, claims_of, guarded_client, limit, market, plain_client, store_url
from tradeguard import GuardedTradingClient
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.faults import Fault, FaultAction, FaultPlan
from tradeguard.paper.server import PaperServer
from tradeguard.testing import FixedPrices, orders_of, paper_server

BUY = OrderSide.BUY
Client = Callable[[PaperServer, Path], AbstractContextManager[TradingClient]]


def _plain(server: PaperServer, _: Path) -> AbstractContextManager[TradingClient]:
    return plain_client(server)


def _guarded(server: PaperServer, tmp_path: Path) -> AbstractContextManager[TradingClient]:
    return guarded_client(server, store_url(tmp_path))


@pytest.fixture
def account() -> Iterator[PaperServer]:
    with paper_server(prices=FixedPrices(PRICES)) as server:  # $100,000 cash
        yield server


@pytest.mark.parametrize("make", [_plain, _guarded], ids=["alpaca-py", "guarded"])
@pytest.mark.parametrize("client_order_id", ["bot-spy-entry-1", None], ids=["client_order_id", "content"])
def test_an_entry_refused_for_buying_power_is_taken_on_retry_once_power_is_freed(
    account: PaperServer, tmp_path: Path, make: Client, client_order_id: str | None
) -> None:
    with make(account, tmp_path) as client:
        bid = as_order(client.submit_order(limit("QQQ", 200, BUY, 390.00, "bot-qqq-bid")))  # $78,000 held
        request = market("SPY", 100, BUY, client_order_id)  # $50,000: more than the $22,000 left
        with pytest.raises(APIError) as refused:
            client.submit_order(request)
        assert (refused.value.status_code, refused.value.message) == (403, "insufficient buying power")
        with pytest.raises(APIError) as again:  # still refused: the broker's own answer, body and all
            client.submit_order(request)
        assert (again.value.status_code, again.value.code) == (403, 40310000)
        assert "buying_power" in again.value._error, again.value._error
        client.cancel_order_by_id(bid.id)  # the bot frees its buying power and retries the order
        placed = as_order(client.submit_order(request))
        assert placed.symbol == "SPY" and placed.status.value == "filled"
        [spy] = orders_of(account.broker, symbol="SPY")
        assert str(placed.id) == spy.id
        if client_order_id is not None:
            assert spy.client_order_id == client_order_id
        if isinstance(client, TradingClient) and hasattr(client, "gateway"):
            [claim] = claims_of(client, "SPY")  # type: ignore[arg-type]
            assert claim.state is ClaimState.FILLED and claim.attempts == 3, claim
            assert claim.client_order_id == spy.client_order_id  # one decision, one id throughout


def test_a_refused_retry_that_found_its_order_after_all_adopts_it(
    account: PaperServer, tmp_path: Path
) -> None:
    # A refusal that was wrong (an order exists under the id after all): the resend meets
    # Alpaca's 422 "client_order_id must be unique" and the guard adopts that order (G1).
    with guarded_client(account, store_url(tmp_path)) as client:
        bid = as_order(client.submit_order(limit("QQQ", 200, BUY, 390.00, "bot-qqq-bid")))
        request = market("SPY", 100, BUY, "bot-spy-entry-1")
        with pytest.raises(APIError):
            client.submit_order(request)
        [claim] = claims_of(client, "SPY")
        account.broker.cancel_order(str(bid.id))
        landed = account.broker.submit_order(claim.request())  # the order "lands" under its id
        placed = as_order(client.submit_order(request))
        assert str(placed.id) == landed.id and len(orders_of(account.broker, symbol="SPY")) == 1


@pytest.mark.parametrize("client_order_id", ["bot-spy-entry-1", None], ids=["client_order_id", "content"])
def test_a_retry_of_an_attempt_whose_answer_was_lost_is_never_sent_again(
    tmp_path: Path, client_order_id: str | None
) -> None:
    lost = Fault("POST /v2/orders", FaultAction.ACCEPT_THEN_TIMEOUT, nth=1, delay_secs=0.9)
    with (
        paper_server(prices=FixedPrices(PRICES), faults=FaultPlan((lost,))) as server,
        guarded_client(server, store_url(tmp_path), timeout_secs=0.5) as client,
    ):
        request = market("SPY", 10, BUY, client_order_id)
        for _ in range(3):
            with suppress(APIError):
                client.submit_order(request)
        assert len(orders_of(server.broker, symbol="SPY")) == 1


def test_an_order_the_broker_created_as_rejected_stays_final(
    claims: str, mocker: requests_mock.Mocker, fake: FakeAlpaca
) -> None:
    # Alpaca took the POST and rejected the order later (status "rejected"): an order exists under
    # the id, so a second POST would be 422 "client_order_id must be unique". Nothing is resent.
    with GuardedTradingClient("key", "secret", store=claims, agent_id="bot") as client:
        request = market("SPY", 1, BUY, "bot-spy-1")
        client.submit_order(request)
        fake.orders["bot-spy-1"]["status"] = "rejected"
        assert as_order(client.submit_order(request)).status.value == "rejected"  # adopted
        with pytest.raises(APIError) as again:
            client.submit_order(request)
        assert again.value.status_code == 422
        [claim] = client.gateway.store.list_claims()
        assert claim.state is ClaimState.REJECTED and claim.broker_order_id is not None
    assert sum(1 for r in mocker.request_history if r.method == "POST") == 1


def test_the_window_warning_says_a_refused_order_was_sent_again_and_a_placed_one_was_not(
    account: PaperServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tradeguard.gateway")
    with guarded_client(account, store_url(tmp_path)) as client:
        bid = as_order(client.submit_order(limit("QQQ", 200, BUY, 390.00, "bot-qqq-bid")))  # $78,000 held
        too_big = market("SPY", 100, BUY)  # no client_order_id: keyed by content in the window
        with pytest.raises(APIError):
            client.submit_order(too_big)
        client.cancel_order_by_id(bid.id)
        caplog.clear()
        as_order(client.submit_order(too_big))  # the refused order's retry goes out again
        [resent] = _window_warnings(caplog)
        assert "sent again" in resent and "nothing sent" not in resent, resent
        caplog.clear()
        as_order(client.submit_order(too_big))  # now it was placed: a retry sends nothing
        [duplicate] = _window_warnings(caplog)
        assert "nothing sent" in duplicate and "sent again" not in duplicate, duplicate
    assert len(orders_of(account.broker, symbol="SPY")) == 1


def _window_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tradeguard.gateway" and r.levelno == logging.WARNING and "window" in r.getMessage()
    ]
