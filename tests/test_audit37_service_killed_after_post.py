"""Audit 37: the claim service killed -9 right after the gateway's POST, and still down on the retry.

The order is at the broker and the claim is PENDING on the service: the call raises
`UnrecordedOrder`. The bot calls again with the same decision while the service is still down:
its claim cannot be read, and the gateway answered `StoreError` ("nothing was recorded by this
call"), which a bot reads as "not placed" and decides again (G1), although this very gateway
had just posted the decision's order. It now answers `UnrecordedOrder` again (an
`OutcomeUnknown`). Once the service is back, the decision is found by its client_order_id and
never sent twice (a restarted bot finds it PENDING under the dead process's lease: a duplicate).

Real processes: the service (`tests.service.conftest.start_service`, SIGKILLed), a paper
account in process, the gateway over HTTP.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway_kit import MAY21_PRICES
from tests.service.conftest import Service, start_service
from tradeguard.domain import BrokerOrder, OrderRequest
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import OutcomeUnknown, StoreError, UnrecordedOrder
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.service.keys import KeyRing
from tradeguard.store import ClaimStore
from tradeguard.testing import RecordingBroker

AGENT = "may21-bot"


class KilledAfterPost(RecordingBroker):
    """The paper account; the claim service is SIGKILLed as soon as an order was placed."""

    service: Service | None = None

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        order = super().submit_order(request)
        service, self.service = self.service, None
        if service is not None:
            service.process.send_signal(signal.SIGKILL)
            service.process.wait(timeout=60)
        return order


@pytest.fixture
def services(store_url: str, tmp_path: Path) -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        if service.process.poll() is None:
            service.stop()


def test_a_retry_while_the_killed_service_is_down_is_an_unrecorded_order_and_nothing_is_sent_twice(
    store_url: str, tmp_path: Path, services: list[Service]
) -> None:
    ClaimStore(store_url).close()
    with KeyRing(store_url) as ring:
        key = ring.create(AGENT)[1]
    services.append(start_service(store_url, tmp_path))
    paper = KilledAfterPost(PaperBroker(prices=MAY21_PRICES))
    gw = OrderGateway(paper, services[0].base_url, agent_id=AGENT, api_key=key)
    paper.service = services[0]
    try:
        with pytest.raises(UnrecordedOrder):
            gw.enter("TQQQ", qty=10, intent="09:42 breakout")
        assert services[0].process.poll() is not None, "the service is down"
        with pytest.raises(OutcomeUnknown) as retried:  # not "nothing was recorded": it may be placed
            gw.enter("TQQQ", qty=10, intent="09:42 breakout")
        assert isinstance(retried.value, UnrecordedOrder) and not isinstance(retried.value, StoreError)
        with pytest.raises(StoreError):  # another decision: nothing of it was sent, as said
            gw.enter("SQQQ", qty=3, intent="09:43 hedge")
    finally:
        gw.store.close()
    services.append(start_service(store_url, tmp_path))  # back, on another port; the bot restarts
    again = OrderGateway(paper, services[1].base_url, agent_id=AGENT, api_key=key)
    try:
        retry = again.enter("TQQQ", qty=10, intent="09:42 breakout")
    finally:
        again.store.close()
    assert retry.outcome is Outcome.DUPLICATE
    assert [(o.symbol, o.qty) for o in paper.asked()] == [("TQQQ", 10)], "one order for the decision (G1)"
    with ClaimStore(store_url) as store:  # resolved by client_order_id once its lease lapses
        (claim,) = store.list_claims(agent_id=AGENT)
        assert claim.state is ClaimState.PENDING and claim.client_order_id == paper.asked()[0].client_order_id
