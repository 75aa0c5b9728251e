"""Tables of the HTTP claim service: per-agent API keys and SafeAgent-compatible action claims.

`tg_api_keys` holds one row per key: its public id, the agent it acts for (or admin), the
SHA-256 of its secret (never the secret), and when it was revoked. `tg_actions` holds the claims
made through the SafeAgent-compatible routes (`/claim`, `/settle`): a generic action keyed by
the agent and the caller's request id, PENDING until settled with its result, then COMMITTED.
They are not order claims (no symbol, no ledger), so they live beside `tg_claims`, not in it.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tradeguard.store.schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the two tables."""
    op.create_table(
        "tg_api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("is_admin", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("label", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
    )
    op.create_table(
        "tg_actions",
        sa.Column("action_key", sa.String(64), primary_key=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("result", sa.Text),
        sa.Column("claimed_at", UTCDateTime, nullable=False),
        sa.Column("settled_at", UTCDateTime),
    )
    op.create_index("ix_tg_actions_agent_claimed", "tg_actions", ["agent_id", "claimed_at"])


def downgrade() -> None:
    """Drop the two tables."""
    op.drop_index("ix_tg_actions_agent_claimed", table_name="tg_actions")
    op.drop_table("tg_actions")
    op.drop_table("tg_api_keys")
