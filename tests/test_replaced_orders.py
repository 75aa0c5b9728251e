"""A replaced order is not the end of its decision: the claim follows the replacement (G2, G4).

A replace whose answer is lost (the PATCH accepted, then a timeout) leaves the bot knowing only
the old order id. When it then cancels that id, Alpaca refuses (the old order is final, status
`replaced`) while the replacement rests and later fills. The claim must follow the chain to the
replacement and book its fills; before, it adopted the old order's `replaced` as CANCELED, a
terminal state nobody looks up again: an entry's shares were never booked (an orphan reported
for good, exits skipped with "never held"), an exit's sale never left the ledger. Real parts: the
paper broker behind the fault wrapper, stores on a SQLite file and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.gateway_kit import MAY21_PRICES, broker_qty
from tradeguard import ManualClock, OrderGateway
from tradeguard.config import Settings
from tradeguard.domain import ClaimState, OrderStatus, ReplaceRequest
from tradeguard.errors import BrokerError
from tradeguard.execution import Outcome, adopt_order
from tradeguard.faults import Fault, FaultPlan
from tradeguard.paper import PaperBroker
from tradeguard.store import ClaimStore
from tradeguard.testing import FaultyBroker

SETTINGS = Settings(recent_activity_secs=0, position_settle_secs=0, settle_delay_secs=1)
LOST_REPLACE = FaultPlan(
    faults=(Fault(route="PATCH /v2/orders/{id}", action="accept_then_timeout", nth=1, delay_secs=10),)
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 5, 21, 14, 0, tzinfo=UTC))


@pytest.fixture
def store(store_url: str, clock: ManualClock) -> Iterator[ClaimStore]:
    with ClaimStore(store_url, settings=SETTINGS, clock=clock) as opened:
        yield opened


def _gateways(store: ClaimStore, clock: ManualClock) -> tuple[PaperBroker, OrderGateway, OrderGateway]:
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    port = FaultyBroker(paper, LOST_REPLACE, clock=clock)
    a = OrderGateway(port, store, agent_id="agent-a", settings=SETTINGS, clock=clock)
    b = OrderGateway(port, store, agent_id="agent-b", settings=SETTINGS, clock=clock)
    return paper, a, b


def _lose_the_replace_then_cancel_the_old_id(gateway: OrderGateway, old: str, price: str) -> None:
    with pytest.raises(BrokerError):
        gateway.replace(old, ReplaceRequest(limit_price=Decimal(price)))
    with pytest.raises(BrokerError):
        gateway.cancel(old)  # the bot gives up on the order it knows: refused, it was replaced


def test_an_entry_whose_replace_answer_was_lost_books_the_replacements_fill(
    store: ClaimStore, clock: ManualClock
) -> None:
    paper, a, _ = _gateways(store, clock)
    entry = a.enter("TQQQ", qty=10, intent="dip buy", order_type="limit", limit_price="70.00")
    old = entry.claim.broker_order_id
    assert old is not None
    _lose_the_replace_then_cancel_the_old_id(a, old, "71.00")
    claim = store.get(entry.claim.key)
    assert claim is not None and claim.state in (ClaimState.SUBMITTED, ClaimState.PARTIALLY_FILLED)
    assert [o.status for o in paper.list_orders(status="open")] == [OrderStatus.NEW]

    paper.set_price("TQQQ", "70.50")  # the replacement (limit 71) fills
    clock.advance(120)
    a.reconcile()
    claim = store.get(entry.claim.key)
    assert claim is not None and claim.state is ClaimState.FILLED and claim.filled_qty == 10
    assert store.position("agent-a", "TQQQ").qty == 10 == broker_qty(paper, "TQQQ")
    out = a.exit("TQQQ", intent="stop")
    assert out.outcome is Outcome.SUBMITTED and broker_qty(paper, "TQQQ") == 0


def test_an_exit_whose_replace_answer_was_lost_leaves_the_other_agents_shares_exitable(
    store: ClaimStore, clock: ManualClock
) -> None:
    paper, a, b = _gateways(store, clock)
    a.enter("TQQQ", qty=10, intent="a entry")
    b.enter("TQQQ", qty=10, intent="b entry")
    exit_a = a.exit("TQQQ", intent="take profit", order_type="limit", limit_price="80.00")
    old = exit_a.claim.broker_order_id
    assert old is not None
    _lose_the_replace_then_cancel_the_old_id(a, old, "79.00")

    paper.set_price("TQQQ", "79.50")  # A's replacement (limit 79) sells its 10
    clock.advance(120)
    a.reconcile()
    assert store.position("agent-a", "TQQQ").qty == 0
    assert store.position("agent-b", "TQQQ").qty == 10 == broker_qty(paper, "TQQQ")
    out = b.exit("TQQQ", intent="b stop")
    assert out.outcome is Outcome.SUBMITTED and broker_qty(paper, "TQQQ") == 0


def test_adopting_a_replaced_order_without_a_broker_to_follow_never_ends_the_claim(
    store: ClaimStore, clock: ManualClock
) -> None:
    paper, a, _ = _gateways(store, clock)
    entry = a.enter("TQQQ", qty=10, intent="dip buy", order_type="limit", limit_price="70.00")
    old = entry.claim.broker_order_id
    assert old is not None
    paper.replace_order(old, ReplaceRequest(limit_price=Decimal("71.00")))
    replaced = paper.get_order(old)
    assert replaced is not None and replaced.status is OrderStatus.REPLACED
    after = adopt_order(store, entry.claim, replaced, "read by id")
    assert after.state is ClaimState.SUBMITTED  # still live: a later lookup by id follows the chain
    followed = adopt_order(store, after, replaced, "read by id", broker=paper)
    assert followed.broker_order_id == replaced.replaced_by
