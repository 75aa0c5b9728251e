"""The audit log: append-only records of every claim, skip, transition and reconcile action (G6).

Records are written only inside the transaction that makes the change they describe, so a change
without its record (or a record without its change) cannot exist. Reading is paged and filtered;
`records_to_dataframe` and `records_to_csv` export a query.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import Connection, Select, select

from tradeguard.domain.audit import AuditAction, AuditRecord
from tradeguard.domain.orders import crypto_pair
from tradeguard.store.schema import audit

if TYPE_CHECKING:
    import pandas as pd

    from tradeguard.domain.claims import Claim
    from tradeguard.store.connections import Tx

__all__ = [
    "AuditQuery",
    "pages",
    "read_page",
    "records_to_csv",
    "write_records_csv",
    "records_to_dataframe",
    "skip_values",
    "write_audit",
]


# One encoder for every record: json.dumps with options builds a new JSONEncoder per call.
_encode_detail = json.JSONEncoder(default=str, sort_keys=True).encode

# A record's columns, in the order of `INSERT`'s values (and of `write_audit`'s return).
COLUMNS = (
    "at", "agent_id", "action", "reason", "kind", "symbol", "side", "qty", "state", "prev_state",
    "client_order_id", "claim_key", "detail",
)  # fmt: skip
INSERT = f"INSERT INTO tg_audit ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"  # noqa: S608 - the module's own column names


def detail_text(detail: Mapping[str, Any] | None) -> str | None:
    """Return a record's detail as the text `write_audit` stores (None for none)."""
    return _encode_detail(detail if type(detail) is dict else dict(detail)) if detail else None


def _plain(value: str | None) -> str | None:
    # A StrEnum member (Side, Kind) as its value: psycopg dumps Enum members by their *name*.
    return None if value is None else str(value)


def pages(
    read_page: Callable[..., list[AuditRecord]], query: AuditQuery, page_size: int
) -> Iterator[AuditRecord]:
    """Yield every record `read_page(query, after_id=, limit=)` finds, oldest first, page by page.

    Keyset paging by id, shared by the SQL and the in-memory audit logs.
    """
    after = 0
    while True:
        page = read_page(query, after_id=after, limit=page_size)
        yield from page
        if len(page) < page_size:
            return
        after = page[-1].id


def write_audit(
    tx: Tx,
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
    send: bool = True,
) -> tuple[Any, ...]:
    """Append one record inside the caller's transaction (queued: see `Tx.append`); return its values.

    `send=False`: only return the values, bound for `tx` (the columns of `INSERT`, in order),
    for a statement that writes the record itself (the PostgreSQL functions of migration 0005).
    """
    values = (
        tx.ts(at), agent_id, action._value_, reason, _plain(kind), symbol, _plain(side),
        None if qty is None else str(qty), state, prev_state, client_order_id, claim_key,
        detail_text(detail),
    )  # fmt: skip
    if send:
        tx.append(INSERT, values)
    return values


def skip_values(at: Any, agent_id: str, reason: str, claim: Claim) -> tuple[Any, ...]:
    """Return the values of `INSERT` for a skip record about `claim` with no other fields.

    What `write_audit` binds for ``action=SKIP`` and `domain.audit.claim_fields(claim, {})`,
    with `at` encoded already: the one record a duplicate retry writes, built directly.
    """
    return (
        at, agent_id, AuditAction.SKIP._value_, reason, claim.kind._value_, claim.symbol,
        claim.side._value_, None, claim.state._value_, None, claim.client_order_id, claim.key, None,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters for reading the audit log; every field is optional.

    Attributes:
        agent_id: Only this agent.
        actions: Only these actions (e.g. ``("skip",)``).
        kind: "entry" or "exit".
        state: Only records whose resulting claim state is this.
        symbol: Only this symbol; a crypto pair under either spelling ("BTC/USD" and "BTCUSD"
            find both: records written before migration 0008 keep the one the bot used).
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

    def _symbols(self) -> tuple[str, ...]:
        """The spellings `symbol` may have in the log: itself, and a pair's without its slash."""
        assert self.symbol is not None
        pair = crypto_pair(self.symbol)
        return (self.symbol,) if pair is None else (pair, pair.replace("/", ""))

    def matches(self, record: AuditRecord) -> bool:
        """Return True when `record` passes every filter (what `statement` selects, for a store in memory)."""
        return (
            (self.agent_id is None or record.agent_id == self.agent_id)
            and (not self.actions or record.action in {AuditAction(a) for a in self.actions})
            and (self.kind is None or record.kind == self.kind)
            and (self.state is None or record.state == self.state)
            and (self.symbol is None or record.symbol in self._symbols())
            and (self.since is None or record.at >= self.since)
            and (self.until is None or record.at < self.until)
            and (self.client_order_id is None or record.client_order_id == self.client_order_id)
        )

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
            stmt = stmt.where(c.symbol.in_(self._symbols()))
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
    return [AuditRecord.from_row(dict(r._mapping)) for r in conn.execute(stmt)]


def records_to_dataframe(records: Iterable[AuditRecord]) -> pd.DataFrame:
    """Return records as a DataFrame with one column per field (detail as JSON text)."""
    import pandas as pd  # noqa: PLC0415 - pandas takes ~0.3 s to import; only exports need it

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


def write_records_csv(records: Iterable[AuditRecord], out: IO[str]) -> int:
    """Write records as CSV to an open text stream (detail as JSON text); return the number of rows."""
    fields = list(AuditRecord.__dataclass_fields__)
    writer = csv.writer(out)
    writer.writerow(fields)
    count = 0
    for rec in records:
        row = asdict(rec)
        row["action"] = rec.action.value
        row["at"] = rec.at.isoformat()
        row["detail"] = json.dumps(rec.detail, sort_keys=True, default=str) if rec.detail else ""
        writer.writerow([row[f] for f in fields])
        count += 1
    return count


def records_to_csv(records: Iterable[AuditRecord], path: str | Path) -> int:
    """Write records to a CSV file (detail as JSON text); return the number of rows."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        return write_records_csv(records, fh)
