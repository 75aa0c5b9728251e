"""Audit 37: the claim service's 429 (a key past its rate) is a store failure, not a bad argument.

The native routes answer 429 with the code `invalid_request` (the fallback of every 4xx that is
not 401/403/404), which the remote ledger raised as `ConfigError` ("a bad argument; nothing was
claimed"). Before the POST that told a bot its call was wrong rather than "retry later"; after
it, the move that records the broker's answer was rate-limited and the bot got `ConfigError`
for an order that *was* placed, instead of `UnrecordedOrder` (G1: a bot that takes it for "not
placed" decides again). A 429 is now a `StoreError` whatever its body: nothing sent before the
POST (G5), `UnrecordedOrder` after it, and the retry finds the order by its client_order_id.

The real service over HTTP (`tests.native_kit`), its own rate limiter turned on when the test
says (a limiter on an injected clock that never refills: no timing).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway_kit import MAY21_PRICES
from tests.native_kit import NativeService, serve_native
from tradeguard.clock import ManualClock
from tradeguard.domain import BrokerOrder, OrderRequest
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import StoreError, UnrecordedOrder
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.ports import account_key_from_id
from tradeguard.service.limits import RateLimiter
from tradeguard.store import ClaimStore
from tradeguard.testing import RecordingBroker

AGENT = "may21-bot"


@pytest.fixture
def served(store_url: str, clock: ManualClock) -> Iterator[tuple[NativeService, ClaimStore]]:
    with ClaimStore(store_url, clock=clock) as store, serve_native(store, store_url) as service:
        yield service, store


def _limit(service: NativeService, key_id: str | None) -> None:
    """Put `key_id` past its rate on the service (None: lift every limit)."""
    app = service.server.config.app  # type: ignore[attr-defined]
    if key_id is None:
        app.state.limiter = None
        return
    limiter = RateLimiter(1.0, 1, monotonic=lambda: 0.0)  # never refills on this clock
    limiter.take(f"key:{key_id}")
    app.state.limiter = limiter


class LimitedAfterPost(RecordingBroker):
    """The paper account; the gateway's key goes past its rate as soon as an order is placed."""

    limit: tuple[NativeService, str] | None = None

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        order = super().submit_order(request)
        if self.limit is not None:
            _limit(*self.limit)
            self.limit = None
        return order


def _gateway(
    service: NativeService, store: ClaimStore, paper: RecordingBroker, clock: ManualClock
) -> tuple[OrderGateway, str]:
    record, key = service.keys.create(AGENT)
    store.register_account(AGENT, account_key_from_id(f"account-of-{AGENT}"))
    return OrderGateway(paper, service.base_url, agent_id=AGENT, api_key=key, clock=clock), record.key_id


def test_a_rate_limited_claim_is_a_store_error_and_nothing_is_sent(
    served: tuple[NativeService, ClaimStore], clock: ManualClock
) -> None:
    service, store = served
    paper = RecordingBroker(PaperBroker(prices=MAY21_PRICES, clock=clock))
    gw, key_id = _gateway(service, store, paper, clock)
    try:
        assert gw.enter("SQQQ", qty=3, intent="09:40 hedge").outcome is Outcome.SUBMITTED
        _limit(service, key_id)
        with pytest.raises(StoreError, match="429"):
            gw.enter("TQQQ", qty=10, intent="09:42 breakout")
        _limit(service, None)
        retry = gw.enter("TQQQ", qty=10, intent="09:42 breakout")
    finally:
        gw.store.close()
    assert retry.outcome is Outcome.SUBMITTED
    assert [(o.symbol, o.qty) for o in paper.asked()] == [("SQQQ", 3), ("TQQQ", 10)]
    assert store.position(AGENT, "TQQQ").qty == 10


def test_a_rate_limited_move_after_the_post_is_an_unrecorded_order_and_the_retry_finds_it(
    served: tuple[NativeService, ClaimStore], clock: ManualClock
) -> None:
    service, store = served
    paper = LimitedAfterPost(PaperBroker(prices=MAY21_PRICES, clock=clock))
    gw, key_id = _gateway(service, store, paper, clock)
    paper.limit = (service, key_id)
    try:
        with pytest.raises(UnrecordedOrder, match="429"):
            gw.enter("TQQQ", qty=10, intent="09:42 breakout")
        _limit(service, None)
        retry = gw.enter("TQQQ", qty=10, intent="09:42 breakout")
    finally:
        gw.store.close()
    assert retry.outcome is Outcome.DUPLICATE
    assert [(o.symbol, o.qty) for o in paper.asked()] == [("TQQQ", 10)], "one order for the decision (G1)"
    (claim,) = store.list_claims(agent_id=AGENT)
    assert claim.state is ClaimState.FILLED and store.position(AGENT, "TQQQ").qty == 10
