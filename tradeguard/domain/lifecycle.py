"""The claim lifecycle: states and the one transition table; an illegal move raises.

```
PENDING ──► SUBMITTED ──► PARTIALLY_FILLED ──► FILLED
   │            │                │            CANCELED / EXPIRED
   │            └────────────────┴──────────► REJECTED
   ├──► UNKNOWN ──(broker evidence only)──► any broker state, PENDING (resend same id), NOT_SENT
   ├──► REJECTED ──► PENDING   (a refused POST retried, an exit released: nothing was placed)
   └──► NOT_SENT ──► PENDING   (the same decision tried again: nothing was placed)
                └──► any broker state (an order found under its client_order_id after all)
```
"""

from __future__ import annotations

import enum

from tradeguard.domain.orders import OrderStatus
from tradeguard.errors import IllegalTransition

__all__ = [
    "ACKNOWLEDGED_STATES",
    "ACTIVE_STATES",
    "TRANSITIONS",
    "ClaimState",
    "check_transition",
    "state_for_order",
]


class ClaimState(enum.StrEnum):
    """Where one claim stands."""

    PENDING = "PENDING"  # recorded durably, about to be sent (or being sent)
    SUBMITTED = "SUBMITTED"  # the broker acknowledged the order
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"  # the broker said no; nothing placed
    UNKNOWN = "UNKNOWN"  # sent, no definite answer; only broker evidence moves it
    NOT_SENT = "NOT_SENT"  # definitely never reached the broker

    @property
    def is_terminal(self) -> bool:
        """True when no transition leaves this state except a deliberate re-send."""
        return self in (ClaimState.FILLED, ClaimState.CANCELED, ClaimState.EXPIRED)


_BROKER_STATES = frozenset(
    {
        ClaimState.SUBMITTED,
        ClaimState.PARTIALLY_FILLED,
        ClaimState.FILLED,
        ClaimState.CANCELED,
        ClaimState.EXPIRED,
        ClaimState.REJECTED,
    }
)

TRANSITIONS: dict[ClaimState, frozenset[ClaimState]] = {
    # The send either got a definite answer (any broker state), an ambiguous one (UNKNOWN), or
    # never left the process (NOT_SENT).
    ClaimState.PENDING: _BROKER_STATES | {ClaimState.UNKNOWN, ClaimState.NOT_SENT},
    # SUBMITTED -> SUBMITTED records a replacement: the order under the claim changed (a new
    # broker order id and size), the decision and its client_order_id did not.
    ClaimState.SUBMITTED: _BROKER_STATES,
    # PARTIALLY_FILLED -> PARTIALLY_FILLED records a further partial fill.
    ClaimState.PARTIALLY_FILLED: frozenset(
        {ClaimState.PARTIALLY_FILLED, ClaimState.FILLED, ClaimState.CANCELED, ClaimState.EXPIRED}
    ),
    # Time alone never leaves UNKNOWN (G2): found at the broker -> adopt its state; absent after
    # the grace period on two probes -> PENDING to resend with the SAME client_order_id (the
    # broker refuses a second copy), or NOT_SENT when the decision is abandoned.
    ClaimState.UNKNOWN: _BROKER_STATES | {ClaimState.PENDING, ClaimState.NOT_SENT},
    # Nothing was placed, so sending the same decision again cannot duplicate it. Used when the
    # reconciler releases an exit the broker refused while it still holds shares, and when a bot
    # retries an order whose POST was refused (not one the broker created as rejected: that one
    # has an order under its id and stays final; see `retries._refusal_placed_nothing`). A refusal says
    # only that *that* POST placed nothing: an earlier send of the same client_order_id (a sender
    # frozen past its lease check) can still land, and its order is adopted (G2: evidence wins).
    ClaimState.REJECTED: _BROKER_STATES - {ClaimState.REJECTED} | {ClaimState.PENDING},
    # NOT_SENT is a conclusion from absence, and absence can be wrong: a sender frozen between its
    # claim and its POST may place the order after another worker concluded it never would. An
    # order later found under the claim's client_order_id is adopted (G2: evidence wins).
    ClaimState.NOT_SENT: _BROKER_STATES | {ClaimState.PENDING},
    ClaimState.FILLED: frozenset(),
    ClaimState.CANCELED: frozenset(),
    ClaimState.EXPIRED: frozenset(),
}

# States in which an order may still be live (or may exist) at the broker.
ACTIVE_STATES = frozenset(
    {ClaimState.PENDING, ClaimState.SUBMITTED, ClaimState.PARTIALLY_FILLED, ClaimState.UNKNOWN}
)
# Active states the broker acknowledged: an exit's unfilled shares are out of `qty_available`.
ACKNOWLEDGED_STATES = frozenset({ClaimState.SUBMITTED, ClaimState.PARTIALLY_FILLED})


def check_transition(src: ClaimState, dst: ClaimState) -> None:
    """Raise IllegalTransition unless the table allows `src -> dst`."""
    if dst not in TRANSITIONS[src]:
        allowed = ", ".join(sorted(TRANSITIONS[src])) or "nothing (terminal)"
        raise IllegalTransition(f"claim cannot move {src} -> {dst}; from {src} it may go to {allowed}")


_ORDER_TO_CLAIM = {
    OrderStatus.FILLED: ClaimState.FILLED,
    OrderStatus.PARTIALLY_FILLED: ClaimState.PARTIALLY_FILLED,
    OrderStatus.CANCELED: ClaimState.CANCELED,
    OrderStatus.EXPIRED: ClaimState.EXPIRED,
    OrderStatus.REJECTED: ClaimState.REJECTED,
}


def state_for_order(status: OrderStatus, filled_qty_positive: bool) -> ClaimState:
    """Map a broker order status to the claim state that adopts it.

    A canceled or expired order that filled in part keeps its fills: the ledger reads
    `filled_qty`, the state says the order is over. A replaced order is not over: its decision
    lives on in the replacement (`BrokerOrder.replaced_by`), so it maps to a live state, and a
    later lookup by the claim's client_order_id (which follows the chain) finds how it ended.
    Nor is a `done_for_day` order: Alpaca says it "will not receive further updates until the
    next trading day", and a GTC order then trades again.
    """
    state = _ORDER_TO_CLAIM.get(status)
    if state is not None:
        return state
    return ClaimState.PARTIALLY_FILLED if filled_qty_positive else ClaimState.SUBMITTED
