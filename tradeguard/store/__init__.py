"""The claim store: claims, ledger and audit log over SQLAlchemy 2 (SQLite or PostgreSQL)."""

from tradeguard.store.audit import AuditAction, AuditQuery, AuditRecord
from tradeguard.store.claims import Claim, ClaimOutcome, ClaimStore, new_owner_token
from tradeguard.store.ledger import LedgerPosition

__all__ = [
    "AuditAction",
    "AuditQuery",
    "AuditRecord",
    "Claim",
    "ClaimOutcome",
    "ClaimStore",
    "LedgerPosition",
    "new_owner_token",
]
