"""Remember which broker account each agent trades (`tg_agent_accounts`).

Several bots may share one claim store while trading different broker accounts (two paper
accounts, paper and live). Exit sizing, adoption and the reconciler subtract "shares other
agents' ledgers hold" from what the broker shows; those are only the shares of agents on the
same account. A gateway registers `(agent_id, account_key)` when it starts; the key is a short
stable name of the account its broker trades (`tradeguard.ports.account_key_of`), '' unknown.
Agents with no row (from before this revision) count as sharing every account, as before.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tradeguard.store.schema import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table."""
    op.create_table(
        "tg_agent_accounts",
        sa.Column("agent_id", sa.String(64), primary_key=True),
        sa.Column("account_key", sa.String(64), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    """Drop the table."""
    op.drop_table("tg_agent_accounts")
