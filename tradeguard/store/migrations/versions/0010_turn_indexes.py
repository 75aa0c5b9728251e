"""Index turns so that no read on the order path scans the turn history.

Every exit (waiting out another agent's fresh fill), every reconcile pass and every adoption
asks which turns a fill or correction moved in the last seconds (`moved_turns`, the holders'
check), and which turns a pass cleared lately (`cleared_turns`). Each read scanned the whole
turn history: an exit took 0.6 ms with 1,000 turns behind it, 16 ms with 100,000 and 138 ms
with a million (SQLite). Open turns are few and already indexed (`ux_tg_turns_open`); the closed
ones are now indexed by `updated_at`, which closing sets equal to `closed_at` and nothing
changes afterwards. The index is partial (closed turns only), so a fill into an open turn
writes nothing to it: a turn enters it once, when it closes.

An agent's latest turn in a symbol (asked when an exit's retry comes back: has a decision of the
bot's opened a new position since?) was a backwards walk over every turn id until one of that
agent and symbol: 112 ms at a million turns for a symbol the agent had not traded lately.
`(agent_id, symbol, turn_id)` answers it by one seek; its columns never change, so a turn writes
it once, when it opens (and PostgreSQL's in-place updates of a turn's quantity stay possible).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the two indexes."""
    op.create_index("ix_tg_turns_agent_symbol", "tg_turns", ["agent_id", "symbol", "turn_id"])
    op.create_index(
        "ix_tg_turns_closed_moved",
        "tg_turns",
        ["updated_at"],
        sqlite_where=sa.text("is_open = 0"),
        postgresql_where=sa.text("is_open = 0"),
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_tg_turns_closed_moved", table_name="tg_turns")
    op.drop_index("ix_tg_turns_agent_symbol", table_name="tg_turns")
