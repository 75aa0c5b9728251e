"""PostgreSQL: each hot step of a claim's life is one statement that sets its own durability.

Until now a claim, a move and a fill each travelled as one simple query of several statements
(`BEGIN; SET LOCAL synchronous_commit = ...; SELECT ... FROM tg_...(literals); COMMIT`), bound
into the text by the client: the server parsed and planned all of it on every call. Now each
step is one statement with server-side parameters, run in autocommit (its own transaction),
which psycopg prepares once per connection; the statement's function sets the transaction's
`synchronous_commit` itself (`set_config(..., true)`, local to the transaction, read when it
commits), so no session setting is relied on, as before:

* `tg_claim(...)` (migration 0005) is replaced with the same parameters and result, and now
  commits durably (`on`) whatever the session says: a claim always precedes a send (G5).
* `tg_move_step(p_sync, ...)` is migration 0005's `tg_move` after setting `synchronous_commit`
  to `p_sync` ('on' or 'off', the store's rule for the move).
* `tg_fill_step(p_sync, ...)` is a whole fill whose ledger writes the store computed from the
  open turn it guessed (`ClaimStore._fast_fill`, migration 0007's guards in one function):
  under the symbol's ledger lock (taken first, as every writer takes it) it checks that the
  agent's open turn is the one guessed (else SQLSTATE TGL01), applies the compare-and-set
  (else TGC01), then the turn writes given (close at a quantity, or set a quantity; open a turn
  with an id drawn ahead), each with its audit record, and the transition's record last, the
  order the two-round-trip path writes them in. It returns the claim's row. A raise aborts the
  statement's transaction before anything commits; the store then takes the two-round-trip path.

SQLite: this revision only moves the version.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

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
BEGIN
    PERFORM set_config('synchronous_commit', 'on', true);
    INSERT INTO tg_claims (
        claim_key, client_order_id, agent_id, kind, symbol, side, intent, payload, payload_hash,
        owner, lease_expires_at, order_qty, turn_id, reason, created_at, updated_at, state,
        epoch, attempts
    ) VALUES (
        p_key, p_coid, p_agent, p_kind, p_symbol, p_side, p_intent, p_payload, p_hash,
        p_owner, p_lease, p_order_qty, p_turn_id, p_reason, p_at, p_at, 'PENDING', 1, 1
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
        SELECT claim_key INTO other FROM tg_claims WHERE client_order_id = p_coid;
        RAISE EXCEPTION 'client_order_id % already belongs to another claim', p_coid
            USING DETAIL = coalesce(other, '');
    END IF;
END
$$
"""

# Migration 0005's tg_move, committing with `synchronous_commit = p_sync`.
_MOVE_FUNCTION = """
CREATE OR REPLACE FUNCTION tg_move_step(
    p_sync text,
    p_state text, p_at timestamptz, p_reason text, p_reject_kind text, p_payload text,
    p_hash text, p_broker_order_id text, p_avg_price text, p_order_qty text, p_owner text,
    p_lease timestamptz, p_filled_qty text, p_resend integer,
    p_key text, p_was_state text, p_was_epoch integer, p_was_attempts integer, p_was_filled text,
    a_at timestamptz, a_agent text, a_action text, a_reason text, a_kind text, a_symbol text,
    a_side text, a_qty text, a_state text, a_prev_state text, a_coid text, a_key text,
    a_detail text
) RETURNS SETOF tg_claims LANGUAGE plpgsql AS $$
DECLARE
    moved tg_claims;
BEGIN
    PERFORM set_config('synchronous_commit', p_sync, true);
    UPDATE tg_claims SET
        state = p_state, updated_at = p_at, reason = p_reason,
        reject_kind = p_reject_kind, payload = COALESCE(p_payload, payload),
        payload_hash = COALESCE(p_hash, payload_hash),
        broker_order_id = COALESCE(p_broker_order_id, broker_order_id),
        filled_avg_price = COALESCE(p_avg_price, filled_avg_price),
        order_qty = COALESCE(p_order_qty, order_qty), owner = COALESCE(p_owner, owner),
        lease_expires_at = COALESCE(p_lease, lease_expires_at),
        filled_qty = COALESCE(p_filled_qty, filled_qty), attempts = attempts + p_resend
    WHERE claim_key = p_key AND state = p_was_state AND epoch = p_was_epoch
        AND attempts = p_was_attempts AND filled_qty = p_was_filled
    RETURNING * INTO moved;
    IF FOUND THEN
        INSERT INTO tg_audit (
            at, agent_id, action, reason, kind, symbol, side, qty, state, prev_state,
            client_order_id, claim_key, detail
        ) VALUES (
            a_at, a_agent, a_action, a_reason, a_kind, a_symbol, a_side, a_qty, a_state,
            a_prev_state, a_coid, a_key, a_detail
        );
        RETURN NEXT moved;
    END IF;
END
$$
"""

# A fill from a guessed open turn (see the module docstring). `p_turn`: the turn id the claim
# records if it has none (the open turn the fill leaves). `e_turn`/`e_qty`: the open turn
# guessed (NULL: flat). `l_*`: the ledger writes and their records' reasons and details: close
# (or only set the quantity of) turn `l_turn` at `l_qty`, open turn `l_open_turn` at
# `l_open_qty`.
_FILL_FUNCTION = """
CREATE OR REPLACE FUNCTION tg_fill_step(
    p_sync text,
    p_state text, p_at timestamptz, p_reason text, p_reject_kind text, p_payload text,
    p_hash text, p_broker_order_id text, p_avg_price text, p_order_qty text, p_owner text,
    p_lease timestamptz, p_filled_qty text, p_resend integer,
    p_key text, p_was_state text, p_was_epoch integer, p_was_attempts integer, p_was_filled text,
    p_turn bigint,
    a_at timestamptz, a_agent text, a_action text, a_reason text, a_kind text, a_symbol text,
    a_side text, a_qty text, a_state text, a_prev_state text, a_coid text, a_key text,
    a_detail text,
    e_turn bigint, e_qty text,
    l_turn bigint, l_qty text, l_close_reason text, l_close_note text, l_close_detail text,
    l_open_turn bigint, l_open_qty text, l_open_note text, l_open_detail text
) RETURNS SETOF tg_claims LANGUAGE plpgsql AS $$
DECLARE
    t bigint;
    q text;
    moved tg_claims;
BEGIN
    PERFORM set_config('synchronous_commit', p_sync, true);
    PERFORM pg_advisory_xact_lock(hashtextextended('tradeguard:ledger:' || a_symbol, 0));
    SELECT turn_id, qty INTO t, q FROM tg_turns
    WHERE agent_id = a_agent AND symbol = a_symbol AND is_open = 1;
    IF t IS DISTINCT FROM e_turn OR (t IS NOT NULL AND q IS DISTINCT FROM e_qty) THEN
        RAISE EXCEPTION 'open turn of % in % is not the one expected', a_agent, a_symbol
            USING ERRCODE = 'TGL01';
    END IF;
    UPDATE tg_claims SET
        state = p_state, updated_at = p_at, reason = p_reason,
        reject_kind = p_reject_kind, payload = COALESCE(p_payload, payload),
        payload_hash = COALESCE(p_hash, payload_hash),
        broker_order_id = COALESCE(p_broker_order_id, broker_order_id),
        filled_avg_price = COALESCE(p_avg_price, filled_avg_price),
        order_qty = COALESCE(p_order_qty, order_qty), owner = COALESCE(p_owner, owner),
        lease_expires_at = COALESCE(p_lease, lease_expires_at),
        filled_qty = COALESCE(p_filled_qty, filled_qty), attempts = attempts + p_resend,
        turn_id = COALESCE(turn_id, p_turn)
    WHERE claim_key = p_key AND state = p_was_state AND epoch = p_was_epoch
        AND attempts = p_was_attempts AND filled_qty = p_was_filled
    RETURNING * INTO moved;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'claim % changed before its fill', p_key USING ERRCODE = 'TGC01';
    END IF;
    IF l_turn IS NOT NULL THEN
        IF l_close_reason IS NULL THEN
            UPDATE tg_turns SET qty = l_qty, updated_at = a_at WHERE turn_id = l_turn;
        ELSE
            UPDATE tg_turns SET qty = l_qty, is_open = 0, closed_at = a_at, updated_at = a_at,
                close_reason = l_close_reason WHERE turn_id = l_turn;
            INSERT INTO tg_audit (at, agent_id, action, reason, symbol, qty, detail)
            VALUES (a_at, a_agent, 'ledger', l_close_note, a_symbol, l_qty, l_close_detail);
        END IF;
    END IF;
    IF l_open_turn IS NOT NULL THEN
        INSERT INTO tg_turns (turn_id, agent_id, symbol, qty, is_open, opened_at, updated_at)
        VALUES (l_open_turn, a_agent, a_symbol, l_open_qty, 1, a_at, a_at);
        INSERT INTO tg_audit (at, agent_id, action, reason, symbol, qty, detail)
        VALUES (a_at, a_agent, 'ledger', l_open_note, a_symbol, l_open_qty, l_open_detail);
    END IF;
    INSERT INTO tg_audit (
        at, agent_id, action, reason, kind, symbol, side, qty, state, prev_state,
        client_order_id, claim_key, detail
    ) VALUES (
        a_at, a_agent, a_action, a_reason, a_kind, a_symbol, a_side, a_qty, a_state,
        a_prev_state, a_coid, a_key, a_detail
    );
    RETURN NEXT moved;
END
$$
"""

# Migration 0005's tg_claim, restored on downgrade.
_CLAIM_0005 = _CLAIM_FUNCTION.replace("    PERFORM set_config('synchronous_commit', 'on', true);\n", "")


def upgrade() -> None:
    """PostgreSQL: replace tg_claim, create tg_move_step and tg_fill_step."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CLAIM_FUNCTION)
        op.execute(_MOVE_FUNCTION)
        op.execute(_FILL_FUNCTION)


def downgrade() -> None:
    """PostgreSQL: drop the two step functions; tg_claim as migration 0005 made it."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS tg_fill_step")
        op.execute("DROP FUNCTION IF EXISTS tg_move_step")
        op.execute(_CLAIM_0005)
