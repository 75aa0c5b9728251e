"""Audit 37: the claim service refuses the gateway's key between its POST and the move that records it.

A key revoked (`tradeguard keys revoke`) or an agent re-registered while a send is in flight:
the order is at the broker, and the move that records the broker's answer is answered 401. The
remote ledger raises `ConfigError` for a refused key (right before a send: nothing was sent),
and the send path translated only `StoreError`, so the bot got `ConfigError` ("a bad
argument; nothing was claimed") for a placed order, where every other failure to record the
answer is `UnrecordedOrder` (G1: the order may be at the broker; it is found by its id later).

The real service over HTTP (`tests.native_kit`); the key is revoked in the service's key ring.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway_kit import MAY21_PRICES
from tests.native_kit import NativeService, serve_native
from tradeguard.clock import ManualClock
from tradeguard.domain import BrokerOrder, OrderRequest
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import UnrecordedOrder
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.ports import account_key_from_id
from tradeguard.store import ClaimStore
from tradeguard.testing import RecordingBroker

AGENT = "may21-bot"


@pytest.fixture
def served(store_url: str, clock: ManualClock) -> Iterator[tuple[NativeService, ClaimStore]]:
    with ClaimStore(store_url, clock=clock) as store, serve_native(store, store_url) as service:
        yield service, store


class RevokedAfterPost(RecordingBroker):
    """The paper account; the gateway's key is revoked as soon as an order is placed."""

    revoke: tuple[NativeService, str] | None = None

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        order = super().submit_order(request)
        if self.revoke is not None:
            service, key_id = self.revoke
            service.keys.revoke(key_id)
            self.revoke = None
        return order


def test_a_key_refused_after_the_post_is_an_unrecorded_order_found_by_the_next_key(
    served: tuple[NativeService, ClaimStore], clock: ManualClock
) -> None:
    service, store = served
    paper = RevokedAfterPost(PaperBroker(prices=MAY21_PRICES, clock=clock))
    record, key = service.keys.create(AGENT)
    store.register_account(AGENT, account_key_from_id(f"account-of-{AGENT}"))
    gw = OrderGateway(paper, service.base_url, agent_id=AGENT, api_key=key, clock=clock)
    paper.revoke = (service, record.key_id)
    try:
        with pytest.raises(UnrecordedOrder, match="refused the API key"):
            gw.enter("TQQQ", qty=10, intent="09:42 breakout")
    finally:
        gw.store.close()
    # The operator gives the bot a new key; it retries the decision: found, never sent twice.
    again = OrderGateway(paper, service.base_url, agent_id=AGENT, api_key=service.key(AGENT), clock=clock)
    try:
        clock.advance(store.settings.lease_secs + 1)  # the first process's lease lapses
        retry = again.enter("TQQQ", qty=10, intent="09:42 breakout")
    finally:
        again.store.close()
    assert retry.outcome is Outcome.DUPLICATE
    assert [(o.symbol, o.qty) for o in paper.asked()] == [("TQQQ", 10)], "one order for the decision (G1)"
    (claim,) = store.list_claims(agent_id=AGENT)
    assert claim.state is ClaimState.FILLED and store.position(AGENT, "TQQQ").qty == 10
