"""Audit 37: the claim service answers from another database between the POST and its record.

A service restarted on another database (a relative SQLite path from another working
directory, a failover to an empty replica) no longer knows the claim the gateway just sent: the
move that records the broker's answer is answered 404, read as `LeaseLost`, and the claim read
back is None. The send path asserted it was there, so the bot got a bare `AssertionError` for a
placed order (or, under `python -O`, an `AttributeError`). It is now a `StoreError` inside the
send path, so the caller hears `UnrecordedOrder`, as for every other failure to record a send.

The real service over HTTP (`tests.native_kit`); its app is handed another store, as a restart on
another database would leave it. A service now names the store it serves on every answer, and
the remote ledger refuses the other store's answer first ("now serves another store", store41);
the path above is what a service that names no store (a tradeguard from before store ids) still
takes: `older` strips the name from every answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.gateway_kit import MAY21_PRICES
from tests.native_kit import NativeService, serve_native
from tradeguard.clock import ManualClock
from tradeguard.domain import BrokerOrder, OrderRequest
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import OutcomeUnknown, StoreError, UnrecordedOrder
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.ports import account_key_from_id
from tradeguard.service.codec import STORE_HEADER
from tradeguard.store import ClaimStore, RemoteClaimLedger
from tradeguard.testing import RecordingBroker

AGENT = "may21-bot"
# What the ledger says: the other store's answer refused by its name, or (a service that names
# no store) the claim found missing there.
REFUSED = {"named": "now serves another store", "older": "not in the claim store it was recorded in"}


@pytest.fixture(params=sorted(REFUSED))
def naming(request: pytest.FixtureRequest) -> str:
    """Whether the service names its store ("named") or is one from before store ids ("older")."""
    return str(request.param)


def as_served(gw: OrderGateway, naming: str) -> None:
    """Make the gateway's ledger see answers as a service of kind `naming` gives them."""
    assert isinstance(gw.store, RemoteClaimLedger)
    if naming == "older":

        def unnamed(answer: requests.Response, *_a: object, **_k: object) -> None:
            answer.headers.pop(STORE_HEADER, None)

        gw.store._session.hooks["response"].append(unnamed)
        gw.store._store_id = None  # its first answer (the gateway's start) named none either


@pytest.fixture
def served(sqlite_url: str, clock: ManualClock) -> Iterator[tuple[NativeService, ClaimStore]]:
    with ClaimStore(sqlite_url, clock=clock) as store, serve_native(store, sqlite_url) as service:
        yield service, store


class ThenReplaced(RecordingBroker):
    """The paper account; `after_post` runs once, as soon as an order is placed."""

    after_post: Callable[[], None] | None = None

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        order = super().submit_order(request)
        hook, self.after_post = self.after_post, None
        if hook is not None:
            hook()
        return order


@pytest.mark.parametrize("fills", [True, False], ids=["acknowledged", "answer-lost"])
def test_a_claim_gone_from_the_service_after_the_post_is_an_unrecorded_order(
    served: tuple[NativeService, ClaimStore], clock: ManualClock, tmp_path: Path, fills: bool, naming: str
) -> None:
    service, store = served
    paper = ThenReplaced(PaperBroker(prices=MAY21_PRICES, clock=clock))
    gw = OrderGateway(paper, service.base_url, agent_id=AGENT, api_key=service.key(AGENT), clock=clock)
    as_served(gw, naming)
    with ClaimStore(f"sqlite:///{tmp_path / 'another.db'}", clock=clock) as another:
        another.register_account(AGENT, account_key_from_id(f"account-of-{AGENT}"))

        def replaced() -> None:
            service.server.config.app.state.store = another  # type: ignore[attr-defined]
            if not fills:  # and the broker's answer is lost: the claim is moved to UNKNOWN
                raise OutcomeUnknown("read timed out after the order was accepted")

        paper.after_post = replaced
        try:
            with pytest.raises(UnrecordedOrder, match=REFUSED[naming]):
                gw.enter("TQQQ", qty=10, intent="09:42 breakout")
        finally:
            gw.store.close()
        assert another.list_claims() == []
    (sent,) = paper.asked()
    claim = store.get_by_client_order_id(sent.client_order_id)
    assert claim is not None and claim.state is ClaimState.PENDING  # found by its id on the real store


def test_a_claim_gone_from_the_service_before_the_post_is_a_store_error_and_nothing_is_sent(
    served: tuple[NativeService, ClaimStore], clock: ManualClock, tmp_path: Path, naming: str
) -> None:
    # Replaced right after the claim was answered: the fence before the send answers 404
    # (LeaseLost), and the claim read back is None; that was a bare AssertionError too.
    service, store = served
    paper = RecordingBroker(PaperBroker(prices=MAY21_PRICES, clock=clock))
    gw = OrderGateway(paper, service.base_url, agent_id=AGENT, api_key=service.key(AGENT), clock=clock)
    as_served(gw, naming)
    assert isinstance(gw.store, RemoteClaimLedger)
    session = gw.store._session
    sent = session.request
    with ClaimStore(f"sqlite:///{tmp_path / 'another.db'}", clock=clock) as another:
        another.register_account(AGENT, account_key_from_id(f"account-of-{AGENT}"))

        def replaced_after_the_claim(method: str, url: str, **kwargs: object) -> requests.Response:
            answer = sent(method, url, **kwargs)  # type: ignore[arg-type]
            if method == "POST" and url.endswith("/v1/claims"):
                service.server.config.app.state.store = another  # type: ignore[attr-defined]
            return answer

        session.request = replaced_after_the_claim  # type: ignore[method-assign]
        try:
            with pytest.raises(StoreError, match=REFUSED[naming]):
                gw.enter("TQQQ", qty=10, intent="09:42 breakout")
        finally:
            gw.store.close()
    assert paper.asked() == [], "nothing sent (G5)"
    (claim,) = store.list_claims(agent_id=AGENT)
    assert claim.state is ClaimState.PENDING
