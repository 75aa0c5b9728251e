"""The fixed SQL of the store's hot paths, written once for both backends (qmark placeholders).

Column lists are generated from `model.CLAIM_COLUMNS` / `model.MUTABLE_COLUMNS`, the one source
that row decoding also reads, so a new column cannot be selected in one place and missed in
another. Statements that vary with the caller's filters (listings, audit queries) are built with
SQLAlchemy Core where they are used; these run on the driver directly (see connections.py).
"""

from __future__ import annotations

from tradeguard.domain.lifecycle import ACTIVE_STATES
from tradeguard.store.model import CLAIM_COLUMNS, MUTABLE_COLUMNS

COLS = ", ".join(CLAIM_COLUMNS)
_RETURNING = " RETURNING " + ", ".join(MUTABLE_COLUMNS)
_ACTIVE = ", ".join(f"'{s.value}'" for s in sorted(ACTIVE_STATES))

LIST = f"SELECT {COLS} FROM tg_claims"
BY_KEY = f"SELECT {COLS} FROM tg_claims WHERE claim_key = ?"
# A claim by its client_order_id (`ports.coid_scope`): in one account's scope (its own, or "" from
# an agent of unknown account), or in any scope, the oldest first (an agent of unknown account).
BY_COID = f"SELECT {COLS} FROM tg_claims WHERE client_order_id = ? AND coid_scope IN (?, '')"
BY_COID_EVERY = f"SELECT {COLS} FROM tg_claims WHERE client_order_id = ? ORDER BY created_at, claim_key"
BY_COID_ANY = BY_COID_EVERY + " LIMIT 1"
# PostgreSQL: the claim function of migration 0015, `tg_claim2` (the values of INSERT_CLAIM but
# updated_at, then the audit record's reason, quantity and detail: the rest of the record is the
# claim's own, see audit.write_audit). No rows: it inserted the claim and its record; else the
# existing claim's row, in CLAIM_COLUMNS order.
PG_CLAIM = f"SELECT {COLS} FROM tg_claim2({', '.join(['?'] * 18)})"
# PostgreSQL: migration 0005's TRANSITION with its audit record (the parameters of TRANSITION,
# then the record's); the row's MUTABLE_COLUMNS if the compare-and-set passed, else no rows.
PG_MOVE = f"SELECT {', '.join(MUTABLE_COLUMNS)} FROM tg_move({', '.join(['?'] * 31)})"
# PostgreSQL: what a fill's one statement (`tg_fill_step`, below) raises when the open turn is
# not the one the store guessed (TGL01) or its compare-and-set changed nothing (TGC01): it wrote
# nothing, and the two-round-trip path follows. (Migration 0007's `tg_cas` and
# `tg_expect_turn`, which a batched fill used before, are no longer called.)
PG_GUESS_MISSED = frozenset({"TGL01", "TGC01"})
# PostgreSQL, migration 0015 (0009's steps, leaner): a move without a fill (`tg_move_step2`: the
# transaction's `synchronous_commit`, TRANSITION's parameters, the claim's agent and symbol, the
# record's quantity and detail) and a fill from a guessed open turn (`tg_fill_step2`), each a
# whole transaction in one statement (`Tx.step`) returning the row's MUTABLE_COLUMNS. The fill's
# first parameter says whether to draw a turn id ahead, returned after them; then the
# durability, TRANSITION's parameters, the turn id the claim records if it has none, the claim's
# agent and symbol, the record's quantity and detail, the open turn guessed (turn id, qty) and
# `ledger.fill_step_writes`.
PG_MOVE_STEP = f"SELECT * FROM tg_move_step2({', '.join(['?'] * 23)})"
PG_FILL_STEP = (
    "SELECT *, CASE WHEN ? THEN nextval(pg_get_serial_sequence('tg_turns', 'turn_id')) END"
    f" FROM tg_fill_step2({', '.join(['?'] * 35)})"
)
# The claim function's error when the key is new but the client_order_id is another claim's.
PG_CLAIM_COID_TAKEN = "P0001"

# A new claim: the caller's values, and the constants every claim starts with.
_INSERT_VALUES = (
    "claim_key", "client_order_id", "agent_id", "kind", "symbol", "side", "intent", "payload",
    "payload_hash", "owner", "lease_expires_at", "order_qty", "turn_id", "reason", "created_at",
    "updated_at",
)  # fmt: skip
_INSERT_CONSTANTS = {"state": "'PENDING'", "epoch": "1", "attempts": "1"}
# The id's scope (migration 0012, `ports.coid_scope`): the agent's registered account key when it
# is of the account's own id, else "". Read in the statement itself, so a claim and the account
# it is scoped to are one snapshot. The caller's values, then the agent id and the
# client_order_id again. The insert does nothing when the key exists (its primary key), when
# the id is taken in its scope (`ux_tg_claims_coid_scope`), or when it is taken in any scope
# and one of the two is "" (the NOT EXISTS: SQLite runs the statement under its write lock).
_SCOPE_OF_AGENT = (
    "(SELECT COALESCE((SELECT CASE WHEN substr(account_key, 1, 5) = 'acct:' THEN account_key"
    " ELSE '' END FROM tg_agent_accounts WHERE agent_id = ?), '') AS scope) AS s"
)
INSERT_CLAIM = (
    f"INSERT INTO tg_claims ({', '.join((*_INSERT_VALUES, *_INSERT_CONSTANTS, 'coid_scope'))})"
    f" SELECT {', '.join(['?'] * len(_INSERT_VALUES) + list(_INSERT_CONSTANTS.values()))}, s.scope"
    f" FROM {_SCOPE_OF_AGENT}"
    " WHERE NOT EXISTS (SELECT 1 FROM tg_claims WHERE client_order_id = ?"
    " AND (coid_scope = '' OR s.scope = ''))"
    " ON CONFLICT DO NOTHING"
)
# The claim an INSERT_CLAIM refused for its id conflicts with (the agent id, the id): one in the
# agent's scope, or either of them "" (not another account's claim of the id, which it may share).
KEY_OF_COID = (
    f"SELECT c.claim_key FROM tg_claims c, {_SCOPE_OF_AGENT} WHERE c.client_order_id = ?"
    " AND (c.coid_scope = s.scope OR c.coid_scope = '' OR s.scope = '') LIMIT 1"
)
# The compare-and-set: state and epoch (fencing), plus attempts and filled_qty, which change on
# the two moves that can return a claim to a state and epoch it had before (a re-send goes back
# to PENDING; a further partial fill stays PARTIALLY_FILLED). Without them a stale snapshot
# could pass the check and apply its fill to the ledger a second time.
TRANSITION = (
    "UPDATE tg_claims SET state = ?, updated_at = ?, reason = ?, reject_kind = ?,"
    " payload = COALESCE(?, payload), payload_hash = COALESCE(?, payload_hash),"
    " broker_order_id = COALESCE(?, broker_order_id), filled_avg_price = COALESCE(?, filled_avg_price),"
    " order_qty = COALESCE(?, order_qty), owner = COALESCE(?, owner),"
    " lease_expires_at = COALESCE(?, lease_expires_at), filled_qty = COALESCE(?, filled_qty),"
    " attempts = attempts + ?"
    " WHERE claim_key = ? AND state = ? AND epoch = ? AND attempts = ? AND filled_qty = ?" + _RETURNING
)
VERSION = "SELECT state, epoch, attempts, filled_qty FROM tg_claims WHERE claim_key = ?"
SET_TURN = "UPDATE tg_claims SET turn_id = ? WHERE claim_key = ?"
# SQLite: a fill's compare-and-set after its ledger writes (`ClaimStore._sqlite_fill`), recording
# the turn the fill leaves if the claim names none yet, as SET_TURN did in a second update: the
# parameters of TRANSITION with that turn id before its attempts increment.
_ATTEMPTS = " attempts = attempts + ?"
TRANSITION_TURN = TRANSITION.replace(_ATTEMPTS, " turn_id = COALESCE(turn_id, ?)," + _ATTEMPTS, 1)
TRANSITION_TURN_AT = TRANSITION.split(_ATTEMPTS, 1)[0].count("?")  # where its turn id goes among them
TAKE_OVER = (
    "UPDATE tg_claims SET epoch = epoch + 1, owner = ?, lease_expires_at = ?, state = ?, updated_at = ?,"
    " reason = ? WHERE claim_key = ? AND epoch = ? AND state = ? AND lease_expires_at <= ?"
    f" AND state IN ({_ACTIVE})" + _RETURNING
)
# A sender renews its own PENDING claim right before the POST when its lease is nearly out. The
# epoch goes up, so a reconciler that read the claim before (and may mark it NOT_SENT) fails its
# compare-and-set; if the reconciler or a take-over came first, this fails and nothing is sent.
RENEW = (
    "UPDATE tg_claims SET epoch = epoch + 1, lease_expires_at = ?, updated_at = ?"
    " WHERE claim_key = ? AND state = 'PENDING' AND epoch = ? AND owner = ?" + _RETURNING
)
IN_FLIGHT = (
    "SELECT order_qty, filled_qty FROM tg_claims WHERE agent_id = ? AND symbol = ? AND kind = 'exit'"
    " AND state IN ('PENDING', 'UNKNOWN')"
)
WINDOW_LIVE = "SELECT claim_key FROM tg_dedup_windows WHERE content_key = ? AND expires_at > ?"
# An expired window changes hands only when the order that holds it is resolved: while that
# claim is PENDING or UNKNOWN an identical order is its retry, however late (G1).
WINDOW_OPEN = (
    "INSERT INTO tg_dedup_windows (content_key, claim_key, expires_at) VALUES (?, ?, ?)"
    " ON CONFLICT (content_key) DO UPDATE SET claim_key = excluded.claim_key,"
    " expires_at = excluded.expires_at"
    " WHERE tg_dedup_windows.expires_at <= ? AND NOT EXISTS (SELECT 1 FROM tg_claims"
    " WHERE tg_claims.claim_key = tg_dedup_windows.claim_key AND tg_claims.state IN ('PENDING', 'UNKNOWN'))"
    " RETURNING claim_key"
)
WINDOW_HELD = "SELECT claim_key FROM tg_dedup_windows WHERE content_key = ?"
SYMBOLS_IN_MOTION = f"SELECT DISTINCT symbol FROM tg_claims WHERE state IN ({_ACTIVE}) AND agent_id <> ?"
