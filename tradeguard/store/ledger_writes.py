"""The claim store's ledger writes: atomic exit claims, reconcile corrections, operator settlement.

Every method here takes the symbol's lock (`ledger.lock_symbol`) inside one durable transaction,
so what it read (held, exits in flight, other agents' shares) is still true when it writes: an
exit is sized and claimed in one step (G3), and a correction applies only to the ledger as the
reconciler saw it (G4).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradeguard.config import Settings
from tradeguard.domain.audit import AuditAction
from tradeguard.domain.claims import Claim, ClaimOutcome
from tradeguard.domain.intents import Intent, OrderSpec
from tradeguard.domain.ledger import ExitRoom, LedgerPosition, adoption_note, orphan
from tradeguard.domain.lifecycle import ClaimState, check_transition
from tradeguard.store import ledger
from tradeguard.store import statements as sql
from tradeguard.store.audit import write_audit
from tradeguard.store.model import decode_claim

if TYPE_CHECKING:
    from tradeguard.domain.orders import RejectKind
    from tradeguard.store.connections import RawPool, Tx

__all__ = ["LedgerWriter"]


class LedgerWriter:
    """Mixin of `ClaimStore`: the writes that read the ledger first (see the module docstring)."""

    _pool: RawPool
    _lease: timedelta
    settings: Settings

    def _now(self) -> datetime:
        raise NotImplementedError

    def _insert(
        self,
        tx: Tx,
        intent: Intent,
        spec: OrderSpec,
        payload: dict[str, Any],
        *,
        owner: str,
        coid: str | None,
        order_qty: Decimal | None,
        turn_id: int | None,
        reason: str,
        now: datetime,
    ) -> ClaimOutcome:
        raise NotImplementedError

    def _move(
        self,
        tx: Tx,
        claim: Claim,
        to: ClaimState,
        *,
        now: datetime,
        reason: str,
        order_qty: Decimal | None = None,
        owner: str | None = None,
        detail: dict[str, Any] | None = None,
        reject_kind: RejectKind | None = None,
    ) -> Claim:
        raise NotImplementedError

    # -- exits -----------------------------------------------------------------------------

    def claim_exit(
        self,
        intent: Intent,
        spec: OrderSpec,
        *,
        owner: str,
        broker_available: Decimal,
        reason: str,
        client_order_id: str | None = None,
        broker_read_at: datetime | None = None,
    ) -> tuple[ClaimOutcome | None, ExitRoom | None]:
        """Size an exit and claim it in one transaction; None when there is nothing to sell.

        `broker_available` is the broker's `qty_available` on the position's side, read just
        before. The quantity claimed is `ExitRoom.qty`: never more than the agent holds minus
        its open exits, nor more than the broker has available minus exits it may not show yet
        and shares other agents' ledgers hold. An existing claim for the key is returned as is
        (with no sizing: nothing was sized for it).
        """
        payload = spec.as_payload()
        now = self._now()
        with self._pool.write(f"sizing and claiming an exit in {intent.symbol}", durable=True) as tx:
            row = tx.one(sql.BY_KEY, (intent.key,))
            if row is not None:
                # Claimed meanwhile (a racing retry of this decision): the caller answers it as a
                # duplicate; the exit's own position intent may differ, so no payload check here.
                return ClaimOutcome(decode_claim(row, tx.dt), created=False), None
            room = ledger.exit_room(
                tx, intent.agent_id, intent.symbol, broker_available=broker_available, requested=spec.qty,
                read_at=broker_read_at,
            )  # fmt: skip
            if room.qty <= 0:
                return None, room
            turn_id = ledger.position_of(tx, intent.agent_id, intent.symbol).turn_id
            outcome = self._insert(
                tx, intent, spec, payload, owner=owner, coid=client_order_id, order_qty=room.qty,
                turn_id=turn_id, reason=reason, now=now,
            )  # fmt: skip
        return outcome, room

    def resend_exit(
        self,
        claim: Claim,
        *,
        owner: str,
        broker_available: Decimal,
        reason: str,
        detail: dict[str, Any],
        broker_read_at: datetime | None = None,
    ) -> tuple[Claim | None, ExitRoom]:
        """Re-size an exit that placed nothing (NOT_SENT, or refused) and move it back to PENDING.

        Sized like `claim_exit`, in one transaction; None when nothing may be sent. Raises
        `LeaseLost` when the claim moved meanwhile.
        """
        check_transition(claim.state, ClaimState.PENDING)
        now = self._now()
        with self._pool.write(f"re-sizing exit {claim.client_order_id}", durable=True) as tx:
            room = ledger.exit_room(
                tx, claim.agent_id, claim.symbol, broker_available=broker_available,
                requested=claim.spec.qty, read_at=broker_read_at,
            )  # fmt: skip
            if room.qty <= 0:
                return None, room
            moved = self._move(
                tx, claim, ClaimState.PENDING, now=now, reason=reason, order_qty=room.qty, owner=owner,
                detail={**detail, "sizing": room.describe(claim.symbol)},
            )  # fmt: skip
        return moved, room

    # -- accounts --------------------------------------------------------------------------

    def register_account(self, agent_id: str, account_key: str) -> None:
        """Record the broker account the agent trades; audited when it was another one before.

        Exit sizing and the reconciler count other agents' shares only when they are on the
        same account (`ports.same_account`). Unchanged, nothing is written.
        """
        now = self._now()
        with self._pool.write(f"registering the account of {agent_id}", durable=True) as tx:
            row = tx.one(ledger.ACCOUNT_OF_SQL, (agent_id,))
            if row is not None and row[0] == account_key:
                return
            tx.later(ledger.UPSERT_ACCOUNT_SQL, (agent_id, account_key, tx.ts(now)))
            if row is not None:
                write_audit(
                    tx, at=now, agent_id=agent_id, action=AuditAction.LEDGER,
                    reason=f"broker account changed from {row[0] or 'unknown'} to {account_key or 'unknown'}",
                    detail={"action": "register_account", "before": row[0], "after": account_key},
                )  # fmt: skip

    # -- corrections -----------------------------------------------------------------------

    def close_turn(
        self,
        agent_id: str,
        symbol: str,
        *,
        reason: str,
        detail: dict[str, Any] | None = None,
        expect: LedgerPosition | None = None,
    ) -> int | None:
        """Close the agent's open turn in `symbol` (clearing a phantom); return its id.

        With `expect`, only while the turn is still the one at the quantity the caller read;
        None when there was nothing to close or the ledger moved (the caller's evidence is stale).
        """
        now = self._now()
        with self._pool.write(f"closing the {symbol} turn", durable=True) as tx:
            turn_id = ledger.close_turn(tx, agent_id, symbol, at=now, reason=reason, expect=expect)
            if turn_id is not None and detail:
                write_audit(tx, at=now, agent_id=agent_id, action=AuditAction.RECONCILE,
                            symbol=symbol, reason=reason, detail={"turn_id": turn_id, **detail})  # fmt: skip
        return turn_id

    def adjust_position(self, agent_id: str, symbol: str, delta: Decimal, *, reason: str) -> int | None:
        """Add `delta` to the agent's position without a claim; return the open turn id after it."""
        now = self._now()
        with self._pool.write(f"adjusting the {symbol} position", durable=True) as tx:
            return ledger.apply_fill(tx, agent_id, symbol, delta, at=now, reason=reason)

    def correct_position(
        self,
        expect: LedgerPosition,
        delta: Decimal,
        *,
        reason: str,
        detail: dict[str, Any],
    ) -> bool:
        """Add `delta` to a position the reconciler read as `expect`, with a reconcile audit record.

        A compare-and-set: False, and nothing changed, when the ledger moved since that read
        (a fill between the reconciler's reads must not be wiped out by its correction).
        """
        now = self._now()
        agent_id, symbol = expect.agent_id, expect.symbol
        with self._pool.write(f"correcting the {symbol} position", durable=True) as tx:
            if ledger.apply_fill(tx, agent_id, symbol, delta, at=now, reason=reason, expect=expect) == -1:
                return False
            write_audit(tx, at=now, agent_id=agent_id, action=AuditAction.RECONCILE, symbol=symbol,
                        qty=delta, reason=reason, detail=detail)  # fmt: skip
        return True

    def adopt_position(
        self, agent_id: str, symbol: str, broker_qty: Decimal, *, why: str, top_up: bool = False
    ) -> LedgerPosition:
        """Take into the agent's ledger the part of the broker's `broker_qty` no ledger holds.

        One transaction under the symbol's lock: the other agents' shares on this account are
        read and the orphan booked together, so two agents adopting at once never both take the
        same shares. A flat ledger adopts; one holding on the broker's side only with `top_up`
        (shares bought outside the guard on top of its own). No orphan on the broker's side, an
        order of another agent on the account in motion in the symbol or a ledger of one that
        moved within `position_settle_secs` (their fills may be in `broker_qty` before a ledger
        books them, or gone from it later), or own orders a lagging read may show wrong
        (`domain.ledger.own_moves_hide_the_orphan`) leave it alone. Returns the position after.
        """
        now = self._now()
        with self._pool.write(f"adopting the {symbol} position of {agent_id}", durable=True) as tx:
            settled_since = now - timedelta(seconds=self.settings.position_settle_secs)
            others = ledger.others_on_account(
                tx, agent_id, symbol, settled_since=settled_since, broker_qty=broker_qty
            )
            mine = ledger.position_of(tx, agent_id, symbol)
            if others is None:
                return mine
            adopted = orphan(broker_qty, others, mine.qty, top_up=top_up)
            if adopted == 0:
                return mine
            reason, detail = adoption_note(
                why, symbol, adopted, broker_qty=broker_qty, others=others, mine=mine.qty
            )
            ledger.apply_fill(tx, agent_id, symbol, adopted, at=now, reason=reason)
            write_audit(
                tx, at=now, agent_id=agent_id, action=AuditAction.RECONCILE, symbol=symbol, qty=adopted,
                reason=reason, detail=detail,
            )  # fmt: skip
            return ledger.position_of(tx, agent_id, symbol)

    def settle_position(
        self, agent_id: str, symbol: str, qty: Decimal, *, reason: str, actor: str
    ) -> Decimal:
        """Set the agent's ledger position in `symbol` to `qty` (an operator's decision on drift).

        Audited with who and why. Returns the quantity the ledger held before.
        """
        if not reason.strip():
            raise ValueError("settling a position needs a reason for the audit log")
        now = self._now()
        with self._pool.write(f"settling the {symbol} position of {agent_id}", durable=True) as tx:
            before = ledger.position_of(tx, agent_id, symbol)
            ledger.apply_fill(
                tx, agent_id, symbol, qty - before.qty, at=now, reason=f"settled by {actor}: {reason}"
            )
            write_audit(
                tx, at=now, agent_id=agent_id, action=AuditAction.RECONCILE, symbol=symbol, qty=qty,
                reason=f"position settled by {actor}: {before.qty} -> {qty}: {reason}",
                detail={"action": "settle_position", "actor": actor,
                        "before": str(before.qty), "after": str(qty)},
            )  # fmt: skip
        return before.qty
