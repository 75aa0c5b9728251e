"""PostgreSQL: advisory lock keys are per schema; `tg_claim` plans once per connection.

Lock keys. PostgreSQL's advisory locks are one namespace for the whole database, and the keys
were built from the symbol or the id alone (`'tradeguard:ledger:' || symbol`,
`'tradeguard:coid:' || id`), so two stores in two schemas of one database (tenants, tests)
serialised each other's fills and exit sizing in a symbol, and each other's claims of one caller
id, and one store's short lock wait could fail on a lock the other held (a StoreError for an
unrelated store). Every key is now hashed with the store's own claims table as the seed,
`hashtextextended(text, 'tg_claims'::regclass::oid::bigint)` (the same expression in the
client's ledger lock, `ledger.lock_symbol`, and in these functions): the OID of the `tg_claims`
the session's search_path finds, the very table the statements around it read and write, so
two sessions of one store agree on it whatever else their search_paths name (`current_schema()`,
the first schema of the path that exists, need not be the one holding the tables), and a
missing table is an error, never a NULL key (which would take no lock). The ledger lock also takes the
old, database-wide key SHARED before the new one: shared holders never wait for each other, so
stores in two schemas no longer meet, while a process of the previous version (which takes the
old key exclusively in its client code) still serialises with every new one during a rolling
upgrade. (Nothing takes the old coid key any more: only `tg_claim` ever took it, on the server,
and this migration replaces it for every caller at once.)

Claim cost. Migration 0012's `tg_claim` probed for the id in the insert's own statement
(`INSERT ... SELECT ... WHERE NOT EXISTS (... coid_scope = '' OR scope = '')`). PL/pgSQL keeps a
generic plan for a statement only when its estimated cost is no worse than the custom plans':
the parameter in the `OR` made the generic plan look dearer, so that statement was planned
afresh on every claim (its planning costs more than its execution), which cost throughput.
The probe is now its own statement, one per kind of scope (any scope for an unknown account;
scope "" for a known one, a seek of the unique index), and the insert a plain `VALUES`: each
keeps one plan per connection. What is checked is unchanged: the id's advisory lock is taken
first, the probe runs after it (a new snapshot, READ COMMITTED) and before the insert, so it
sees every claim of the id whose lock was released before; the unique index still serialises
claims of one scope.

SQLite: this revision only moves the version (one writer at a time; no advisory locks).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _module(name: str) -> object:
    return importlib.import_module(f"tradeguard.store.migrations.versions.{name}")


_OLD_EXPECT_TURN: str = _module("0007_pg_fill_guards")._EXPECT_TURN  # type: ignore[attr-defined]
_OLD_FILL: str = _module("0009_pg_one_statement_steps")._FILL_FUNCTION  # type: ignore[attr-defined]
_OLD_CLAIM: str = _module("0013_coid_lock_always")._CLAIM_FUNCTION  # type: ignore[attr-defined]

# The key of a lock named `name` in this store (as `ledger.lock_symbol` builds it).
_KEY = "hashtextextended({name}, 'tg_claims'::regclass::oid::bigint)"


def _ledger_lock(symbol: str) -> str:
    """The ledger lock of `symbol` (an SQL expression): the old key shared, then the schema's."""
    old = f"'tradeguard:ledger:' || {symbol}"
    return (
        f"PERFORM pg_advisory_xact_lock_shared(hashtextextended({old}, 0));\n"
        f"    PERFORM pg_advisory_xact_lock({_KEY.format(name=old)});"
    )


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


_EXPECT_TURN = _replace(
    _OLD_EXPECT_TURN,
    "PERFORM pg_advisory_xact_lock(hashtextextended('tradeguard:ledger:' || p_symbol, 0));",
    _ledger_lock("p_symbol"),
)
_FILL_FUNCTION = _replace(
    _OLD_FILL,
    "PERFORM pg_advisory_xact_lock(hashtextextended('tradeguard:ledger:' || a_symbol, 0));",
    _ledger_lock("a_symbol"),
)

_COID_KEY = _KEY.format(name="'tradeguard:coid:' || p_coid")
_CLAIM_TEMPLATE = """
CREATE OR REPLACE FUNCTION tg_claim(
    p_key text, p_coid text, p_agent text, p_kind text, p_symbol text, p_side text, p_intent text,
    p_payload text, p_hash text, p_owner text, p_lease timestamptz, p_order_qty text,
    p_turn_id bigint, p_reason text, p_at timestamptz,
    a_at timestamptz, a_agent text, a_action text, a_reason text, a_kind text, a_symbol text,
    a_side text, a_qty text, a_state text, a_prev_state text, a_coid text, a_key text,
    a_detail text
) RETURNS SETOF tg_claims LANGUAGE plpgsql AS $$
DECLARE
    other text;
    scope text;
    taken boolean;
BEGIN
    PERFORM set_config('synchronous_commit', 'on', true);
    SELECT CASE WHEN left(account_key, 5) = 'acct:' THEN account_key ELSE '' END INTO scope
    FROM tg_agent_accounts WHERE agent_id = p_agent;
    scope := coalesce(scope, '');
    -- The id's lock, then the probe (its own statement, so its own snapshot, taken after the
    -- lock): an unknown account's id conflicts with the id in every scope, a known account's
    -- with the id in scope "" (the same scope is the unique index's).
    IF scope = '' THEN
        PERFORM pg_advisory_xact_lock(COID_KEY);
        taken := EXISTS (SELECT 1 FROM tg_claims WHERE client_order_id = p_coid);
    ELSE
        PERFORM pg_advisory_xact_lock_shared(COID_KEY);
        taken := EXISTS (SELECT 1 FROM tg_claims WHERE client_order_id = p_coid AND coid_scope = '');
    END IF;
    IF NOT taken THEN
        INSERT INTO tg_claims (
            claim_key, client_order_id, agent_id, kind, symbol, side, intent, payload,
            payload_hash, owner, lease_expires_at, order_qty, turn_id, reason, created_at,
            updated_at, state, epoch, attempts, coid_scope
        ) VALUES (
            p_key, p_coid, p_agent, p_kind, p_symbol, p_side, p_intent, p_payload, p_hash,
            p_owner, p_lease, p_order_qty, p_turn_id, p_reason, p_at, p_at, 'PENDING', 1, 1, scope
        ) ON CONFLICT DO NOTHING;
        IF FOUND THEN
            INSERT INTO tg_audit (
                at, agent_id, action, reason, kind, symbol, side, qty, state, prev_state,
                client_order_id, claim_key, detail
            ) VALUES (
                a_at, a_agent, a_action, a_reason, a_kind, a_symbol, a_side, a_qty, a_state,
                a_prev_state, a_coid, a_key, a_detail
            );
            RETURN;
        END IF;
    END IF;
    -- A new statement, a new snapshot (READ COMMITTED): it sees a racing insert that the
    -- conflict above waited for.
    RETURN QUERY SELECT * FROM tg_claims WHERE claim_key = p_key;
    IF NOT FOUND THEN
        SELECT claim_key INTO other FROM tg_claims WHERE client_order_id = p_coid
            AND (coid_scope = scope OR coid_scope = '' OR scope = '') LIMIT 1;
        RAISE EXCEPTION 'client_order_id % already belongs to another claim', p_coid
            USING DETAIL = coalesce(other, '');
    END IF;
END
$$
"""
_CLAIM_FUNCTION = _CLAIM_TEMPLATE.replace("COID_KEY", _COID_KEY)


def upgrade() -> None:
    """PostgreSQL: re-create the three functions that take advisory locks; SQLite: nothing."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_EXPECT_TURN)
        op.execute(_FILL_FUNCTION)
        op.execute(_CLAIM_FUNCTION)


def downgrade() -> None:
    """PostgreSQL: the functions as migrations 0007, 0009 and 0013 left them."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_OLD_EXPECT_TURN)
        op.execute(_OLD_FILL)
        op.execute(_OLD_CLAIM)
