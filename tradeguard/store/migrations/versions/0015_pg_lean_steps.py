"""PostgreSQL: leaner step functions (`tg_claim2`, `tg_move_step2`, `tg_fill_step2`).

The three hot steps (a claim, a move, a fill) keep their statements, locks, order and
durability; what changes is the work around them, measured with callgrind on the server:

* The compare-and-set finds the claim by its key alone. The UPDATE of 0005/0009/0014 tested
  `claim_key = ... AND state = ... AND ...`, and on a store the planner has no statistics for
  yet (a new store until autovacuum's first ANALYZE) its plan took the state index
  (`ix_tg_claims_state_agent`) and filtered on the key: every move read every claim in the
  state it left (one move cost 0.5M server instructions with 1 claim PENDING, 2.3M with 1,000).
  The version columns are now compared as one row (`IS NOT DISTINCT FROM`, the same test: none of
  them is ever NULL), which no index serves, so the primary key is the only way in.
* `PERFORM f(...)` (the durability's `set_config`, the advisory locks) ran a whole SELECT through
  the executor; an assignment (`ignored := f(...)`) is PL/pgSQL's simple-expression path: the
  same call, a few thousand instructions less each.
* The audit record's values that the function already has (its time, agent, kind, symbol,
  side, client_order_id, key, the states, the action) are no longer sent twice: a claim takes 18
  parameters instead of 28, a move 23 instead of 32, a fill 35 instead of 44; the record written
  is the same, value for value (`tests/test_store_pg_steps.py` compares it with SQLite's).
* A move and a fill return the 13 columns the store reads (`model.MUTABLE_COLUMNS`), not the
  whole 24-column row.

The functions of 0009/0014 stay as they were: a process of the previous version, during a
rolling upgrade, still calls them. SQLite: this revision only moves the version.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_V14 = importlib.import_module("tradeguard.store.migrations.versions.0014_pg_schema_locks")

# The schema-keyed lock of `ledger.lock_symbol` / 0014, as assignments (see the docstring).
_COID_KEY: str = _V14._COID_KEY
_LEDGER_OLD = "hashtextextended('tradeguard:ledger:' || p_symbol, 0)"
_LEDGER_KEY = _V14._KEY.format(name="'tradeguard:ledger:' || p_symbol")

# The compare-and-set's match: the key, then the version read (see the module docstring).
_MATCH = """claim_key = p_key AND (state, epoch, attempts, filled_qty)
        IS NOT DISTINCT FROM (p_was_state, p_was_epoch, p_was_attempts, p_was_filled)"""
_SET = """state = p_state, updated_at = p_at, reason = p_reason,
        reject_kind = p_reject_kind, payload = COALESCE(p_payload, payload),
        payload_hash = COALESCE(p_hash, payload_hash),
        broker_order_id = COALESCE(p_broker_order_id, broker_order_id),
        filled_avg_price = COALESCE(p_avg_price, filled_avg_price),
        order_qty = COALESCE(p_order_qty, order_qty), owner = COALESCE(p_owner, owner),
        lease_expires_at = COALESCE(p_lease, lease_expires_at),
        filled_qty = COALESCE(p_filled_qty, filled_qty), attempts = attempts + p_resend"""
# What a move and a fill return (model.MUTABLE_COLUMNS, in order), then what the record needs.
_RETURNING = """RETURNING state, epoch, owner, lease_expires_at, order_qty, broker_order_id,
        filled_qty, filled_avg_price, turn_id, attempts, reason, updated_at, reject_kind,
        kind, side, client_order_id
    INTO r_state, r_epoch, r_owner, r_lease, r_order_qty, r_broker_order_id, r_filled_qty,
        r_avg_price, r_turn_id, r_attempts, r_reason, r_updated_at, r_reject_kind,
        v_kind, v_side, v_coid"""
_RETURNS = """RETURNS TABLE (
    r_state text, r_epoch integer, r_owner text, r_lease timestamptz, r_order_qty text,
    r_broker_order_id text, r_filled_qty text, r_avg_price text, r_turn_id bigint,
    r_attempts integer, r_reason text, r_updated_at timestamptz, r_reject_kind text
)"""
_TRANSITION_PARAMS = """p_sync text,
    p_state text, p_at timestamptz, p_reason text, p_reject_kind text, p_payload text,
    p_hash text, p_broker_order_id text, p_avg_price text, p_order_qty text, p_owner text,
    p_lease timestamptz, p_filled_qty text, p_resend integer,
    p_key text, p_was_state text, p_was_epoch integer, p_was_attempts integer, p_was_filled text"""
# The transition's record: `audit.write_audit` of `ClaimStore._move`, from what the function has.
_TRANSITION_RECORD = """INSERT INTO tg_audit (
            at, agent_id, action, reason, kind, symbol, side, qty, state, prev_state,
            client_order_id, claim_key, detail
        ) VALUES (
            p_at, p_agent, 'transition', p_reason, v_kind, p_symbol, v_side, a_qty, p_state,
            p_was_state, v_coid, p_key, a_detail
        );"""

# 0014's tg_claim, its record's values taken from the claim's own (`ClaimStore._insert`:
# action 'claim', state PENDING, no previous state); only the reason, quantity and detail travel.
_CLAIM_FUNCTION = f"""
CREATE OR REPLACE FUNCTION tg_claim2(
    p_key text, p_coid text, p_agent text, p_kind text, p_symbol text, p_side text, p_intent text,
    p_payload text, p_hash text, p_owner text, p_lease timestamptz, p_order_qty text,
    p_turn_id bigint, p_reason text, p_at timestamptz,
    a_reason text, a_qty text, a_detail text
) RETURNS SETOF tg_claims LANGUAGE plpgsql AS $$
DECLARE
    ignored text;
    other text;
    scope text;
    taken boolean;
BEGIN
    ignored := set_config('synchronous_commit', 'on', true);
    SELECT CASE WHEN left(account_key, 5) = 'acct:' THEN account_key ELSE '' END INTO scope
    FROM tg_agent_accounts WHERE agent_id = p_agent;
    scope := coalesce(scope, '');
    -- The id's lock, then the probe (its own statement, so its own snapshot, taken after the
    -- lock): an unknown account's id conflicts with the id in every scope, a known account's
    -- with the id in scope "" (the same scope is the unique index's).
    IF scope = '' THEN
        ignored := pg_advisory_xact_lock({_COID_KEY});
        taken := EXISTS (SELECT 1 FROM tg_claims WHERE client_order_id = p_coid);
    ELSE
        ignored := pg_advisory_xact_lock_shared({_COID_KEY});
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
                p_at, p_agent, 'claim', a_reason, p_kind, p_symbol, p_side, a_qty, 'PENDING',
                NULL, p_coid, p_key, a_detail
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
"""  # noqa: S608 - the module's own constant texts, no input

# 0009's tg_move_step. The agent and symbol are the claim's (never changed after the claim).
_MOVE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION tg_move_step2(
    {_TRANSITION_PARAMS},
    p_agent text, p_symbol text, a_qty text, a_detail text
) {_RETURNS} LANGUAGE plpgsql AS $$
DECLARE
    ignored text;
    v_kind text;
    v_side text;
    v_coid text;
BEGIN
    ignored := set_config('synchronous_commit', p_sync, true);
    UPDATE tg_claims SET {_SET}
    WHERE {_MATCH}
    {_RETURNING};
    IF FOUND THEN
        {_TRANSITION_RECORD}
        RETURN NEXT;
    END IF;
END
$$
"""  # noqa: S608 - the module's own constant texts, no input

# 0014's tg_fill_step: the same locks, check, writes and records, in the same order.
# `p_agent`/`p_symbol` (the claim's) name the ledger lock and the open turn before the row is
# read. `e_*` and `l_*` as in 0009.
_FILL_FUNCTION = f"""
CREATE OR REPLACE FUNCTION tg_fill_step2(
    {_TRANSITION_PARAMS},
    p_turn bigint, p_agent text, p_symbol text, a_qty text, a_detail text,
    e_turn bigint, e_qty text,
    l_turn bigint, l_qty text, l_close_reason text, l_close_note text, l_close_detail text,
    l_open_turn bigint, l_open_qty text, l_open_note text, l_open_detail text
) {_RETURNS} LANGUAGE plpgsql AS $$
DECLARE
    ignored text;
    t bigint;
    q text;
    v_kind text;
    v_side text;
    v_coid text;
BEGIN
    ignored := set_config('synchronous_commit', p_sync, true);
    ignored := pg_advisory_xact_lock_shared({_LEDGER_OLD});
    ignored := pg_advisory_xact_lock({_LEDGER_KEY});
    SELECT turn_id, qty INTO t, q FROM tg_turns
    WHERE agent_id = p_agent AND symbol = p_symbol AND is_open = 1;
    IF t IS DISTINCT FROM e_turn OR (t IS NOT NULL AND q IS DISTINCT FROM e_qty) THEN
        RAISE EXCEPTION 'open turn of % in % is not the one expected', p_agent, p_symbol
            USING ERRCODE = 'TGL01';
    END IF;
    UPDATE tg_claims SET {_SET},
        turn_id = COALESCE(turn_id, p_turn)
    WHERE {_MATCH}
    {_RETURNING};
    IF NOT FOUND THEN
        RAISE EXCEPTION 'claim % changed before its fill', p_key USING ERRCODE = 'TGC01';
    END IF;
    IF l_turn IS NOT NULL THEN
        IF l_close_reason IS NULL THEN
            UPDATE tg_turns SET qty = l_qty, updated_at = p_at WHERE turn_id = l_turn;
        ELSE
            UPDATE tg_turns SET qty = l_qty, is_open = 0, closed_at = p_at, updated_at = p_at,
                close_reason = l_close_reason WHERE turn_id = l_turn;
            INSERT INTO tg_audit (at, agent_id, action, reason, symbol, qty, detail)
            VALUES (p_at, p_agent, 'ledger', l_close_note, p_symbol, l_qty, l_close_detail);
        END IF;
    END IF;
    IF l_open_turn IS NOT NULL THEN
        INSERT INTO tg_turns (turn_id, agent_id, symbol, qty, is_open, opened_at, updated_at)
        VALUES (l_open_turn, p_agent, p_symbol, l_open_qty, 1, p_at, p_at);
        INSERT INTO tg_audit (at, agent_id, action, reason, symbol, qty, detail)
        VALUES (p_at, p_agent, 'ledger', l_open_note, p_symbol, l_open_qty, l_open_detail);
    END IF;
    {_TRANSITION_RECORD}
    RETURN NEXT;
END
$$
"""  # noqa: S608 - the module's own constant texts, no input

assert _LEDGER_KEY in _V14._FILL_FUNCTION.replace("a_symbol", "p_symbol")


def upgrade() -> None:
    """PostgreSQL: create the three lean step functions; SQLite: nothing to do."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CLAIM_FUNCTION)
        op.execute(_MOVE_FUNCTION)
        op.execute(_FILL_FUNCTION)


def downgrade() -> None:
    """PostgreSQL: drop them (0014's functions were never changed)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS tg_fill_step2")
        op.execute("DROP FUNCTION IF EXISTS tg_move_step2")
        op.execute("DROP FUNCTION IF EXISTS tg_claim2")
