"""How claims are stored: the column lists of `tg_claims` and the decoding of its rows by name."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from tradeguard.domain.claims import Claim
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.domain.orders import RejectKind, Side

__all__ = [
    "CLAIM_COLUMNS",
    "MUTABLE_COLUMNS",
    "Decode",
    "apply_mutable",
    "claim_from_row",
    "decode_claim",
    "new_owner_token",
]

# Column order of every raw claim SELECT; `decode_claim` reads tuples in this order, by name.
CLAIM_COLUMNS = (
    "claim_key", "client_order_id", "agent_id", "kind", "symbol", "side", "intent", "payload",
    "payload_hash", "state", "epoch", "owner", "lease_expires_at", "order_qty", "broker_order_id",
    "filled_qty", "filled_avg_price", "turn_id", "attempts", "reason", "created_at", "updated_at",
    "reject_kind", "coid_scope",
)  # fmt: skip
# The columns a transition or takeover may change; the rest never change after the claim.
MUTABLE_COLUMNS = (
    "state", "epoch", "owner", "lease_expires_at", "order_qty", "broker_order_id", "filled_qty",
    "filled_avg_price", "turn_id", "attempts", "reason", "updated_at", "reject_kind",
)  # fmt: skip

Decode = Callable[[Any], datetime]
# Enum lookups by value: a dict hit costs a tenth of calling the enum.
_KINDS = {k.value: k for k in Kind}
_STATES = {s.value: s for s in ClaimState}
_SIDES = {s.value: s for s in Side}
_REJECTS = {r.value: r for r in RejectKind}


def new_owner_token() -> str:
    """Return a fresh worker identity for leases."""
    return uuid.uuid4().hex


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


# Column positions resolved by name once: rows are read by name, at the cost of an index.
_C = {name: i for i, name in enumerate(CLAIM_COLUMNS)}
_M = {name: i for i, name in enumerate(MUTABLE_COLUMNS)}


def _build(
    fixed: Claim | Sequence[Any],
    v: Sequence[Any],
    at: dict[str, int],
    dt: Decode,
    payload: dict[str, Any] | None = None,
) -> Claim:
    """Build a Claim: immutable fields from `fixed` (a claim or a full row), the rest from `v`.

    `at` names the position of each mutable column in `v`. `payload`: the row's payload, parsed
    already (see `decode_claim`).
    """
    if isinstance(fixed, Claim):
        key, coid, agent, kind, symbol, side, intent = (
            fixed.key, fixed.client_order_id, fixed.agent_id, fixed.kind, fixed.symbol, fixed.side,
            fixed.intent,
        )  # fmt: skip
        payload, created, scope = fixed.payload, fixed.created_at, fixed.coid_scope
    else:
        key, coid, agent = fixed[_C["claim_key"]], fixed[_C["client_order_id"]], fixed[_C["agent_id"]]
        kind, symbol, side = _KINDS[fixed[_C["kind"]]], fixed[_C["symbol"]], _SIDES[fixed[_C["side"]]]
        intent = fixed[_C["intent"]]
        if payload is None:
            payload = json.loads(fixed[_C["payload"]])
        created, scope = dt(fixed[_C["created_at"]]), fixed[_C["coid_scope"]]
    turn_id, kind_of_refusal = v[at["turn_id"]], v[at["reject_kind"]]
    return Claim(
        key=key, client_order_id=coid, agent_id=agent, kind=kind, symbol=symbol, side=side,
        intent=intent, payload=payload,
        state=_STATES[v[at["state"]]],
        epoch=int(v[at["epoch"]]),
        owner=v[at["owner"]],
        lease_expires_at=dt(v[at["lease_expires_at"]]),
        order_qty=_dec(v[at["order_qty"]]),
        broker_order_id=v[at["broker_order_id"]],
        filled_qty=Decimal(v[at["filled_qty"]]),
        filled_avg_price=_dec(v[at["filled_avg_price"]]),
        turn_id=None if turn_id is None else int(turn_id),
        attempts=int(v[at["attempts"]]),
        reason=v[at["reason"]],
        created_at=created,
        updated_at=dt(v[at["updated_at"]]),
        reject_kind=None if kind_of_refusal is None else _REJECTS[kind_of_refusal],
        coid_scope=scope,
    )  # fmt: skip


def decode_claim(values: Sequence[Any], dt: Decode, payload: dict[str, Any] | None = None) -> Claim:
    """Build a claim from values in `CLAIM_COLUMNS` order; `dt` decodes stored datetimes.

    `payload`: a dict equal to what the row's payload text parses to, for a caller that knows it
    (a retry whose asked payload has the very text stored): the claim holds it, unparsed.
    """
    return _build(values, values, _C, dt, payload)


def claim_from_row(row: Any) -> Claim:
    """Build a claim from a SQLAlchemy row (datetimes already decoded)."""
    m = row._mapping
    return decode_claim([m[c] for c in CLAIM_COLUMNS], lambda v: v)


def apply_mutable(claim: Claim, values: Sequence[Any], dt: Decode) -> Claim:
    """Return `claim` with the values of `MUTABLE_COLUMNS` (in that order), as read back from the database."""
    return _build(claim, values, _M, dt)
