"""The audit log: append-only records of every claim, skip, transition and reconcile action (G6).

Records are written only inside the transaction that makes the change they describe, so a change
without its record (or a record without its change) cannot exist. Reading is paged and filtered;
`to_dataframe` and `to_csv` export a query.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Select, select

from tradeguard.store.schema import audit

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AuditAction", "AuditQuery", "AuditRecord"]


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


def write_audit(
    conn: Connection,
    *,
    at: datetime,
    agent_id: str,
    action: AuditAction,
    reason: str,
    kind: str | None = None,
    symbol: str | None = None,
    side: str | None = None,
    qty: object = None,
    state: str | None = None,
    prev_state: str | None = None,
    client_order_id: str | None = None,
    claim_key: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Append one record inside the caller's transaction."""
    conn.execute(
        audit.insert(),
        {
            "at": at,
            "agent_id": agent_id,
            "action": action.value,
            "reason": reason,
            "kind": kind,
            "symbol": symbol,
            "side": side,
            "qty": None if qty is None else str(qty),
            "state": state,
            "prev_state": prev_state,
            "client_order_id": client_order_id,
            "claim_key": claim_key,
            "detail": json.dumps(dict(detail), default=str, sort_keys=True) if detail else None,
        },
    )


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters for reading the audit log; every field is optional.

    Attributes:
        agent_id: Only this agent.
        actions: Only these actions (e.g. ``("skip",)``).
        kind: "entry" or "exit".
        state: Only records whose resulting claim state is this.
        symbol: Only this symbol.
        since: Records at or after this time (aware).
        until: Records strictly before this time (aware).
        client_order_id: Only this order.
    """

    agent_id: str | None = None
    actions: tuple[str, ...] = ()
    kind: str | None = None
    state: str | None = None
    symbol: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    client_order_id: str | None = None

    def statement(self) -> Select[Any]:
        """Return the SELECT for these filters, oldest first."""
        stmt = select(audit)
        c = audit.c
        if self.agent_id is not None:
            stmt = stmt.where(c.agent_id == self.agent_id)
        if self.actions:
            stmt = stmt.where(c.action.in_([AuditAction(a).value for a in self.actions]))
        if self.kind is not None:
            stmt = stmt.where(c.kind == self.kind)
        if self.state is not None:
            stmt = stmt.where(c.state == self.state)
        if self.symbol is not None:
            stmt = stmt.where(c.symbol == self.symbol)
        if self.since is not None:
            stmt = stmt.where(c.at >= self.since)
        if self.until is not None:
            stmt = stmt.where(c.at < self.until)
        if self.client_order_id is not None:
            stmt = stmt.where(c.client_order_id == self.client_order_id)
        return stmt.order_by(c.id)


def read_page(conn: Connection, query: AuditQuery, *, after_id: int, limit: int) -> list[AuditRecord]:
    """Return up to `limit` records with id greater than `after_id` (keyset paging)."""
    stmt = query.statement().where(audit.c.id > after_id).limit(limit)
    return [AuditRecord.from_row(r._mapping) for r in conn.execute(stmt)]


def records_to_dataframe(records: Iterator[AuditRecord]) -> pd.DataFrame:
    """Return records as a DataFrame with one column per field (detail as JSON text)."""
    import pandas as pd

    columns = [f for f in AuditRecord.__dataclass_fields__]
    rows = []
    for rec in records:
        row = asdict(rec)
        row["action"] = rec.action.value
        row["detail"] = json.dumps(rec.detail, sort_keys=True, default=str) if rec.detail else ""
        rows.append(row)
    frame = pd.DataFrame(rows, columns=columns)
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame
