"""Drop the audit log's time index (`ix_tg_audit_at`): every audit insert paid for it.

Each claim, transition and ledger change appends audit records, and each of those commits wrote
a leaf of `ix_tg_audit_at` besides the table's own last page: on SQLite a claim cycle wrote 25
WAL pages, 20 without it; on PostgreSQL every record was one more index insert and its WAL.
Nothing on the order path or in the reconciler reads the log by time. The operator's time-range
queries (`tradeguard audit --since/--until`, `GET /v1/audit`) now read the log in id order and
filter by time, a scan of the table (see `bench/claims.py`, table 4, for what that costs at 1M
records). `at` is not monotonic with `id` (a record is stamped before its transaction takes the
write lock), so a time range cannot be turned into an id range.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_tg_audit_at", table_name="tg_audit")


def downgrade() -> None:
    """Restore the index."""
    op.create_index("ix_tg_audit_at", "tg_audit", ["at"])
