"""Audit 37: an answer of the claim service about another claim than the one asked for.

A proxy between the gateway and `tradeguard serve` that answers from a cache (keyed by path, as
a misconfigured one does: every claim is `POST /v1/claims`) or mixes up replies hands the
gateway another decision's claim. Taken as the new decision's, it was answered DUPLICATE
("placed by another send of this decision") and never sent, and the other claim's order was
POSTed once more (G2: a decision lost and reported as placed). Now the remote ledger checks
that the claim answered is the one asked for: before the send that is a `StoreError` and
nothing is sent (G5); after it, `UnrecordedOrder`, and the retry finds the order by its id.

The service is the real one over HTTP (`tests.native_kit`); the bad proxy sits at the network
edge, in the remote ledger's HTTP transport, as in `test_service_native_gateway`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests

from tests.gateway_kit import MAY21_PRICES
from tests.native_kit import NativeService, serve_native
from tradeguard.clock import ManualClock
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import StoreError
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.store import ClaimStore, RemoteClaimLedger
from tradeguard.testing import RecordingBroker

AGENT = "may21-bot"
Hook = Callable[[str, str, requests.Response], requests.Response]


@pytest.fixture
def served(store_url: str, clock: ManualClock) -> Iterator[tuple[NativeService, ClaimStore]]:
    with ClaimStore(store_url, clock=clock) as store, serve_native(store, store_url) as service:
        yield service, store


def _behind_a_proxy(gw: OrderGateway, hook: Hook) -> None:
    """Pass every answer of the service through `hook(method, url, answer)` (the bad proxy)."""
    assert isinstance(gw.store, RemoteClaimLedger)
    session = gw.store._session
    sent = session.request

    def proxied(method: str, url: str, **kwargs: object) -> requests.Response:
        return hook(method, url, sent(method, url, **kwargs))  # type: ignore[arg-type]

    session.request = proxied  # type: ignore[method-assign]


def test_a_claim_answer_of_another_decision_sends_nothing_and_the_decision_is_placed_later(
    served: tuple[NativeService, ClaimStore], clock: ManualClock
) -> None:
    service, store = served
    paper = RecordingBroker(PaperBroker(prices=MAY21_PRICES, clock=clock))
    gw = OrderGateway(paper, service.base_url, agent_id=AGENT, api_key=service.key(AGENT), clock=clock)
    cached: dict[str, requests.Response] = {}
    caching = [True]

    def cache_by_path(method: str, url: str, answer: requests.Response) -> requests.Response:
        if caching[0] and method == "POST" and url.endswith("/v1/claims"):
            return cached.setdefault(url, answer)
        return answer

    _behind_a_proxy(gw, cache_by_path)
    try:
        assert gw.enter("SQQQ", qty=3, intent="09:40 hedge").outcome is Outcome.SUBMITTED
        with pytest.raises(StoreError, match="not what was asked for"):
            gw.enter("TQQQ", qty=10, intent="09:42 breakout")
        assert [(o.symbol, o.qty) for o in paper.asked()] == [("SQQQ", 3)], "nothing sent for 09:42"
        caching[0] = False  # the proxy is fixed: the claim it hid is found, and sent once
        early = gw.enter("TQQQ", qty=10, intent="09:42 breakout")
        clock.advance(store.settings.lease_secs + store.settings.unknown_grace_secs + 1)
        retry = gw.enter("TQQQ", qty=10, intent="09:42 breakout")
        again = gw.enter("TQQQ", qty=10, intent="09:42 breakout")
    finally:
        gw.store.close()
    assert early.outcome is Outcome.UNKNOWN, "the hidden claim may have been sent: not before its grace"
    assert retry.outcome is Outcome.SUBMITTED and again.outcome is Outcome.DUPLICATE
    assert [(o.symbol, o.qty) for o in paper.asked()] == [("SQQQ", 3), ("TQQQ", 10)]
    assert store.position(AGENT, "TQQQ").qty == 10 and store.position(AGENT, "SQQQ").qty == 3
    (claim,) = store.list_claims(symbol="TQQQ")
    assert claim.state is ClaimState.FILLED and claim.intent == "09:42 breakout"


def test_an_exit_answered_with_another_exits_claim_sells_nothing_and_is_sold_on_the_retry(
    served: tuple[NativeService, ClaimStore], clock: ManualClock
) -> None:
    service, store = served
    paper = RecordingBroker(PaperBroker(prices=MAY21_PRICES, clock=clock))
    gw = OrderGateway(paper, service.base_url, agent_id=AGENT, api_key=service.key(AGENT), clock=clock)
    cached: dict[str, requests.Response] = {}
    caching = [True]

    def cache_by_path(method: str, url: str, answer: requests.Response) -> requests.Response:
        if caching[0] and method == "POST" and url.endswith("/v1/exits"):
            return cached.setdefault(url, answer)
        return answer

    _behind_a_proxy(gw, cache_by_path)
    try:
        gw.enter("SQQQ", qty=3, intent="09:40 hedge")
        gw.enter("TQQQ", qty=10, intent="09:42 breakout")
        clock.advance(gw.settings.position_settle_secs + 1)
        assert gw.exit("SQQQ", intent="10:00 unwind").outcome is Outcome.SUBMITTED
        with pytest.raises(StoreError, match="not what was asked for"):
            gw.exit("TQQQ", intent="10:01 stop")
        assert paper.get_position("TQQQ") is not None, "the TQQQ exit was not sent"
        caching[0] = False
        clock.advance(store.settings.lease_secs + 1)
        retry = gw.exit("TQQQ", intent="10:01 stop")  # the hidden claim: looked up, not found yet
        for _ in range(3):  # grace periods and probes pass on the test's clock
            if retry.outcome is not Outcome.UNKNOWN:
                break
            clock.advance(store.settings.unknown_grace_secs + store.settings.unknown_probe_gap_secs + 1)
            retry = gw.exit("TQQQ", intent="10:01 stop")
    finally:
        gw.store.close()
    assert retry.outcome is Outcome.SUBMITTED
    sells = [(o.symbol, o.qty) for o in paper.asked() if o.side.value == "sell"]
    assert sells == [("SQQQ", 3), ("TQQQ", 10)]
    assert paper.get_position("TQQQ") is None and store.position(AGENT, "TQQQ").qty == 0
