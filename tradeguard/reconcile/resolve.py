"""An operator resolves one claim: filled, not sent, or canceled, checked against the broker first.

G2 says time alone never resolves `UNKNOWN`; an operator who looked (at the broker's site, the
fills report, a phone call) is evidence, and this is where it enters. It enters the way broker
evidence does: a claim resolved as filled moves through `ClaimLedger.transition` with its fill,
so the ledger moves exactly as it would for a fill the reconciler adopted, in the same atomic step
as the claim and its audit record, and the audit record names who resolved it and why (G6).

When a broker is given, it is asked first, by the claim's client_order_id, and it wins:

| resolution | broker has no order          | broker's order is filled | canceled / expired | still open |
|------------|------------------------------|--------------------------|--------------------|------------|
| filled     | refused                      | adopt its fill           | refused            | refused    |
| not-sent   | NOT_SENT                     | refused                  | refused            | refused    |
| canceled   | refused (say not-sent)       | refused                  | adopt it (+fills)  | refused    |

A failed broker read raises the broker's error and changes nothing: a read that failed is never
taken as "no such order" (G4). Without a broker the operator's word alone moves the claim, and the
audit record says no broker was asked. The lifecycle table (`domain.lifecycle`) still applies: a
FILLED claim cannot be re-resolved, and a PENDING claim whose sender still holds its lease is left
to that sender (once the lease lapses it is taken over, which makes it UNKNOWN, then resolved).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradeguard.domain import BrokerOrder, Claim
from tradeguard.domain.lifecycle import TRANSITIONS, ClaimState, state_for_order
from tradeguard.errors import ResolutionRefused
from tradeguard.execution import held_elsewhere, mismatch, track_legs
from tradeguard.ports import Broker, ClaimLedger

__all__ = ["Resolution", "Resolved", "resolve_claim"]

_OVER = frozenset({ClaimState.CANCELED, ClaimState.EXPIRED})


class Resolution(enum.StrEnum):
    """What the operator says became of a claim's order."""

    FILLED = "filled"
    NOT_SENT = "not-sent"
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class Resolved:
    """A resolution that was applied.

    Attributes:
        before: The claim as it stood.
        claim: The claim as it stands now.
        evidence: What the broker said, or that no broker was asked.
        order: The broker's order under the claim's client_order_id, when one was read.
    """

    before: Claim
    claim: Claim
    evidence: str
    order: BrokerOrder | None


def _check_claim(store: ClaimLedger, claim: Claim, resolution: Resolution, actor: str) -> Claim:
    """Return the claim ready to move, taking over a PENDING one whose lease lapsed."""
    if claim.state.is_terminal:
        raise ResolutionRefused(
            f"claim {claim.client_order_id} is already {claim.state}; a terminal claim is not re-resolved"
        )
    if claim.state is ClaimState.PENDING:
        if claim.lease_expires_at > store.clock.now():
            raise ResolutionRefused(
                f"claim {claim.client_order_id} is PENDING and its sender's lease runs until "
                f"{claim.lease_expires_at:%Y-%m-%d %H:%M:%S %Z}; leave it to the sender"
            )
        claim = store.take_over(claim, f"operator:{actor}")  # PENDING -> UNKNOWN, audited
    target = {
        Resolution.FILLED: ClaimState.FILLED,
        Resolution.NOT_SENT: ClaimState.NOT_SENT,
        Resolution.CANCELED: ClaimState.CANCELED,
    }[resolution]
    if target not in TRANSITIONS[claim.state]:
        raise ResolutionRefused(f"claim {claim.client_order_id} is {claim.state}; it cannot become {target}")
    return claim


def _broker_target(claim: Claim, resolution: Resolution, order: BrokerOrder | None) -> ClaimState:
    """Return the state the broker's evidence supports, or raise what contradicts the operator."""
    coid = claim.client_order_id
    if order is None:
        if resolution is Resolution.NOT_SENT:
            return ClaimState.NOT_SENT
        advice = "; resolve it --as not-sent" if resolution is Resolution.CANCELED else ""
        raise ResolutionRefused(f"the broker has no order under {coid}, so it was not {resolution}{advice}")
    seen = f"the broker has order {order.id} under {coid}: {order.status}, {order.filled_qty} filled"
    if resolution is Resolution.NOT_SENT:
        raise ResolutionRefused(f"{seen}; it was sent (tradeguard reconcile adopts it)")
    problem = mismatch(claim, order)
    if problem is not None:
        raise ResolutionRefused(problem)
    state = state_for_order(order.status, order.filled_qty > 0)
    if resolution is Resolution.FILLED and state is ClaimState.FILLED:
        return state
    if resolution is Resolution.CANCELED and state in _OVER:
        return state
    raise ResolutionRefused(f"{seen}, not {resolution}")


def resolve_claim(
    store: ClaimLedger,
    claim: Claim,
    resolution: Resolution,
    *,
    reason: str,
    actor: str,
    broker: Broker | None = None,
    filled_qty: Decimal | None = None,
    filled_avg_price: Decimal | None = None,
) -> Resolved:
    """Resolve `claim` as the operator says, after asking `broker` (when given) what it holds.

    Args:
        store: The claim store.
        claim: The claim, as just read.
        resolution: What the operator says happened.
        reason: Why, for the audit log (required).
        actor: Who resolves it, for the audit log (required).
        broker: The broker to ask first; None resolves on the operator's word alone.
        filled_qty: Filled quantity; without a broker, what a filled (default: the order's
            quantity) or canceled (default: nothing more) order filled. With a broker it must
            agree with the broker's.
        filled_avg_price: Average fill price, without a broker (the broker's wins otherwise).

    Raises:
        ResolutionRefused: The broker's evidence or the claim's state contradicts the resolution.
        BrokerError: The broker could not be read; nothing changed.
        LeaseLost: The claim moved while it was being resolved; nothing changed.
    """
    if not reason.strip() or not actor.strip():
        raise ResolutionRefused("a resolution needs a reason and an actor for the audit log")
    before = claim
    claim = _check_claim(store, claim, resolution, actor)
    detail: dict[str, Any] = {"actor": actor, "operator_reason": reason, "resolution": resolution.value}
    order: BrokerOrder | None = None
    fields: dict[str, Any] = {}
    if broker is not None:
        # Ids are unique per account: the broker's order under the id is the claim's only if the
        # claim holds the id on the broker's account (another account's broker proves nothing).
        elsewhere = held_elsewhere(store, claim, broker)
        if elsewhere is not None:
            raise ResolutionRefused(f"{elsewhere}; resolve it with its own account's broker")
        order = broker.get_order_by_client_id(claim.client_order_id)
        target = _broker_target(claim, resolution, order)
        if order is None:
            evidence = f"the broker has no order under {claim.client_order_id}"
        else:
            if filled_qty is not None and filled_qty != order.filled_qty:
                raise ResolutionRefused(
                    f"the broker's order {order.id} filled {order.filled_qty}, not {filled_qty}"
                )
            evidence = f"the broker's order {order.id} is {order.status}, {order.filled_qty} filled"
            if order.legs:
                track_legs(store, claim, order)
            fields = {
                "broker_order_id": order.id, "filled_qty": max(order.filled_qty, claim.filled_qty),
                "filled_avg_price": order.filled_avg_price, "order_qty": order.qty,
            }  # fmt: skip
            detail["broker_order_id"] = order.id
    else:
        target, evidence = _word_alone(claim, resolution, filled_qty, filled_avg_price, fields)
    detail["evidence"] = evidence
    moved = store.transition(
        claim, target, reason=f"resolved as {resolution} by {actor}: {reason}", detail=detail, **fields
    )
    return Resolved(before, moved, evidence, order)


def _word_alone(
    claim: Claim,
    resolution: Resolution,
    filled_qty: Decimal | None,
    filled_avg_price: Decimal | None,
    fields: dict[str, Any],
) -> tuple[ClaimState, str]:
    """Fill `fields` for a resolution on the operator's word; return the target and the evidence."""
    evidence = "no broker asked: the operator's word"
    if resolution is Resolution.NOT_SENT:
        if filled_qty:
            raise ResolutionRefused("an order that was never sent filled nothing; drop --qty")
        return ClaimState.NOT_SENT, evidence
    if resolution is Resolution.FILLED:
        qty = filled_qty if filled_qty is not None else claim.order_qty or claim.spec.qty
        if qty is None or qty <= 0:
            raise ResolutionRefused(
                f"claim {claim.client_order_id} names no share quantity (a notional order?); "
                "say how many filled"
            )
        fields.update(filled_qty=qty, filled_avg_price=filled_avg_price)
    elif filled_qty is not None:
        fields["filled_qty"] = filled_qty  # a canceled order that filled in part keeps its fills
    if fields.get("filled_qty") is not None and fields["filled_qty"] < claim.filled_qty:
        raise ResolutionRefused(
            f"claim {claim.client_order_id} already filled {claim.filled_qty}; fills never shrink"
        )
    return (ClaimState.FILLED if resolution is Resolution.FILLED else ClaimState.CANCELED), evidence
