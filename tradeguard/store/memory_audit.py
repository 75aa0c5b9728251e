"""The audit log of `MemoryClaimStore`: records appended as tuples, read back as `AuditRecord`s.

A record is built on reading, with the text and JSON types the SQL store reads back, so most
records (never read in a replay) cost one tuple each.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradeguard.domain.audit import AuditAction, AuditRecord
from tradeguard.store.audit import AuditQuery, pages, records_to_csv, records_to_dataframe

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MemoryAuditLog"]

# What the SQL store's write_audit does to `detail` (and its read gives back): JSON, str for the rest.
_encode_detail = json.JSONEncoder(default=str, sort_keys=True).encode


class MemoryAuditLog:
    """Mixin of `MemoryClaimStore`: the append-only audit log and its queries."""

    _lock: threading.Lock
    _audit_log: list[tuple[Any, ...]]  # the rows, without their detail
    _audit_detail: list[dict[str, Any] | None]  # each row's detail, at the row's index
    _audit_base: int  # rows forgotten before the first kept one (`MemoryClaimStore.trim_audit`)

    _check_open: Callable[[], None]  # the store's: raises StoreError once it is closed

    def _write_audit(
        self,
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
        detail: dict[str, Any] | None = None,
    ) -> None:
        # A tuple, not an AuditRecord: a frozen dataclass costs one setattr per field, and most
        # records are never read. `_record` builds the record (and its text fields) on reading.
        self._audit_log.append(
            (at, agent_id, _plain(action), reason, _plain(kind), symbol, _plain(side), qty, _plain(state),
             _plain(prev_state), client_order_id, claim_key)
        )  # fmt: skip
        self._audit_detail.append(detail)

    # -- audit -----------------------------------------------------------------------------

    def audit_records(
        self, query: AuditQuery | None = None, *, page_size: int = 1000
    ) -> Iterator[AuditRecord]:
        """Yield matching audit records oldest first, `page_size` at a time (as `ClaimStore` pages)."""
        return pages(self.audit_page, query or AuditQuery(), page_size)

    def audit_page(
        self, query: AuditQuery | None = None, *, after_id: int = 0, limit: int = 100
    ) -> list[AuditRecord]:
        """Return up to `limit` matching records with id above `after_id`."""
        self._check_open()
        query = query or AuditQuery()
        found: list[AuditRecord] = []
        with self._lock:
            log, details, base = self._audit_log, self._audit_detail, self._audit_base
            for index in range(max(after_id - base, 0), len(log)):
                if len(found) >= limit:
                    break
                record = _record(base + index, log[index], details[index])
                if query.matches(record):
                    found.append(record)
        return found

    def audit_count(self, query: AuditQuery | None = None) -> int:
        """Return how many records match."""
        self._check_open()
        query = query or AuditQuery()
        with self._lock:
            details, base = self._audit_detail, self._audit_base
            return sum(
                1
                for i, raw in enumerate(self._audit_log)
                if query.matches(_record(base + i, raw, details[i]))
            )

    def audit_dataframe(self, query: AuditQuery | None = None) -> pd.DataFrame:
        """Return matching audit records as a pandas DataFrame."""
        return records_to_dataframe(self.audit_records(query))

    def export_audit_csv(self, path: str | Path, query: AuditQuery | None = None) -> int:
        """Write matching audit records to a CSV file; return the number of rows."""
        return records_to_csv(self.audit_records(query), path)


def _plain(value: Any) -> Any:
    """Return an enum member (a str subclass) as its plain text, anything else as it is.

    A row of plain values (text, times, Decimals) holds nothing the garbage collector tracks, so
    it stops being scanned after its first collection: a log of a hundred thousand rows does
    not make every full collection longer. Enum members, and any dict, keep a tuple tracked;
    that is why each row's `detail` is kept in a list of its own (a dict of JSON scalars is
    not tracked either).
    """
    return value if value is None or type(value) is str or not isinstance(value, str) else str.__str__(value)


def _text(value: object) -> str | None:
    # A record holds plain text (a row from `_write_audit` holds it already; see `_plain`).
    return None if value is None else str.__str__(value)


def _record(index: int, raw: tuple[Any, ...], detail: dict[str, Any] | None) -> AuditRecord:
    """Build the record the SQL store would read back: text fields, `detail` in JSON types."""
    at, agent_id, action, reason, kind, symbol, side, qty, state, prev_state, coid, claim_key = raw
    # The action was kept as its text (see `_plain`); the record holds the member, as SQL reads it.
    action = AuditAction._value2member_map_.get(action, action)
    return AuditRecord(
        index + 1, at, agent_id, action, reason, _text(kind), symbol, _text(side),
        None if qty is None else str(qty), _text(state), _text(prev_state), coid, claim_key,
        json.loads(_encode_detail(detail)) if detail else {},
    )  # fmt: skip
