"""The ledger: what each agent holds per symbol, as turns (flat -> position -> flat).

A turn opens when a fill takes an agent off flat and closes when fills bring it back to zero
(or the reconciler clears a phantom). Fills that cross zero close the turn and open a new one
with the remainder. All functions run inside the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection, select

from tradeguard.store.audit import AuditAction, write_audit
from tradeguard.store.schema import turns

__all__ = ["LedgerPosition", "apply_fill", "close_turn", "open_turn", "read_positions"]


@dataclass(frozen=True, slots=True)
class LedgerPosition:
    """The guard's view of one agent's holding in one symbol. `qty` is signed (short < 0)."""

    agent_id: str
    symbol: str
    qty: Decimal
    turn_id: int | None
    opened_at: datetime | None

    @property
    def is_flat(self) -> bool:
        """True when nothing is held."""
        return self.qty == 0


def _open_row(conn: Connection, agent_id: str, symbol: str) -> tuple[int, Decimal] | None:
    row = conn.execute(
        select(turns.c.turn_id, turns.c.qty).where(
            turns.c.agent_id == agent_id, turns.c.symbol == symbol, turns.c.is_open == 1
        )
    ).first()
    return None if row is None else (int(row.turn_id), Decimal(row.qty))


def open_turn(conn: Connection, agent_id: str, symbol: str, qty: Decimal, at: datetime, reason: str) -> int:
    """Open a new turn holding `qty` and return its id."""
    result = conn.execute(
        turns.insert().values(
            agent_id=agent_id, symbol=symbol, qty=str(qty), is_open=1, opened_at=at
        )
    )
    turn_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    write_audit(
        conn, at=at, agent_id=agent_id, action=AuditAction.LEDGER, symbol=symbol, qty=qty,
        reason=f"turn {turn_id} opened: {reason}", detail={"turn_id": turn_id},
    )
    return turn_id


def close_turn(conn: Connection, agent_id: str, symbol: str, at: datetime, reason: str) -> int | None:
    """Close the open turn (if any) at its current quantity; return its id."""
    current = _open_row(conn, agent_id, symbol)
    if current is None:
        return None
    turn_id, qty = current
    conn.execute(
        turns.update()
        .where(turns.c.turn_id == turn_id)
        .values(is_open=0, closed_at=at, close_reason=reason)
    )
    write_audit(
        conn, at=at, agent_id=agent_id, action=AuditAction.LEDGER, symbol=symbol, qty=qty,
        reason=f"turn {turn_id} closed: {reason}", detail={"turn_id": turn_id, "qty_at_close": str(qty)},
    )
    return turn_id


def apply_fill(conn: Connection, agent_id: str, symbol: str, delta: Decimal, at: datetime, reason: str) -> int | None:
    """Add a signed fill quantity to the agent's position; return the open turn id after it."""
    if delta == 0:
        current = _open_row(conn, agent_id, symbol)
        return None if current is None else current[0]
    current = _open_row(conn, agent_id, symbol)
    if current is None:
        return open_turn(conn, agent_id, symbol, delta, at, reason)
    turn_id, qty = current
    new_qty = qty + delta
    if new_qty == 0:
        conn.execute(turns.update().where(turns.c.turn_id == turn_id).values(qty="0"))
        close_turn(conn, agent_id, symbol, at, f"flat after {reason}")
        return None
    if (new_qty > 0) != (qty > 0):
        # Crossed zero: the old turn ends flat, the remainder is a new turn on the other side.
        conn.execute(turns.update().where(turns.c.turn_id == turn_id).values(qty="0"))
        close_turn(conn, agent_id, symbol, at, f"crossed zero on {reason}")
        return open_turn(conn, agent_id, symbol, new_qty, at, f"remainder of {reason}")
    conn.execute(turns.update().where(turns.c.turn_id == turn_id).values(qty=str(new_qty)))
    return turn_id


def read_positions(conn: Connection, agent_id: str, symbol: str | None = None) -> list[LedgerPosition]:
    """Return the agent's open turns (all symbols, or one)."""
    stmt = select(turns).where(turns.c.agent_id == agent_id, turns.c.is_open == 1)
    if symbol is not None:
        stmt = stmt.where(turns.c.symbol == symbol)
    return [
        LedgerPosition(
            agent_id=r.agent_id,
            symbol=r.symbol,
            qty=Decimal(r.qty),
            turn_id=int(r.turn_id),
            opened_at=r.opened_at,
        )
        for r in conn.execute(stmt.order_by(turns.c.symbol))
    ]
