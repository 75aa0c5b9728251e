"""PostgreSQL: `tg_claim` takes the id's advisory lock for a derived id too.

Migration 0012 skipped the lock for an id derived from the claim's own key, as no other claim
carries one. An agent of unknown account (scope "") may send any id, another agent's derived id
included (derived ids are public functions of an intent), and its claim must conflict with the
id in every scope. With that claim in flight (past its check under the exclusive lock, not yet
committed), a lockless claim of the derived id in a known account's scope saw nothing and
inserted beside it (the unique index is per scope): two claims of one id, one of them anyone's.
Every claim now takes the lock, shared for a known account (claims of one scope still run side
by side: the unique index serialises them), exclusive for an unknown one. SQLite is unchanged:
its insert runs its check under the database's write lock.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_BEFORE = importlib.import_module(
    "tradeguard.store.migrations.versions.0012_coid_per_account"
)._CLAIM_FUNCTION
_SKIP_DERIVED = """    IF right(p_coid, 32) IS DISTINCT FROM left(p_key, 32) THEN
        IF scope = '' THEN
            PERFORM pg_advisory_xact_lock(hashtextextended('tradeguard:coid:' || p_coid, 0));
        ELSE
            PERFORM pg_advisory_xact_lock_shared(hashtextextended('tradeguard:coid:' || p_coid, 0));
        END IF;
    END IF;
"""
_ALWAYS = """    IF scope = '' THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('tradeguard:coid:' || p_coid, 0));
    ELSE
        PERFORM pg_advisory_xact_lock_shared(hashtextextended('tradeguard:coid:' || p_coid, 0));
    END IF;
"""
assert _SKIP_DERIVED in _BEFORE
_CLAIM_FUNCTION = _BEFORE.replace(_SKIP_DERIVED, _ALWAYS)


def upgrade() -> None:
    """PostgreSQL: re-create tg_claim locking every id; SQLite: nothing to do."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CLAIM_FUNCTION)


def downgrade() -> None:
    """PostgreSQL: tg_claim as 0012 made it."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_BEFORE)
