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
    _audit_log: list[tuple[Any, ...]]

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
            (at, agent_id, action, reason, kind, symbol, side, qty, state, prev_state,
             client_order_id, claim_key, detail)
        )  # fmt: skip

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
            log = self._audit_log
            for index in range(max(after_id, 0), len(log)):
                if len(found) >= limit:
                    break
                record = _record(index, log[index])
                if query.matches(record):
                    found.append(record)
        return found

    def audit_count(self, query: AuditQuery | None = None) -> int:
        """Return how many records match."""
        self._check_open()
        query = query or AuditQuery()
        with self._lock:
            return sum(1 for i, raw in enumerate(self._audit_log) if query.matches(_record(i, raw)))

    def audit_dataframe(self, query: AuditQuery | None = None) -> pd.DataFrame:
        """Return matching audit records as a pandas DataFrame."""
        return records_to_dataframe(self.audit_records(query))

    def export_audit_csv(self, path: str | Path, query: AuditQuery | None = None) -> int:
        """Write matching audit records to a CSV file; return the number of rows."""
        return records_to_csv(self.audit_records(query), path)


def _text(value: object) -> str | None:
    # Enum members are stored as they are (str subclasses); a record holds their plain text.
    return None if value is None else str.__str__(value)


def _record(index: int, raw: tuple[Any, ...]) -> AuditRecord:
    """Build the record the SQL store would read back: text fields, `detail` in JSON types."""
    at, agent_id, action, reason, kind, symbol, side, qty, state, prev_state, coid, claim_key, detail = raw
    return AuditRecord(
        index + 1, at, agent_id, action, reason, _text(kind), symbol, _text(side),
        None if qty is None else str(qty), _text(state), _text(prev_state), coid, claim_key,
        json.loads(_encode_detail(detail)) if detail else {},
    )  # fmt: skip
