"""`Recorder`: what a gateway sees, written live as a session file (`OrderGateway(record_to=...)`).

The gateway makes one `attempt` call per entry point and sends its orders through
`Recorder.wrap(broker)`, a broker that writes each submit's answer (and each position read) as
it happens. The bot adds what only it knows with `note`, `price`, `position(view="bot")` and
`external`, and tags the next attempt with `annotate(...)` (its bar, which code path sent it,
the raw position intent of its own request).

Recording never blocks or fails an order: every recorder call catches its own errors. The first
failure is logged and audited (G6), and recording stops there, since a session with a hole in
it would replay to wrong figures; the order path goes on untouched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

from tradeguard import __version__
from tradeguard.clock import Clock, SystemClock
from tradeguard.config import Settings
from tradeguard.domain import (
    AuditAction,
)
from tradeguard.domain.intents import Intent, OrderSpec
from tradeguard.ports import Broker
from tradeguard.sessions.model import (
    SESSION_VERSION,
    AnswerEvent,
    AttemptEvent,
    ExternalEvent,
    NoteEvent,
    PositionEvent,
    PriceEvent,
    SessionHeader,
)
from tradeguard.sessions.recording_broker import SessionRecordingBroker
from tradeguard.sessions.writer import SessionWriter

__all__ = [
    "NULL_RECORDER",
    "NullRecorder",
    "RecordTarget",
    "Recorder",
    "SessionRecordingBroker",
    "open_recorder",
]

_log = logging.getLogger(__name__)

Audit = Callable[..., None]
_ANNOTATIONS = frozenset({"path", "bar", "position_intent", "reason", "client_order_id"})


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
        self._last: datetime | None = None
        self._audit: Audit | None = None
        self._writer: SessionWriter | None = None
        self.failure: str | None = None
        self.header = header
        if header is not None:
            self._guarded(lambda: self._open(header))

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
            )
            header = self.header
            self._guarded(lambda: self._open(header))
        return self

    def _open(self, header: SessionHeader) -> None:
        self._writer = SessionWriter(self._target, header, flush_each=True)
        self._last = header.start

    def wrap(self, broker: Broker) -> Broker:
        """Return `broker` with every submit's answer and every position read recorded."""
        return SessionRecordingBroker(broker, self)

    def close(self) -> None:
        """Flush and close the file (a stream passed in is flushed, not closed)."""
        with self._lock:
            if self._writer is not None:
                self._guarded(self._writer.close)
                self._writer = None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the gateway records ------------------------------------------------------------

    def attempt(self, intent: Intent, spec: OrderSpec, client_order_id: str | None = None) -> None:
        """Record one call of the gateway for `intent` (its n-th for that decision)."""
        self._guarded(lambda: self._attempt(intent, spec, client_order_id))

    def _attempt(self, intent: Intent, spec: OrderSpec, client_order_id: str | None) -> None:
        extra: dict[str, Any] = dict(getattr(self._local, "annotations", {}))
        with self._lock:
            decision = self._decision(intent)
            number = self._attempts.get(decision, 0) + 1
            self._attempts[decision] = number
            self._local.current = (decision, number, intent.symbol)
            self._local.answered = None  # the first answer of this attempt, once written
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
                "time_in_force": spec.time_in_force.value,
                "client_order_id": client_order_id,
            }
            self._emit(AttemptEvent.model_validate(fields | extra))

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
        self._guarded(lambda: self._answer(result, fields))

    def _answer(self, result: str, fields: dict[str, Any]) -> None:
        current = getattr(self._local, "current", None)
        with self._lock:
            if current is None:
                # An order sent outside any attempt (a reconcile pass re-sending an exit).
                text = f"order sent outside an attempt: {result} {fields.get('reason') or ''}".strip()
                self._emit(NoteEvent(type="note", t=self._now(), text=text, tag="unattributed_send"))
                return
            decision, number, _ = current
            first = getattr(self._local, "answered", None)
            if first is not None:
                # A second send inside one attempt is the gateway's own, not the bot's: an exit
                # refused for its position re-sized and re-sent by the reconcile pass it runs at
                # once. The bot got one answer per attempt; a second `answer` line would break the
                # format (one answer per attempt), and an `attempt` line would replay as a retry
                # the bot never made (a duplicate sent in the unguarded modes). A note keeps it.
                self._emit(self._resend_note(current, first, result, fields))
                return
            event = AnswerEvent.model_validate(
                {"type": "answer", "t": self._now(), "decision": decision, "attempt": number}
                | {"result": result}
                | {k: v for k, v in fields.items() if v is not None}
            )
            self._emit(event)
            self._local.answered = result

    def _resend_note(
        self, current: tuple[str, int, str], first: str, result: str, fields: dict[str, Any]
    ) -> NoteEvent:
        decision, number, symbol = current
        said = [result.replace("_", " ")]
        said += [
            f"{k} {fields[k]}" for k in ("status", "order_id", "filled_qty") if fields.get(k) is not None
        ]
        if fields.get("reason"):
            said.append(str(fields["reason"]))
        text = (
            f"tradeguard re-sent decision {decision!r} attempt {number} itself after the broker's "
            f"first answer ({first.replace('_', ' ')}): {', '.join(said)}"
        )
        return NoteEvent(type="note", t=self._now(), text=text, symbol=symbol, tag="guard_resend")

    # -- what the bot adds -------------------------------------------------------------------

    def write(self, event: Any) -> None:
        """Write any event as it is (a time earlier than the last line's is moved up to it)."""
        self._guarded(lambda: self._write_event(event))

    def _write_event(self, event: Any) -> None:
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
            )
        )

    def price(self, symbol: str, price: Decimal) -> None:
        """Record the price of `symbol` now (repeats of the last price are left out)."""
        self._guarded(lambda: self._price(symbol, price))

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
            )
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
            )
        )

    # -- plumbing ----------------------------------------------------------------------------

    def _now(self) -> datetime:
        clock = self.clock or SystemClock()
        now = clock.now()
        return now if self._last is None or now >= self._last else self._last

    def _emit(self, event: Any) -> None:
        if self._writer is None:
            return
        self._writer.write(event)
        self._last = event.t

    def _guarded(self, action: Callable[[], None]) -> None:
        if self.failure is not None:
            return
        try:
            action()
        except Exception as exc:  # recording must never fail an order
            self._stop(exc)

    def _stop(self, exc: Exception) -> None:
        self.failure = f"{type(exc).__name__}: {exc}"
        reason = f"session recording stopped, orders go on unrecorded: {self.failure}"
        _log.error("%s", reason)
        if self._audit is not None:
            agent = self.header.agent_id if self.header is not None else "*"
            try:
                self._audit(AuditAction.ERROR, agent_id=agent, reason=reason, detail={"recording": "stopped"})
            except Exception:  # the audit log failing too must not fail the order
                _log.exception("could not audit the recording failure")
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        self._writer = None


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

    def close(self) -> None:
        """Do nothing."""


NULL_RECORDER = NullRecorder()

RecordTarget = str | os.PathLike[str] | Recorder | IO[str] | None


def open_recorder(
    record_to: RecordTarget, *, agent_id: str, settings: Settings, clock: Clock, audit: Audit | None
) -> Recorder | NullRecorder:
    """Return the recorder `record_to` names, bound to a gateway (`NULL_RECORDER` for None)."""
    if record_to is None:
        return NULL_RECORDER
    recorder = record_to if isinstance(record_to, Recorder) else Recorder(record_to)
    return recorder.bind(agent_id=agent_id, settings=settings, clock=clock, audit=audit)
