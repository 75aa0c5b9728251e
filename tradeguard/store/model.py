"""What the store hands out: `Claim` snapshots, `ClaimOutcome`, and their decoding from rows."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from tradeguard.intents import Kind, OrderSpec
from tradeguard.lifecycle import ACTIVE_STATES, ClaimState

__all__ = ["CLAIM_COLUMNS", "MUTABLE_COLUMNS", "Claim", "ClaimOutcome", "new_owner_token"]

# Column order of every raw claim SELECT; `Claim.from_values` reads tuples in this order.
CLAIM_COLUMNS = (
    "claim_key", "client_order_id", "agent_id", "kind", "symbol", "side", "intent", "payload",
    "payload_hash", "state", "epoch", "owner", "lease_expires_at", "order_qty", "broker_order_id",
    "filled_qty", "filled_avg_price", "turn_id", "attempts", "reason", "created_at", "updated_at",
)  # fmt: skip
# The columns a transition or takeover may change; the rest never change after the claim.
MUTABLE_COLUMNS = (
    "state", "epoch", "owner", "lease_expires_at", "order_qty", "broker_order_id", "filled_qty",
    "filled_avg_price", "turn_id", "attempts", "reason", "updated_at",
)  # fmt: skip

Decode = Callable[[Any], datetime]
# Enum lookups by value: a dict hit costs a tenth of calling the enum.
_KINDS = {k.value: k for k in Kind}
_STATES = {s.value: s for s in ClaimState}


def new_owner_token() -> str:
    """Return a fresh worker identity for leases."""
    return uuid.uuid4().hex


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


@dataclass(frozen=True, slots=True)
class Claim:
    """A snapshot of one claim row, read from the database by the call that returned it."""

    key: str
    client_order_id: str
    agent_id: str
    kind: Kind
    symbol: str
    side: str
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

    @property
    def spec(self) -> OrderSpec:
        """Return the order the bot asked for."""
        return OrderSpec.from_payload(self.payload)

    @property
    def is_active(self) -> bool:
        """True while an order may be live at the broker or about to be."""
        return self.state in ACTIVE_STATES

    @property
    def signed_filled_qty(self) -> Decimal:
        """Filled quantity with its effect on the position: buys add, sells subtract."""
        return self.filled_qty if self.side == "buy" else -self.filled_qty

    @classmethod
    def from_row(cls, row: Any) -> Claim:
        """Build a snapshot from a SQLAlchemy row (datetimes already decoded)."""
        m = row._mapping
        return cls.from_values([m[c] for c in CLAIM_COLUMNS], lambda v: v)

    @classmethod
    def from_values(cls, v: Sequence[Any], dt: Decode) -> Claim:
        """Build a snapshot from values in `CLAIM_COLUMNS` order; `dt` decodes stored datetimes."""
        return cls(
            key=v[0],
            client_order_id=v[1],
            agent_id=v[2],
            kind=_KINDS[v[3]],
            symbol=v[4],
            side=v[5],
            intent=v[6],
            payload=json.loads(v[7]),
            state=_STATES[v[9]],
            epoch=int(v[10]),
            owner=v[11],
            lease_expires_at=dt(v[12]),
            order_qty=_dec(v[13]),
            broker_order_id=v[14],
            filled_qty=Decimal(v[15]),
            filled_avg_price=_dec(v[16]),
            turn_id=None if v[17] is None else int(v[17]),
            attempts=int(v[18]),
            reason=v[19],
            created_at=dt(v[20]),
            updated_at=dt(v[21]),
        )

    def with_mutable(self, v: Sequence[Any], dt: Decode) -> Claim:
        """Return this claim with the values of `MUTABLE_COLUMNS`, as read back from the database."""
        return Claim(
            key=self.key,
            client_order_id=self.client_order_id,
            agent_id=self.agent_id,
            kind=self.kind,
            symbol=self.symbol,
            side=self.side,
            intent=self.intent,
            payload=self.payload,
            state=_STATES[v[0]],
            epoch=int(v[1]),
            owner=v[2],
            lease_expires_at=dt(v[3]),
            order_qty=_dec(v[4]),
            broker_order_id=v[5],
            filled_qty=Decimal(v[6]),
            filled_avg_price=_dec(v[7]),
            turn_id=None if v[8] is None else int(v[8]),
            attempts=int(v[9]),
            reason=v[10],
            created_at=self.created_at,
            updated_at=dt(v[11]),
        )


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    """The result of `ClaimStore.claim`: the claim, and whether this call created it."""

    claim: Claim
    created: bool
