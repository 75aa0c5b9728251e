"""Index claims by (state, agent_id, updated_at) instead of (state, updated_at).

The reconciler asks for one agent's claims in a few states (the active ones, recent NOT_SENT,
refused exits), and the exit path for one agent's PENDING/UNKNOWN exits. With `(state,
updated_at)` each of those read every claim in the state across all agents, and PostgreSQL
chose a scan of the agent's whole history: 1.4 s at 1M claims. Seeking `(state, agent_id)`
reads only the rows asked for, so the cost stays flat as closed claims pile up; `updated_at`
last keeps the NOT_SENT probe window a range seek. The write cost is unchanged: every
transition changes `state`, so it rewrote the old index entry too.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Swap the index."""
    op.create_index("ix_tg_claims_state_agent", "tg_claims", ["state", "agent_id", "updated_at"])
    op.drop_index("ix_tg_claims_state_updated", table_name="tg_claims")


def downgrade() -> None:
    """Restore the old index."""
    op.create_index("ix_tg_claims_state_updated", "tg_claims", ["state", "updated_at"])
    op.drop_index("ix_tg_claims_state_agent", table_name="tg_claims")
