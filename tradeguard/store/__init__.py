"""The claim store: claims, ledger and audit log over SQLAlchemy 2 (SQLite or PostgreSQL), or in memory."""

from tradeguard.store.audit import AuditQuery
from tradeguard.store.claims import ClaimStore, new_owner_token
from tradeguard.store.memory import MemoryClaimStore

__all__ = ["AuditQuery", "ClaimStore", "MemoryClaimStore", "new_owner_token"]
