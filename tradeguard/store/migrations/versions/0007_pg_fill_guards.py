"""PostgreSQL: two guards that let a fill travel in one round trip (`tg_cas`, `tg_expect_turn`).

A fill changes the claim and the agent's open turn. The ledger rule (`domain.ledger.fill_step`)
needs the open turn, so a fill took two round trips: the compare-and-set with the turn read,
then the ledger writes. A store now remembers the open turn its own last fill left (and a turn id
drawn ahead) and sends the whole fill at once, computed from that guess; two guards inside the
batch make a wrong guess or a lost compare-and-set abort the transaction before anything commits,
and the store then takes the two-round-trip path:

* `tg_expect_turn(agent, symbol, turn_id, qty)` takes the symbol's ledger lock (the advisory
  lock of `ledger.lock_symbol`, first, as every writer takes it) and raises SQLSTATE TGL01 unless
  the agent's open turn in the symbol is exactly that one at that quantity text (turn_id NULL: no
  open turn). Under the lock the turn cannot move between the check and the writes after it.
* `tg_cas(...)` is the compare-and-set of `statements.TRANSITION` (its parameters, then the turn
  id to record on a claim that has none; the same row back) that raises SQLSTATE TGC01 when it
  changed no row, where the plain UPDATE would return nothing and let the statements after it
  run.

Nothing else changes on either backend (SQLite: this revision only moves the version).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_EXPECT_TURN = """
CREATE OR REPLACE FUNCTION tg_expect_turn(p_agent text, p_symbol text, p_turn bigint, p_qty text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t bigint;
    q text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('tradeguard:ledger:' || p_symbol, 0));
    SELECT turn_id, qty INTO t, q FROM tg_turns
    WHERE agent_id = p_agent AND symbol = p_symbol AND is_open = 1;
    IF t IS DISTINCT FROM p_turn OR (t IS NOT NULL AND q IS DISTINCT FROM p_qty) THEN
        RAISE EXCEPTION 'open turn of % in % is not the one expected', p_agent, p_symbol
            USING ERRCODE = 'TGL01';
    END IF;
END
$$
"""

_CAS = """
CREATE OR REPLACE FUNCTION tg_cas(
    p_state text, p_at timestamptz, p_reason text, p_reject_kind text, p_payload text,
    p_hash text, p_broker_order_id text, p_avg_price text, p_order_qty text, p_owner text,
    p_lease timestamptz, p_filled_qty text, p_resend integer,
    p_key text, p_was_state text, p_was_epoch integer, p_was_attempts integer, p_was_filled text,
    p_turn bigint
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
        filled_qty = COALESCE(p_filled_qty, filled_qty), attempts = attempts + p_resend,
        turn_id = COALESCE(turn_id, p_turn)
    WHERE claim_key = p_key AND state = p_was_state AND epoch = p_was_epoch
        AND attempts = p_was_attempts AND filled_qty = p_was_filled
    RETURNING * INTO moved;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'claim % changed before its fill', p_key USING ERRCODE = 'TGC01';
    END IF;
    RETURN NEXT moved;
END
$$
"""


def upgrade() -> None:
    """PostgreSQL: create the two functions."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_EXPECT_TURN)
        op.execute(_CAS)


def downgrade() -> None:
    """PostgreSQL: drop them."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS tg_cas")
        op.execute("DROP FUNCTION IF EXISTS tg_expect_turn")
