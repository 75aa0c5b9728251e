"""`reconcile.resolve_claim`: an operator's resolution, checked against the broker, on the store port.

Over `MemoryClaimStore` (held to the same contract as the SQL store by test_store_contract.py)
and an in-process `PaperBroker`; the command line over SQLite and PostgreSQL is test_cli_claims.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from tests.mothers import make_intent, make_spec
from tradeguard import ManualClock, PaperBroker
from tradeguard.domain import BrokerOrder, Claim, OrderType, TimeInForce
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import BrokerUnavailable, ResolutionRefused
from tradeguard.ports import ForwardingBroker
from tradeguard.reconcile.resolve import Resolution, resolve_claim
from tradeguard.store import MemoryClaimStore


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(clock: ManualClock) -> MemoryClaimStore:
    return MemoryClaimStore(clock=clock)


@pytest.fixture
def paper(clock: ManualClock) -> PaperBroker:
    broker = PaperBroker(clock=clock)
    broker.set_price("TQQQ", "50")
    return broker


def unknown(store: MemoryClaimStore, name: str = "d", **spec: object) -> Claim:
    claim = store.claim(make_intent(name, symbol="TQQQ"), make_spec(6, **spec), owner="w").claim
    return store.transition(claim, ClaimState.UNKNOWN, reason="timeout")


class Unreachable(ForwardingBroker):
    """The broker's order lookup fails, as on a network outage."""

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        raise BrokerUnavailable("connection refused")


def test_a_failed_broker_read_is_not_taken_for_no_order(store: MemoryClaimStore, paper: PaperBroker) -> None:
    claim = unknown(store)
    before = store.audit_count()
    with pytest.raises(BrokerUnavailable):
        resolve_claim(store, claim, Resolution.NOT_SENT, reason="r", actor="a", broker=Unreachable(paper))
    assert store.get(claim.key) == claim and store.audit_count() == before


def test_canceled_needs_the_order_canceled_at_the_broker(store: MemoryClaimStore, paper: PaperBroker) -> None:
    claim = unknown(store, order_type=OrderType.LIMIT, limit_price=Decimal(1), time_in_force=TimeInForce.GTC)
    order = paper.submit_order(claim.request())  # rests on the book far below the market
    with pytest.raises(ResolutionRefused, match="not canceled"):
        resolve_claim(store, claim, Resolution.CANCELED, reason="r", actor="a", broker=paper)
    paper.cancel_order(order.id)
    done = resolve_claim(
        store, claim, Resolution.CANCELED, reason="desk canceled it", actor="a", broker=paper
    )
    assert done.claim.state is ClaimState.CANCELED and done.claim.broker_order_id == order.id
    assert store.position("bot", "TQQQ").qty == 0


def test_canceled_with_no_order_at_the_broker_says_not_sent(
    store: MemoryClaimStore, paper: PaperBroker
) -> None:
    claim = unknown(store)
    with pytest.raises(ResolutionRefused, match="resolve it --as not-sent"):
        resolve_claim(store, claim, Resolution.CANCELED, reason="r", actor="a", broker=paper)


def test_another_order_under_the_id_is_never_adopted(store: MemoryClaimStore, paper: PaperBroker) -> None:
    claim = unknown(store)
    paper.submit_order(replace(claim.request(), qty=Decimal(1)))  # same id, another size
    with pytest.raises(ResolutionRefused, match="taken by another order"):
        resolve_claim(store, claim, Resolution.FILLED, reason="r", actor="a", broker=paper)
    assert store.position("bot", "TQQQ").qty == 0


def test_a_pending_claim_is_taken_over_once_its_lease_lapsed(
    store: MemoryClaimStore, clock: ManualClock
) -> None:
    claim = store.claim(make_intent("stalled", symbol="TQQQ"), make_spec(6), owner="w").claim
    with pytest.raises(ResolutionRefused, match="lease"):
        resolve_claim(store, claim, Resolution.NOT_SENT, reason="r", actor="ana")
    clock.advance(timedelta(seconds=store.settings.lease_secs + 1).total_seconds())
    done = resolve_claim(store, claim, Resolution.NOT_SENT, reason="sender died before its POST", actor="ana")
    assert (done.before.state, done.claim.state) == (ClaimState.PENDING, ClaimState.NOT_SENT)
    actions = [r.action.value for r in store.audit_records()]
    assert actions[-2:] == ["takeover", "transition"]


def test_the_operators_word_fills_the_order_quantity_and_never_shrinks_a_fill(
    store: MemoryClaimStore,
) -> None:
    claim = unknown(store)
    with pytest.raises(ResolutionRefused, match="never sent filled nothing"):
        resolve_claim(store, claim, Resolution.NOT_SENT, reason="r", actor="a", filled_qty=Decimal(1))
    done = resolve_claim(
        store, claim, Resolution.FILLED, reason="r", actor="a", filled_avg_price=Decimal("50.1")
    )
    assert (done.claim.filled_qty, done.claim.filled_avg_price) == (6, Decimal("50.1"))
    assert store.position("bot", "TQQQ").qty == 6
    with pytest.raises(ResolutionRefused, match="already FILLED"):
        resolve_claim(store, done.claim, Resolution.FILLED, reason="r", actor="a")


def test_a_resolution_needs_a_reason(store: MemoryClaimStore) -> None:
    with pytest.raises(ResolutionRefused, match="reason"):
        resolve_claim(store, unknown(store), Resolution.NOT_SENT, reason="  ", actor="a")
