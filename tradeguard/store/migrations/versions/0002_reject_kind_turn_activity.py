"""Broker-neutral rejection kind on claims; last ledger activity on turns.

`tg_claims.reject_kind` holds the `RejectKind` of a REJECTED claim, so the reconciler can tell a
position-related refusal from any other without reading messages. `tg_turns.updated_at` is the
time of the turn's last fill or correction: the reconciler never clears a position on position
reads alone while its ledger moved more recently than the settle horizon (positions trail fills).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tradeguard.store.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the two columns; existing turns count as last touched when they opened."""
    with op.batch_alter_table("tg_claims") as batch:
        batch.add_column(sa.Column("reject_kind", sa.String(24)))
    with op.batch_alter_table("tg_turns") as batch:
        batch.add_column(sa.Column("updated_at", UTCDateTime))
    op.execute("UPDATE tg_turns SET updated_at = COALESCE(closed_at, opened_at)")


def downgrade() -> None:
    """Drop the two columns."""
    with op.batch_alter_table("tg_turns") as batch:
        batch.drop_column("updated_at")
    with op.batch_alter_table("tg_claims") as batch:
        batch.drop_column("reject_kind")
