"""Audit records: what every claim, skip, state change and reconcile action leaves behind (G6)."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tradeguard.domain.claims import Claim

__all__ = ["AuditAction", "AuditRecord", "claim_fields"]


class AuditAction(enum.StrEnum):
    """What an audit record describes."""

    CLAIM = "claim"  # a new claim was recorded
    SKIP = "skip"  # a duplicate was blocked or an exit had nothing to sell
    TRANSITION = "transition"  # a claim changed state
    TAKEOVER = "takeover"  # a worker took over a claim whose lease lapsed
    LEDGER = "ledger"  # a turn opened, changed or closed
    RECONCILE = "reconcile"  # the reconciler acted or reported
    ERROR = "error"  # a failure that changed nothing, recorded for the record


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit row."""

    id: int
    at: datetime
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
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AuditRecord:
        """Build a record from a database row."""
        values = dict(row)
        values["action"] = AuditAction(values["action"])
        values["detail"] = json.loads(values["detail"]) if values.get("detail") else {}
        return cls(**values)


def claim_fields(claim: Claim | None, fields: dict[str, Any]) -> dict[str, Any]:
    """Return the audit fields of a record about `claim`: the claim's own fields win over `fields`.

    Without a claim (an exit with nothing to sell), the caller's kind, symbol and side stand.
    """
    if claim is None:
        return fields
    return {
        **fields,
        "kind": claim.kind.value, "symbol": claim.symbol, "side": claim.side, "state": claim.state.value,
        "client_order_id": claim.client_order_id, "claim_key": claim.key,
    }  # fmt: skip
