"""`OrderGateway` against the claim service: G1 and G5 hold when the store is a URL over HTTP.

The gateway is built as a bot would build it, `OrderGateway(broker, "http://127.0.0.1:PORT",
agent_id=..., api_key=...)`, over the native routes served by uvicorn on loopback (SQLite file and
real PostgreSQL). The broker is a `PaperBroker` behind a fault plan; the service and the gateway
share the test's clock so lease and grace periods pass when the test says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.gateway_kit import MAY21_PRICES
from tests.native_kit import NativeService, serve_native
from tradeguard.client import GuardedTradingClient
from tradeguard.clock import ManualClock
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import StoreError
from tradeguard.execution import Outcome
from tradeguard.faults import FaultPlan, FaultyBroker
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.store import ClaimStore, RemoteClaimLedger
from tradeguard.testing import RecordingBroker

AGENT = "may21-bot"
LOST_ANSWER = """
faults:
  - route: POST /v2/orders
    nth: 1
    action: accept_then_timeout
    delay_secs: 10
  - route: GET /v2/orders:by_client_order_id
    nth: 1
    action: reject
    status: 404
    body: {code: 40410000, message: order not found}
"""


@pytest.fixture
def served(store_url: str, clock: ManualClock) -> Iterator[tuple[NativeService, ClaimStore]]:
    with ClaimStore(store_url, clock=clock) as store, serve_native(store, store_url) as service:
        yield service, store


def test_a_lost_answer_reaches_the_broker_once_per_decision_through_the_service(
    served: tuple[NativeService, ClaimStore], clock: ManualClock
) -> None:
    service, store = served
    paper = RecordingBroker(PaperBroker(prices=MAY21_PRICES, clock=clock))
    broker = FaultyBroker(paper, FaultPlan.parse(LOST_ANSWER, source="lost-answer.yaml"), clock=clock)
    gw = OrderGateway(broker, service.base_url, agent_id=AGENT, api_key=service.key(AGENT), clock=clock)
    assert isinstance(gw.store, RemoteClaimLedger) and gw.settings == store.settings
    try:
        first = gw.enter("TQQQ", qty=10, intent="09:42 breakout")
        assert first.outcome is Outcome.UNKNOWN
        retries = [gw.enter("TQQQ", qty=10, intent="09:42 breakout") for _ in range(3)]
        clock.advance(store.settings.lease_secs + store.settings.unknown_grace_secs + 1)
        retries.append(gw.enter("TQQQ", qty=10, intent="09:42 breakout"))
        gw.reconcile()
        gw.enter("TQQQ", qty=5, intent="10:15 add")
    finally:
        gw.store.close()
    (ask, add) = paper.asked(symbol="TQQQ")
    assert ask.client_order_id != add.client_order_id, "two decisions, one order each"
    assert all(r.outcome is not Outcome.SUBMITTED for r in retries)
    claim = store.get_by_client_order_id(ask.client_order_id)
    assert claim is not None and claim.state is ClaimState.FILLED
    assert store.position(AGENT, "TQQQ").qty == 15


def test_the_service_stopped_mid_way_is_a_store_error_and_nothing_is_sent(
    served: tuple[NativeService, ClaimStore], clock: ManualClock
) -> None:
    service, store = served
    paper = RecordingBroker(PaperBroker(prices=MAY21_PRICES, clock=clock))
    gw = OrderGateway(paper, service.base_url, agent_id=AGENT, api_key=service.key(AGENT), clock=clock)
    try:
        assert gw.enter("TQQQ", qty=10, intent="09:42 breakout").outcome is Outcome.SUBMITTED
        service.stop()
        with pytest.raises(StoreError, match=service.base_url):
            gw.enter("SQQQ", qty=10, intent="09:43 hedge")
        with pytest.raises(StoreError):
            gw.exit("TQQQ", intent="09:50 stop")
    finally:
        gw.store.close()
    assert [r.symbol for r in paper.asked()] == ["TQQQ"], "an order went out without a recorded claim (G5)"
    assert store.list_claims(symbol="SQQQ") == []


def test_the_drop_in_client_takes_a_service_url_and_its_key(
    served: tuple[NativeService, ClaimStore], clock: ManualClock
) -> None:
    service, store = served
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    client = GuardedTradingClient(
        "paper-key", "paper-secret", store=service.base_url, store_api_key=service.key(AGENT),
        agent_id=AGENT, clock=clock, broker=paper,
    )  # fmt: skip
    try:
        result = client.gateway.enter("SPY", qty=2, intent="open")
        assert result.outcome is Outcome.SUBMITTED
    finally:
        client.close()
    assert store.position(AGENT, "SPY").qty == 2


def test_the_readme_remote_store_example_runs_against_the_service(
    served: tuple[NativeService, ClaimStore],
) -> None:
    service, store = served
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("### Remote claim store") :]
    example = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    namespace: dict[str, object] = {"KEY": service.key("momo")}
    exec(
        compile(example.replace("https://claims.internal:8787", service.base_url), "README.md", "exec"),
        namespace,
    )
    gw = namespace["gw"]
    assert isinstance(gw, OrderGateway)
    gw.store.close()
    (claim,) = store.list_claims(agent_id="momo")
    assert claim.state is ClaimState.FILLED and store.position("momo", "TQQQ").qty == 10


def test_a_claim_whose_http_answer_was_lost_is_found_by_the_retry_and_sent_once(
    served: tuple[NativeService, ClaimStore], clock: ManualClock
) -> None:
    # Audit 22: the service committed the claim, its answer never arrived (StoreError, nothing
    # sent). The retry gets the same claim back, treats it as possibly sent, and after the grace
    # period sends it under the same client_order_id: one order for the decision.
    service, store = served
    paper = RecordingBroker(PaperBroker(prices=MAY21_PRICES, clock=clock))
    gw = OrderGateway(paper, service.base_url, agent_id=AGENT, api_key=service.key(AGENT), clock=clock)
    assert isinstance(gw.store, RemoteClaimLedger)
    session = gw.store._session
    sent = session.request
    lost: list[str] = []

    def losing_the_first_claim_answer(method: str, url: str, **kwargs: object) -> requests.Response:
        answer = sent(method, url, **kwargs)  # type: ignore[arg-type]
        if method == "POST" and url.endswith("/v1/claims") and not lost:
            lost.append(url)
            raise requests.ConnectionError("the answer was lost on the way back")
        return answer

    session.request = losing_the_first_claim_answer  # type: ignore[method-assign]
    try:
        with pytest.raises(StoreError, match="its answer was lost"):
            gw.enter("TQQQ", qty=10, intent="09:42 breakout")
        assert store.list_claims(agent_id=AGENT) != []  # committed on the service
        retries = [gw.enter("TQQQ", qty=10, intent="09:42 breakout") for _ in range(2)]
        clock.advance(store.settings.lease_secs + store.settings.unknown_grace_secs + 1)
        retries += [gw.enter("TQQQ", qty=10, intent="09:42 breakout") for _ in range(2)]
    finally:
        gw.store.close()
    assert [r.outcome for r in retries][-2:] == [Outcome.SUBMITTED, Outcome.DUPLICATE]
    assert len(paper.asked(symbol="TQQQ")) == 1
    assert store.position(AGENT, "TQQQ").qty == 10
