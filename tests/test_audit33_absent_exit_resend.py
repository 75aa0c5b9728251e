"""G3 when an exit proven absent is resent while another agent's order in the symbol is unresolved (audit 33).

An exit whose POST got no definite answer (a 503) stays UNKNOWN; a retry of it after the grace
period, absent on two probes, is resent under the same client_order_id. Resent at the size it was
claimed with, it could sell shares that are no longer its agent's, so it is re-sized first while
another agent on the account holds the symbol (`RetryAnswers._resend_if_absent`). "Holds" was read
from the ledgers only: another agent whose entry filled at the broker while its answer and its
lookup were lost holds the shares in no ledger yet, and a phantom agent's stale exit (its position
closed by hand meanwhile) was resent as it was and sold them. Now an order in motion of another
agent in the symbol counts too (`Reconciler.others_trade`, the rule every such question uses).
Real parts: the paper broker behind scripted faults, stores on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.gateway_kit import broker_qty
from tradeguard import ManualClock, OrderGateway, PaperBroker
from tradeguard.config import Settings
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.execution import Outcome
from tradeguard.faults import FaultPlan, FaultyBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore

SETTINGS = Settings(recent_activity_secs=0)
_A_EXIT_UNANSWERED = [{"route": "POST /v2/orders", "match": {"side": "sell"}, "nth": 1, "action": "error"}]
_B_ENTRY_LOST = [
    {"route": "POST /v2/orders", "nth": 1, "action": "accept_then_timeout", "delay_secs": 1},
    {"route": "GET /v2/orders:by_client_order_id", "action": "error"},  # B's lookups all fail
]


@pytest.fixture
def world(store_url: str) -> Iterator[tuple[ManualClock, PaperBroker, OrderGateway, OrderGateway]]:
    """Agents "a" and "b" on one paper account, each behind its own faults and store connection."""
    clock = ManualClock()
    paper = PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock)
    stores = [ClaimStore(store_url, settings=SETTINGS, clock=clock) for _ in range(2)]
    plans = [FaultPlan.parse(json.dumps({"faults": f})) for f in (_A_EXIT_UNANSWERED, _B_ENTRY_LOST)]
    a, b = (
        OrderGateway(
            FaultyBroker(paper, plan, clock=clock), store, agent_id=agent, settings=SETTINGS, clock=clock
        )
        for store, agent, plan in zip(stores, "ab", plans, strict=True)
    )
    yield clock, paper, a, b
    for store in stores:
        store.close()


def test_a_stale_exit_resent_after_its_absence_is_proven_does_not_sell_another_agents_unbooked_shares(
    world: tuple[ManualClock, PaperBroker, OrderGateway, OrderGateway],
) -> None:
    clock, paper, a, b = world
    assert a.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    first = a.exit("SPY", intent="a-out")
    assert first.outcome is Outcome.UNKNOWN, first.reason  # a 503: not placed, not known yet
    paper.close_position("SPY")  # by hand: A's ledger's 10 are a phantom now
    clock.advance(60)
    entry = b.enter("SPY", qty=10, intent="b-in")
    assert entry.claim is not None and entry.claim.state is ClaimState.UNKNOWN  # filled; B cannot tell
    assert broker_qty(paper, "SPY") == 10  # B's
    clock.advance(SETTINGS.unknown_grace_secs + 1)

    again = a.exit("SPY", intent="a-out")  # the bot's retry: absent on two probes

    assert again.outcome is not Outcome.SUBMITTED, again.reason
    assert broker_qty(paper, "SPY") == 10  # B's 10 are still there
