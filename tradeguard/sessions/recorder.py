"""`Recorder`: what a gateway sees, written live as a session file (`OrderGateway(record_to=...)`).

The gateway makes one `attempt` call per entry point and sends its orders through
`Recorder.wrap(broker)`, a broker that writes each submit's answer (and each position read) as
it happens. The bot adds what only it knows with `note`, `price`, `position(view="bot")` and
`external`, and tags the next attempt with `annotate(...)` (its bar, which code path sent it,
the raw position intent of its own request).

Each call of the gateway's entry points (`answers_recorded`) ends with an answer: the broker's,
or, when nothing was sent, the one tradeguard gave itself (`blocked`, by `tradeguard`: a
duplicate, "not found yet", an exit with nothing to sell, a refusal raised to the bot).

An answer lost in transport (a timeout or a 5xx) is written as the bot saw it, placed unknown.
When the gateway or its reconciler later learns whether that send placed its order (found by
client_order_id; absent on two probes after the grace period; marked not sent by a reconcile
pass), a `resolution` line says so (an order found filled with its fill: quantity, average
price and symbol, the price the run learned, at which a replay prices the retries after it);
an attempt still unknown when the recording ends is looked up once then. A replay uses it to
place the order, or not, as the broker did.

Recording never blocks or fails an order: every recorder call catches its own errors, logs and
audits them (G6), and the order path goes on untouched. An event that cannot be recorded (one
the session format refuses) is left out and a `note` tagged `unrecorded` says which and why, in
its place: the recording goes on with the rest (a lost line is a known hole, a lost day is not).
An attempt left out takes its answers with it (they become such notes too: an answer line with
no attempt before it would make the file unreadable). Only a file that can no longer be written
(a full disk, a closed stream) stops the recording, at the first failed write.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import IO, Any, Concatenate, NamedTuple, ParamSpec, Protocol, TypeVar

from pydantic import ValidationError

from tradeguard import __version__
from tradeguard.clock import Clock, SystemClock
from tradeguard.config import Settings
from tradeguard.domain import AuditAction, BrokerOrder, Claim, OrderClass, OrderType, ReplaceRequest
from tradeguard.domain.intents import Intent, OrderSpec, exit_group, is_leg
from tradeguard.ports import Broker
from tradeguard.sessions.model import (
    RESOLUTION_HORIZON_SECS,
    SESSION_VERSION,
    AnswerEvent,
    AttemptEvent,
    CancelEvent,
    ExternalEvent,
    NoteEvent,
    PositionEvent,
    PriceEvent,
    ReplaceEvent,
    ResolutionEvent,
    SessionHeader,
)
from tradeguard.sessions.reader import describe_validation_error
from tradeguard.sessions.recording_broker import SessionRecordingBroker, broker_answer
from tradeguard.sessions.writer import SessionWriter

__all__ = [
    "NULL_RECORDER",
    "NullRecorder",
    "RecordTarget",
    "Recorder",
    "SessionRecordingBroker",
    "answers_recorded",
    "open_recorder",
]

_log = logging.getLogger(__name__)

Audit = Callable[..., None]
_ANNOTATIONS = frozenset({"path", "bar", "position_intent", "reason", "client_order_id"})
_LOST = frozenset({"timeout", "error"})
_MAX_LOST = 4096  # lost answers awaiting what became of them (a handful in a real day)
_MAX_END_PROBES = 100  # lookups when the recording ends, at most
_MAX_ORDERS = 16_384  # broker order ids of recorded answers, for the cancels that name them


# Settings of the store's connection, not of the guard's decisions: a replay has no use for them.
_NOT_REPLAYED = {
    "reconcile_interval_secs",
    "sqlite_busy_timeout_ms",
    "pg_prepare_after",
    "pg_stuck_transaction_secs",
    "pg_lock_timeout_ms",
    "pg_answer_timeout_secs",
}


def _non_default(settings: Settings) -> dict[str, float | int | str] | None:
    """The decision settings `settings` holds that are not the defaults (audit 18 #7), or None."""
    default = Settings()
    changed = {
        f.name: getattr(settings, f.name)
        for f in dataclasses.fields(Settings)
        if f.name not in _NOT_REPLAYED and getattr(settings, f.name) != getattr(default, f.name)
    }
    return changed or None


def _take(path: str) -> bool:
    """Create `path` if no file has that name (atomically: O_EXCL); False when one exists."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return False
    return True


def _free_path(target: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """Return `target`, or the first free `<stem>.<n><suffix>` beside it when it holds a recording.

    A bot restarted after a crash (the case tradeguard is for) records to the same path again:
    opening it for writing would wipe the morning's recording, the evidence of what happened.
    The name returned is created here, atomically, so two bots that start at once never choose
    the same one (each would truncate and interleave the other's lines).
    """
    path = os.fspath(target)
    try:
        if _take(path) or (os.path.isfile(path) and os.path.getsize(path) == 0):
            return target  # new (now ours) or empty: written as given
        if not os.path.isfile(path):
            return target  # no regular file (a FIFO, /dev/stdout): written as given
        stem, suffix = os.path.splitext(path)
        n = 1
        while not _take(f"{stem}.{n}{suffix}"):
            n += 1
    except OSError:
        return target  # unwritable folder and the like: the writer says so, as for any path
    free = f"{stem}.{n}{suffix}"
    _log.warning("recording to %s: %s already holds a recording (a restart?), kept as it was", free, path)
    return free


class _Lost(NamedTuple):
    """An attempt whose answer was lost in transport, its order placed or not: not known yet."""

    decision: str
    attempt: int
    t: datetime
    symbol: str
    side: str


class Recorder:
    """Writes a session file live; see the module docstring.

    Args:
        target: A path (created or truncated) or an open text stream.
        header: The session header; None lets the gateway that binds it build one (its agent id,
            reconcile interval and the clock's time as the start).
        clock: The time events are stamped with (default: the binding gateway's clock).

    Attributes:
        clock: That clock (None until a gateway binds a recorder made without one).
        failure: Why recording stopped, or None while it goes on.
        unrecorded: How many events were left out (each with an `unrecorded` note instead).
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | IO[str],
        *,
        header: SessionHeader | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._target = target
        self.clock: Clock | None = clock
        self._lock = threading.RLock()
        self._local = threading.local()  # the current attempt and annotations, per thread
        self._attempts: dict[str, int] = {}
        self._names: dict[str, str] = {}  # claim key -> its decision's name in the session
        self._taken: set[str] = set()  # decision names given so far
        self._prices: dict[str, Decimal] = {}
        self._broker_qty: dict[str, Decimal] = {}
        self._lost: OrderedDict[str, _Lost] = OrderedDict()  # client_order_id -> its lost answer
        # Broker order id -> (decision, client id, symbol) of the answers written: a cancel or
        # replace of an order whose claim is over (filled) still names its decision.
        self._orders: OrderedDict[str, tuple[str, str | None, str]] = OrderedDict()
        # Client id -> decision of the answers written: a leg's claim names its parent by client
        # id (`leg_name`), and a cancel or replace of the leg names the parent's decision.
        self._decisions_by_coid: OrderedDict[str, str] = OrderedDict()
        self._broker: Broker | None = None  # the last broker wrapped (looked up at the end)
        self._last: datetime | None = None
        self._audit: Audit | None = None
        self._writer: SessionWriter | None = None
        self.failure: str | None = None
        self.unrecorded = 0
        self.header = header
        if header is not None:
            self._guarded(lambda: self._open(header), fatal=True)

    # -- set-up ------------------------------------------------------------------------------

    def bind(self, *, agent_id: str, settings: Settings, clock: Clock, audit: Audit | None) -> Recorder:
        """Attach to a gateway: its clock (unless one was given), its audit log, and a header."""
        self.clock = self.clock or clock
        self._audit = audit
        if self.header is None:
            self.header = SessionHeader(
                type="session",
                version=SESSION_VERSION,
                name=f"recorded session of {agent_id}",
                agent_id=agent_id,
                start=clock.now(),
                reconcile_interval_secs=settings.reconcile_interval_secs or 60.0,
                source=f"recorded by tradeguard {__version__}",
                settings=_non_default(settings),
            )
            header = self.header
            self._guarded(lambda: self._open(header), fatal=True)
        return self

    def _open(self, header: SessionHeader) -> None:
        if header.version != SESSION_VERSION:
            # What this recorder writes (resolutions) is the current format's, whatever header
            # it was handed (a replay passes its session's own).
            header = header.model_copy(update={"version": SESSION_VERSION})
            self.header = header
        target = self._target
        if isinstance(target, str | os.PathLike):
            target = self._target = _free_path(target)
        self._writer = SessionWriter(target, header, flush_each=True)
        self._last = header.start

    @property
    def path(self) -> str | None:
        """The file the session is written to, None for a stream.

        Once the recording has started this is the name actually taken, which is
        `<stem>.<n><suffix>` when the path given already held a recording (see `_free_path`).
        """
        target = self._target
        return os.fspath(target) if isinstance(target, str | os.PathLike) else None

    def wrap(self, broker: Broker) -> Broker:
        """Return `broker` with every submit's answer and every position read recorded."""
        self._broker = broker
        return SessionRecordingBroker(broker, self)

    def close(self) -> None:
        """Look up the lost answers still unresolved, then flush and close the file.

        A stream passed in is flushed, not closed.
        """
        with self._lock:
            if self._writer is not None:
                self._guarded(self._resolve_at_end)
                self._guarded(self._writer.close, fatal=True)
                self._writer = None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the gateway records ------------------------------------------------------------

    def attempt(self, intent: Intent, spec: OrderSpec, client_order_id: str | None = None) -> None:
        """Record one call of the gateway for `intent` (its n-th for that decision)."""
        self._guarded(lambda: self._attempt(intent, spec, client_order_id), "an attempt")

    def _attempt(self, intent: Intent, spec: OrderSpec, client_order_id: str | None) -> None:
        extra: dict[str, Any] = dict(getattr(self._local, "annotations", {}))
        with self._lock:
            decision = self._decision(intent)
            number = self._attempts.get(decision, 0) + 1
            self._attempts[decision] = number
            self._local.current = (decision, number, intent.symbol, intent.side.value)
            self._local.answered = None  # the first answer of this attempt, once written
            # Until its line is written: its answers then become notes, never orphan `answer` lines.
            self._local.unrecorded = True
            fields: dict[str, Any] = {
                "type": "attempt",
                "t": self._now(),
                "decision": decision,
                "attempt": number,
                "kind": intent.kind.value,
                "symbol": intent.symbol,
                "side": intent.side.value,
                "qty": spec.qty,
                "notional": spec.notional,
                "order_type": spec.order_type.value,
                "limit_price": spec.limit_price,
                "stop_price": spec.stop_price,
                "trail_price": spec.trail_price,
                "trail_percent": spec.trail_percent,
                "time_in_force": spec.time_in_force.value,
                "client_order_id": client_order_id,
            } | _order_class(spec)
            try:
                event = AttemptEvent.model_validate(fields | extra)
            except Exception as exc:
                raise _Unrecordable(f"attempt {number} of decision {decision!r}", exc) from exc
            self._emit(event)
            self._local.unrecorded = False

    def _decision(self, intent: Intent) -> str:
        """Return the session's name of `intent`'s decision: its name, unless another took it.

        A decision is a claim key. A bot may give one name to several (a flip's exit and its
        entry on another symbol, one name per bar for every symbol): the first keeps the name,
        the others get their kind, side and symbol added, so a replay does not count one as a
        retry of the other.
        """
        key = intent.key
        name = self._names.get(key)
        if name is None:
            name = intent.name
            if name in self._taken:
                what = f" ({intent.kind.value} {intent.side.value} {intent.symbol})"
                name = intent.name[: 200 - len(what)] + what  # a session's names hold 200 characters
            if name in self._taken:  # another agent's decision, on one recording
                name = f"{name[:190]} [{key[:8]}]"
            self._names[key] = name
            self._taken.add(name)
        return name

    @contextlib.contextmanager
    def annotate(self, **fields: Any) -> Iterator[None]:
        """Add the bot's own facts (path, bar, position_intent, reason) to attempts made inside."""
        unknown = set(fields) - _ANNOTATIONS
        if unknown:
            raise ValueError(f"cannot annotate attempts with {sorted(unknown)}; only {sorted(_ANNOTATIONS)}")
        before = getattr(self._local, "annotations", {})
        self._local.annotations = {**before, **{k: v for k, v in fields.items() if v is not None}}
        try:
            yield
        finally:
            self._local.annotations = before

    def answer(self, result: str, **fields: Any) -> None:
        """Record what the current attempt of this thread got back (nothing outside an attempt)."""
        self._guarded(lambda: self._answer(result, fields), "an answer")

    def _answer(self, result: str, fields: dict[str, Any]) -> None:
        current = getattr(self._local, "current", None)
        with self._lock:
            if current is None:
                # An order sent outside any attempt (a reconcile pass re-sending an exit).
                text = f"order sent outside an attempt: {result} {fields.get('reason') or ''}".strip()
                self._emit(NoteEvent(type="note", t=self._now(), text=text, tag="unattributed_send"))
                return
            decision, number, symbol, side = current
            first = getattr(self._local, "answered", None)
            if getattr(self._local, "unrecorded", False):
                # Its attempt line was left out (see `_skip`): the answer is kept as a note.
                text = f"answer to decision {decision!r} attempt {number} (its attempt unrecorded): "
                text += _said(result, fields)
                self._local.answered = first or result
                self._emit(NoteEvent(type="note", t=self._now(), text=text, tag="unrecorded"))
                return
            if first is not None:
                # A second send inside one attempt is the gateway's own, not the bot's: an exit
                # refused for its position re-sized and re-sent by the reconcile pass it runs at
                # once. The bot got one answer per attempt; a second `answer` line would break the
                # format (one answer per attempt), and an `attempt` line would replay as a retry
                # the bot never made (a duplicate sent in the unguarded modes). A note keeps it.
                self._emit(self._resend_note(current, first, result, fields))
                return
            try:
                event = AnswerEvent.model_validate(
                    {"type": "answer", "t": self._now(), "decision": decision, "attempt": number}
                    | {"result": result}
                    | {k: v for k, v in fields.items() if v is not None}
                )
            except Exception as exc:
                self._local.answered = result  # the attempt's one answer: later sends are re-sends
                raise _Unrecordable(f"the answer to attempt {number} of decision {decision!r}", exc) from exc
            self._emit(event)
            self._local.answered = result
            coid = event.client_order_id
            if event.order_id is not None:
                self._order_named(event.order_id, (decision, coid, symbol))
            if result in _LOST and event.placed is None and coid is not None:
                lost = self._lost
                lost[coid] = _Lost(decision, number, event.t, symbol, side)
                lost.move_to_end(coid)
                if len(lost) > _MAX_LOST:
                    lost.popitem(last=False)  # its resolution, if any, is simply not written

    def _resend_note(
        self, current: tuple[str, int, str, str], first: str, result: str, fields: dict[str, Any]
    ) -> NoteEvent:
        decision, number, symbol, _ = current
        text = (
            f"tradeguard re-sent decision {decision!r} attempt {number} itself after the broker's "
            f"first answer ({first.replace('_', ' ')}): {_said(result, fields)}"
        )
        return NoteEvent(type="note", t=self._now(), text=text, symbol=symbol, tag="guard_resend")

    def settle(self, result: Any, error: BaseException | None = None) -> None:
        """End this thread's attempt: answer it for tradeguard when the broker gave no answer.

        `result` is the gateway's `OrderResult` (None when the call raised `error`). An attempt
        that sent nothing got its answer from tradeguard itself (a duplicate, "not found yet", an
        exit with nothing to sell, a refusal): it is written as `blocked` by `tradeguard`, so the
        session says what the bot was told. Sends after this (a reconcile pass) belong to no
        attempt.
        """
        self._guarded(lambda: self._settle(result, error), "an answer")

    def _settle(self, result: Any, error: BaseException | None) -> None:
        local = self._local
        current = getattr(local, "current", None)
        if current is None:
            return
        try:
            if getattr(local, "answered", None) is None:
                fields: dict[str, Any] = {"by": "tradeguard"}
                if result is not None:
                    fields["reason"] = f"{result.outcome}: {result.reason}"
                    order = result.order
                    claim = result.claim
                    fields["order_id"] = order.id if order is not None else None
                    fields["client_order_id"] = claim.client_order_id if claim is not None else None
                else:
                    fields["reason"] = f"{type(error).__name__}: {error}"
                self._answer("blocked", fields)
        finally:
            local.current = None
            local.unrecorded = False

    def resolved(
        self,
        client_order_id: str,
        *,
        placed: bool,
        by: str,
        reason: str,
        order_id: str | None = None,
        filled_qty: Decimal | None = None,
        filled_avg_price: Decimal | None = None,
    ) -> None:
        """Record what became of a lost answer's send under `client_order_id` (nothing if none is open).

        Called when the gateway or its reconciler settles an ambiguous send: `placed` False once
        it is proven absent, True once its order is found, with what it had filled and at what
        price (the fill the lost answer would have told, and the price a replay needs for the
        retries after it). A resolution later than `RESOLUTION_HORIZON_SECS` after the answer
        becomes a note (a replay reads no further).
        """
        if client_order_id in self._lost:  # read without the lock: most calls have nothing to do
            fill = (filled_qty or None, filled_avg_price) if placed else (None, None)
            resolve = functools.partial(
                self._resolved, client_order_id, placed, by, reason, order_id, fill=fill
            )
            self._guarded(resolve, "a resolution")

    def _resolved(
        self,
        coid: str,
        placed: bool,
        by: str,
        reason: str,
        order_id: str | None,
        *,
        fill: tuple[Decimal | None, Decimal | None] = (None, None),
    ) -> None:
        with self._lock:
            lost = self._lost.pop(coid, None)
            if lost is None:
                return
            now = self._now()
            if (now - lost.t).total_seconds() > RESOLUTION_HORIZON_SECS:
                what = "placed" if placed else "not placed"
                text = (
                    f"decision {lost.decision!r} attempt {lost.attempt}, whose answer was lost, was "
                    f"{what} ({reason}); learned too late for a replay to use"
                )
                tag = "late_resolution"
                self._emit(NoteEvent(type="note", t=now, text=text, symbol=lost.symbol, tag=tag))
                return
            filled_qty, price = fill
            priced = {"symbol": lost.symbol, "filled_avg_price": price} if price is not None else {}
            event = ResolutionEvent.model_validate(
                {"type": "resolution", "t": now, "decision": lost.decision, "attempt": lost.attempt}
                | {"placed": placed, "client_order_id": coid, "order_id": order_id, "by": by}
                | ({"filled_qty": filled_qty} if filled_qty is not None else {})
                | priced
                | {"reason": reason}
            )
            self._emit(event)
            if price is not None:
                # A reader prices the symbol from the lost answer on (see `ResolutionEvent`), which
                # the last price this recorder wrote no longer says: the next price known is
                # written even when it repeats that one.
                self._prices.pop(lost.symbol, None)

    def found(self, client_order_id: str, order: BrokerOrder | None) -> None:
        """Note a broker read of `client_order_id`: an order of a lost answer's send is found placed."""
        lost = None if order is None else self._lost.get(client_order_id)
        if order is None or lost is None:
            return
        # An id chosen by the bot can name another order (the gateway refuses to adopt it): that
        # one is no evidence about this send.
        if order.symbol.replace("/", "") != lost.symbol.replace("/", "") or order.side.value != lost.side:
            return
        self.resolved(
            client_order_id, placed=True, by="lookup", order_id=order.id,
            reason=f"found at the broker by client_order_id ({order.status})",
            filled_qty=order.filled_qty, filled_avg_price=order.filled_avg_price,
        )  # fmt: skip

    def seen(self, orders: Iterable[BrokerOrder]) -> None:
        """Note a broker listing of orders (`found` for each one of a lost answer's send)."""
        if self._lost:
            for order in orders:
                self.found(order.client_order_id, order)

    def _resolve_at_end(self) -> None:
        """Look up, once, each lost answer still unresolved; absent now is not placed."""
        broker = self._broker
        if broker is None or not self._lost:
            return
        now = self._now()
        waiting = [
            (coid, lost)
            for coid, lost in self._lost.items()
            if (now - lost.t).total_seconds() <= RESOLUTION_HORIZON_SECS
        ][-_MAX_END_PROBES:]
        for coid, lost in waiting:
            try:
                order = broker.get_order_by_client_id(coid)
            except Exception as exc:  # a failed lookup leaves it unknown, nothing more
                _log.warning("recording: could not look up %s when the recording ended: %s", coid, exc)
                continue
            if order is not None:
                self.found(coid, order)
            else:
                secs = (self._now() - lost.t).total_seconds()
                reason = f"absent at the broker when the recording ended, {secs:.0f} s after the lost answer"
                self.resolved(coid, placed=False, by="end", reason=reason)

    # -- cancels and replaces ----------------------------------------------------------------

    def canceled(
        self,
        claim: Claim | None,
        order: BrokerOrder | str | None,
        *,
        error: BaseException | None = None,
        canceled: int | None = None,
    ) -> None:
        """Record a cancel the gateway made, and its answer (`error`: its failure).

        Of `claim`'s order `order` (an id, or the order), or, with `order` None, of every open
        order (`canceled` of them taken down).
        """
        what = "a cancel of every open order" if order is None else "a cancel"
        self._guarded(lambda: self._amended("cancel", claim, order, error, {"canceled": canceled}), what)

    def replaced(
        self,
        claim: Claim | None,
        order_id: str,
        request: ReplaceRequest,
        *,
        new: BrokerOrder | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Record a replace the gateway made of `claim`'s order `order_id`: the terms, the answer."""
        terms: dict[str, Any] = {
            "qty": request.qty,
            "limit_price": request.limit_price,
            "stop_price": request.stop_price,
            "trail": request.trail,
            "time_in_force": None if request.time_in_force is None else request.time_in_force.value,
            "new_client_order_id": request.client_order_id,
            "new_order_id": None if new is None else new.id,
        }
        self._guarded(lambda: self._amended("replace", claim, order_id, error, terms), "a replace")

    def _order_named(self, order_id: str, named: tuple[str, str | None, str]) -> None:
        orders = self._orders
        orders[order_id] = named
        orders.move_to_end(order_id)
        if len(orders) > _MAX_ORDERS:
            orders.popitem(last=False)
        decision, coid, _ = named
        if coid is not None:
            by_coid = self._decisions_by_coid
            by_coid[coid] = decision
            by_coid.move_to_end(coid)
            if len(by_coid) > _MAX_ORDERS:
                by_coid.popitem(last=False)

    def _leg_named(self, claim: Claim) -> dict[str, Any]:
        """A leg's claim as a cancel or replace names it: its parent's decision and its role.

        The broker made and named the leg (a new uuid at each broker): named by its own client
        id, a replay found no order of it in any mode, and a bracket's stop the bot moved stayed
        where it was (review45). Empty when the claim is no leg, or its parent is no decision of
        this session (an earlier run's): its client id then says which order it was.
        """
        if not is_leg(claim.intent):
            return {}
        decision = self._decisions_by_coid.get(exit_group(claim.intent, claim.client_order_id))
        if decision is None:
            return {}
        stops = (OrderType.STOP, OrderType.STOP_LIMIT)
        return {"decision": decision, "leg": "stop_loss" if claim.spec.order_type in stops else "take_profit"}

    def _amended(
        self,
        kind: str,
        claim: Claim | None,
        order: BrokerOrder | str | None,
        error: BaseException | None,
        fields: dict[str, Any],
    ) -> None:
        order_id = order.id if isinstance(order, BrokerOrder) else order
        with self._lock:
            named: dict[str, Any] = {"scope": "all"} if kind == "cancel" and order is None else {}
            if isinstance(order, BrokerOrder):
                named |= {"client_order_id": order.client_order_id, "symbol": order.symbol}
            if claim is not None:
                named |= {"client_order_id": claim.client_order_id, "symbol": claim.symbol}
                named["decision"] = self._names.get(claim.key)
                named |= self._leg_named(claim)
            answered = None if order_id is None else self._orders.get(order_id)
            if answered is not None and named.get("decision") is None:
                # An order this session answered (its claim over, or of no live claim): its
                # decision as the session names it. An order of an earlier run's claim has none
                # here: its client id says which order it was.
                decision, coid, symbol = answered
                named |= {"decision": decision, "symbol": symbol}
                named.setdefault("client_order_id", coid)
            fields = {k: v for k, v in (fields | named | _amendment_answer(error)).items() if v is not None}
            event_type = CancelEvent if kind == "cancel" else ReplaceEvent
            try:
                event = event_type.model_validate(
                    {"type": kind, "t": self._now(), "order_id": order_id} | fields
                )
            except Exception as exc:
                raise _Unrecordable(f"a {kind} of order {order_id}", exc) from exc
            self._emit(event)
            if (
                isinstance(event, ReplaceEvent)
                and event.new_order_id is not None
                and event.decision is not None
                and event.leg is None  # a leg's replacement is the leg's, named by its claim
            ):
                # The replacement is the decision's order from now on (a later cancel names it).
                self._order_named(
                    event.new_order_id, (event.decision, event.client_order_id, event.symbol or "")
                )

    # -- what the bot adds -------------------------------------------------------------------

    def write(self, event: Any) -> None:
        """Write any event as it is (a time earlier than the last line's is moved up to it).

        A `resolution`, `cancel` or `replace` is left out: this recorder writes its own (see
        `resolved`, `canceled`, `replaced`).
        """
        self._guarded(lambda: self._write_event(event), f"a {getattr(event, 'type', 'bad')} event")

    def _write_event(self, event: Any) -> None:
        if isinstance(event, ResolutionEvent | CancelEvent | ReplaceEvent):
            # A resolution, cancel or replace names an attempt or order of the session it came
            # from; this recorder writes its own, for what its gateway does, as it does it.
            return
        with self._lock:
            if self._last is not None and event.t < self._last:
                event = event.model_copy(update={"t": self._last})
            if isinstance(event, PriceEvent):
                self._prices[event.symbol] = event.price
            self._emit(event)

    def note(self, text: str, *, symbol: str | None = None, tag: str | None = None) -> None:
        """Record one of the bot's own messages."""
        self._guarded(
            lambda: self._write_event(
                NoteEvent(type="note", t=self._now(), text=text, symbol=symbol, tag=tag)
            ),
            "a note",
        )

    def price(self, symbol: str, price: Decimal) -> None:
        """Record the price of `symbol` now (repeats of the last price are left out)."""
        self._guarded(lambda: self._price(symbol, price), f"a price of {symbol}")

    def _price(self, symbol: str, price: Decimal) -> None:
        with self._lock:
            if self._prices.get(symbol) != price:
                self._write_event(PriceEvent(type="price", t=self._now(), symbol=symbol, price=price))

    def position(self, symbol: str, qty: Decimal, *, view: str = "bot") -> None:
        """Record a position as the bot (or the guard, or the broker) sees it now."""
        self._guarded(
            lambda: self._write_event(
                PositionEvent.model_validate(
                    {"type": "position", "t": self._now(), "symbol": symbol, "qty": qty, "view": view}
                )
            ),
            f"a position in {symbol}",
        )

    def broker_position(self, symbol: str, qty: Decimal) -> None:
        """Record a broker read of a position when it differs from the last one recorded."""
        with self._lock:
            if self._broker_qty.get(symbol) != qty:
                self._broker_qty[symbol] = qty
                self.position(symbol, qty, view="broker")

    def external(self, symbol: str, reason: str) -> None:
        """Record that the position in `symbol` was closed outside the bot."""
        self._guarded(
            lambda: self._write_event(
                ExternalEvent(
                    type="external", t=self._now(), event="position_closed", symbol=symbol, reason=reason
                )
            ),
            f"the close of {symbol} outside the bot",
        )

    # -- plumbing ----------------------------------------------------------------------------

    def _now(self) -> datetime:
        clock = self.clock or SystemClock()
        now = clock.now()
        return now if self._last is None or now >= self._last else self._last

    def _emit(self, event: Any) -> None:
        writer = self._writer
        if writer is None:
            return
        line = event.model_dump_json(exclude_none=True)  # what cannot be serialised is one event's fault
        try:
            writer.write_line(line)
        except Exception as exc:  # the file's fault: nothing more can be written to it
            raise _WriteFailed(exc) from exc
        self._last = event.t

    def _guarded(self, action: Callable[[], None], what: str = "an event", *, fatal: bool = False) -> None:
        """Run one recorder action; an error never reaches the order path (see the module docstring).

        A failed write, or any failure of a `fatal` action (opening, closing), stops the recording;
        any other failure leaves out the one event `what` names, with a note in its place.
        """
        if self.failure is not None:
            return
        try:
            action()
        except _WriteFailed as exc:
            self._stop(exc.error)
        except Exception as exc:  # recording must never fail an order
            if fatal:
                self._stop(exc)
            else:
                self._skip(exc, what)

    def _skip(self, exc: Exception, what: str) -> None:
        """Leave out one event that could not be recorded: log, audit and note it; go on recording."""
        if isinstance(exc, _Unrecordable):
            what, exc = exc.what, exc.error
        self.unrecorded += 1
        text = f"tradeguard could not record {what}: {_why(exc)}; the recording goes on without it"
        _log.error("session recording: %s", text)
        self._audit_error(text, "event_unrecorded")
        try:
            with self._lock:
                self._emit(NoteEvent(type="note", t=self._now(), text=text, tag="unrecorded"))
        except _WriteFailed as failed:
            self._stop(failed.error)
        except Exception as failed:  # the note itself: nothing more this recorder can say
            self._stop(failed)

    def _audit_error(self, reason: str, what: str) -> None:
        if self._audit is not None:
            agent = self.header.agent_id if self.header is not None else "*"
            try:
                self._audit(AuditAction.ERROR, agent_id=agent, reason=reason, detail={"recording": what})
            except Exception:  # the audit log failing too must not fail the order
                _log.exception("could not audit the recording failure")

    def _stop(self, exc: Exception) -> None:
        self.failure = f"{type(exc).__name__}: {exc}"
        reason = f"session recording stopped, orders go on unrecorded: {self.failure}"
        _log.error("%s", reason)
        self._audit_error(reason, "stopped")
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        self._writer = None


class _Unrecordable(Exception):
    """One event the format refuses (`what` names it); the recording goes on without it."""

    def __init__(self, what: str, error: Exception) -> None:
        super().__init__(what)
        self.what, self.error = what, error


class _WriteFailed(Exception):
    """The session file refused a write: the recording stops."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _order_class(spec: OrderSpec) -> dict[str, Any]:
    """An attempt's order class fields: its legs, and extended hours (nothing for a plain order)."""
    fields: dict[str, Any] = {"extended_hours": True} if spec.extended_hours else {}
    if spec.order_class is OrderClass.SIMPLE:
        return fields
    fields["order_class"] = spec.order_class.value
    if spec.take_profit_limit_price is not None:
        fields["take_profit"] = {"limit_price": spec.take_profit_limit_price}
    if spec.stop_loss_stop_price is not None:
        loss = {"stop_price": spec.stop_loss_stop_price}
        if spec.stop_loss_limit_price is not None:
            loss["limit_price"] = spec.stop_loss_limit_price
        fields["stop_loss"] = loss
    return fields


def _amendment_answer(error: BaseException | None) -> dict[str, Any]:
    """A cancel's or replace's answer: accepted, or what its error says (see `CancelEvent`)."""
    return {"result": "accepted"} if error is None else broker_answer(error)


def _said(result: str, fields: dict[str, Any]) -> str:
    """An answer in words, for a note: its result, status, order id, fill and reason."""
    said = [result.replace("_", " ")]
    said += [f"{k} {fields[k]}" for k in ("status", "order_id", "filled_qty") if fields.get(k) is not None]
    if fields.get("reason"):
        said.append(str(fields["reason"]))
    return ", ".join(said)


def _why(exc: Exception) -> str:
    """One line saying why an event was refused (a validation error's points, without links)."""
    if isinstance(exc, ValidationError):
        return describe_validation_error(exc, exc.title)
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class NullRecorder:
    """The recorder of a gateway that records nothing: every call is free and does nothing."""

    failure: str | None = None

    def wrap(self, broker: Broker) -> Broker:
        """Return `broker` itself."""
        return broker

    def attempt(self, intent: Intent, spec: OrderSpec, client_order_id: str | None = None) -> None:
        """Do nothing."""

    def external(self, symbol: str, reason: str) -> None:
        """Do nothing."""

    def canceled(
        self,
        claim: Claim | None,
        order: BrokerOrder | str | None,
        *,
        error: BaseException | None = None,
        canceled: int | None = None,
    ) -> None:
        """Do nothing."""

    def replaced(
        self,
        claim: Claim | None,
        order_id: str,
        request: ReplaceRequest,
        *,
        new: BrokerOrder | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Do nothing."""

    def price(self, symbol: str, price: Decimal) -> None:
        """Do nothing."""

    def settle(self, result: Any, error: BaseException | None = None) -> None:
        """Do nothing."""

    def resolved(
        self,
        client_order_id: str,
        *,
        placed: bool,
        by: str,
        reason: str,
        order_id: str | None = None,
        filled_qty: Decimal | None = None,
        filled_avg_price: Decimal | None = None,
    ) -> None:
        """Do nothing."""

    def close(self) -> None:
        """Do nothing."""


NULL_RECORDER = NullRecorder()


class _Recording(Protocol):
    recorder: Recorder | NullRecorder


_S = TypeVar("_S", bound=_Recording)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def answers_recorded(method: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """Decorate a gateway entry point that records an attempt: the call ends with its answer.

    After the call (or its exception) the recorder writes tradeguard's own answer when the
    broker gave none (`Recorder.settle`). Free when nothing is recorded.
    """

    @functools.wraps(method)
    def call(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        recorder = self.recorder
        if recorder is NULL_RECORDER:
            return method(self, *args, **kwargs)
        try:
            result = method(self, *args, **kwargs)
        except BaseException as exc:
            recorder.settle(None, exc)
            raise
        recorder.settle(result)
        return result

    return call


RecordTarget = str | os.PathLike[str] | Recorder | IO[str] | None


def open_recorder(
    record_to: RecordTarget, *, agent_id: str, settings: Settings, clock: Clock, audit: Audit | None
) -> Recorder | NullRecorder:
    """Return the recorder `record_to` names, bound to a gateway (`NULL_RECORDER` for None)."""
    if record_to is None:
        return NULL_RECORDER
    recorder = record_to if isinstance(record_to, Recorder) else Recorder(record_to)
    return recorder.bind(agent_id=agent_id, settings=settings, clock=clock, audit=audit)
