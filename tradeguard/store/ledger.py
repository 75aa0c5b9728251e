"""The ledger: what each agent holds per symbol, as turns (flat -> position -> flat).

A turn opens when a fill takes an agent off flat and closes when fills bring it back to zero
(or the reconciler clears a phantom). Fills that cross zero close the turn and open a new one
with the remainder. All functions run inside the caller's write transaction; the rules themselves
(`fill_step`, `size_exit`) are pure functions in `tradeguard.domain.ledger`, shared with the
in-memory store.

Every function that reads a position to change it first takes the symbol's lock (`lock_symbol`):
on PostgreSQL, under READ COMMITTED, two fills read-modify-writing one turn would otherwise lose
one of them, and two exits sized from the same "held minus in flight" would both send. SQLite
write transactions are serial already (BEGIN IMMEDIATE).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradeguard.domain.audit import AuditAction
from tradeguard.domain.intents import exit_group, is_leg
from tradeguard.domain.ledger import (
    ExitRoom,
    FillStep,
    LedgerPosition,
    acknowledged_before,
    fill_step,
    legs_wait,
    made_here,
    own_moves_hide_the_orphan,
    size_exit,
)
from tradeguard.ports import coid_scope, same_account
from tradeguard.store.audit import detail_text, write_audit

if TYPE_CHECKING:
    from tradeguard.store.connections import Tx
    from tradeguard.store.model import Decode

__all__ = [
    "ACCOUNTS_SQL",
    "ACCOUNT_OF_SQL",
    "ALL_POSITIONS_SQL",
    "CLEARED_TURNS_SQL",
    "LATEST_TURN_SQL",
    "POSITIONS_SQL",
    "POSITION_SQL",
    "apply_fill",
    "close_turn",
    "exit_room",
    "fill_step_writes",
    "lock_symbol",
    "open_turn",
    "open_turn_of",
    "others_on_account",
    "position_of",
    "positions_from_rows",
    "queue_open_read",
    "queue_turn_id",
    "UPSERT_ACCOUNT_SQL",
    "reserved_turn_id",
]

_TURN_COLUMNS = "agent_id, symbol, qty, turn_id, opened_at, updated_at"
_OPEN = "SELECT turn_id, qty FROM tg_turns WHERE agent_id = ? AND symbol = ? AND is_open = 1"
_INSERT = (
    "INSERT INTO tg_turns (agent_id, symbol, qty, is_open, opened_at, updated_at) VALUES (?, ?, ?, 1, ?, ?)"
    " RETURNING turn_id"
)
# PostgreSQL: a turn id drawn ahead, with a fill's first round trip, so opening the turn needs no
# round trip of its own (ids are unique, not gapless: one is drawn for every fill).
_NEXT_TURN_ID = "SELECT nextval(pg_get_serial_sequence('tg_turns', 'turn_id'))"
_INSERT_WITH_ID = (
    "INSERT INTO tg_turns (turn_id, agent_id, symbol, qty, is_open, opened_at, updated_at)"
    " VALUES (?, ?, ?, ?, 1, ?, ?)"
)
_SET_QTY = "UPDATE tg_turns SET qty = ?, updated_at = ? WHERE turn_id = ?"
_CLOSE = "UPDATE tg_turns SET is_open = 0, closed_at = ?, updated_at = ?, close_reason = ? WHERE turn_id = ?"
# A fill that closes the turn: its last quantity and the close in one statement.
_SET_QTY_AND_CLOSE = (
    "UPDATE tg_turns SET qty = ?, is_open = 0, closed_at = ?, updated_at = ?, close_reason = ?"
    " WHERE turn_id = ?"
)
# Open turns: one agent's (all symbols), one agent's in one symbol, every agent's.
POSITIONS_SQL = f"SELECT {_TURN_COLUMNS} FROM tg_turns WHERE agent_id = ? AND is_open = 1 ORDER BY symbol"
POSITION_SQL = f"SELECT {_TURN_COLUMNS} FROM tg_turns WHERE agent_id = ? AND symbol = ? AND is_open = 1"
ALL_POSITIONS_SQL = f"SELECT {_TURN_COLUMNS} FROM tg_turns WHERE is_open = 1 ORDER BY agent_id, symbol"
# Turns the reconciler closed while they still held shares (phantom clears), most recent first:
# an orphan position that equals one of them is that agent's position, read too early.
# (A closed turn's updated_at is its closed_at: the `updated_at` bound is the same bound, and lets
# the read seek `ix_tg_turns_closed_moved` instead of scanning every turn ever closed; `+turn_id`
# keeps SQLite from walking the whole table backwards by id to spare itself sorting a few rows.)
CLEARED_TURNS_SQL = (
    f"SELECT {_TURN_COLUMNS} FROM tg_turns WHERE is_open = 0 AND updated_at >= ? AND qty <> '0'"
    " AND closed_at >= ? ORDER BY +turn_id DESC"
)
# Every turn a fill or correction moved since a time, open or closed (a closed one reads flat):
# the positions endpoint may still show (or not yet show) the shares it moved.
# Open turns come from `ux_tg_turns_open` (few: one per agent and symbol held), closed ones from
# `ix_tg_turns_closed_moved` (a range seek): neither part reads the turn history.
MOVED_TURNS_SQL = (
    "SELECT agent_id, symbol, qty, turn_id, opened_at, updated_at FROM tg_turns"
    " WHERE is_open = 1 AND updated_at > ?"
    " UNION ALL SELECT agent_id, symbol, '0', turn_id, opened_at, updated_at FROM tg_turns"
    " WHERE is_open = 0 AND updated_at > ? ORDER BY 6, 4"
)
# The agent's most recent turn in a symbol, open or closed.
LATEST_TURN_SQL = "SELECT MAX(turn_id) FROM tg_turns WHERE agent_id = ? AND symbol = ?"
# Every agent's open turn in a symbol, and the unfilled quantity of exits that may still fill,
# each with the account its agent registered (NULL: none) and since when, so agents on other
# broker accounts are left out of the sizing without another round trip (`_holds_here`).
_HOLDERS = (
    "SELECT t.agent_id, t.qty, a.account_key, t.turn_id, t.opened_at, a.updated_at FROM tg_turns t"
    " LEFT JOIN tg_agent_accounts a ON a.agent_id = t.agent_id WHERE t.symbol = ? AND t.is_open = 1"
)
# The accounts an open turn's claims were made on (their `coid_scope`s, "" unknown).
_TURN_SCOPES = "SELECT DISTINCT coid_scope FROM tg_claims WHERE agent_id = ? AND symbol = ? AND turn_id = ?"
# Whether an agent's open turn in a symbol holds a claim made on an account (its `coid_scope`):
# an agent re-pointed to another account since keeps its shares on the one it bought them on.
_TURN_MADE_ON = (
    "SELECT 1 FROM tg_turns t JOIN tg_claims c ON c.agent_id = t.agent_id AND c.symbol = t.symbol"
    " AND c.turn_id = t.turn_id WHERE t.agent_id = ? AND t.symbol = ? AND t.is_open = 1"
    " AND c.coid_scope = ? LIMIT 1"
)
_OPEN_EXITS = (
    "SELECT c.agent_id, c.state, c.order_qty, c.filled_qty, a.account_key, c.intent, c.client_order_id,"
    " c.updated_at FROM tg_claims c"
    " LEFT JOIN tg_agent_accounts a ON a.agent_id = c.agent_id WHERE c.symbol = ? AND c.kind = 'exit'"
    " AND c.state IN ('PENDING', 'UNKNOWN', 'SUBMITTED', 'PARTIALLY_FILLED')"
)
# The kind and state of the claim that names a group of legs (their entry, or an OCO's own order):
# the legs' agent's own (`execution.track_legs`), as ids are unique per account, not per store.
_PARENT_OF_LEGS = "SELECT kind, state FROM tg_claims WHERE client_order_id = ? AND agent_id = ?"
# Every agent's orders in motion in a symbol (entries and exits), with the agent's account: their
# fills may already be in a broker position that no ledger shows yet.
_IN_MOTION = (
    "SELECT c.agent_id, a.account_key, c.side FROM tg_claims c"
    " LEFT JOIN tg_agent_accounts a ON a.agent_id = c.agent_id WHERE c.symbol = ?"
    " AND c.state IN ('PENDING', 'UNKNOWN', 'SUBMITTED', 'PARTIALLY_FILLED')"
)
# Every agent's turn in a symbol that a fill or correction moved since a time (open or closed):
# the positions endpoint may still show (or not yet show) those shares.
# (Open and closed turns apart, each part an index read, as in MOVED_TURNS_SQL.)
_MOVED_SINCE = (
    "SELECT t.agent_id, a.account_key FROM tg_turns t LEFT JOIN tg_agent_accounts a"
    " ON a.agent_id = t.agent_id WHERE t.is_open = 1 AND t.symbol = ? AND t.updated_at > ?"
    " UNION ALL SELECT t.agent_id, a.account_key FROM tg_turns t LEFT JOIN tg_agent_accounts a"
    " ON a.agent_id = t.agent_id WHERE t.is_open = 0 AND t.symbol = ? AND t.updated_at > ?"
)
# One agent's claims in a symbol updated since a time (with what they filled): which of its own
# moves a lagging positions read may show early (its own orders in motion come with `_IN_MOTION`).
_OWN_UPDATED_SINCE = (
    "SELECT side, filled_qty FROM tg_claims WHERE agent_id = ? AND symbol = ? AND updated_at > ?"
)
# The agents' registered broker accounts (`ClaimLedger.register_account`).
ACCOUNT_OF_SQL = "SELECT account_key FROM tg_agent_accounts WHERE agent_id = ?"
ACCOUNTS_SQL = "SELECT agent_id, account_key FROM tg_agent_accounts ORDER BY agent_id"
UPSERT_ACCOUNT_SQL = (
    "INSERT INTO tg_agent_accounts (agent_id, account_key, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (agent_id) DO UPDATE"
    " SET account_key = excluded.account_key, updated_at = excluded.updated_at"
)
_UNACKNOWLEDGED = ("PENDING", "UNKNOWN")
# PostgreSQL's advisory locks are database-wide: the key is hashed with the OID of the store's own
# `tg_claims` as the seed (migration 0014, which builds it the same way in `tg_fill_step`), so
# stores in two schemas of one database never wait for each other. The old, schema-less key is
# taken first, shared: a process of a version before 0014 takes it exclusively, and still
# serialises with this one.
_PG_LOCK_OLD = "SELECT pg_advisory_xact_lock_shared(hashtextextended(?, 0))"
_PG_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(?, 'tg_claims'::regclass::oid::bigint))"


def lock_symbol(tx: Tx, symbol: str) -> None:
    """Serialise, until the transaction ends, every ledger change and exit sizing in `symbol`.

    PostgreSQL: in this store's schema only (see `_PG_LOCK`); the two locks in this order, as
    `tg_fill_step` takes them.
    """
    if tx.postgres:
        name = f"tradeguard:ledger:{symbol}"
        tx.later(_PG_LOCK_OLD, (name,))  # both sent with the read that follows
        tx.later(_PG_LOCK, (name,))


def _open_row(tx: Tx, agent_id: str, symbol: str) -> tuple[int, Decimal] | None:
    return open_turn_of(tx.all(_OPEN, (agent_id, symbol)))


def queue_open_read(tx: Tx, agent_id: str, symbol: str) -> None:
    """Queue the read of the agent's open turn (kept: see `Tx.later`), under the symbol's lock.

    The caller queued `lock_symbol` first, before touching the claim's row (the lock order every
    writer keeps).

    A fill queues it with the claim's compare-and-set, so on PostgreSQL both travel in one round
    trip; `open_turn_of` decodes its rows for `apply_fill(current=...)`. PostgreSQL: a turn id
    is drawn with it (a second kept result, `reserved_turn_id` reads it), for a turn the fill
    may open.
    """
    tx.later(_OPEN, (agent_id, symbol), keep=True)
    if tx.postgres:
        queue_turn_id(tx)


def queue_turn_id(tx: Tx) -> None:
    """PostgreSQL: queue drawing a turn id ahead (kept: `reserved_turn_id` reads its rows)."""
    tx.later(_NEXT_TURN_ID, keep=True)


def reserved_turn_id(rows: Sequence[Any]) -> int:
    """Return the turn id drawn by `queue_open_read` on PostgreSQL, from its rows."""
    return int(rows[0][0])


def open_turn_of(rows: Sequence[Any]) -> tuple[int, Decimal] | None:
    """Return (turn_id, qty) of the open turn in rows of the open-turn read, or None when flat."""
    return None if not rows else (int(rows[0][0]), Decimal(rows[0][1]))


def position_of(tx: Tx, agent_id: str, symbol: str) -> LedgerPosition:
    """Return the agent's open position in `symbol` inside the transaction (flat if none)."""
    found = positions_from_rows(tx.all(POSITION_SQL, (agent_id, symbol)), tx.dt)
    return found[0] if found else LedgerPosition(agent_id, symbol, Decimal(0), None, None)


def open_turn(
    tx: Tx, agent_id: str, symbol: str, qty: Decimal, *, at: datetime, reason: str, turn_id: int | None = None
) -> int:
    """Open a new turn holding `qty` and return its id (`turn_id`: one drawn ahead, see `queue_open_read`)."""
    when = tx.ts(at)
    if turn_id is None:
        turn_id = int(tx.one(_INSERT, (agent_id, symbol, str(qty), when, when))[0])
    else:
        tx.later(_INSERT_WITH_ID, (turn_id, agent_id, symbol, str(qty), when, when))
    write_audit(
        tx, at=at, agent_id=agent_id, action=AuditAction.LEDGER, symbol=symbol, qty=qty,
        reason=_opened_note(turn_id, reason), detail=_opened_detail(turn_id),
    )  # fmt: skip
    return turn_id


# The ledger records' reasons and details, written here and by `fill_step_writes` alike.
def _opened_note(turn_id: int, reason: str) -> str:
    return f"turn {turn_id} opened: {reason}"


def _opened_detail(turn_id: int) -> dict[str, Any]:
    return {"turn_id": turn_id}


def _closed_note(turn_id: int, reason: str) -> str:
    return f"turn {turn_id} closed: {reason}"


def _closed_detail(turn_id: int, qty: Decimal) -> dict[str, Any]:
    return {"turn_id": turn_id, "qty_at_close": str(qty)}


def _close(
    tx: Tx,
    turn_id: int,
    qty: Decimal,
    *,
    agent_id: str,
    symbol: str,
    at: datetime,
    reason: str,
    set_qty: bool = False,
) -> None:
    if set_qty:  # the fill that closes it also sets its last quantity, `qty`
        tx.later(_SET_QTY_AND_CLOSE, (str(qty), tx.ts(at), tx.ts(at), reason, turn_id))
    else:
        tx.later(_CLOSE, (tx.ts(at), tx.ts(at), reason, turn_id))
    write_audit(
        tx, at=at, agent_id=agent_id, action=AuditAction.LEDGER, symbol=symbol, qty=qty,
        reason=_closed_note(turn_id, reason), detail=_closed_detail(turn_id, qty),
    )  # fmt: skip


def close_turn(
    tx: Tx,
    agent_id: str,
    symbol: str,
    *,
    at: datetime,
    reason: str,
    expect: LedgerPosition | None = None,
) -> int | None:
    """Close the open turn at its current quantity; return its id.

    With `expect`, a compare-and-set: the turn is closed only while it is still that turn at that
    quantity (a fill since the caller read it means the caller's evidence is stale). Returns None
    when there is no open turn or it moved.
    """
    lock_symbol(tx, symbol)
    current = _open_row(tx, agent_id, symbol)
    if current is None or (expect is not None and current != (expect.turn_id, expect.qty)):
        return None
    _close(tx, *current, agent_id=agent_id, symbol=symbol, at=at, reason=reason)
    return current[0]


def apply_fill(
    tx: Tx,
    agent_id: str,
    symbol: str,
    delta: Decimal,
    *,
    at: datetime,
    reason: str,
    expect: LedgerPosition | None = None,
    prefetched: bool = False,
    current: tuple[int, Decimal] | None = None,
    new_turn_id: int | None = None,
) -> int | None:
    """Add a signed fill quantity to the agent's position; return the open turn id after it.

    With `expect` (a correction, not a fill), nothing changes unless the position is still the
    one the caller read; then -1 is returned. `prefetched`: the caller already locked the symbol
    and read the open turn (`queue_open_read`) in this transaction; `current` is what it read,
    `new_turn_id` the id it drew for a turn this fill opens (PostgreSQL).
    """
    if not prefetched:
        lock_symbol(tx, symbol)
        current = _open_row(tx, agent_id, symbol)
    if expect is not None and (current or (None, Decimal(0))) != (expect.turn_id, expect.qty):
        return -1
    step = fill_step(None if current is None else current[1], delta, reason)
    turn_id = None if current is None else current[0]
    if turn_id is not None and step.set_qty is not None:
        if step.close_reason is None:
            tx.later(_SET_QTY, (str(step.set_qty), tx.ts(at), turn_id))
        else:
            _close(
                tx, turn_id, step.set_qty, agent_id=agent_id, symbol=symbol, at=at,
                reason=step.close_reason, set_qty=True,
            )  # fmt: skip
            turn_id = None
    if step.open_qty is not None:
        turn_id = open_turn(
            tx, agent_id, symbol, step.open_qty, at=at, reason=step.open_reason, turn_id=new_turn_id
        )
    return turn_id


def fill_step_writes(
    current: tuple[int, Decimal] | None, step: FillStep, new_turn_id: int | None
) -> tuple[Any, ...]:
    """Return what `apply_fill` writes for a fill that does `step` to `current`, as parameters.

    For migration 0009's `tg_fill_step` (PostgreSQL): the turn to change and its new quantity,
    the close reason (None: only set the quantity), the close record's reason and detail; the
    turn to open (with `new_turn_id`, drawn ahead), its quantity, its record's reason and
    detail. The same rule (`fill_step`) and record texts as `apply_fill`, which writes them
    statement by statement.
    """
    change: tuple[Any, ...] = (None, None, None, None, None)
    if current is not None and step.set_qty is not None:
        turn_id, qty = current[0], step.set_qty
        if step.close_reason is None:
            change = (turn_id, str(qty), None, None, None)
        else:
            change = (
                turn_id, str(qty), step.close_reason, _closed_note(turn_id, step.close_reason),
                detail_text(_closed_detail(turn_id, qty)),
            )  # fmt: skip
    opened: tuple[Any, ...] = (None, None, None, None)
    if step.open_qty is not None:
        if new_turn_id is None:
            raise ValueError("a fill that opens a turn needs a turn id drawn ahead")
        opened = (
            new_turn_id, str(step.open_qty), _opened_note(new_turn_id, step.open_reason),
            detail_text(_opened_detail(new_turn_id)),
        )  # fmt: skip
    return (*change, *opened)


def exit_room(
    tx: Tx,
    agent_id: str,
    symbol: str,
    *,
    broker_available: Decimal,
    requested: Decimal | None,
    read_at: datetime | None = None,
) -> ExitRoom:
    """Size one agent's exit from the ledger and the broker under the symbol's lock (G3).

    `broker_available` is the broker's `qty_available` on the agent's side, read just before, at
    `read_at` (`domain.ledger.acknowledged_before`).
    Exits claimed by other transactions since that read are counted here, inside the lock, so
    two exits can never both be sized from the same shares. Other agents count only when they
    may trade the same broker account (`ports.same_account` of their registered keys), or hold an
    open turn with a claim made on this agent's account (`coid_scope`: re-pointed since).
    """
    lock_symbol(tx, symbol)
    turns = tx.all(_HOLDERS, (symbol,))
    # Only agents on this agent's broker account hold shares it must not sell (`_holds_here`).
    mine = next((turn[2] for turn in turns if turn[0] == agent_id), None)
    holders = {
        turn[0]: Decimal(turn[1])
        for turn in turns
        if turn[0] == agent_id or _holds_here(tx, mine, turn, symbol)
    }
    rows = [row for row in tx.all(_OPEN_EXITS, (symbol,)) if row[0] == agent_id or same_account(mine, row[4])]
    # Legs waiting for their entry are no exit in flight yet (`domain.ledger.legs_wait`).
    # A group is an agent's: its parent is that agent's own claim (ids are unique per account).
    groups = {(row[0], exit_group(name, coid)) for *row, name, coid, _moved in rows if is_leg(name)}
    waiting = {
        (agent, group) for agent, group in groups if legs_wait(tx.one(_PARENT_OF_LEGS, (group, agent)))
    }
    open_exits = [
        (
            holder,
            acknowledged_before(state not in _UNACKNOWLEDGED, tx.dt(moved), read_at),
            Decimal(order_qty or 0) - Decimal(filled),
            exit_group(name, coid),
        )
        for holder, state, order_qty, filled, _key, name, coid, moved in rows
        if (holder, exit_group(name, coid)) not in waiting
    ]
    return size_exit(agent_id, holders, open_exits, broker_available=broker_available, requested=requested)


def others_on_account(
    tx: Tx, agent_id: str, symbol: str, *, settled_since: datetime, broker_qty: Decimal
) -> Decimal | None:
    """Return the signed shares other agents on `agent_id`'s broker account hold in `symbol`.

    Read under the symbol's lock, so a write that follows (an adoption) sees what it saw. Agents
    of unknown account count as on this one (`ports.same_account`). None while any other agent
    on the account has an order in motion in the symbol, or a ledger there that moved after
    `settled_since` (its fills may be in the broker's position before any ledger books them, or
    a lagging positions read may still show shares they moved), and while this agent's own
    orders may make a read of `broker_qty` overstate what no ledger holds
    (`domain.ledger.own_moves_hide_the_orphan`): what no ledger holds cannot be told then.
    (Checked here, in the store, because a caller may only see its own agent's rows.)
    """
    lock_symbol(tx, symbol)
    row = tx.one(ACCOUNT_OF_SQL, (agent_id,))
    mine = None if row is None else str(row[0])
    motion = tx.all(_IN_MOTION, (symbol,))
    busy = [(holder, key) for holder, key, _side in motion]
    since = tx.ts(settled_since)
    busy += tx.all(_MOVED_SINCE, (symbol, since, symbol, since))
    if any(holder != agent_id and same_account(mine, key) for holder, key in busy):
        return None
    in_motion = [str(side) for holder, _key, side in motion if holder == agent_id]
    lately = [
        (str(side), Decimal(filled))
        for side, filled in tx.all(_OWN_UPDATED_SINCE, (agent_id, symbol, tx.ts(settled_since)))
    ]
    if own_moves_hide_the_orphan(broker_qty, in_motion, lately):
        return None
    return sum(
        (Decimal(turn[1]) for turn in tx.all(_HOLDERS, (symbol,))
         if turn[0] != agent_id and _holds_here(tx, mine, turn, symbol)),
        Decimal(0),
    )  # fmt: skip


def _holds_here(tx: Tx, mine: str | None, turn: Sequence[Any], symbol: str) -> bool:
    """Whether another agent's open turn in `symbol` (a `_HOLDERS` row) may be on the account of key `mine`.

    The turn's claims say where its shares were bought (`coid_scope`): a turn holding a claim
    made on this account counts here whatever account its agent registered since (the shares
    it bought here stayed here: no agent here may sell or adopt them), and one whose claims were
    all made on other accounts does not (its agent re-pointed here since: its shares are not
    here, and counting them held back the shares of agents here; audit 66). A turn its claims
    cannot place (adoptions only, or a claim of unknown account) counts on its agent's
    registered account (`ports.same_account`), as before. The claims are read only for a turn
    that may straddle a change of account: one opened before its agent registered the account
    it has now (a turn opened since was made there; an entry on the new account is refused
    while a turn holds another account's fills, `OrderGateway`), or of an agent registered
    elsewhere, so the sizing beside turns on one account reads no claim history.
    """
    holder, _qty, key, turn_id, opened_at, registered_at = turn
    here = coid_scope(mine)
    if same_account(mine, key):
        if not here or registered_at is None or tx.dt(opened_at) > tx.dt(registered_at):
            return True
        return made_here({str(row[0]) for row in tx.all(_TURN_SCOPES, (holder, symbol, turn_id))}, here)
    return bool(here) and tx.one(_TURN_MADE_ON, (holder, symbol, here)) is not None


def positions_from_rows(rows: Sequence[Any], dt: Decode) -> list[LedgerPosition]:
    """Build positions from rows of the `*POSITION*_SQL` and `CLEARED_TURNS_SQL` queries."""
    return [
        LedgerPosition(r[0], r[1], Decimal(r[2]), int(r[3]), dt(r[4]), None if r[5] is None else dt(r[5]))
        for r in rows
    ]
