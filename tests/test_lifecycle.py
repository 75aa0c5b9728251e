"""The claim lifecycle: the transition table, alone and enforced through the store."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.mothers import make_intent, make_spec
from tradeguard.domain import Claim, OrderStatus
from tradeguard.domain.lifecycle import (
    TRANSITIONS,
    ClaimState,
    check_transition,
    state_for_order,
)
from tradeguard.errors import IllegalTransition
from tradeguard.store import AuditQuery, ClaimStore

ALL = list(ClaimState)
PAIRS = list(itertools.product(ALL, ALL))


def reach(store: ClaimStore, state: ClaimState, name: str) -> Claim:
    """Claim a fresh intent and move it straight from PENDING to `state` (every state is one step)."""
    claim = store.claim(make_intent(name), make_spec(2), owner="w").claim
    if state is ClaimState.PENDING:
        return claim
    fill = {ClaimState.PARTIALLY_FILLED: Decimal(1), ClaimState.FILLED: Decimal(2)}.get(state)
    return store.transition(claim, state, reason="setup", filled_qty=fill)


# -- the table ------------------------------------------------------------------------------


@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=[f"{s}->{d}" for s, d in PAIRS])
def test_check_transition_follows_the_table(src: ClaimState, dst: ClaimState) -> None:
    if dst in TRANSITIONS[src]:
        check_transition(src, dst)
    else:
        with pytest.raises(IllegalTransition, match=f"{src} -> {dst}"):
            check_transition(src, dst)


def test_table_shape() -> None:
    assert set(TRANSITIONS) == set(ClaimState)
    terminal = {s for s in ClaimState if s.is_terminal}
    assert terminal == {ClaimState.FILLED, ClaimState.CANCELED, ClaimState.EXPIRED}
    assert all(not TRANSITIONS[s] for s in terminal)
    # A refusal is left by a deliberate re-send, or (as NOT_SENT is) by an order found after all:
    # the refusal says that POST placed nothing, and an earlier send of the same id can still land.
    broker_states = TRANSITIONS[ClaimState.PENDING] - {ClaimState.UNKNOWN, ClaimState.NOT_SENT}
    assert TRANSITIONS[ClaimState.REJECTED] == (broker_states - {ClaimState.REJECTED}) | {ClaimState.PENDING}
    assert TRANSITIONS[ClaimState.NOT_SENT] == broker_states | {ClaimState.PENDING}
    # Every state can be reached from a fresh claim.
    seen, todo = {ClaimState.PENDING}, [ClaimState.PENDING]
    while todo:
        for nxt in TRANSITIONS[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    assert seen == set(ClaimState)


@pytest.mark.parametrize(
    ("status", "partial", "state"),
    [
        (OrderStatus.NEW, False, ClaimState.SUBMITTED),
        (OrderStatus.NEW, True, ClaimState.PARTIALLY_FILLED),
        (OrderStatus.PARTIALLY_FILLED, True, ClaimState.PARTIALLY_FILLED),
        (OrderStatus.FILLED, True, ClaimState.FILLED),
        (OrderStatus.CANCELED, True, ClaimState.CANCELED),
        (OrderStatus.DONE_FOR_DAY, False, ClaimState.SUBMITTED),  # resumes next session
        (OrderStatus.REPLACED, False, ClaimState.SUBMITTED),  # lives on in its replacement
        (OrderStatus.REPLACED, True, ClaimState.PARTIALLY_FILLED),
        (OrderStatus.REJECTED, False, ClaimState.REJECTED),
    ],
)
def test_state_for_order(status: OrderStatus, partial: bool, state: ClaimState) -> None:
    assert state_for_order(status, partial) is state


@given(st.lists(st.sampled_from(ALL), max_size=12))
def test_any_sequence_of_moves_follows_the_table(moves: list[ClaimState]) -> None:
    state = ClaimState.PENDING
    for dst in moves:
        allowed = dst in TRANSITIONS[state]
        try:
            check_transition(state, dst)
        except IllegalTransition:
            assert not allowed
        else:
            assert allowed
            state = dst


# -- through the store ----------------------------------------------------------------------


def test_every_edge_through_the_store(store: ClaimStore) -> None:
    for n, (src, dst) in enumerate(PAIRS):
        claim = reach(store, src, f"edge-{n}")
        fill = claim.filled_qty + 1 if dst is ClaimState.PARTIALLY_FILLED and src is dst else None
        if dst in TRANSITIONS[src]:
            moved = store.transition(claim, dst, reason="edge", filled_qty=fill)
            assert moved.state is dst and store.get(claim.key) == moved, (src, dst)
            last = store.audit_page(AuditQuery(client_order_id=claim.client_order_id), limit=100)[-1]
            assert (last.prev_state, last.state) == (src.value, dst.value)
        else:
            with pytest.raises(IllegalTransition):
                store.transition(claim, dst, reason="edge")
            assert store.get(claim.key) == claim, (src, dst)


_counter = itertools.count()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=st.lists(st.sampled_from(ALL), max_size=8))
def test_random_sequences_through_the_store(store: ClaimStore, moves: list[ClaimState]) -> None:
    claim = store.claim(make_intent(f"seq-{next(_counter)}"), make_spec(), owner="w").claim
    applied = 0
    for dst in moves:
        if dst in TRANSITIONS[claim.state]:
            claim = store.transition(claim, dst, reason="random")
            applied += 1
        else:
            with pytest.raises(IllegalTransition):
                store.transition(claim, dst, reason="random")
        assert store.get(claim.key) == claim
    assert store.audit_count(AuditQuery(client_order_id=claim.client_order_id)) == 1 + applied
