"""The fixed SQL of the store's hot paths, written once for both backends (qmark placeholders).

Statements that vary with the caller's filters (listings, audit queries) are built with
SQLAlchemy Core where they are used; these run on the driver directly (see connections.py).
"""

from __future__ import annotations

from tradeguard.store.model import CLAIM_COLUMNS

COLS = ", ".join(CLAIM_COLUMNS)
BY_KEY = f"SELECT {COLS} FROM tg_claims WHERE claim_key = ?"  # noqa: S608 - constant column names
BY_COID = f"SELECT {COLS} FROM tg_claims WHERE client_order_id = ?"  # noqa: S608 - constant column names
KEY_OF_COID = "SELECT claim_key FROM tg_claims WHERE client_order_id = ?"
INSERT_CLAIM = (
    "INSERT INTO tg_claims (claim_key, client_order_id, agent_id, kind, symbol, side, intent, payload,"
    " payload_hash, state, epoch, owner, lease_expires_at, order_qty, turn_id, attempts, reason,"
    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'PENDING', 1, ?, ?, ?, ?, 1, ?, ?, ?)"
    " ON CONFLICT DO NOTHING"
)
# The compare-and-set: state and epoch (fencing), plus attempts and filled_qty, which change on
# the two moves that can return a claim to a state and epoch it had before (a re-send goes back
# to PENDING; a further partial fill stays PARTIALLY_FILLED). Without them a stale snapshot
# could pass the check and apply its fill to the ledger a second time.
TRANSITION = (
    "UPDATE tg_claims SET state = ?, updated_at = ?, reason = ?,"
    " broker_order_id = COALESCE(?, broker_order_id), filled_avg_price = COALESCE(?, filled_avg_price),"
    " order_qty = COALESCE(?, order_qty), owner = COALESCE(?, owner),"
    " lease_expires_at = COALESCE(?, lease_expires_at), filled_qty = COALESCE(?, filled_qty),"
    " attempts = attempts + ?"
    " WHERE claim_key = ? AND state = ? AND epoch = ? AND attempts = ? AND filled_qty = ?"
    " RETURNING state, epoch, owner, lease_expires_at, order_qty, broker_order_id, filled_qty,"
    " filled_avg_price, turn_id, attempts, reason, updated_at"  # MUTABLE_COLUMNS, in order
)
VERSION = "SELECT state, epoch, attempts, filled_qty FROM tg_claims WHERE claim_key = ?"
SET_TURN = "UPDATE tg_claims SET turn_id = ? WHERE claim_key = ?"
TAKE_OVER = (
    "UPDATE tg_claims SET epoch = epoch + 1, owner = ?, lease_expires_at = ?, state = ?, updated_at = ?,"
    " reason = ? WHERE claim_key = ? AND epoch = ? AND state = ? AND lease_expires_at <= ?"
    " AND state IN ('PENDING', 'PARTIALLY_FILLED', 'SUBMITTED', 'UNKNOWN')"  # ACTIVE_STATES
    " RETURNING state, epoch, owner, lease_expires_at, order_qty, broker_order_id, filled_qty,"
    " filled_avg_price, turn_id, attempts, reason, updated_at"  # MUTABLE_COLUMNS, in order
)
IN_FLIGHT = (
    "SELECT order_qty, filled_qty FROM tg_claims WHERE agent_id = ? AND symbol = ? AND kind = 'exit'"
    " AND state IN ('PENDING', 'UNKNOWN')"
)
WINDOW_LIVE = "SELECT claim_key FROM tg_dedup_windows WHERE content_key = ? AND expires_at > ?"
WINDOW_OPEN = (
    "INSERT INTO tg_dedup_windows (content_key, claim_key, expires_at) VALUES (?, ?, ?)"
    " ON CONFLICT (content_key) DO UPDATE SET claim_key = excluded.claim_key,"
    " expires_at = excluded.expires_at"
    " WHERE tg_dedup_windows.expires_at <= ? RETURNING claim_key"
)
WINDOW_HELD = "SELECT claim_key FROM tg_dedup_windows WHERE content_key = ?"
