"""A claim: one trading decision as the store recorded it, and the result of claiming it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from tradeguard.domain.frozen import fast_frozen_init
from tradeguard.domain.intents import Kind, OrderSpec
from tradeguard.domain.lifecycle import ACTIVE_STATES, ClaimState
from tradeguard.domain.orders import OrderRequest, RejectKind, Side

__all__ = ["Claim", "ClaimOutcome", "same_order"]


def same_order(stored: dict[str, Any], asked: dict[str, Any]) -> bool:
    """Whether `asked` is the order a claim holds: its terms now, or as first asked.

    A replacement at the broker changes a claim's terms (price, size) but not the decision: the
    terms first asked are kept under ``"first"``, and a late retry of the original call still
    names the same order.
    """
    if asked == stored:
        return True
    first = stored.get("first")
    if first is None:
        return False
    return asked == first or asked == {k: v for k, v in stored.items() if k != "first"}


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Claim:
    """A snapshot of one claim, as read from the store by the call that returned it."""

    key: str
    client_order_id: str
    agent_id: str
    kind: Kind
    symbol: str
    side: Side
    intent: str
    payload: dict[str, Any]
    state: ClaimState
    epoch: int
    owner: str
    lease_expires_at: datetime
    order_qty: Decimal | None
    broker_order_id: str | None
    filled_qty: Decimal
    filled_avg_price: Decimal | None
    turn_id: int | None
    attempts: int
    reason: str
    created_at: datetime
    updated_at: datetime
    reject_kind: RejectKind | None = None  # why the broker refused it, when REJECTED
    # The broker account its client_order_id was claimed on (`tg_claims.coid_scope`, migration
    # 0012): its agent's registered account key then (`ports.coid_scope`), "" when that was not
    # known (an agent of unknown account, every claim from before 0012). None: not read back (a
    # value its creator built before reading the row; its sender's broker is that account).
    # Not compared: the value a creator built and the row read back are the same claim.
    coid_scope: str | None = field(default=None, compare=False)
    # The spec, once read from the payload: a send asks for it twice (the request, the check of
    # the broker's answer). Not part of the value; a store may hand it on to the claim's next
    # version when the payload is the same.
    _spec: OrderSpec | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def spec(self) -> OrderSpec:
        """Return the order the bot asked for."""
        spec = self._spec
        if spec is None:
            spec = OrderSpec.from_payload(self.payload)
            object.__setattr__(self, "_spec", spec)
        return spec

    def request(self) -> OrderRequest:
        """Return the broker request for this claim: its own client_order_id and sized quantity."""
        spec = self.spec
        # Positional, in OrderRequest's field order: every send builds one, and a keyword call
        # costs a fifth more.
        return OrderRequest(
            self.symbol,
            self.side,
            self.client_order_id,
            self.order_qty if self.order_qty is not None else spec.qty,  # qty
            spec.notional,
            spec.order_type,
            spec.time_in_force,
            spec.limit_price,
            spec.stop_price,
            spec.position_intent,
            spec.extended_hours,
            spec.order_class,
            spec.take_profit_limit_price,
            spec.stop_loss_stop_price,
            spec.stop_loss_limit_price,
            spec.trail_price,
            spec.trail_percent,
        )

    def on_other_account(self, account_scope: str) -> bool:
        """Whether the claim was made on a known broker account other than `account_scope`'s.

        `account_scope` is a broker's `ports.coid_scope` ("" when its account is unknown). Such a
        broker's word (found, not found) is no evidence about the claim's order, which was sent
        to the other account: an agent re-pointed to another account keeps its old claims. A
        claim of scope "" or None, or a broker of unknown account, cannot be told apart: False.
        """
        scope = self.coid_scope
        return bool(scope) and bool(account_scope) and scope != account_scope

    @property
    def refused_for_position(self) -> bool:
        """True when the broker refused it because it holds less than the order assumed."""
        return self.state is ClaimState.REJECTED and self.reject_kind is RejectKind.POSITION

    @property
    def is_active(self) -> bool:
        """True while an order may be live at the broker or about to be."""
        return self.state in ACTIVE_STATES

    @property
    def signed_filled_qty(self) -> Decimal:
        """Filled quantity with its effect on the position: buys add, sells subtract."""
        return self.filled_qty if self.side is Side.BUY else -self.filled_qty


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    """The result of `ClaimStore.claim`: the claim, and whether this call created it."""

    claim: Claim
    created: bool
