"""`ClaimStore`: durable claims, their lifecycle, the ledger and the audit log in one database.

A claim is written before its order is sent, with one atomic insert-if-absent; a conflict hands
back the existing claim (G1). Every state change is a compare-and-set that writes its audit
record in the same transaction (G6); if any of it cannot be written, the caller gets
`StoreError` and must not send (G5).

Which commits reach the disk before the call returns (see connections.py for what a
non-durable commit means on SQLite, `synchronous=NORMAL`, and on PostgreSQL,
`synchronous_commit=off`):

* Durable (fsync): `claim`, `claim_exit` and any `transition` into PENDING, because an order is
  sent next (G5); `take_over` and `renew_lease`, because they fence a worker out; a transition
  out of NOT_SENT (an order found late; NOT_SENT is probed only for a while); `audit`, because
  a reconcile note is the only trace of a correction; ledger
  corrections (`close_turn`, `correct_position`, `settle_position`), rare enough that the fsync
  is cheap insurance.
* Not durable: other transitions, `claim_window` and `record_skip`. A transition records broker evidence. A
  kill -9 cannot lose it; a power cut can roll back the last few, never out of order, together
  with their fills and audit records. The claim then reads as its previous state, which is
  always active or NOT_SENT (every other way out of an inactive state is durable), so the
  reconciler looks it up by client_order_id and adopts the broker's state again (G2).
  A dedup window matters only with the claim that follows it, and that claim's fsync covers it.
  A skip note (a blocked duplicate) is still written before the call returns (G6), but a power
  cut may take it back with the suffix of the log: it records that nothing was done, the claim
  it points at is durable already, and no decision reads skip notes, so losing one changes no
  outcome. A duplicate retry therefore costs no fsync.

`fsync_every_commit=True` makes every commit durable (one fsync per transition).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine.url import URL

from tradeguard.clock import Clock, SystemClock
from tradeguard.config import DEFAULT_STORE_URL, Settings
from tradeguard.domain import AuditAction
from tradeguard.domain.audit import claim_fields
from tradeguard.domain.claims import Claim, ClaimOutcome, same_order
from tradeguard.domain.intents import (
    Intent,
    OrderSpec,
    canonical_json,
    derive_client_order_id,
    hash_payload_json,
)
from tradeguard.domain.ledger import FillStep, fill_step
from tradeguard.domain.lifecycle import ClaimState, check_transition
from tradeguard.domain.orders import RejectKind, Side
from tradeguard.errors import ClaimInProgress, IntentMismatch, LeaseLost, StoreError
from tradeguard.store import ledger
from tradeguard.store import statements as sql
from tradeguard.store.audit import COLUMNS as AUDIT_COLUMNS
from tradeguard.store.audit import INSERT as INSERT_AUDIT
from tradeguard.store.audit import skip_values, write_audit
from tradeguard.store.connections import RawPool, Result, Tx, process_id
from tradeguard.store.engine import describe, open_engine, parse_url
from tradeguard.store.ledger_writes import LedgerWriter
from tradeguard.store.model import (
    CLAIM_COLUMNS,
    MUTABLE_COLUMNS,
    Decode,
    apply_mutable,
    decode_claim,
    new_owner_token,
)
from tradeguard.store.reading import StoreReader

__all__ = ["Claim", "ClaimOutcome", "ClaimStore", "new_owner_token"]


_TURN_ID = MUTABLE_COLUMNS.index("turn_id")
_PAYLOAD = CLAIM_COLUMNS.index("payload")
# Of a record's values (`write_audit(send=False)`, audit.INSERT's columns): what the step
# functions of migration 0015 take of it, the claim's reason, quantity and detail, a transition's
# quantity and detail (its reason is the move's own); the rest of the record is the claim's own
# values and the step's, which the function has already.
_PG_CLAIM_RECORD = operator.itemgetter(*(AUDIT_COLUMNS.index(c) for c in ("reason", "qty", "detail")))
_PG_MOVE_RECORD = operator.itemgetter(*(AUDIT_COLUMNS.index(c) for c in ("qty", "detail")))


class _FillGuesses:
    """PostgreSQL: the open turn this process's last fill left per (agent, symbol), and spare turn ids.

    Read by `ClaimStore._fast_fill` to send a fill in one round trip. Only a guess: the batch
    checks it under the symbol's lock, so a turn another process or writer moved costs one extra
    round trip, never a wrong ledger. Turn ids are sequence values drawn ahead and unique to this
    process; a child process after fork starts empty, so a parent and its child never use the
    same one. Dict and list operations are atomic under the GIL, and a guess raced by another
    thread is only stale.
    """

    __slots__ = ("_ids", "_pid", "_turns")

    _KEEP_IDS = 4

    def __init__(self) -> None:
        self._pid = process_id()
        self._turns: dict[tuple[str, str], tuple[int, Decimal] | None] = {}
        self._ids: list[int] = []

    def _mine(self) -> None:
        if process_id() != self._pid:
            self._pid, self._turns, self._ids = process_id(), {}, []

    def turn(self, agent_id: str, symbol: str) -> tuple[bool, tuple[int, Decimal] | None]:
        """Return (known, the open turn guessed: (turn_id, qty), None if flat)."""
        self._mine()
        try:
            return True, self._turns[(agent_id, symbol)]
        except KeyError:
            return False, None

    @staticmethod
    def after(
        before: tuple[int, Decimal] | None, step: FillStep, new_turn_id: int | None
    ) -> tuple[int, Decimal] | None:
        """Return the open turn (turn_id, qty) that `step` leaves from `before`, None if flat.

        `new_turn_id`: the id of the turn the step opens, if it opens one.
        """
        if step.open_qty is not None:
            return None if new_turn_id is None else (new_turn_id, step.open_qty)
        if before is None or step.close_reason is not None:
            return None
        return (before[0], before[1] if step.set_qty is None else step.set_qty)

    def learn(
        self,
        agent_id: str,
        symbol: str,
        before: tuple[int, Decimal] | None,
        signed: Decimal,
        turn_id: int | None,
    ) -> None:
        """Remember the open turn a fill of `signed` on `before` left (`turn_id`: apply_fill's answer)."""
        step = fill_step(None if before is None else before[1], signed, "")
        self.remember(agent_id, symbol, self.after(before, step, turn_id))

    def remember(self, agent_id: str, symbol: str, turn: tuple[int, Decimal] | None) -> None:
        """Remember `turn` as the agent's open turn in `symbol` (None: flat)."""
        self._mine()
        self._turns[(agent_id, symbol)] = turn

    def forget(self, agent_id: str, symbol: str) -> None:
        """Drop a guess that proved wrong (the next fill reads the turn and learns again)."""
        self._turns.pop((agent_id, symbol), None)

    def take_id(self) -> int | None:
        """Return a turn id drawn ahead, or None if none is left."""
        self._mine()
        try:
            return self._ids.pop()
        except IndexError:
            return None

    def short_of_ids(self) -> bool:
        """True when no turn id is kept (the next fill that opens a turn could not go in one trip)."""
        return not self._ids

    def keep_id(self, turn_id: int) -> None:
        """Keep an id drawn from the sequence and not used, for a later turn."""
        self._mine()
        if len(self._ids) < self._KEEP_IDS:
            self._ids.append(turn_id)


def _num(value: Decimal | None) -> str | None:
    # One text per number, so a compare-and-set on it is a compare of values.
    return None if value is None else format(value.normalize(), "f")


def _written_by(claim: Claim, *, owner: str, coid: str, at: datetime) -> bool:
    """Whether `claim` is the one a claim call stamped `at` by `owner` wrote: untouched since."""
    return (
        claim.owner == owner
        and claim.client_order_id == coid
        and claim.created_at == at
        and claim.state is ClaimState.PENDING
        and claim.epoch == 1
        and claim.attempts == 1
    )


def _coid_taken(coid: str, other: str | None) -> StoreError:
    return StoreError(
        f"client_order_id {coid!r} already belongs to another claim ({other}); "
        "a client_order_id names exactly one decision"
    )


class ClaimStore(LedgerWriter, StoreReader):
    """Durable claims, ledger and audit log over SQLAlchemy (SQLite by default, or PostgreSQL).

    Args:
        url: A SQLAlchemy URL: ``sqlite:///path.db`` (one host) or
            ``postgresql+psycopg://user@host/db`` (several hosts).
        settings: Lease length, client_order_id prefix, SQLite busy timeout.
        clock: The time source for every timestamp.
        fsync_every_commit: Fsync every commit, not only those that must precede a send
            (see the module docstring). Costs one fsync per transition.
        must_exist: Refuse to create a new SQLite file (commands that only read or correct a
            store: a mistyped path must not look like an empty store).

    Raises:
        StoreError: The URL is unusable or the database cannot be opened or migrated.
    """

    def __init__(
        self,
        url: str | URL = DEFAULT_STORE_URL,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        fsync_every_commit: bool = False,
        must_exist: bool = False,
    ) -> None:
        self.settings = settings or Settings()
        self.clock: Clock = clock or SystemClock()
        self.url = parse_url(url)
        database = self.url.database
        on_disk = self.backend == "sqlite" and database and database != ":memory:"
        if must_exist and on_disk and not Path(str(database)).is_file():
            raise StoreError(f"no claim store at {database} (sqlite file does not exist)")
        self._engine: Engine = open_engine(
            self.url,
            busy_timeout_ms=self.settings.sqlite_busy_timeout_ms,
            pg_prepare_after=self.settings.pg_prepare_after,
            pg_stuck_transaction_secs=self.settings.pg_stuck_transaction_secs,
            pg_lock_timeout_ms=self.settings.pg_lock_timeout_ms,
            pg_answer_timeout_secs=self.settings.pg_answer_timeout_secs,
        )
        self._pool = RawPool(self._engine, self.url)
        self._lease = timedelta(seconds=self.settings.lease_secs)
        self._sync_all = fsync_every_commit
        self._guesses = _FillGuesses()

    # -- plumbing --------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """Return "sqlite" or "postgresql"."""
        return self.url.get_backend_name()

    @functools.cached_property
    def store_id(self) -> str:
        """The store's identity: an id made once when the store was created, never changed.

        Read from the database once (`tg_store`, migration 0011). The claim service names it on
        every answer, so a remote ledger can tell a service restarted on another database.

        Raises:
            StoreError: It cannot be read, or the table does not hold exactly one id.
        """
        rows = self._pool.read("reading the store's identity", "SELECT store_id FROM tg_store", ())
        if len(rows) != 1 or not rows[0][0]:
            raise StoreError(
                f"claim store {describe(self.url)} has {len(rows)} identities in tg_store (one is made "
                "when the store is created and never changed); it was edited by hand: restore it"
            )
        return str(rows[0][0])

    def close(self) -> None:
        """Release every connection."""
        self._pool.close()
        self._engine.dispose()

    def __enter__(self) -> ClaimStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ClaimStore({describe(self.url)!r})"

    def _now(self) -> datetime:
        now = self.clock.now()
        return now if now.tzinfo is UTC else now.astimezone(UTC)

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

        An existing key is answered by one read: claims are never deleted, so a key seen once
        exists for good, and the claim returned is read from the database by this call. A
        missing key takes one `INSERT ... ON CONFLICT DO NOTHING`, so two racing callers cannot
        both create it; the new claim and its audit record are fsynced before this returns.
        (PostgreSQL: one call of the `tg_claim` function does the insert, its record and the
        read, in one round trip; on an existing key the insert writes nothing, so the commit has
        no WAL to flush.)

        Raises:
            IntentMismatch: The key exists with a different order payload.
            StoreError: Nothing could be recorded; do not send.
        """
        key = intent.key
        payload = spec.as_payload()
        pool = self._pool
        if pool.sqlite:
            # PostgreSQL answers an existing key from the insert's own round trip (see _insert).
            rows = pool.read("reading a claim", sql.BY_KEY, (key,))
            if rows:
                return self._found(rows[0], pool.dt, spec, payload)
        now = self._now()
        with pool.write("recording a claim", durable=True) as tx:
            return self._insert(
                tx, intent, spec, payload, owner=owner, coid=client_order_id, order_qty=order_qty,
                turn_id=turn_id, reason=reason, now=now,
            )  # fmt: skip

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
        """Insert the claim and its audit record inside `tx`, or return the one that exists."""
        key = intent.key
        coid = coid or derive_client_order_id(key, self.settings.client_order_id_prefix)
        text = spec.payload_text()  # canonical_json(payload): `payload` is the spec's
        lease_until = now + self._lease
        at = tx.ts(now)
        values = (
            key, coid, intent.agent_id, intent.kind._value_, intent.symbol, intent.side._value_,
            intent.name, text, hash_payload_json(text), owner, tx.ts(lease_until),
            _num(order_qty), turn_id, reason, at, at,
        )  # fmt: skip
        created = ClaimOutcome(
            Claim(
                key=key, client_order_id=coid, agent_id=intent.agent_id, kind=intent.kind,
                symbol=intent.symbol, side=intent.side, intent=intent.name, payload=payload,
                state=ClaimState.PENDING, epoch=1, owner=owner, lease_expires_at=lease_until,
                order_qty=order_qty, broker_order_id=None, filled_qty=Decimal(0),
                filled_avg_price=None, turn_id=turn_id, attempts=1, reason=reason, created_at=now,
                updated_at=now,
            ),
            created=True,
        )  # fmt: skip
        record = functools.partial(
            write_audit, tx, at=now, agent_id=intent.agent_id, action=AuditAction.CLAIM,
            kind=intent.kind._value_, symbol=intent.symbol, side=intent.side._value_,
            qty=order_qty if order_qty is not None else spec.qty or spec.notional,
            state=ClaimState.PENDING._value_, reason=reason or f"claimed {intent.name}",
            client_order_id=coid, claim_key=key, detail={"intent": intent.name, **payload},
        )  # fmt: skip
        if tx.postgres:
            # One statement, `tg_claim2` (migration 0015): the claim and its record if the key
            # is new (no rows back), else the existing row. Alone in its transaction (a
            # plain claim), it is the whole transaction, committed durably by the function
            # itself; inside a larger one (an exit sized first) it travels with the COMMIT.
            params = (*values[:-1], *_PG_CLAIM_RECORD(record(send=False)))
            try:
                if tx.fresh:
                    rows = tx.step(sql.PG_CLAIM, params, rerunnable=True)
                else:
                    tx.later(sql.PG_CLAIM, params, keep=True)
                    rows = tx.flush(commit=True, rerunnable=True)[0].rows
            except self._pool.driver_errors as exc:
                if getattr(exc, "sqlstate", None) != sql.PG_CLAIM_COID_TAKEN:
                    raise
                other = getattr(getattr(exc, "diag", None), "message_detail", None)
                raise _coid_taken(coid, other or None) from exc
            if not rows:
                return created
            found = self._found(rows[0], tx.dt, spec, payload)
            if tx.reran and _written_by(found.claim, owner=owner, coid=coid, at=now):
                # The first run committed this very claim and its answer was lost with the
                # connection: the rerun found it. Nothing was sent; it is this call's to send.
                return created
            return found
        tx.later(sql.INSERT_CLAIM, (*values, intent.agent_id, coid), keep=True)
        if not tx.flush()[0].count:
            row = tx.one(sql.BY_KEY, (key,))
            if row is None:
                # The conflict was on client_order_id, not the key: a caller reused an id.
                other = tx.one(sql.KEY_OF_COID, (intent.agent_id, coid))
                raise _coid_taken(coid, None if other is None else other[0])
            return self._found(row, tx.dt, spec, payload)
        record()
        return created

    @classmethod
    def _found(cls, row: Sequence[Any], dt: Decode, spec: OrderSpec, payload: dict[str, Any]) -> ClaimOutcome:
        """Return the existing claim a claim call read (its row) for `spec`, whose payload is `payload`.

        A payload stored as the very text `spec`'s payload has (`OrderSpec.payload_text`, what a
        claim of it stores) is the same order: the claim holds `payload` (a dict of this call's)
        without parsing the text again, the common case of a retry. Any other text is parsed and
        compared (`same_order`: terms a replacement changed, a payload written otherwise).
        """
        if row[_PAYLOAD] == spec.payload_text():
            return ClaimOutcome(decode_claim(row, dt, payload), created=False)
        return cls._existing(decode_claim(row, dt), payload)

    @staticmethod
    def _existing(claim: Claim, payload: dict[str, Any]) -> ClaimOutcome:
        if not same_order(claim.payload, payload):
            raise IntentMismatch(claim.key, claim.payload, payload)
        return ClaimOutcome(claim, created=False)

    def claim_window(self, content_key: str, *, window_secs: float, claim_key: str) -> str:
        """Atomically open a dedup window for `content_key` or return the claim key inside it.

        Returns `claim_key` if this call opened a new window (no identical order in the last
        `window_secs`), else the claim key of the order that holds the live window.
        """
        now = self._now()
        pool = self._pool
        # A live window cannot change hands before it expires, so reading it is the answer the
        # upsert below would give, without the write lock.
        live = self.window_holder(content_key)
        if live is not None:
            return live
        with pool.write("opening a dedup window", durable=self._sync_all) as tx:
            # Insert, or take over an expired window, in one statement: the check is the write.
            won = tx.one(
                sql.WINDOW_OPEN,
                (content_key, claim_key, tx.ts(now + timedelta(seconds=window_secs)), tx.ts(now)),
            )
            held = won if won is not None else tx.one(sql.WINDOW_HELD, (content_key,))
        return str(held[0])

    def window_holder(self, content_key: str) -> str | None:
        """Return the claim key holding the live window of `content_key`, or None (a read only)."""
        pool = self._pool
        rows = pool.read("reading a dedup window", sql.WINDOW_LIVE, (content_key, pool.ts(self._now())))
        return str(rows[0][0]) if rows else None

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

        New fills (a `filled_qty` above the recorded one) are added to the ledger in the same
        transaction. `owner` renews the lease for that worker (used when re-sending). Only a
        move into PENDING is fsynced before returning (a send follows); see the module docstring.

        Raises:
            IllegalTransition: The table forbids the move.
            LeaseLost: The claim changed (another worker took it over or moved it) meanwhile.
            StoreError: Nothing was written.
        """
        check_transition(claim.state, to)
        # Durable: a move into PENDING (a send follows) and out of NOT_SENT (an order found late
        # must not be lost again: NOT_SENT is probed only for `not_sent_probe_secs`).
        durable = to is ClaimState.PENDING or claim.state is ClaimState.NOT_SENT or self._sync_all
        doing = f"moving claim {claim.client_order_id} to {to._value_}"  # `_value_`: see _move
        with self._pool.write(doing, durable=durable) as tx:
            return self._move(
                tx, claim, to, now=self._now(), reason=reason, broker_order_id=broker_order_id,
                filled_qty=filled_qty, filled_avg_price=filled_avg_price, order_qty=order_qty,
                owner=owner, detail=detail, reject_kind=reject_kind, payload=payload, commit=True,
            )  # fmt: skip

    def _move(
        self,
        tx: Tx,
        claim: Claim,
        to: ClaimState,
        *,
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
        commit: bool = False,
    ) -> Claim:
        """Apply one checked transition inside `tx`: the compare-and-set, new fills, the audit record.

        `commit`: the transition is all `tx` does, so it may commit it (PostgreSQL: in the same
        round trip as the update, when no fill follows).
        """
        delta = Decimal(0)
        if filled_qty is not None and filled_qty != claim.filled_qty:
            if filled_qty < claim.filled_qty:
                raise StoreError(
                    f"claim {claim.client_order_id}: filled qty cannot shrink "
                    f"({claim.filled_qty} -> {filled_qty})"
                )
            delta = filled_qty - claim.filled_qty
        resend = to is ClaimState.PENDING
        text = None if payload is None else canonical_json(payload)
        record = functools.partial(
            write_audit, tx, at=now, agent_id=claim.agent_id, action=AuditAction.TRANSITION,
            kind=claim.kind._value_, symbol=claim.symbol, side=claim.side,
            qty=filled_qty if filled_qty is not None else claim.order_qty,
            state=to._value_, prev_state=claim.state._value_, reason=reason,
            client_order_id=claim.client_order_id, claim_key=claim.key,
            detail={
                **(detail or {}),
                **({"fill_delta": str(delta)} if delta else {}),
                **({"reject_kind": reject_kind._value_} if reject_kind else {}),
            },
        )  # fmt: skip
        # `_value_`, not `value`: an enum's `value` is a Python-level property (hot path).
        params = (
            to._value_, tx.ts(now), reason, None if reject_kind is None else reject_kind._value_,
            text, None if text is None else hash_payload_json(text),
            broker_order_id, _num(filled_avg_price), _num(order_qty),
            owner, None if owner is None else tx.ts(now + self._lease),
            _num(filled_qty) if delta else None, 1 if resend else 0,
            claim.key, claim.state._value_, claim.epoch, claim.attempts, _num(claim.filled_qty),
        )  # fmt: skip
        signed = delta if claim.side is Side.BUY else -delta
        if commit and tx.postgres and tx.fresh:
            # The whole transaction in one statement (migration 0009): a move without a fill
            # always; a fill when this store knows the open turn it applies to.
            one = (
                self._fast_fill(tx, claim, params=params, record=record, signed=signed)
                if delta
                else self._move_step(tx, claim, params, record)
            )
            if one is not None:
                return one if payload is None else replace(one, payload=payload)
        # PostgreSQL: what follows the compare-and-set travels with it in one round trip. A fill
        # needs the open turn (read under the symbol's lock; harmless if the update fails, the
        # transaction is rolled back); a move without one is a single statement, migration
        # 0005's `tg_move` (the compare-and-set and, if it passed, the record), with the COMMIT.
        guarded = tx.postgres and not delta
        if delta and not tx.postgres:
            row = self._sqlite_fill(tx, claim, params, signed=signed, now=now)
        else:
            row = self._compare_and_set(
                tx, claim, params, record, guarded=guarded, fill=bool(delta), signed=signed, now=now,
                commit=commit and guarded,
            )  # fmt: skip
        moved = apply_mutable(claim, row, tx.dt)
        if payload is not None:
            moved = replace(moved, payload=payload)
        if not guarded:
            record()
        return moved

    def _move_step(self, tx: Tx, claim: Claim, params: tuple[Any, ...], record: Callable[..., Any]) -> Claim:
        """PostgreSQL: a move without a fill as the whole transaction in one statement.

        Migration 0015's `tg_move_step2` (0009's `tg_move_step`, leaner): the compare-and-set and,
        if it passed, the record, committed at the transaction's durability (the function sets it).
        """
        rows = tx.step(
            sql.PG_MOVE_STEP,
            (tx.sync, *params, claim.agent_id, claim.symbol, *_PG_MOVE_RECORD(record(send=False))),
        )
        if not rows:
            raise self._lease_lost(claim, tx.one(sql.VERSION, (claim.key,)))
        return apply_mutable(claim, rows[0], tx.dt)

    def _compare_and_set(
        self,
        tx: Tx,
        claim: Claim,
        params: tuple[Any, ...],
        record: Callable[..., Any],
        *,
        guarded: bool,
        fill: bool,
        signed: Decimal,
        now: datetime,
        commit: bool,
    ) -> Sequence[Any]:
        """The compare-and-set, then a fill's ledger writes; return the claim's row as booked.

        `guarded` (PostgreSQL, no fill): migration 0005's `tg_move`, which also writes the record.
        """
        if guarded:
            tx.later(sql.PG_MOVE, (*params, *record(send=False)), keep=True)
        else:
            if fill:
                # The symbol's lock before the claim's row, as every writer takes them: a fill
                # that held the row while waiting for the lock deadlocked with an exit claim of
                # the same decision holding the lock while its insert waited for the row.
                ledger.lock_symbol(tx, claim.symbol)
            tx.later(sql.TRANSITION, params, keep=True)
            if fill:
                self._queue_fill_reads(tx, claim)
        results = tx.flush(commit=commit)
        if not results[0].rows:
            raise self._lease_lost(claim, tx.one(sql.VERSION, (claim.key,)))
        row: Sequence[Any] = results[0].rows[0]
        if fill:
            row = self._book_fill(tx, claim, row, results, signed=signed, now=now)
        return row

    def _sqlite_fill(
        self, tx: Tx, claim: Claim, params: tuple[Any, ...], *, signed: Decimal, now: datetime
    ) -> Sequence[Any]:
        """SQLite: a fill's ledger writes, then its compare-and-set; return the claim's row as booked.

        The transaction holds SQLite's write lock from its BEGIN IMMEDIATE, so the open turn read
        first is the one the compare-and-set meets, and the ledger can go first: the update then
        records the turn the fill leaves itself (`TRANSITION_TURN`), one update of the claim's row
        where a fill that opened or added to a turn took two (`SET_TURN` after it). A failed
        compare-and-set raises LeaseLost and the transaction's rollback takes the ledger's writes
        back (their records, queued until the COMMIT, were never written): as before, nothing of
        the fill is kept. The writes, their records and their order are those of `_book_fill`.
        """
        ledger.queue_open_read(tx, claim.agent_id, claim.symbol)
        current = ledger.open_turn_of(tx.flush()[0].rows)
        turn_id = ledger.apply_fill(
            tx, claim.agent_id, claim.symbol, signed, at=now, reason=f"{claim.kind} {claim.client_order_id}",
            prefetched=True, current=current,
        )  # fmt: skip
        at = sql.TRANSITION_TURN_AT
        row = tx.one(sql.TRANSITION_TURN, (*params[:at], turn_id, *params[at:]))
        if row is None:
            raise self._lease_lost(claim, tx.one(sql.VERSION, (claim.key,)))
        return row  # type: ignore[no-any-return]

    def _queue_fill_reads(self, tx: Tx, claim: Claim) -> None:
        """Queue what a fill reads with its compare-and-set: the open turn and (PostgreSQL) turn ids."""
        ledger.queue_open_read(tx, claim.agent_id, claim.symbol)
        if tx.postgres and self._guesses.short_of_ids():
            ledger.queue_turn_id(tx)  # one more, so the next fill may open a turn in one trip

    def _book_fill(
        self,
        tx: Tx,
        claim: Claim,
        row: Sequence[Any],
        results: list[Result],
        *,
        signed: Decimal,
        now: datetime,
    ) -> Sequence[Any]:
        """Apply a fill to the ledger after its compare-and-set passed; return the claim's row as booked.

        PostgreSQL's two-round-trip fill (SQLite writes the ledger first: `_sqlite_fill`).

        `results` are the kept results of the compare-and-set batch: the row, the open turn read
        under the symbol's lock and (PostgreSQL) a turn id drawn ahead.
        """
        current = ledger.open_turn_of(results[1].rows)
        reserved = ledger.reserved_turn_id(results[2].rows) if tx.postgres else None
        turn_id = ledger.apply_fill(
            tx, claim.agent_id, claim.symbol, signed, at=now, reason=f"{claim.kind} {claim.client_order_id}",
            prefetched=True, current=current, new_turn_id=reserved,
        )  # fmt: skip
        if reserved is not None:
            # What this fill leaves, for the next fill's one-round-trip guess (`_fast_fill`); an
            # id drawn and not used is kept for a turn a later fill opens.
            self._guesses.learn(claim.agent_id, claim.symbol, current, signed, turn_id)
            for drawn in (reserved, *(ledger.reserved_turn_id(r.rows) for r in results[3:])):
                if drawn != turn_id:
                    self._guesses.keep_id(drawn)
        if row[_TURN_ID] is None and turn_id is not None:
            tx.later(sql.SET_TURN, (turn_id, claim.key))
            row = (*row[:_TURN_ID], turn_id, *row[_TURN_ID + 1 :])
        return row

    def _fast_fill(
        self,
        tx: Tx,
        claim: Claim,
        *,
        params: tuple[Any, ...],
        record: Callable[..., Any],
        signed: Decimal,
    ) -> Claim | None:
        """PostgreSQL: send a fill's whole transaction in one round trip; None if it must take two.

        The ledger writes are computed from the open turn this store's last fill in the symbol
        left (`_FillGuesses`), with a turn id drawn ahead for a turn the fill opens, and sent as
        one statement (migration 0015's `tg_fill_step2`). Inside it, under the symbol's lock, the
        guess is checked and the compare-and-set applied; if either fails the statement's
        transaction is aborted before anything commits, and None tells the caller to take the
        two-round-trip path in the same `tx` (which also raises LeaseLost when the claim moved).
        Money never rests on the guess: a wrong one costs one round trip.
        """
        guesses = self._guesses
        known, current = guesses.turn(claim.agent_id, claim.symbol)
        if not known:
            return None
        held = None if current is None else current[1]
        step = fill_step(held, signed, f"{claim.kind} {claim.client_order_id}")
        spare = None
        if step.open_qty is not None:
            spare = guesses.take_id()
            if spare is None:
                return None
        expected = (None, None) if current is None else (current[0], str(current[1]))
        after = guesses.after(current, step, spare)
        writes = ledger.fill_step_writes(current, step, spare)
        draw = spare is not None or guesses.short_of_ids()  # an id for a turn a later fill opens
        try:
            # One statement, migration 0015's `tg_fill_step2`: under the symbol's lock, the check
            # of the guess, the compare-and-set with the turn id the fill leaves, the ledger's
            # writes (known before they are written: fill_step on the guess) and the records.
            # Re-runnable: a statement re-sent on a fresh connection after the first one
            # committed fails its compare-and-set (TGC01) and ends on the two-round-trip path's
            # LeaseLost.
            rows = tx.step(
                sql.PG_FILL_STEP,
                (draw, tx.sync, *params, None if after is None else after[0], claim.agent_id,
                 claim.symbol, *_PG_MOVE_RECORD(record(send=False)), *expected, *writes),
                rerunnable=True,
            )  # fmt: skip
        except self._pool.driver_errors as exc:
            if getattr(exc, "sqlstate", None) not in sql.PG_GUESS_MISSED:
                raise
            guesses.forget(claim.agent_id, claim.symbol)
            if spare is not None and not tx.reran:
                # Rolled back unused (sequence values are never reissued). Not after a second
                # run: the first may have committed a turn with it, its answer lost.
                guesses.keep_id(spare)
            return None  # nothing was written: the transaction goes on the two-round-trip way
        guesses.remember(claim.agent_id, claim.symbol, after)
        row = rows[0]
        if draw:
            guesses.keep_id(int(row[-1]))
        return apply_mutable(claim, row, tx.dt)

    @staticmethod
    def _lease_lost(claim: Claim, current: Sequence[Any] | None) -> LeaseLost:
        seen = f"{claim.state}/epoch {claim.epoch}/attempt {claim.attempts}/filled {claim.filled_qty}"
        now = "gone" if current is None else "{}/epoch {}/attempt {}/filled {}".format(*current)
        return LeaseLost(
            f"claim {claim.client_order_id} is no longer {seen} (now {now}); re-read it before acting"
        )

    def take_over(self, claim: Claim, owner: str) -> Claim:
        """Take over an active claim whose lease has lapsed; fence out the previous owner.

        The epoch goes up, so the old owner's next compare-and-set fails. A PENDING claim
        becomes UNKNOWN: its previous owner may have sent it, so the new owner must resolve it
        through the broker (lookup by client_order_id) and may never send under a new id.

        Raises:
            ClaimInProgress: The lease is still live, or the claim is not active.
        """
        now = self._now()
        to_state = ClaimState.UNKNOWN if claim.state is ClaimState.PENDING else claim.state
        reason = f"taken over from {claim.owner[:12]} after lease lapsed"
        with self._pool.write(f"taking over claim {claim.client_order_id}", durable=True) as tx:
            row = tx.one(
                sql.TAKE_OVER,
                (owner, tx.ts(now + self._lease), to_state.value, tx.ts(now), reason,
                 claim.key, claim.epoch, claim.state.value, tx.ts(now)),
            )  # fmt: skip
            if row is None:
                raise ClaimInProgress(
                    f"claim {claim.client_order_id} is held by a live lease or has moved on; "
                    "another worker is handling this decision"
                )
            write_audit(
                tx, at=now, agent_id=claim.agent_id, action=AuditAction.TAKEOVER,
                kind=claim.kind.value, symbol=claim.symbol, side=claim.side,
                state=to_state.value, prev_state=claim.state.value,
                reason="lease lapsed; resolve through the broker before any send",
                client_order_id=claim.client_order_id, claim_key=claim.key,
                detail={"from_owner": claim.owner, "to_owner": owner, "epoch": claim.epoch + 1},
            )  # fmt: skip
        return apply_mutable(claim, row, tx.dt)

    def fence_before_send(self, claim: Claim) -> Claim:
        """Return `claim` if its lease outlasts one request; else renew it (see `renew_lease`).

        Free on the usual path (a claim made a moment ago): a comparison with the clock. Only a
        sender that stalled between its claim and its POST pays a write.

        Raises:
            LeaseLost: The lease lapsed and another worker moved or took over the claim.
        """
        if self.settings.lease_outlasts_one_request(claim.lease_expires_at, self._now()):
            return claim
        return self.renew_lease(claim, claim.owner)

    def renew_lease(self, claim: Claim, owner: str) -> Claim:
        """Renew this worker's lease on its PENDING claim, fencing out any stale reader.

        Called right before a send whose lease is nearly out (a process that froze between its
        claim and its POST): it succeeds only if nobody took the claim over or moved it.

        Raises:
            LeaseLost: The claim is no longer this worker's PENDING claim; do not send.
        """
        now = self._now()
        with self._pool.write(f"renewing the lease of {claim.client_order_id}", durable=True) as tx:
            row = tx.one(sql.RENEW, (tx.ts(now + self._lease), tx.ts(now), claim.key, claim.epoch, owner))
            if row is None:
                raise self._lease_lost(claim, tx.one(sql.VERSION, (claim.key,)))
        return apply_mutable(claim, row, tx.dt)

    def record_skip(self, claim: Claim | None, *, agent_id: str, reason: str, **fields: Any) -> None:
        """Audit a blocked duplicate or an exit with nothing to sell; the claim's fields win.

        Written before returning but not fsynced (see the module docstring: a skip decides nothing).
        A duplicate retry's record (a claim, no other fields) is built directly and written as
        one statement (`RawPool.write_one`): the same row, for less.
        """
        if claim is not None and not fields:
            pool = self._pool
            values = skip_values(pool.ts(self._now()), agent_id, reason, claim)
            pool.write_one("writing an audit record", INSERT_AUDIT, values, durable=self._sync_all)
            return
        self._append(
            AuditAction.SKIP, durable=self._sync_all, agent_id=agent_id, reason=reason,
            **claim_fields(claim, fields),
        )  # fmt: skip

    def audit(self, action: AuditAction, *, agent_id: str, reason: str, **fields: Any) -> None:
        """Append one audit record in its own (durable) transaction."""
        self._append(action, durable=True, agent_id=agent_id, reason=reason, **fields)

    def _append(
        self, action: AuditAction, *, durable: bool, agent_id: str, reason: str, **fields: Any
    ) -> None:
        now = self._now()
        with self._pool.write("writing an audit record", durable=durable) as tx:
            write_audit(tx, at=now, agent_id=agent_id, action=action, reason=reason, **fields)
