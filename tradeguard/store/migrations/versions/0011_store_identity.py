"""Give the store an identity (`tg_store`): one row, an id made once and never changed.

A claim service restarted on another database (a relative SQLite path read from another working
directory, a failover to another server) answered as if nothing had happened: a gateway's
decisions looked new, and its exits saw a flat ledger. The service now names the store it
serves on every answer (`X-Tradeguard-Store`), and a remote ledger refuses an answer that names
another store than the one it first saw. The id is made here, when the migration runs: a new
store gets one when it is created, a store from before this revision when it is migrated, and
two copies of an old store migrated apart get two ids. A copy of a store at this revision or
later keeps its id (a restored backup is the same store, as of the backup).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from tradeguard.store.schema import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table and its one row."""
    table = op.create_table(
        "tg_store",
        sa.Column("store_id", sa.String(32), primary_key=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.bulk_insert(table, [{"store_id": uuid.uuid4().hex, "created_at": datetime.now(UTC)}])


def downgrade() -> None:
    """Drop the table (its id is lost: an upgrade again makes a new one)."""
    op.drop_table("tg_store")
