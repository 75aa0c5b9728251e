"""The claim store: claims, ledger and audit log over SQLAlchemy 2 (SQLite or PostgreSQL)."""

from tradeguard.store.audit import AuditQuery
from tradeguard.store.claims import ClaimStore, new_owner_token

__all__ = ["AuditQuery", "ClaimStore", "new_owner_token"]
