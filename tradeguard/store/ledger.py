"""The ledger: what each agent holds per symbol, as turns (flat -> position -> flat).

A turn opens when a fill takes an agent off flat and closes when fills bring it back to zero
(or the reconciler clears a phantom). Fills that cross zero close the turn and open a new one
with the remainder. All functions run inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradeguard.domain.audit import AuditAction
from tradeguard.domain.ledger import LedgerPosition
from tradeguard.store.audit import write_audit

if TYPE_CHECKING:
    from tradeguard.store.connections import Tx
    from tradeguard.store.model import Decode

__all__ = [
    "LATEST_TURN_SQL",
    "POSITIONS_SQL",
    "POSITION_SQL",
    "apply_fill",
    "close_turn",
    "open_turn",
    "positions_from_rows",
]

_OPEN = "SELECT turn_id, qty FROM tg_turns WHERE agent_id = ? AND symbol = ? AND is_open = 1"
_INSERT = (
    "INSERT INTO tg_turns (agent_id, symbol, qty, is_open, opened_at) VALUES (?, ?, ?, 1, ?)"
    " RETURNING turn_id"
)
_SET_QTY = "UPDATE tg_turns SET qty = ? WHERE turn_id = ?"
_CLOSE = "UPDATE tg_turns SET is_open = 0, closed_at = ?, close_reason = ? WHERE turn_id = ?"
# An agent's open turns (all symbols), and its open turn in one symbol.
POSITIONS_SQL = (
    "SELECT symbol, qty, turn_id, opened_at FROM tg_turns WHERE agent_id = ? AND is_open = 1 ORDER BY symbol"
)
POSITION_SQL = (
    "SELECT symbol, qty, turn_id, opened_at FROM tg_turns WHERE agent_id = ? AND symbol = ? AND is_open = 1"
)
# The agent's most recent turn in a symbol, open or closed.
LATEST_TURN_SQL = "SELECT MAX(turn_id) FROM tg_turns WHERE agent_id = ? AND symbol = ?"


def _open_row(tx: Tx, agent_id: str, symbol: str) -> tuple[int, Decimal] | None:
    row = tx.one(_OPEN, (agent_id, symbol))
    return None if row is None else (int(row[0]), Decimal(row[1]))


def open_turn(tx: Tx, agent_id: str, symbol: str, qty: Decimal, *, at: datetime, reason: str) -> int:
    """Open a new turn holding `qty` and return its id."""
    turn_id = int(tx.one(_INSERT, (agent_id, symbol, str(qty), tx.ts(at)))[0])
    write_audit(
        tx, at=at, agent_id=agent_id, action=AuditAction.LEDGER, symbol=symbol, qty=qty,
        reason=f"turn {turn_id} opened: {reason}", detail={"turn_id": turn_id},
    )  # fmt: skip
    return turn_id


def _close(
    tx: Tx, turn_id: int, qty: Decimal, *, agent_id: str, symbol: str, at: datetime, reason: str
) -> None:
    tx.changed(_CLOSE, (tx.ts(at), reason, turn_id))
    write_audit(
        tx, at=at, agent_id=agent_id, action=AuditAction.LEDGER, symbol=symbol, qty=qty,
        reason=f"turn {turn_id} closed: {reason}", detail={"turn_id": turn_id, "qty_at_close": str(qty)},
    )  # fmt: skip


def close_turn(tx: Tx, agent_id: str, symbol: str, *, at: datetime, reason: str) -> int | None:
    """Close the open turn (if any) at its current quantity; return its id."""
    current = _open_row(tx, agent_id, symbol)
    if current is None:
        return None
    _close(tx, *current, agent_id=agent_id, symbol=symbol, at=at, reason=reason)
    return current[0]


def apply_fill(
    tx: Tx, agent_id: str, symbol: str, delta: Decimal, *, at: datetime, reason: str
) -> int | None:
    """Add a signed fill quantity to the agent's position; return the open turn id after it."""
    current = _open_row(tx, agent_id, symbol)
    if delta == 0:
        return None if current is None else current[0]
    if current is None:
        return open_turn(tx, agent_id, symbol, delta, at=at, reason=reason)
    turn_id, qty = current
    new_qty = qty + delta
    if new_qty == 0:
        tx.changed(_SET_QTY, ("0", turn_id))
        _close(
            tx, turn_id, Decimal(0), agent_id=agent_id, symbol=symbol, at=at, reason=f"flat after {reason}"
        )
        return None
    if (new_qty > 0) != (qty > 0):
        # Crossed zero: the old turn ends flat, the remainder is a new turn on the other side.
        tx.changed(_SET_QTY, ("0", turn_id))
        _close(
            tx,
            turn_id,
            Decimal(0),
            agent_id=agent_id,
            symbol=symbol,
            at=at,
            reason=f"crossed zero on {reason}",
        )
        return open_turn(tx, agent_id, symbol, new_qty, at=at, reason=f"remainder of {reason}")
    tx.changed(_SET_QTY, (str(new_qty), turn_id))
    return turn_id


def positions_from_rows(agent_id: str, rows: Sequence[Any], dt: Decode) -> list[LedgerPosition]:
    """Build positions from `POSITIONS_SQL` rows."""
    return [LedgerPosition(agent_id, r[0], Decimal(r[1]), int(r[2]), dt(r[3])) for r in rows]
