"""Sending one claimed order and recording the broker's answer: shared by gateway and reconciler.

A claim is sent only while PENDING and owned by the sender. The broker's answer becomes a claim
transition: an acknowledgement adopts the order's state, a definite refusal REJECTED, a request
that never left NOT_SENT, and an ambiguous one UNKNOWN (resolved later by client_order_id).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tradeguard.domain import BrokerOrder, Claim, OrderRequest, RejectKind, Side
from tradeguard.domain.lifecycle import TRANSITIONS, ClaimState, state_for_order
from tradeguard.errors import BrokerError, BrokerUnavailable, LeaseLost, OrderRejected, OutcomeUnknown
from tradeguard.ports import Broker
from tradeguard.store import ClaimStore

__all__ = ["OrderResult", "Outcome", "adopt_order", "is_position_rejection", "request_for", "send_claim"]


class Outcome(enum.StrEnum):
    """What a call to `enter`, `exit` or `submit` did."""

    SUBMITTED = "submitted"  # sent now and acknowledged by the broker
    DUPLICATE = "duplicate"  # a retry of a known decision: nothing was sent
    REJECTED = "rejected"  # the broker refused it (now, or on an earlier attempt)
    UNKNOWN = "unknown"  # sent, no definite answer yet; resolved by lookup, never resent blind
    NOT_SENT = "not_sent"  # never reached the broker; calling again is safe
    SKIPPED = "skipped"  # nothing to do (an exit with nothing to sell)


@dataclass(frozen=True, slots=True)
class OrderResult:
    """The answer to one gateway call.

    Attributes:
        outcome: What happened.
        claim: The claim for the decision (None when nothing was claimed, e.g. an exit on flat).
        order: The broker's order, fetched fresh for a duplicate; None when there is none (yet).
        reason: A sentence for logs.
        error: The broker error behind REJECTED, UNKNOWN or NOT_SENT.
    """

    outcome: Outcome
    claim: Claim | None
    order: BrokerOrder | None
    reason: str
    error: BrokerError | None = None

    @property
    def sent(self) -> bool:
        """True when this call placed the order."""
        return self.outcome is Outcome.SUBMITTED


def is_position_rejection(error: BrokerError) -> bool:
    """True for a refusal saying the broker holds less than the order assumed (a phantom candidate)."""
    return isinstance(error, OrderRejected) and error.kind.is_position


def request_for(claim: Claim) -> OrderRequest:
    """Return the broker request for a claim: its own client_order_id and sized quantity."""
    spec = claim.spec
    return OrderRequest(
        symbol=claim.symbol,
        side=Side(claim.side),
        client_order_id=claim.client_order_id,
        qty=claim.order_qty if claim.order_qty is not None else spec.qty,
        notional=spec.notional,
        order_type=spec.order_type,
        time_in_force=spec.time_in_force,
        limit_price=spec.limit_price,
        stop_price=spec.stop_price,
        position_intent=spec.position_intent,
        extended_hours=spec.extended_hours,
    )


def adopt_order(store: ClaimStore, claim: Claim, order: BrokerOrder, why: str) -> Claim:
    """Move `claim` to the broker's state for `order`; a no-op when nothing changed.

    A move the table forbids (e.g. a terminal claim) is left alone: broker evidence can only
    move a claim forward.
    """
    state = state_for_order(order.status, order.filled_qty > 0)
    unchanged = state is claim.state and order.filled_qty == claim.filled_qty
    if (unchanged and claim.broker_order_id) or state not in TRANSITIONS[claim.state]:
        return claim
    try:
        return store.transition(
            claim,
            state,
            reason=f"{why}: {order.status}",
            broker_order_id=order.id,
            filled_qty=max(order.filled_qty, claim.filled_qty),
            filled_avg_price=order.filled_avg_price,
            order_qty=order.qty,
        )
    except LeaseLost:
        fresh = store.get(claim.key)
        assert fresh is not None
        return fresh if fresh.state is claim.state else adopt_order(store, fresh, order, why)


def send_claim(broker: Broker, store: ClaimStore, claim: Claim) -> OrderResult:
    """Send a PENDING claim and record the answer; an ambiguous answer gets one lookup."""
    try:
        order = broker.submit_order(request_for(claim))
    except OrderRejected as exc:
        if exc.kind is RejectKind.DUPLICATE_ID:
            # "client_order_id must be unique": the order exists (an earlier send landed late).
            # Whatever the broker adapter did not adopt is resolved like any ambiguous answer.
            return _unknown(broker, store, claim, exc)
        claim = store.transition(
            claim,
            ClaimState.REJECTED,
            reason=f"rejected ({exc.kind}): {exc.message}",
            detail={"status": exc.status_code, "code": exc.code, "body": exc.body},
        )
        return OrderResult(Outcome.REJECTED, claim, None, exc.message, exc)
    except BrokerUnavailable as exc:
        claim = store.transition(claim, ClaimState.NOT_SENT, reason=f"not sent: {exc.message}")
        return OrderResult(Outcome.NOT_SENT, claim, None, exc.message, exc)
    except OutcomeUnknown as exc:
        return _unknown(broker, store, claim, exc)
    claim = adopt_order(store, claim, order, "acknowledged by the broker")
    return OrderResult(Outcome.SUBMITTED, claim, order, f"sent as {claim.client_order_id}")


def _unknown(broker: Broker, store: ClaimStore, claim: Claim, exc: BrokerError) -> OrderResult:
    """Record an ambiguous send as UNKNOWN, then look it up once: most such orders landed."""
    claim = store.transition(
        claim,
        ClaimState.UNKNOWN,
        reason=f"outcome unknown: {exc.message}",
        detail={"status": exc.status_code},
    )
    try:
        found = broker.get_order_by_client_id(claim.client_order_id)
    except BrokerError:
        found = None
    if found is None:
        return OrderResult(Outcome.UNKNOWN, claim, None, exc.message, exc)
    claim = adopt_order(store, claim, found, "found by client_order_id after an ambiguous send")
    return OrderResult(
        Outcome.SUBMITTED, claim, found, f"sent as {claim.client_order_id} (confirmed by lookup)"
    )
