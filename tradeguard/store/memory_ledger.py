"""The ledger of `MemoryClaimStore`: open turns indexed per symbol and per agent, fills, reads.

The turn rules are `domain.ledger.fill_step`, the ones `store/ledger.py` applies in SQL. Every
method with a leading underscore runs under the store's lock, inside one of its atomic steps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

from tradeguard.config import Settings
from tradeguard.domain.audit import AuditAction
from tradeguard.domain.ledger import (
    LedgerPosition,
    adoption_note,
    fill_step,
    made_here,
    orphan,
    own_moves_hide_the_orphan,
)
from tradeguard.ports import coid_scope, same_account

__all__ = ["MemoryLedger", "version"]

_ZERO = Decimal(0)
_FLAT_MAX = 4096


class MemoryLedger:
    """Mixin of `MemoryClaimStore`: the turns, the fills that change them, and the position reads."""

    _lock: threading.Lock
    _closed: bool  # the store's
    settings: Settings  # the store's
    _check_open: Callable[[], None]  # the store's: raises StoreError once it is closed
    _write_audit: Callable[..., None]  # MemoryAuditLog's

    def _now(self) -> datetime:
        raise NotImplementedError  # the store's clock

    def _agents_in_motion(self, symbol: str) -> set[str]:
        raise NotImplementedError  # the store's: agents with an active claim in `symbol`

    def _turn_claimed_in(self, held: LedgerPosition, scope: str) -> bool:
        raise NotImplementedError  # the store's: whether a claim of the turn `held` has `coid_scope` scope

    def _turn_scopes(self, held: LedgerPosition) -> set[str]:
        raise NotImplementedError  # the store's: the `coid_scope`s of the turn `held`'s claims ("" unknown)

    def _own_moves(
        self, agent_id: str, symbol: str, since: datetime | None
    ) -> tuple[list[str], list[tuple[str, Decimal]]]:
        raise NotImplementedError  # the store's: sides in motion, (side, filled) updated since

    def _init_ledger(self) -> None:
        # The ledger: open turns by symbol then agent, and by agent then symbol.
        self._open_in: dict[str, dict[str, LedgerPosition]] = {}
        self._open_of: dict[str, dict[str, LedgerPosition]] = {}
        self._latest_turn: dict[tuple[str, str], int] = {}
        self._turns = 0
        self._cleared: list[tuple[datetime, LedgerPosition]] = []  # closed while holding shares
        self._accounts: dict[str, str] = {}  # agent -> the broker account it registered
        self._registered_at: dict[str, datetime] = {}  # agent -> when it registered that one
        self._flat: dict[tuple[str, str], LedgerPosition] = {}  # see `position`
        # When each agent's turn in a symbol last moved, closed ones included (`adopt_position`):
        # symbol -> agent -> time. One entry per agent and symbol, so it stays small.
        self._moved_at: dict[str, dict[str, datetime]] = {}
        # The flat value `moved_turns` hands out for each agent's closed turn in a symbol (one
        # per agent and symbol, replaced when the turn or its move changes).
        self._moved_closed: dict[tuple[str, str], LedgerPosition] = {}

    # -- the ledger (under the lock) -------------------------------------------------------

    def _open_turn(self, agent_id: str, symbol: str, qty: Decimal, *, at: datetime, reason: str) -> int:
        self._turns += 1
        turn_id = self._turns
        self._set_open(LedgerPosition(agent_id, symbol, qty, turn_id, at, at))
        self._latest_turn[(agent_id, symbol)] = turn_id
        self._write_audit(
            at=at, agent_id=agent_id, action=AuditAction.LEDGER, symbol=symbol, qty=qty,
            reason=f"turn {turn_id} opened: {reason}", detail={"turn_id": turn_id},
        )  # fmt: skip
        return turn_id

    def _set_open(self, position: LedgerPosition) -> None:
        self._open_in.setdefault(position.symbol, {})[position.agent_id] = position
        self._open_of.setdefault(position.agent_id, {})[position.symbol] = position
        if position.updated_at is not None:
            self._moved_at.setdefault(position.symbol, {})[position.agent_id] = position.updated_at

    def _close(self, position: LedgerPosition, qty: Decimal, *, at: datetime, reason: str) -> None:
        agent_id, symbol, turn_id = position.agent_id, position.symbol, position.turn_id
        del self._open_in[symbol][agent_id]
        del self._open_of[agent_id][symbol]
        self._moved_at.setdefault(symbol, {})[agent_id] = at
        if qty != 0:
            self._cleared.append((at, replace(position, qty=qty, updated_at=at)))
        self._write_audit(
            at=at, agent_id=agent_id, action=AuditAction.LEDGER, symbol=symbol, qty=qty,
            reason=f"turn {turn_id} closed: {reason}", detail={"turn_id": turn_id, "qty_at_close": str(qty)},
        )  # fmt: skip

    def _open_position(self, agent_id: str, symbol: str) -> LedgerPosition | None:
        held = self._open_in.get(symbol)
        return None if held is None else held.get(agent_id)

    def _apply_fill(
        self,
        agent_id: str,
        symbol: str,
        delta: Decimal,
        *,
        at: datetime,
        reason: str,
        expect: LedgerPosition | None = None,
    ) -> int | None:
        """Add a signed fill to the agent's position; return the open turn id after it (-1: moved)."""
        current = self._open_position(agent_id, symbol)
        if expect is not None and version(current) != (expect.turn_id, expect.qty):
            return -1
        if current is None:
            step = fill_step(None, delta, reason)
            turn_id = None
        else:
            step = fill_step(current.qty, delta, reason)
            turn_id = current.turn_id
            if step.set_qty is not None:
                if step.close_reason is not None:
                    self._close(current, step.set_qty, at=at, reason=step.close_reason)
                    turn_id = None
                else:
                    self._set_open(
                        LedgerPosition(agent_id, symbol, step.set_qty, current.turn_id, current.opened_at, at)
                    )
        if step.open_qty is not None:
            turn_id = self._open_turn(agent_id, symbol, step.open_qty, at=at, reason=step.open_reason)
        return turn_id

    def _on_account_of(self, agent_id: str, other: str) -> bool:
        """Whether `other`'s shares may be on `agent_id`'s broker account (`ports.same_account`)."""
        return other == agent_id or same_account(self._accounts.get(agent_id), self._accounts.get(other))

    def _holds_on_account_of(self, agent_id: str, held: LedgerPosition) -> bool:
        """Whether `held` (an open turn, the agent's own or another's) may be on `agent_id`'s account.

        The rule of `store.ledger._holds_here`: a turn counts where its claims were made, and
        only a turn its claims cannot place (adoptions only, a claim of unknown account) counts
        on its agent's registered account; claims are looked at only for a turn opened before
        its agent registered the account it has now (audit 66).
        """
        other = held.agent_id
        if other == agent_id:
            return True
        mine = self._accounts.get(agent_id)
        here = coid_scope(mine)
        if same_account(mine, self._accounts.get(other)):
            since = self._registered_at.get(other)
            if not here or since is None or held.opened_at is None or held.opened_at > since:
                return True
            return made_here(self._turn_scopes(held), here)
        return bool(here) and self._turn_claimed_in(held, here)

    # -- accounts --------------------------------------------------------------------------

    def register_account(self, agent_id: str, account_key: str) -> None:
        """Record the broker account the agent trades; audited when it was another one before."""
        self._check_open()
        with self._lock:
            before = self._accounts.get(agent_id)
            if before == account_key:
                return
            self._accounts[agent_id] = account_key
            self._registered_at[agent_id] = self._now()
            if before is not None:
                self._write_audit(
                    at=self._now(), agent_id=agent_id, action=AuditAction.LEDGER,
                    reason=f"broker account changed from {before or 'unknown'} to {account_key or 'unknown'}",
                    detail={"action": "register_account", "before": before, "after": account_key},
                )  # fmt: skip

    def agent_accounts(self) -> dict[str, str]:
        """Return the registered broker account key of every agent that registered one."""
        self._check_open()
        with self._lock:
            return dict(self._accounts)

    def adopt_position(
        self, agent_id: str, symbol: str, broker_qty: Decimal, *, why: str, top_up: bool = False
    ) -> LedgerPosition:
        """Take into the agent's ledger the part of the broker's shares no ledger on its account holds.

        One atomic step: other agents' shares are read and the orphan booked under the lock;
        nothing while another agent on the account has an order in motion in the symbol, or a
        turn there that moved within `position_settle_secs`, or while the agent's own orders may
        make the read overstate the orphan; a holding ledger only with `top_up` (see
        `ClaimStore.adopt_position`).
        """
        self._check_open()
        now = self._now()
        settled_since = now - timedelta(seconds=self.settings.position_settle_secs)
        with self._lock:
            held = self._open_position(agent_id, symbol)
            mine = held if held is not None else LedgerPosition(agent_id, symbol, _ZERO, None, None)
            moved_at = self._moved_at.get(symbol, {})
            moved = {a for a, at in moved_at.items() if at > settled_since and a != agent_id}
            others_busy = (self._agents_in_motion(symbol) - {agent_id}) | moved
            if any(self._on_account_of(agent_id, a) for a in others_busy):
                return mine
            own_moved = moved_at.get(agent_id)
            # Own fills moved the turn; none since the horizon means none a read may still trail.
            lately = settled_since if own_moved is not None and own_moved > settled_since else None
            if own_moves_hide_the_orphan(broker_qty, *self._own_moves(agent_id, symbol, lately)):
                return mine
            others = sum(
                (
                    p.qty
                    for a, p in self._open_in.get(symbol, {}).items()
                    if a != agent_id and self._holds_on_account_of(agent_id, p)
                ),
                _ZERO,
            )
            adopted = orphan(broker_qty, others, mine.qty, top_up=top_up)
            if adopted == 0:
                return mine
            reason, detail = adoption_note(
                why, symbol, adopted, broker_qty=broker_qty, others=others, mine=mine.qty
            )
            self._apply_fill(agent_id, symbol, adopted, at=now, reason=reason)
            self._write_audit(
                at=now, agent_id=agent_id, action=AuditAction.RECONCILE, symbol=symbol, qty=adopted,
                reason=reason, detail=detail,
            )  # fmt: skip
            after = self._open_position(agent_id, symbol)
        assert after is not None
        return after

    # -- ledger: reads ---------------------------------------------------------------------

    def position(self, agent_id: str, symbol: str) -> LedgerPosition:
        """Return the agent's ledger position in `symbol` (flat if none)."""
        self._check_open()
        held = self._open_position(agent_id, symbol)
        if held is not None:
            return held
        # A flat position is the same value every time: made once per (agent, symbol) and handed
        # out again (it is frozen), since a gateway and a replay read flat positions on every order.
        flat = self._flat.get((agent_id, symbol))
        if flat is None:
            if len(self._flat) >= _FLAT_MAX:
                self._flat.clear()  # bounded: a flat position only costs its making again
            flat = self._flat[(agent_id, symbol)] = LedgerPosition(agent_id, symbol, _ZERO, None, None)
        return flat

    def position_qty(self, agent_id: str, symbol: str) -> Decimal:
        """Return `position(agent_id, symbol).qty` alone (a replay samples it after every event)."""
        if self._closed:
            self._check_open()  # raises
        held = self._open_in.get(symbol)  # `_open_position`, spelled out: a replay reads it per event
        position = None if held is None else held.get(agent_id)
        return _ZERO if position is None else position.qty

    def positions(self, agent_id: str) -> list[LedgerPosition]:
        """Return every open ledger position of the agent, by symbol."""
        self._check_open()
        with self._lock:
            held = list(self._open_of.get(agent_id, {}).values())
        return sorted(held, key=lambda p: p.symbol)

    def all_positions(self) -> list[LedgerPosition]:
        """Return every agent's open ledger positions, by agent and symbol."""
        self._check_open()
        with self._lock:
            held = [p for by_symbol in self._open_of.values() for p in by_symbol.values()]
        return sorted(held, key=lambda p: (p.agent_id, p.symbol))

    def cleared_turns(self, since: datetime) -> list[LedgerPosition]:
        """Return turns closed since `since` while still holding shares (phantom clears), newest first."""
        self._check_open()
        with self._lock:
            found = [p for closed_at, p in self._cleared if closed_at >= since]
        return sorted(found, key=lambda p: p.turn_id or 0, reverse=True)

    def moved_turns(self, since: datetime) -> list[LedgerPosition]:
        """Return every turn, open or closed, that a fill or correction moved after `since`.

        `updated_at` is when; a closed turn reads flat (here: each agent's latest turn in a
        symbol, the only one whose move time is kept).
        """
        self._check_open()
        found: list[LedgerPosition] = []
        with self._lock:
            open_in, closed = self._open_in, self._moved_closed
            for symbol, by_agent in self._moved_at.items():
                held_in = open_in.get(symbol)
                for agent_id, at in by_agent.items():
                    if at <= since:
                        continue
                    held = None if held_in is None else held_in.get(agent_id)
                    # An exit asks this several times (the gateway's and the reconciler's checks for
                    # other agents' moves): the open turn's own frozen value when it reads as the
                    # moved turn (its last move is the one recorded, as `_set_open` keeps them),
                    # else one flat value per closed turn and move, built once and handed out again.
                    if held is not None and held.updated_at == at:
                        found.append(held)
                    elif held is not None:
                        qty, turn, opened = held.qty, held.turn_id, held.opened_at
                        found.append(LedgerPosition(agent_id, symbol, qty, turn, opened, at))
                    else:
                        turn = self._latest_turn.get((agent_id, symbol))
                        flat = closed.get((agent_id, symbol))
                        if flat is None or flat.turn_id != turn or flat.updated_at != at:
                            flat = closed[(agent_id, symbol)] = LedgerPosition(
                                agent_id, symbol, _ZERO, turn, None, at
                            )
                        found.append(flat)
        if len(found) > 1:
            found.sort(key=lambda p: (p.updated_at or since, p.turn_id or 0))
        return found

    def latest_turn_id(self, agent_id: str, symbol: str) -> int | None:
        """Return the id of the agent's most recent turn in `symbol`, open or closed, or None."""
        self._check_open()
        return self._latest_turn.get((agent_id, symbol))


def version(position: LedgerPosition | None) -> tuple[int | None, Decimal]:
    """The (turn, quantity) a ledger compare-and-set compares; flat is (None, 0)."""
    return (None, Decimal(0)) if position is None else (position.turn_id, position.qty)
