"""A caller's client_order_id is unique per broker account, as Alpaca's is, not store-wide.

Alpaca refuses a client_order_id used before on the same account and only there. The store made
it unique across every claim (`UNIQUE (client_order_id)`), so two bots on two accounts sharing
one store that both sent `client_order_id="entry-1"` saw the second refused (the drop-in's 422)
and nothing sent, where alpaca-py alone would have placed it. Each claim now records the scope
its id is unique in, `coid_scope` (`tradeguard.ports.coid_scope`): the claiming agent's account
key registered in `tg_agent_accounts` (0006) when it is of the account's own id, else "".
`UNIQUE (client_order_id, coid_scope)` replaces the old constraint (one index, as before, its
leading column the id, so every read by id still seeks it). An id in scope "" (an agent of
unknown account, or any claim from before this revision: their account was never recorded)
still conflicts with the same id in every scope, both ways: the claim insert checks that in
the same statement (SQLite serialises writers; PostgreSQL's `tg_claim` takes an advisory lock
on the id, shared for a known account and exclusive for an unknown one, for ids that are not
derived from the claim's own key). Existing rows get "": they keep working exactly as before.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# The claim function of migration 0009, with the id's scope (see the module docstring). The scope
# is the agent's account key read in the same statement; the lock is skipped for an id derived
# from the claim's own key (it ends with the key's first 32 characters, `derive_client_order_id`),
# which no other claim can carry, so the gateway's own ids pay one index probe and nothing more.
_CLAIM_FUNCTION = """
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
BEGIN
    PERFORM set_config('synchronous_commit', 'on', true);
    SELECT CASE WHEN left(account_key, 5) = 'acct:' THEN account_key ELSE '' END INTO scope
    FROM tg_agent_accounts WHERE agent_id = p_agent;
    scope := coalesce(scope, '');
    IF right(p_coid, 32) IS DISTINCT FROM left(p_key, 32) THEN
        IF scope = '' THEN
            PERFORM pg_advisory_xact_lock(hashtextextended('tradeguard:coid:' || p_coid, 0));
        ELSE
            PERFORM pg_advisory_xact_lock_shared(hashtextextended('tradeguard:coid:' || p_coid, 0));
        END IF;
    END IF;
    INSERT INTO tg_claims (
        claim_key, client_order_id, agent_id, kind, symbol, side, intent, payload, payload_hash,
        owner, lease_expires_at, order_qty, turn_id, reason, created_at, updated_at, state,
        epoch, attempts, coid_scope
    ) SELECT
        p_key, p_coid, p_agent, p_kind, p_symbol, p_side, p_intent, p_payload, p_hash,
        p_owner, p_lease, p_order_qty, p_turn_id, p_reason, p_at, p_at, 'PENDING', 1, 1, scope
    WHERE NOT EXISTS (
        SELECT 1 FROM tg_claims WHERE client_order_id = p_coid AND (coid_scope = '' OR scope = '')
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

_UNIQUE = "ux_tg_claims_coid_scope"


def _old_constraint() -> str | None:
    """The name of the old `UNIQUE (client_order_id)` (PostgreSQL named it; SQLite did not)."""
    for found in sa.inspect(op.get_bind()).get_unique_constraints("tg_claims"):
        if found["column_names"] == ["client_order_id"]:
            return found["name"]
    return None


def upgrade() -> None:
    """Add `coid_scope` ("" for every existing claim); unique per (id, scope); PostgreSQL's tg_claim."""
    scope = sa.Column("coid_scope", sa.String(64), nullable=False, server_default=sa.text("''"))
    if op.get_bind().dialect.name == "postgresql":
        name = _old_constraint()
        if name is not None:
            op.drop_constraint(name, "tg_claims", type_="unique")
        op.add_column("tg_claims", scope)  # a constant default: no table rewrite
        op.create_index(_UNIQUE, "tg_claims", ["client_order_id", "coid_scope"], unique=True)
        op.execute(_CLAIM_FUNCTION)
        return
    # SQLite cannot drop a column's UNIQUE: the table is copied (in this transaction), its other
    # indexes with it. The constraint has no name there; the convention names it to drop it.
    with op.batch_alter_table(
        "tg_claims", recreate="always", naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"}
    ) as batch:
        batch.drop_constraint("uq_tg_claims_client_order_id", type_="unique")
        batch.add_column(scope)
    op.create_index(_UNIQUE, "tg_claims", ["client_order_id", "coid_scope"], unique=True)


def downgrade() -> None:
    """Back to one id per store (refused if two accounts hold one id); tg_claim as 0009 made it."""
    if op.get_bind().dialect.name == "postgresql":
        before = importlib.import_module("tradeguard.store.migrations.versions.0009_pg_one_statement_steps")
        op.drop_index(_UNIQUE, table_name="tg_claims")
        op.drop_column("tg_claims", "coid_scope")
        op.create_unique_constraint("tg_claims_client_order_id_key", "tg_claims", ["client_order_id"])
        op.execute(before._CLAIM_FUNCTION)
        return
    op.drop_index(_UNIQUE, table_name="tg_claims")
    with op.batch_alter_table("tg_claims", recreate="always") as batch:
        batch.drop_column("coid_scope")
        batch.create_unique_constraint("uq_tg_claims_client_order_id", ["client_order_id"])
