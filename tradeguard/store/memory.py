"""`MemoryClaimStore`: the claim ledger in one process's memory, for replays, chaos runs and tests.

It keeps the `ClaimLedger` contract (`tradeguard.ports`) with the same rules as `ClaimStore`:
the transition table (`lifecycle.check_transition`), the ledger's turn rules
(`domain.ledger.fill_step`) and exit sizing (`domain.ledger.size_exit`) are the shared pure
functions; only the storage differs. One lock makes every write one atomic step, as one
transaction does in the database: each write checks everything that can fail before it changes
anything, so a failed call leaves no trace. Nothing is durable and nothing is shared between
processes: use `ClaimStore` for a bot that trades.

Built for tens of thousands of orders per second: claims and positions are frozen snapshots,
stored and handed out as they are (no copies); claims are found by key and by client_order_id
with one dict lookup; active claims are indexed per (agent, symbol) and per symbol, every claim
per (agent, state), and open turns per symbol and per agent, so neither the gateway nor the
reconciler ever scans the history. Audit records are appended as tuples and become
`AuditRecord`s (with the text and JSON types the SQL store reads back) only when read.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradeguard.clock import Clock, SystemClock
from tradeguard.config import Settings
from tradeguard.domain.audit import AuditAction, claim_fields
from tradeguard.domain.claims import Claim, ClaimOutcome, same_order
from tradeguard.domain.intents import Intent, Kind, OrderSpec, derive_client_order_id, exit_group, is_leg
from tradeguard.domain.ledger import ExitRoom, LedgerPosition, acknowledged_before, legs_wait, size_exit
from tradeguard.domain.lifecycle import ACTIVE_STATES, ClaimState, check_transition
from tradeguard.domain.orders import RejectKind, Side
from tradeguard.errors import ClaimInProgress, IntentMismatch, LeaseLost, StoreError
from tradeguard.ports import coid_scope
from tradeguard.store.memory_audit import MemoryAuditLog
from tradeguard.store.memory_ledger import MemoryLedger, version

if TYPE_CHECKING:
    from tradeguard.ports import ClaimLedger

__all__ = ["MemoryClaimStore"]

_UNACKNOWLEDGED = frozenset({ClaimState.PENDING, ClaimState.UNKNOWN})
_ZERO = Decimal(0)
# Audit row values as `memory_audit._write_audit` keeps them: plain text, not enum members.
_CLAIMED, _TRANSITION = AuditAction.CLAIM._value_, AuditAction.TRANSITION._value_
_PENDING = ClaimState.PENDING._value_
_NORMAL: dict[Decimal, Decimal] = {}


def _num(value: Decimal) -> Decimal:
    """Return `value` as the SQL store reads it back: from its normalized text (6.0 -> 6, never 6E+0).

    Cached by value (equal values normalize alike); a replay uses few distinct quantities.
    """
    found = _NORMAL.get(value)
    if found is None:
        if len(_NORMAL) > 4096:
            _NORMAL.clear()
        found = _NORMAL[value] = Decimal(format(value.normalize(), "f"))
    return found


def _key_of(claim: Claim) -> tuple[datetime, str]:
    return claim.created_at, claim.key


# The claims of one client_order_id, by scope (`MemoryClaimStore._by_coid`).
_Held = str | tuple[str, str] | dict[str, str]


def _scopes(held: _Held | None) -> dict[str, str]:
    """Return the claims of one client_order_id as {scope: key}, whichever compact form holds them."""
    if held is None:
        return {}
    if isinstance(held, str):
        return {"": held}
    if isinstance(held, tuple):
        return {held[0]: held[1]}
    return held


class MemoryClaimStore(MemoryLedger, MemoryAuditLog):
    """Claims, ledger and audit log in memory, with `ClaimStore`'s semantics (see the module docstring).

    Args:
        settings: Lease length and client_order_id prefix.
        clock: The time source for every timestamp.
    """

    def __init__(self, *, settings: Settings | None = None, clock: Clock | None = None) -> None:
        self.settings = settings or Settings()
        self.clock: Clock = clock or SystemClock()
        self._lease = timedelta(seconds=self.settings.lease_secs)
        self._lock = threading.Lock()
        self._closed = False
        # Claims, by key (insertion order) and by client_order_id.
        self._claims: dict[str, Claim] = {}
        # client_order_id -> its claims by scope (`ports.coid_scope`: ids are unique per broker
        # account), compact for the common case of one claim (`_scopes` reads every form): the
        # key alone for scope "", (scope, key) for another, {scope: key} for several.
        self._by_coid: dict[str, _Held] = {}
        # Indexes of claim keys (dicts as ordered sets), kept in step with every state change.
        self._by_agent_state: dict[tuple[str, ClaimState], dict[str, None]] = {}
        self._active: dict[tuple[str, str], dict[str, None]] = {}  # (agent, symbol)
        self._active_in: dict[str, dict[str, None]] = {}  # symbol, every agent
        self._agents: dict[str, None] = {}
        self._windows: dict[str, tuple[str, datetime]] = {}  # content_key -> (claim_key, expires_at)
        self._init_ledger()
        self._audit_log: list[tuple[Any, ...]] = []
        self._audit_detail: list[dict[str, Any] | None] = []
        self._audit_base = 0  # records forgotten by `trim_audit` (ids go on from them)
        # Its identity (as `ClaimStore.store_id`): each instance is a store of its own.
        self.store_id = uuid.uuid4().hex

    # -- plumbing --------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """Return "memory"."""
        return "memory"

    def close(self) -> None:
        """Refuse every later call, as a closed `ClaimStore` does."""
        self._closed = True

    def __enter__(self) -> MemoryClaimStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryClaimStore({len(self._claims)} claims, {len(self._audit_log)} audit records)"

    def _now(self) -> datetime:
        if self._closed:
            raise StoreError("claim store memory is closed")
        now = self.clock.now()
        return now if now.tzinfo is UTC else now.astimezone(UTC)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("claim store memory is closed")

    # -- indexes ---------------------------------------------------------------------------

    def _store(self, old: Claim | None, new: Claim) -> None:
        """Keep `new` as the claim's current version and move it between the state indexes."""
        self._claims[new.key] = new
        if old is not None and old.state is new.state:
            return
        key, agent, symbol = new.key, new.agent_id, new.symbol
        if old is not None:
            self._by_agent_state[(agent, old.state)].pop(key, None)
            if old.state in ACTIVE_STATES and new.state not in ACTIVE_STATES:
                self._active[(agent, symbol)].pop(key, None)
                self._active_in[symbol].pop(key, None)
        self._by_agent_state.setdefault((agent, new.state), {})[key] = None
        if new.state in ACTIVE_STATES and (old is None or old.state not in ACTIVE_STATES):
            self._active.setdefault((agent, symbol), {})[key] = None
            self._active_in.setdefault(symbol, {})[key] = None

    # -- forgetting (opt-in) ---------------------------------------------------------------

    def claim_count(self) -> int:
        """Return how many claims the store holds (every claim, unless `prune_resolved` ran)."""
        return len(self._claims)

    def audit_kept(self) -> int:
        """Return how many audit records the store holds (all, unless `trim_audit` ran)."""
        return len(self._audit_log)

    def prune_resolved(self, before: datetime) -> int:
        """Forget resolved claims last changed before `before`; return how many were forgotten.

        Opt-in, for long simulations (a replay) whose memory should follow the live state, not
        the history: nothing calls it by default, and a store that trades keeps every claim.
        Kept whatever their age, because a later call can read them: every active claim (the
        gateway and the reconciler work on them), NOT_SENT claims for `not_sent_probe_secs` (the
        reconciler still looks their orders up), REJECTED claims of a ledger turn still open (the
        reconciler may release them), and claims a content window names (`claim_window`). The
        ledger's open turns and positions are untouched; phantom clears older than both `before`
        and the reconciler's look-back go too. Safe when no later call asks for a claim of a
        decision that old: a claim forgotten is not found by key, so a retry of its decision
        would be claimed anew. The caller knows how late its decisions are retried.

        Args:
            before: Resolved claims whose last change is older than this may go.
        """
        with self._lock:
            now = self._now()
            probe_since = now - timedelta(seconds=self.settings.not_sent_probe_secs)
            open_turns = {p.turn_id for held in self._open_of.values() for p in held.values()}
            windowed = {key for key, _ in self._windows.values()}
            gone = []
            for claim in self._claims.values():
                # Claims are kept in the order they were made: one made at or after `before` (and
                # so changed since) ends the walk, which then costs what it forgets, not the
                # whole store. (Were the clock ever set back, a claim made after it is kept.)
                if claim.created_at >= before:
                    break
                if (
                    claim.state not in ACTIVE_STATES
                    and claim.updated_at < before
                    and not (claim.state is ClaimState.NOT_SENT and claim.updated_at >= probe_since)
                    and not (claim.state is ClaimState.REJECTED and claim.turn_id in open_turns)
                    and claim.key not in windowed
                ):
                    gone.append(claim)
            for claim in gone:
                key = claim.key
                del self._claims[key]
                scopes = {
                    s: k for s, k in _scopes(self._by_coid.get(claim.client_order_id)).items() if k != key
                }
                if scopes:
                    self._by_coid[claim.client_order_id] = scopes
                else:
                    self._by_coid.pop(claim.client_order_id, None)
                self._by_agent_state[(claim.agent_id, claim.state)].pop(key, None)
            oldest = min(before, probe_since)
            if self._cleared and self._cleared[0][0] < oldest:
                self._cleared = [(at, p) for at, p in self._cleared if at >= oldest]
            return len(gone)

    def trim_audit(self, keep: int) -> int:
        """Forget all but the last `keep` audit records; return how many were forgotten.

        Opt-in, like `prune_resolved`: for a simulation that reads its figures elsewhere (a
        replay counts its own) and must not grow with its length. Record ids stay as they were:
        the first kept record keeps its id, and reads page on from it as before.
        """
        if keep < 0:
            raise ValueError(f"keep must be 0 or more, got {keep}")
        with self._lock:
            drop = len(self._audit_log) - keep
            if drop <= 0:
                return 0
            del self._audit_log[:drop]
            del self._audit_detail[:drop]
            self._audit_base += drop
            return drop

    # -- claiming --------------------------------------------------------------------------

    def claim(
        self,
        intent: Intent,
        spec: OrderSpec,
        *,
        owner: str,
        client_order_id: str | None = None,
        order_qty: Decimal | None = None,
        turn_id: int | None = None,
        reason: str = "",
    ) -> ClaimOutcome:
        """Record `intent` as PENDING unless it exists; return the claim either way.

        Raises:
            IntentMismatch: The key exists with a different order payload.
            StoreError: The client_order_id names another claim, or the store is closed.
        """
        payload = spec.as_payload()
        key = intent.key  # a SHA-256 on every access: computed once
        existing = self._claims.get(key)  # claims are never deleted: a hit is final
        if existing is not None:
            self._check_open()
            return self._existing(existing, payload)
        now = self._now()
        with self._lock:
            return self._insert(
                key, intent, spec, payload, owner=owner, coid=client_order_id, order_qty=order_qty,
                turn_id=turn_id, reason=reason, now=now,
            )  # fmt: skip

    def _insert(
        self,
        key: str,
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
        """Insert the claim and its audit record (under the lock), or return the one that exists."""
        existing = self._claims.get(key)
        if existing is not None:
            return self._existing(existing, payload)
        coid = coid or derive_client_order_id(key, self.settings.client_order_id_prefix)
        # Unique in its account's scope; an id of scope "" (unknown account) in every scope.
        scope = coid_scope(self._accounts.get(intent.agent_id))
        held = self._by_coid.get(coid)
        scopes = None if held is None else _scopes(held)
        other = None
        if scopes:  # its own scope's, one of scope "", or (of scope "" itself) any one
            other = scopes.get(scope) or scopes.get("") or (None if scope else next(iter(scopes.values())))
        if other is not None:
            raise StoreError(
                f"client_order_id {coid!r} already belongs to another claim ({other}); "
                "a client_order_id names exactly one decision"
            )
        # Positional, in Claim's field order (a keyword call costs a fifth more; the contract
        # tests read every field back).
        claim = Claim(
            key, coid, intent.agent_id, intent.kind, intent.symbol, intent.side, intent.name, payload,
            ClaimState.PENDING, 1, owner, now + self._lease,  # state, epoch, owner, lease_expires_at
            None if order_qty is None else _num(order_qty), None,  # order_qty, broker_order_id
            _ZERO, None, turn_id, 1, reason, now, now,  # filled_qty .. attempts, reason, created, updated
            None, scope,  # reject_kind, coid_scope
        )  # fmt: skip
        # Its spec as `Claim.spec` would read it from `payload` (`spec.as_payload()`): made once per spec.
        object.__setattr__(claim, "_spec", spec.read_back())
        self._store(None, claim)
        if scopes is None:
            self._by_coid[coid] = (scope, key) if scope else key
        else:
            self._by_coid[coid] = {**scopes, scope: key}
        self._agents[intent.agent_id] = None
        # `_write_audit`'s row, appended here (every decision makes one), members as their text.
        self._audit_log.append(
            (now, intent.agent_id, _CLAIMED, reason or f"claimed {intent.name}", intent.kind._value_,
             intent.symbol, intent.side._value_,
             order_qty if order_qty is not None else spec.qty or spec.notional,
             _PENDING, None, coid, key)
        )  # fmt: skip
        self._audit_detail.append({"intent": intent.name, **payload})
        return ClaimOutcome(claim, created=True)

    @staticmethod
    def _existing(claim: Claim, payload: dict[str, Any]) -> ClaimOutcome:
        if not same_order(claim.payload, payload):
            raise IntentMismatch(claim.key, claim.payload, payload)
        return ClaimOutcome(claim, created=False)

    def claim_window(self, content_key: str, *, window_secs: float, claim_key: str) -> str:
        """Atomically open a dedup window for `content_key` or return the claim key inside it.

        An expired window changes hands only when the order that holds it is resolved: while
        that claim is PENDING or UNKNOWN an identical order is its retry, however late (G1).
        """
        now = self._now()
        with self._lock:
            held = self._windows.get(content_key)
            if held is not None:
                holder, expires_at = held
                if expires_at > now:
                    return holder
                claim = self._claims.get(holder)
                if claim is not None and claim.state in _UNACKNOWLEDGED:
                    return holder
            self._windows[content_key] = (claim_key, now + timedelta(seconds=window_secs))
        return claim_key

    def window_holder(self, content_key: str) -> str | None:
        """Return the claim key holding the live window of `content_key`, or None (a read only)."""
        now = self._now()
        with self._lock:
            held = self._windows.get(content_key)
        return held[0] if held is not None and held[1] > now else None

    # -- lifecycle -------------------------------------------------------------------------

    def transition(
        self,
        claim: Claim,
        to: ClaimState,
        *,
        reason: str,
        broker_order_id: str | None = None,
        filled_qty: Decimal | None = None,
        filled_avg_price: Decimal | None = None,
        order_qty: Decimal | None = None,
        owner: str | None = None,
        detail: dict[str, Any] | None = None,
        reject_kind: RejectKind | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Claim:
        """Move `claim` to `to` if it is still the version the caller saw (state, epoch, fills).

        New fills are added to the ledger in the same step. `owner` renews the lease for that
        worker (used when re-sending).

        Raises:
            IllegalTransition: The table forbids the move.
            LeaseLost: The claim changed (another worker took it over or moved it) meanwhile.
        """
        check_transition(claim.state, to)
        now = self._now()
        with self._lock:
            # Positional, in `_move`'s order: the commonest write of all (every answer and fill).
            return self._move(
                claim, to, now, reason, broker_order_id, filled_qty, filled_avg_price, order_qty,
                owner, detail, reject_kind, payload,
            )  # fmt: skip

    def _move(  # noqa: PLR0917 - positional from `transition`, the commonest write
        self,
        claim: Claim,
        to: ClaimState,
        now: datetime,
        reason: str,
        broker_order_id: str | None = None,
        filled_qty: Decimal | None = None,
        filled_avg_price: Decimal | None = None,
        order_qty: Decimal | None = None,
        owner: str | None = None,
        detail: dict[str, Any] | None = None,
        reject_kind: RejectKind | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Claim:
        """Apply one checked transition (under the lock): the compare-and-set, new fills, the audit record."""
        delta = _ZERO
        if filled_qty is not None and filled_qty != claim.filled_qty:
            if filled_qty < claim.filled_qty:
                raise StoreError(
                    f"claim {claim.client_order_id}: filled qty cannot shrink "
                    f"({claim.filled_qty} -> {filled_qty})"
                )
            delta = filled_qty - claim.filled_qty
        current = self._claims.get(claim.key)
        if (
            current is None
            or current.state is not claim.state
            or current.epoch != claim.epoch
            or current.attempts != claim.attempts
            or current.filled_qty != claim.filled_qty
        ):
            raise self._lease_lost(claim, current)
        turn_id, filled = current.turn_id, current.filled_qty
        if filled_qty is not None and delta:
            filled = _num(filled_qty)
            signed = delta if claim.side is Side.BUY else -delta
            # The kind's text as `_value_`: formatting the member costs a Python-level call.
            why = f"{claim.kind._value_} {claim.client_order_id}"
            opened = self._apply_fill(claim.agent_id, claim.symbol, signed, at=now, reason=why)
            if turn_id is None and opened is not None:
                turn_id = opened
        moved = Claim(  # positional, in Claim's field order (see `_insert`)
            current.key, current.client_order_id, current.agent_id, current.kind, current.symbol,
            current.side, current.intent, current.payload if payload is None else payload, to,
            current.epoch, current.owner if owner is None else owner,
            current.lease_expires_at if owner is None else now + self._lease,
            current.order_qty if order_qty is None else _num(order_qty),
            current.broker_order_id if broker_order_id is None else broker_order_id,
            filled, current.filled_avg_price if filled_avg_price is None else _num(filled_avg_price),
            turn_id, current.attempts + (1 if to is ClaimState.PENDING else 0), reason,
            current.created_at, now, reject_kind, current.coid_scope,
        )  # fmt: skip
        if payload is None:  # the same order: its spec, if read already, stays read
            object.__setattr__(moved, "_spec", current._spec)
        self._store(current, moved)
        said = dict(detail) if detail else {}
        if delta:
            said["fill_delta"] = str(delta)
        if reject_kind:
            said["reject_kind"] = reject_kind.value
        # `_write_audit`'s row, appended here (the commonest record of all), members as their text.
        self._audit_log.append(
            (now, claim.agent_id, _TRANSITION, reason, current.kind._value_, claim.symbol,
             current.side._value_, filled_qty if filled_qty is not None else claim.order_qty,
             str.__str__(to), current.state._value_, claim.client_order_id, claim.key)
        )  # fmt: skip
        self._audit_detail.append(said)
        return moved

    @staticmethod
    def _lease_lost(claim: Claim, current: Claim | None) -> LeaseLost:
        seen = f"{claim.state}/epoch {claim.epoch}/attempt {claim.attempts}/filled {claim.filled_qty}"
        now = "gone"
        if current is not None:
            c = current
            now = f"{c.state}/epoch {c.epoch}/attempt {c.attempts}/filled {c.filled_qty}"
        return LeaseLost(
            f"claim {claim.client_order_id} is no longer {seen} (now {now}); re-read it before acting"
        )

    def take_over(self, claim: Claim, owner: str) -> Claim:
        """Take over an active claim whose lease has lapsed; fence out the previous owner.

        The epoch goes up; a PENDING claim becomes UNKNOWN (its previous owner may have sent it).

        Raises:
            ClaimInProgress: The lease is still live, or the claim is not active or has moved on.
        """
        now = self._now()
        to_state = ClaimState.UNKNOWN if claim.state is ClaimState.PENDING else claim.state
        with self._lock:
            current = self._claims.get(claim.key)
            if (
                current is None
                or current.epoch != claim.epoch
                or current.state is not claim.state
                or current.lease_expires_at > now
                or current.state not in ACTIVE_STATES
            ):
                raise ClaimInProgress(
                    f"claim {claim.client_order_id} is held by a live lease or has moved on; "
                    "another worker is handling this decision"
                )
            taken = replace(
                current, epoch=current.epoch + 1, owner=owner, lease_expires_at=now + self._lease,
                state=to_state, updated_at=now,
                reason=f"taken over from {claim.owner[:12]} after lease lapsed",
            )  # fmt: skip
            self._store(current, taken)
            self._write_audit(
                at=now, agent_id=claim.agent_id, action=AuditAction.TAKEOVER,
                kind=claim.kind.value, symbol=claim.symbol, side=claim.side,
                state=to_state.value, prev_state=claim.state.value,
                reason="lease lapsed; resolve through the broker before any send",
                client_order_id=claim.client_order_id, claim_key=claim.key,
                detail={"from_owner": claim.owner, "to_owner": owner, "epoch": claim.epoch + 1},
            )  # fmt: skip
        return taken

    def fence_before_send(self, claim: Claim) -> Claim:
        """Return `claim` if its lease outlasts one request; else renew it (see `renew_lease`).

        Raises:
            LeaseLost: The lease lapsed and another worker moved or took over the claim.
        """
        if self.settings.lease_outlasts_one_request(claim.lease_expires_at, self._now()):
            return claim
        return self.renew_lease(claim, claim.owner)

    def renew_lease(self, claim: Claim, owner: str) -> Claim:
        """Renew this worker's lease on its PENDING claim (the epoch goes up, fencing stale readers).

        Raises:
            LeaseLost: The claim is no longer this worker's PENDING claim; do not send.
        """
        now = self._now()
        with self._lock:
            current = self._claims.get(claim.key)
            if (
                current is None
                or current.state is not ClaimState.PENDING
                or current.epoch != claim.epoch
                or current.owner != owner
            ):
                raise self._lease_lost(claim, current)
            renewed = replace(
                current, epoch=current.epoch + 1, lease_expires_at=now + self._lease, updated_at=now
            )
            self._store(current, renewed)
        return renewed

    def record_skip(self, claim: Claim | None, *, agent_id: str, reason: str, **fields: Any) -> None:
        """Audit a blocked duplicate or an exit with nothing to sell; the claim's fields win."""
        self.audit(AuditAction.SKIP, agent_id=agent_id, reason=reason, **claim_fields(claim, fields))

    def audit(self, action: AuditAction, *, agent_id: str, reason: str, **fields: Any) -> None:
        """Append one audit record."""
        detail = fields.get("detail")
        if detail:
            fields["detail"] = dict(detail)  # the record keeps what was said, whatever the caller does next
        now = self._now()
        with self._lock:
            self._write_audit(at=now, agent_id=agent_id, action=action, reason=reason, **fields)

    def _exit_room(
        self,
        agent_id: str,
        symbol: str,
        *,
        broker_available: Decimal,
        requested: Decimal | None,
        read_at: datetime | None = None,
    ) -> ExitRoom:
        # Agents on another broker account hold nothing this agent could sell, but for a turn
        # they made here before they were re-pointed (`_holds_on_account_of`, audit 66).
        holders = {
            a: p.qty
            for a, p in self._open_in.get(symbol, {}).items()
            if self._holds_on_account_of(agent_id, p)
        }
        mine = self._on_account_of
        claims = self._claims

        def waiting(c: Claim) -> bool:  # legs waiting for their entry: no exit in flight yet (`legs_wait`)
            if not is_leg(c.intent):
                return False
            # The legs' agent's own claim (`execution.track_legs`): ids are unique per account.
            scopes = _scopes(self._by_coid.get(exit_group(c.intent, c.client_order_id)))
            held = (claims.get(k) for k in scopes.values())
            parent = next((p for p in held if p is not None and p.agent_id == c.agent_id), None)
            return legs_wait(None if parent is None else (parent.kind, parent.state))

        open_exits = [
            (
                c.agent_id,
                acknowledged_before(c.state not in _UNACKNOWLEDGED, c.updated_at, read_at),
                (c.order_qty or Decimal(0)) - c.filled_qty,
                exit_group(c.intent, c.client_order_id),
            )
            for c in (claims[k] for k in self._active_in.get(symbol, ()))
            if c.kind is Kind.EXIT and mine(agent_id, c.agent_id) and not waiting(c)
        ]
        return size_exit(
            agent_id, holders, open_exits, broker_available=broker_available, requested=requested
        )

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
        """Size an exit and claim it in one step; None when there is nothing to sell (see `ClaimStore`)."""
        payload = spec.as_payload()
        now = self._now()
        with self._lock:
            existing = self._claims.get(intent.key)
            if existing is not None:  # a racing retry of this decision: no sizing, no payload check
                return ClaimOutcome(existing, created=False), None
            room = self._exit_room(
                intent.agent_id, intent.symbol, broker_available=broker_available, requested=spec.qty,
                read_at=broker_read_at,
            )  # fmt: skip
            if room.qty <= 0:
                return None, room
            held = self._open_position(intent.agent_id, intent.symbol)
            outcome = self._insert(
                intent.key, intent, spec, payload, owner=owner, coid=client_order_id, order_qty=room.qty,
                turn_id=None if held is None else held.turn_id, reason=reason, now=now,
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
        """Re-size an exit that placed nothing and move it back to PENDING, in one step.

        None when nothing may be sent. Raises `LeaseLost` when the claim moved meanwhile.
        """
        check_transition(claim.state, ClaimState.PENDING)
        now = self._now()
        with self._lock:
            room = self._exit_room(
                claim.agent_id, claim.symbol, broker_available=broker_available,
                requested=claim.spec.qty, read_at=broker_read_at,
            )  # fmt: skip
            if room.qty <= 0:
                return None, room
            moved = self._move(
                claim, ClaimState.PENDING, now=now, reason=reason, order_qty=room.qty, owner=owner,
                detail={**detail, "sizing": room.describe(claim.symbol)},
            )  # fmt: skip
        return moved, room

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
        None when there was nothing to close or the ledger moved.
        """
        now = self._now()
        with self._lock:
            current = self._open_position(agent_id, symbol)
            if current is None or (expect is not None and version(current) != (expect.turn_id, expect.qty)):
                return None
            self._close(current, current.qty, at=now, reason=reason)
            if detail:
                self._write_audit(
                    at=now, agent_id=agent_id, action=AuditAction.RECONCILE, symbol=symbol,
                    reason=reason, detail={"turn_id": current.turn_id, **detail},
                )  # fmt: skip
        return current.turn_id

    def adjust_position(self, agent_id: str, symbol: str, delta: Decimal, *, reason: str) -> int | None:
        """Add `delta` to the agent's position without a claim; return the open turn id after it."""
        now = self._now()
        with self._lock:
            return self._apply_fill(agent_id, symbol, delta, at=now, reason=reason)

    def correct_position(
        self, expect: LedgerPosition, delta: Decimal, *, reason: str, detail: dict[str, Any]
    ) -> bool:
        """Add `delta` to a position the reconciler read as `expect`; False if the ledger moved."""
        now = self._now()
        agent_id, symbol = expect.agent_id, expect.symbol
        with self._lock:
            if self._apply_fill(agent_id, symbol, delta, at=now, reason=reason, expect=expect) == -1:
                return False
            self._write_audit(
                at=now, agent_id=agent_id, action=AuditAction.RECONCILE, symbol=symbol,
                qty=delta, reason=reason, detail=detail,
            )  # fmt: skip
        return True

    def settle_position(
        self, agent_id: str, symbol: str, qty: Decimal, *, reason: str, actor: str
    ) -> Decimal:
        """Set the agent's ledger position in `symbol` to `qty` (an operator's decision); audited.

        Returns the quantity the ledger held before.
        """
        if not reason.strip():
            raise ValueError("settling a position needs a reason for the audit log")
        now = self._now()
        with self._lock:
            current = self._open_position(agent_id, symbol)
            before = Decimal(0) if current is None else current.qty
            self._apply_fill(agent_id, symbol, qty - before, at=now, reason=f"settled by {actor}: {reason}")
            self._write_audit(
                at=now, agent_id=agent_id, action=AuditAction.RECONCILE, symbol=symbol, qty=qty,
                reason=f"position settled by {actor}: {before} -> {qty}: {reason}",
                detail={"action": "settle_position", "actor": actor,
                        "before": str(before), "after": str(qty)},
            )  # fmt: skip
        return before

    # -- claims: reads ---------------------------------------------------------------------

    def get(self, key: str) -> Claim | None:
        """Return the claim with this key, or None."""
        self._check_open()
        return self._claims.get(key)

    def get_by_client_order_id(self, client_order_id: str, *, account_key: str | None = None) -> Claim | None:
        """Return the claim that owns this client_order_id on `account_key`'s account, or None.

        A known account (`ports.coid_scope`) finds its own claim, or one of unknown account (the
        two cannot both exist); an unknown one reads every account's, the oldest first.
        """
        self._check_open()
        scopes = _scopes(self._by_coid.get(client_order_id))
        if not scopes:
            return None
        scope = coid_scope(account_key)
        if scope:
            key = scopes.get(scope) or scopes.get("")
            return None if key is None else self._claims.get(key)
        found = [c for c in map(self._claims.get, list(scopes.values())) if c is not None]
        return min(found, key=lambda c: (c.created_at, c.key)) if found else None

    def list_claims(
        self,
        *,
        states: Sequence[ClaimState] | None = None,
        agent_id: str | None = None,
        symbol: str | None = None,
        kind: Kind | None = None,
        updated_before: datetime | None = None,
        updated_since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Claim]:
        """Return claims matching every given filter, oldest first (by creation, then key)."""
        self._check_open()
        wanted = None if states is None else frozenset(states)
        with self._lock:
            candidates = self._candidates(wanted, agent_id, symbol)
            if not candidates:
                # The commonest answer by far (an exit's and a reconcile pass's checks for claims
                # in motion, other agents' above all, find none): no filter, sort or slice to run.
                return []
            found = [
                c
                for c in candidates
                if (wanted is None or c.state in wanted)
                and (agent_id is None or c.agent_id == agent_id)
                and (symbol is None or c.symbol == symbol)
                and (kind is None or c.kind is kind)
                and (updated_before is None or c.updated_at < updated_before)
                and (updated_since is None or c.updated_at >= updated_since)
            ]
        found.sort(key=_key_of)
        return found if limit is None else found[:limit]

    def _candidates(
        self, states: frozenset[ClaimState] | None, agent_id: str | None, symbol: str | None
    ) -> list[Claim]:
        """The claims a listing must look at, from the narrowest index that covers it."""
        claims = self._claims
        if states is not None and states <= ACTIVE_STATES:
            if agent_id is not None and symbol is not None:
                return [claims[k] for k in self._active.get((agent_id, symbol), ())]
            if symbol is not None:
                return [claims[k] for k in self._active_in.get(symbol, ())]
        if agent_id is not None:
            every = states if states is not None else ClaimState
            by_state = self._by_agent_state
            return [claims[k] for s in every for k in by_state.get((agent_id, s), ())]
        if states is not None:  # every agent's claims in these states (e.g. recent NOT_SENT ones)
            indexed = self._by_agent_state.items()
            return [claims[k] for (_agent, s), keys in indexed if s in states for k in keys]
        return list(claims.values())

    def exits_in_flight(self, agent_id: str, symbol: str) -> Decimal:
        """Return the unfilled quantity of this agent's PENDING or UNKNOWN exits in `symbol`."""
        self._check_open()
        with self._lock:
            claims = [self._claims[k] for k in self._active.get((agent_id, symbol), ())]
        return sum(
            (
                (c.order_qty or Decimal(0)) - c.filled_qty
                for c in claims
                if c.kind is Kind.EXIT and c.state in _UNACKNOWLEDGED
            ),
            Decimal(0),
        )

    def _agents_in_motion(self, symbol: str) -> set[str]:
        claims = self._claims  # under the store's lock (MemoryLedger.adopt_position)
        return {claims[k].agent_id for k in self._active_in.get(symbol, ())}

    def _turn_claimed_in(self, held: LedgerPosition, scope: str) -> bool:
        """Whether a claim of the open turn `held` was made in `scope` (`MemoryLedger` hook)."""
        return any(
            c.agent_id == held.agent_id and c.symbol == held.symbol and c.turn_id == held.turn_id
            and c.coid_scope == scope
            for c in self._claims.values()
        )  # fmt: skip

    def _turn_scopes(self, held: LedgerPosition) -> set[str]:
        """The `coid_scope`s of the open turn `held`'s claims, "" unknown (`MemoryLedger` hook)."""
        return {
            c.coid_scope or ""
            for c in self._claims.values()
            if c.agent_id == held.agent_id and c.symbol == held.symbol and c.turn_id == held.turn_id
        }

    def _own_moves(
        self, agent_id: str, symbol: str, since: datetime | None
    ) -> tuple[list[str], list[tuple[str, Decimal]]]:
        claims = self._claims  # under the store's lock (MemoryLedger.adopt_position)
        in_motion = [claims[k].side.value for k in self._active.get((agent_id, symbol), ())]
        if since is None:
            return in_motion, []
        lately = [
            (c.side.value, c.filled_qty)
            for c in claims.values()
            if c.agent_id == agent_id and c.symbol == symbol and c.updated_at > since
        ]
        return in_motion, lately

    def symbols_in_motion(self, *, excluding_agent: str | None = None) -> set[str]:
        """Return the symbols with an active claim, leaving out `excluding_agent`'s (see `ClaimStore`)."""
        self._check_open()
        with self._lock:
            claims = self._claims
            return {
                symbol
                for symbol, keys in self._active_in.items()
                if any(claims[k].agent_id != excluding_agent for k in keys)
            }

    def agents(self) -> list[str]:
        """Return every agent id that has claims, sorted."""
        self._check_open()
        with self._lock:
            return sorted(self._agents)


if TYPE_CHECKING:

    def _is_a_claim_ledger(store: MemoryClaimStore) -> ClaimLedger:
        return store  # mypy checks that MemoryClaimStore keeps the port
