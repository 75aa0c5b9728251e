"""An entry whose answer was lost, and whose lookup failed too, is looked up again before an exit (G2, G4).

Audit 14c D2: the entry's POST was accepted and filled, its answer timed out and the lookup by
client_order_id failed, so the claim stayed UNKNOWN with nothing booked. An exit of the same
agent then answered "never held" (SKIPPED, no reconcile) and `position()` read 0 while the
broker held the agent's own 10 shares, until a reconcile pass adopted them: a bot trusting
either would give up its exit or enter again. Now both look the agent's unresolved claims up by
client_order_id first (broker evidence, G2), and an exit that still cannot tell says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from tests.gateway_kit import MAY21_PRICES, broker_qty
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.execution import Outcome
from tradeguard.faults import FaultPlan, FaultyBroker
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.store import AuditQuery, ClaimStore

_LOST = [
    {"route": "POST /v2/orders", "nth": 1, "action": "accept_then_timeout", "delay_secs": 1},
    {"route": "GET /v2/orders:by_client_order_id", "nth": 1, "action": "error"},
]


Setup = Callable[..., tuple[OrderGateway, PaperBroker, ClaimStore]]


@pytest.fixture
def lost_entry(store_url: str) -> Iterator[Setup]:
    """Return a maker of a gateway whose entry "e1" of 10 SPY filled while its answer and lookup failed."""
    stores: list[ClaimStore] = []

    def make(*more: dict[str, object]) -> tuple[OrderGateway, PaperBroker, ClaimStore]:
        clock = ManualClock()
        settings = Settings(recent_activity_secs=0, position_settle_secs=0)
        paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
        store = ClaimStore(store_url, settings=settings, clock=clock)
        stores.append(store)
        broker = FaultyBroker(paper, FaultPlan.parse(json.dumps({"faults": [*_LOST, *more]})), clock=clock)
        gateway = OrderGateway(broker, store, agent_id="bot", settings=settings, clock=clock)
        entry = gateway.enter("SPY", 10, intent="e1")
        assert entry.claim is not None and entry.claim.state is ClaimState.UNKNOWN
        assert broker_qty(paper, "SPY") == 10  # placed and filled; the guard does not know yet
        return gateway, paper, store

    yield make
    for store in stores:
        store.close()


def test_an_exit_after_a_lost_entry_answer_finds_the_entry_and_sells_its_shares(lost_entry: Setup) -> None:
    gateway, paper, store = lost_entry()
    result = gateway.exit("SPY", intent="x1")
    assert result.outcome is Outcome.SUBMITTED, result.reason
    assert broker_qty(paper, "SPY") == 0
    [entry] = store.list_claims(agent_id="bot", kind=Kind.ENTRY)
    assert entry.state is ClaimState.FILLED and entry.filled_qty == 10
    assert gateway.position("SPY").is_flat


def test_position_after_a_lost_entry_answer_reads_the_entrys_fill(lost_entry: Setup) -> None:
    gateway, _paper, _store = lost_entry()
    assert gateway.position("SPY").qty == 10


def test_an_exit_that_still_cannot_find_the_entry_is_not_sent_and_says_why(lost_entry: Setup) -> None:
    # The second lookup fails too: the shares at the broker may be the entry's; nothing is sent,
    # the bot is told the position is unresolved (not "never held"), and nothing is guessed.
    again = {"route": "GET /v2/orders:by_client_order_id", "nth": 2, "action": "error"}
    gateway, paper, store = lost_entry(again)
    result = gateway.exit("SPY", intent="x1")
    assert result.outcome is Outcome.NOT_SENT
    assert "unresolved" in result.reason and "never held" not in result.reason
    assert broker_qty(paper, "SPY") == 10
    assert [c.kind.value for c in store.list_claims(agent_id="bot")] == ["entry"]
    skips = [r for r in store.audit_records(AuditQuery(agent_id="bot")) if r.action.value == "skip"]
    assert any("unresolved" in r.reason for r in skips)
