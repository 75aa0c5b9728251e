"""Audit 37: a proxy that sends every write to the claim service twice.

Some proxies repeat a request on their own (a retry on an upstream hiccup). Claims are
insert-if-absent and moves compare-and-sets, so nothing is applied twice; but the copy that
lands second answers, and the gateway hears "already claimed" or "lease lost" for its own
write. A claim heard as already there is looked up and resent with its id after the grace
period, as designed; that resend's move back to PENDING was then heard as lost too and answered
DUPLICATE "another worker resolved it meanwhile": the order never went out, and the bot was told
"duplicate" for a decision nothing placed (G2), on every retry. A move found done under the
gateway's own lease now goes on as its own: the decision is placed once.

The real service over HTTP (`tests.native_kit`); the proxy is at the network edge, in the
remote ledger's HTTP transport.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.gateway_kit import MAY21_PRICES
from tests.native_kit import NativeService, serve_native
from tradeguard.clock import ManualClock
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.store import ClaimStore, RemoteClaimLedger
from tradeguard.testing import RecordingBroker

AGENT = "may21-bot"


@pytest.fixture
def served(store_url: str, clock: ManualClock) -> Iterator[tuple[NativeService, ClaimStore]]:
    with ClaimStore(store_url, clock=clock) as store, serve_native(store, store_url) as service:
        yield service, store


def test_every_write_sent_twice_still_places_the_decision_once_and_never_says_duplicate_before(
    served: tuple[NativeService, ClaimStore], clock: ManualClock
) -> None:
    service, store = served
    paper = RecordingBroker(PaperBroker(prices=MAY21_PRICES, clock=clock))
    gw = OrderGateway(paper, service.base_url, agent_id=AGENT, api_key=service.key(AGENT), clock=clock)
    assert isinstance(gw.store, RemoteClaimLedger)
    session = gw.store._session
    sent = session.request

    def twice(method: str, url: str, **kwargs: object) -> requests.Response:
        if method == "POST":
            sent(method, url, **kwargs)  # type: ignore[arg-type]
        return sent(method, url, **kwargs)  # type: ignore[arg-type]

    session.request = twice  # type: ignore[method-assign]
    answers = []
    try:
        for _ in range(4):  # the bot retries its decision; each retry a grace period later
            result = gw.enter("TQQQ", qty=10, intent="09:42 breakout")
            answers.append((result.outcome, len(paper.asked())))
            clock.advance(store.settings.lease_secs + store.settings.unknown_grace_secs + 1)
    finally:
        gw.store.close()
    assert [(o.symbol, o.qty) for o in paper.asked()] == [("TQQQ", 10)], "placed, once (G1)"
    assert all(outcome is not Outcome.DUPLICATE for outcome, placed in answers if placed == 0), answers
    assert Outcome.SUBMITTED in [outcome for outcome, _ in answers]
    (claim,) = store.list_claims(agent_id=AGENT)
    assert claim.state is ClaimState.FILLED and store.position(AGENT, "TQQQ").qty == 10
