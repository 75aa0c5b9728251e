"""How claims are stored: the column lists of `tg_claims` and the decoding of its rows by name."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
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
    "reject_kind",
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


def new_owner_token() -> str:
    """Return a fresh worker identity for leases."""
    return uuid.uuid4().hex


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _mutable(r: dict[str, Any], dt: Decode) -> dict[str, Any]:
    return {
        "state": _STATES[r["state"]],
        "epoch": int(r["epoch"]),
        "owner": r["owner"],
        "lease_expires_at": dt(r["lease_expires_at"]),
        "order_qty": _dec(r["order_qty"]),
        "broker_order_id": r["broker_order_id"],
        "filled_qty": Decimal(r["filled_qty"]),
        "filled_avg_price": _dec(r["filled_avg_price"]),
        "turn_id": None if r["turn_id"] is None else int(r["turn_id"]),
        "attempts": int(r["attempts"]),
        "reason": r["reason"],
        "updated_at": dt(r["updated_at"]),
        "reject_kind": None if r["reject_kind"] is None else RejectKind(r["reject_kind"]),
    }


def decode_claim(values: Sequence[Any], dt: Decode) -> Claim:
    """Build a claim from values in `CLAIM_COLUMNS` order; `dt` decodes stored datetimes."""
    r = dict(zip(CLAIM_COLUMNS, values, strict=True))
    return Claim(
        key=r["claim_key"],
        client_order_id=r["client_order_id"],
        agent_id=r["agent_id"],
        kind=_KINDS[r["kind"]],
        symbol=r["symbol"],
        side=_SIDES[r["side"]],
        intent=r["intent"],
        payload=json.loads(r["payload"]),
        created_at=dt(r["created_at"]),
        **_mutable(r, dt),
    )


def claim_from_row(row: Any) -> Claim:
    """Build a claim from a SQLAlchemy row (datetimes already decoded)."""
    m = row._mapping
    return decode_claim([m[c] for c in CLAIM_COLUMNS], lambda v: v)


def apply_mutable(claim: Claim, values: Sequence[Any], dt: Decode) -> Claim:
    """Return `claim` with the values of `MUTABLE_COLUMNS` (in that order), as read back from the database."""
    return replace(claim, **_mutable(dict(zip(MUTABLE_COLUMNS, values, strict=True)), dt))
