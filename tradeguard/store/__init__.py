"""The claim store: claims, ledger and audit log over SQLAlchemy 2 (SQLite or PostgreSQL), or in memory."""

from tradeguard.store.audit import AuditQuery
from tradeguard.store.claims import ClaimStore, new_owner_token
from tradeguard.store.memory import MemoryClaimStore
from tradeguard.store.remote import RemoteClaimLedger, open_ledger

__all__ = [
    "AuditQuery",
    "ClaimStore",
    "MemoryClaimStore",
    "RemoteClaimLedger",
    "new_owner_token",
    "open_ledger",
]
