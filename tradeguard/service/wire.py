"""Pydantic models of the native `/v1` bodies, so the OpenAPI document says exactly what travels.

The routes convert with `tradeguard.service.codec` (which the client shares); these models only
validate requests and describe answers. Quantities and prices are decimal strings, times ISO
8601 with an offset, enums by value.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tradeguard.domain.audit import AuditAction
from tradeguard.domain.intents import MAX_INTENT_NAME_LEN, Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.domain.orders import RejectKind, Side

__all__ = [
    "AdjustIn",
    "AuditIn",
    "AuditRecordOut",
    "ExitRoomOut",
    "ResendOut",
    "AuditPage",
    "ClaimIn",
    "ClaimList",
    "ClaimOut",
    "ClaimOutcomeOut",
    "CloseTurnIn",
    "CorrectionIn",
    "ErrorOut",
    "ExitIn",
    "ExitOut",
    "FenceOut",
    "IntentIn",
    "LeaseIn",
    "PositionList",
    "PositionOut",
    "ResendExitIn",
    "SettleIn",
    "SkipIn",
    "TransitionIn",
    "VersionIn",
    "WindowIn",
]

DecimalText = Annotated[str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", max_length=40, examples=["6"])]
# Counters and ids the database stores as 64-bit integers.
Count = Annotated[int, Field(ge=0, le=2**62)]
Text = Annotated[str, Field(max_length=2000)]
Owner = Annotated[str, Field(min_length=1, max_length=128, description="the caller's lease identity")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntentIn(_In):
    """One trading decision: `(agent_id, kind, symbol, side, name)`; its key names the claim."""

    agent_id: Annotated[str, Field(max_length=64)]
    kind: Kind
    symbol: Annotated[str, Field(max_length=32)]
    side: Side
    name: Annotated[str, Field(max_length=MAX_INTENT_NAME_LEN)]


class ClaimIn(_In):
    """Claim an intent: insert-if-absent by its key (safe to retry)."""

    intent: IntentIn
    order: dict[str, Any] = Field(description="the order spec as `OrderSpec.as_payload()` writes it")
    owner: Owner
    client_order_id: Annotated[str, Field(max_length=48)] | None = None
    order_qty: DecimalText | None = None
    turn_id: Count | None = None
    reason: Text = ""


class ExitIn(_In):
    """Size an exit from the ledger and the broker's available quantity, and claim it, atomically."""

    intent: IntentIn
    order: dict[str, Any]
    owner: Owner
    broker_available: DecimalText
    reason: Text
    client_order_id: Annotated[str, Field(max_length=48)] | None = None
    broker_read_at: AwareDatetime | None = Field(
        default=None, description="when broker_available was read (exits moved since count as in flight)"
    )


class VersionIn(_In):
    """The claim version the caller read: every move is a compare-and-set on it."""

    state: ClaimState
    epoch: Count
    attempts: Count
    filled_qty: DecimalText
    owner: Owner | None = Field(default=None, description="the owner the caller saw (default: stored)")
    lease_expires_at: AwareDatetime | None = Field(
        default=None, description="the lease the caller saw (default: stored); the fence decides on it"
    )


class TransitionIn(_In):
    """Move a claim to `to` if it is still `expect`; new fills reach the ledger in the same step."""

    expect: VersionIn
    to: ClaimState
    reason: Text
    broker_order_id: Annotated[str, Field(max_length=128)] | None = None
    filled_qty: DecimalText | None = None
    filled_avg_price: DecimalText | None = None
    order_qty: DecimalText | None = None
    owner: Owner | None = None
    detail: dict[str, Any] | None = None
    reject_kind: RejectKind | None = None
    payload: dict[str, Any] | None = None


class LeaseIn(_In):
    """Take over (lease lapsed) or renew (before a late send) the lease of claim version `expect`."""

    expect: VersionIn
    owner: Owner


class ResendExitIn(_In):
    """Re-size an exit that placed nothing and move it back to PENDING."""

    expect: VersionIn
    owner: Owner
    broker_available: DecimalText
    reason: Text
    detail: dict[str, Any] = Field(default_factory=dict)
    broker_read_at: AwareDatetime | None = None


class WindowIn(_In):
    """Open a dedup window for a content key (scoped to the caller's agent)."""

    content_key: Annotated[str, Field(min_length=1, max_length=128)]
    window_secs: Annotated[float, Field(gt=0, le=86400)]
    claim_key: Annotated[str, Field(min_length=1, max_length=128)]


class SkipIn(_In):
    """Audit a blocked duplicate (of claim `claim_key`) or an exit with nothing to sell."""

    agent_id: Annotated[str, Field(max_length=64)]
    reason: Text
    claim_key: Annotated[str, Field(max_length=128)] | None = None
    fields: dict[str, Any] = Field(default_factory=dict)


class AuditIn(_In):
    """Append one audit record (`fields`: kind, symbol, side, qty, state, ..., detail)."""

    action: AuditAction
    agent_id: Annotated[str, Field(max_length=64)]
    reason: Text
    fields: dict[str, Any] = Field(default_factory=dict)


class PositionOut(BaseModel):
    """What one agent holds in one symbol, as one turn (qty signed: short < 0)."""

    agent_id: str
    symbol: str
    qty: DecimalText
    turn_id: Count | None
    opened_at: AwareDatetime | None
    updated_at: AwareDatetime | None = None


class CorrectionIn(_In):
    """Add `delta` to the position read as `expect` (a compare-and-set)."""

    expect: PositionOut
    delta: DecimalText
    reason: Text
    detail: dict[str, Any] = Field(default_factory=dict)


class CloseTurnIn(_In):
    """Close the agent's open turn in `symbol`, only while it is `expect` (when given)."""

    agent_id: Annotated[str, Field(max_length=64)]
    symbol: Annotated[str, Field(max_length=32)]
    reason: Text
    detail: dict[str, Any] | None = None
    expect: PositionOut | None = None


class SettleIn(_In):
    """Set the position to `qty` (an operator's decision), audited with `actor` and `reason`."""

    agent_id: Annotated[str, Field(max_length=64)]
    symbol: Annotated[str, Field(max_length=32)]
    qty: DecimalText
    reason: Text
    actor: Annotated[str, Field(max_length=128)]


class AdjustIn(_In):
    """Add `delta` to the agent's position in `symbol` without a claim."""

    agent_id: Annotated[str, Field(max_length=64)]
    symbol: Annotated[str, Field(max_length=32)]
    delta: DecimalText
    reason: Text


class ClaimOut(BaseModel):
    """A claim snapshot as of the call."""

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
    lease_expires_at: AwareDatetime
    order_qty: DecimalText | None
    broker_order_id: str | None
    filled_qty: DecimalText
    filled_avg_price: DecimalText | None
    turn_id: int | None
    attempts: int
    reason: str
    created_at: AwareDatetime
    updated_at: AwareDatetime
    reject_kind: RejectKind | None = None
    # The broker account the id was claimed on ("" unknown; `Claim.coid_scope`): an agent
    # re-pointed since leaves such claims to that account's broker.
    coid_scope: str | None = None


class ClaimOutcomeOut(BaseModel):
    """The claim, and whether this call created it (201) or found it (200)."""

    claim: ClaimOut
    created: bool


class ClaimList(BaseModel):
    """Claims, oldest first."""

    items: list[ClaimOut]


class ExitRoomOut(BaseModel):
    """How much an exit may ask for now, and why."""

    held: DecimalText
    open_exits: DecimalText
    unacknowledged_exits: DecimalText
    reserved_by_others: DecimalText
    broker_available: DecimalText
    qty: DecimalText


class ExitOut(BaseModel):
    """The exit claimed (or the existing one, then `room` is null); `outcome` null: nothing to sell."""

    outcome: ClaimOutcomeOut | None
    room: ExitRoomOut | None


class ResendOut(BaseModel):
    """The exit moved back to PENDING, or null when nothing is left to sell."""

    claim: ClaimOut | None
    room: ExitRoomOut


class FenceOut(BaseModel):
    """The claim after the fence; `renewed` false: the lease was fresh and nothing was written."""

    claim: ClaimOut
    renewed: bool


class PositionList(BaseModel):
    """Ledger positions."""

    items: list[PositionOut]


class AuditRecordOut(BaseModel):
    """One audit record."""

    id: int
    at: AwareDatetime
    agent_id: str
    action: AuditAction
    reason: str
    kind: str | None = None
    symbol: str | None = None
    side: str | None = None
    qty: str | None = None
    state: str | None = None
    prev_state: str | None = None
    client_order_id: str | None = None
    claim_key: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class AuditPage(BaseModel):
    """One page of audit records (ids above `after_id`); `next_after_id` pages on, null at the end."""

    items: list[AuditRecordOut]
    next_after_id: int | None


class ErrorOut(BaseModel):
    """Every error of the native routes: a machine-readable `code` and a sentence."""

    code: str
    message: str
