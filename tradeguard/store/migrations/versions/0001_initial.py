"""Initial schema: claims, ledger turns, dedup windows, audit log.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tradeguard.store.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    """Create the four tables."""
    op.create_table(
        "tg_claims",
        sa.Column("claim_key", sa.String(64), primary_key=True),
        sa.Column("client_order_id", sa.String(128), nullable=False, unique=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("intent", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("payload_hash", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("lease_expires_at", UTCDateTime, nullable=False),
        sa.Column("order_qty", sa.String(40)),
        sa.Column("broker_order_id", sa.String(64)),
        sa.Column("filled_qty", sa.String(40), nullable=False, server_default=sa.text("'0'")),
        sa.Column("filled_avg_price", sa.String(40)),
        sa.Column("turn_id", sa.BigInteger),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("reason", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_tg_claims_state_updated", "tg_claims", ["state", "updated_at"])
    op.create_index("ix_tg_claims_agent_symbol", "tg_claims", ["agent_id", "symbol"])
    op.create_table(
        "tg_turns",
        sa.Column("turn_id", _ID, primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("qty", sa.String(40), nullable=False),
        sa.Column("is_open", sa.Integer, nullable=False),
        sa.Column("opened_at", UTCDateTime, nullable=False),
        sa.Column("closed_at", UTCDateTime),
        sa.Column("close_reason", sa.Text),
    )
    op.create_index(
        "ux_tg_turns_open",
        "tg_turns",
        ["agent_id", "symbol"],
        unique=True,
        sqlite_where=sa.text("is_open = 1"),
        postgresql_where=sa.text("is_open = 1"),
    )
    op.create_table(
        "tg_dedup_windows",
        sa.Column("content_key", sa.String(64), primary_key=True),
        sa.Column("claim_key", sa.String(64), nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "tg_audit",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("kind", sa.String(8)),
        sa.Column("symbol", sa.String(32)),
        sa.Column("side", sa.String(4)),
        sa.Column("qty", sa.String(40)),
        sa.Column("state", sa.String(16)),
        sa.Column("prev_state", sa.String(16)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("client_order_id", sa.String(128)),
        sa.Column("claim_key", sa.String(64)),
        sa.Column("detail", sa.Text),
    )
    # Only `at`: every audit index is one more page written and fsynced by each claim and
    # transition; queries by agent page through the log in id order.
    op.create_index("ix_tg_audit_at", "tg_audit", ["at"])


def downgrade() -> None:
    """Drop everything (loses all claims; for development only)."""
    for table in ("tg_audit", "tg_dedup_windows", "tg_turns", "tg_claims"):
        op.drop_table(table)
