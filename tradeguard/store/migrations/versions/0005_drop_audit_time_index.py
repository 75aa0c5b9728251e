"""Drop the audit log's time index (`ix_tg_audit_at`); PostgreSQL: claims and moves as functions.

Each claim, transition and ledger change appends audit records, and each of those commits wrote
a leaf of `ix_tg_audit_at` besides the table's own last page: on SQLite a claim cycle wrote 25
WAL pages, 20 without it; on PostgreSQL every record was one more index insert and its WAL.
Nothing on the order path or in the reconciler reads the log by time. The operator's time-range
queries (`tradeguard audit --since/--until`, `GET /v1/audit`) now read the log in id order and
filter by time, a scan of the table (`bench/claims.py`, table 4, prints what that costs at 1M
records). `at` is not monotonic with `id` (a record is stamped before its transaction takes the
write lock), so a time range cannot be turned into an id range.

PostgreSQL only: `tg_claim(...)` inserts a claim if its key is absent, with the audit record
given (its 13 values, as `audit.write_audit` binds them), and returns nothing; or returns the
existing row. Sent as one statement, the three statements inside are planned once per session
(PL/pgSQL caches their plans) instead of parsed and planned on every claim: about 150 µs of
server CPU less a claim, the largest cost of a claim-heavy load. A key that is absent while its
client_order_id belongs to another claim raises (SQLSTATE P0001, the other claim's key as
DETAIL). `tg_move(...)` is a transition's compare-and-set (`statements.TRANSITION`) and, if it
changed the row, its audit record; it returns the row as it now is, or nothing. The bodies are
frozen here: a later change to the claim columns replaces the functions in its own migration.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
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

# The compare-and-set of statements.TRANSITION and, if it changed the row, the audit record given.
_MOVE_FUNCTION = """
CREATE OR REPLACE FUNCTION tg_move(
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
    UPDATE tg_claims SET state = p_state, updated_at = p_at, reason = p_reason,
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


def upgrade() -> None:
    """Drop the index; on PostgreSQL, create the two functions."""
    op.drop_index("ix_tg_audit_at", table_name="tg_audit")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CLAIM_FUNCTION)
        op.execute(_MOVE_FUNCTION)


def downgrade() -> None:
    """Restore the index; drop the functions."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS tg_move")
        op.execute("DROP FUNCTION IF EXISTS tg_claim")
    op.create_index("ix_tg_audit_at", "tg_audit", ["at"])
