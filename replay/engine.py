"""`replay_session`: stream a session through one to three guard modes in lockstep.

The file is read once, line by line. Each event goes to every mode's `Simulation` before the
next is read, so `--compare` costs one pass and per-event rows can be printed as they happen.
An attempt needs its recorded answer before it is driven (a lost answer becomes the fault of
that attempt), so the reader looks ahead a bounded stretch of session time for it; nothing else
is buffered, and no list of events is ever built. Each mode's account forgets what only decisions
past their retry horizon could read (`replay.modes.Simulation`), so a replay's memory follows
the live account, not the session's length.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import IO, Any

from replay.metrics import AttemptOutcome, Mode, Totals
from replay.modes import FORGET_ABOVE, FullGuard, Simulation, make_simulation, session_zone
from tradeguard import (
    AnswerEvent,
    AttemptEvent,
    CancelEvent,
    ExternalEvent,
    NoteEvent,
    PositionEvent,
    PriceEvent,
    ReplaceEvent,
    SessionFormatError,
    SessionHeader,
    SessionReader,
    canonical_symbol,
    open_session,
)

__all__ = ["ANSWER_HORIZON_SECS", "GC_YOUNG_THRESHOLD", "EventRow", "ReplayResult", "replay_session"]

_RECENT_DECISIONS = 4096
"""How many of the latest decisions the checks across a decision's attempts remember (numbers, order)."""

ANSWER_HORIZON_SECS = 600.0
"""An answer must come within this much session time after its attempt."""

GC_YOUNG_THRESHOLD = 20_000
"""The collector's youngest-generation threshold while a replay runs (see `_fewer_collections`)."""

Progress = Callable[[int, int], None]


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run the cycle collector's youngest generation less often while a replay runs; restore it after.

    A replay keeps thousands of small objects alive at a time (each mode's claims, orders and
    audit records, up to its `forget_above`) and makes several more per attempt, nearly all freed
    by reference counting. With Python's default threshold (700) the collector runs every few
    attempts and walks the survivors again each time: a tenth of a full replay's time, for
    almost no garbage. A higher threshold runs it a few times a session; the memory it lets
    wait is bounded by the threshold, so a replay still runs in constant memory. The threshold
    is the process's own: a caller's setting above it is left alone, and the one before is put
    back when the replay ends (however it ends).
    """
    before = gc.get_threshold()
    if before[0] >= GC_YOUNG_THRESHOLD or not before[0]:  # already higher, or collection is off
        yield
        return
    gc.set_threshold(GC_YOUNG_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


@dataclass(frozen=True, slots=True)
class EventRow:
    """One line of the per-event table: an attempt, an outside event or a bot note.

    Attributes:
        line: The line of the session file.
        t: When it happened.
        kind: `attempt`, `external` or `note`.
        text: What happened, in the session's words.
        symbol: The symbol, if any.
        recorded: For attempts: the answer the bot recorded (None: none recorded).
        outcomes: For attempts: what each mode made of it; for external events: what each
            mode's broker did.
    """

    line: int
    t: datetime
    kind: str
    text: str
    symbol: str | None = None
    recorded: str | None = None
    outcomes: dict[Mode, AttemptOutcome | str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return the row as JSON-able values."""
        return {
            "line": self.line,
            "t": self.t.isoformat(),
            "kind": self.kind,
            "text": self.text,
            "symbol": self.symbol,
            "recorded": self.recorded,
            "outcomes": {
                mode.value: o.as_dict() if isinstance(o, AttemptOutcome) else {"result": o}
                for mode, o in self.outcomes.items()
            },
        }


@dataclass(slots=True)
class ReplayResult:
    """What a replay found.

    Attributes:
        header: The session's header.
        totals: The figures per mode.
        events: How many events were replayed.
        rows: The per-event rows, when asked to collect them.
        simulations: The modes' accounts (their paper brokers, gateways and position history).
            After a long session they hold the live account and its recent past only: see
            `replay.modes.Simulation` (`forget_above`).
    """

    header: SessionHeader
    totals: dict[Mode, Totals]
    events: int
    end: datetime
    rows: list[EventRow] = field(default_factory=list)
    simulations: dict[Mode, Simulation] = field(default_factory=dict)


def describe_attempt(event: AttemptEvent) -> str:
    """Return an attempt as a table cell: the decision and which attempt of it."""
    nth = "" if event.attempt == 1 else f" (retry {event.attempt - 1})"
    return f"{event.decision}{nth}"


def describe_answer(answer: AnswerEvent | None) -> str | None:
    """Return a recorded answer as a table cell."""
    if answer is None:
        return None
    if answer.result in {"rejected", "error"} and answer.status:
        return f"{answer.result} {answer.status}"
    if answer.result == "blocked":
        return f"blocked by {answer.by}" if answer.by else "blocked"
    return answer.result.replace("_", " ")


def _describe_amendment(event: CancelEvent | ReplaceEvent) -> str:
    """Return a cancel or replace as a table cell: what the bot did to which decision's order."""
    whose = f"the order of {event.decision or event.client_order_id}"
    if event.leg is not None:
        whose = f"the {event.leg.replace('_', '-')} leg of {event.decision}"
    if isinstance(event, CancelEvent):
        if event.scope == "all":
            return "cancel every open order"
        return f"cancel {whose}"
    terms = [
        f"{name} {value}"
        for name in ("qty", "limit_price", "stop_price", "trail", "time_in_force")
        if (value := getattr(event, name)) is not None
    ]
    return f"replace {whose}: " + ", ".join(terms)


class _Lookahead:
    """Events in file order, each attempt paired with its answer from a bounded look ahead.

    An answer is looked for until the decision's next attempt or `ANSWER_HORIZON_SECS` of session
    time, whichever comes first; the events read on the way wait in a buffer, indexed so that
    each attempt costs one dict lookup however long the buffer is. Each event comes with its time
    in UTC, converted once by the reader (`SessionReader.timed`), and is handed on with it: two
    times with offsets (pydantic gives every event its own tzinfo) cost a conversion each per
    comparison, and the horizon and every mode's clock would compare each event's time again.
    """

    def __init__(self, reader: SessionReader) -> None:
        self._reader = reader
        self._source = reader.timed()  # each event with its time in UTC, converted once
        self._done = False
        self._ahead: datetime | None = None  # the time of the last event read, in UTC
        self._buffer: deque[tuple[int, Any, datetime]] = deque()  # (line, event, its time in UTC)
        self._answers: dict[tuple[str, int], tuple[int, AnswerEvent, datetime]] = {}  # buffered, unpaired
        self._attempts: dict[str, int] = {}  # decisions with attempts waiting in the buffer
        self._paired: set[int] = set()  # lines of answers already paired with their attempt
        # The last attempt number and the order (kind, symbol, an entry's side) of each recent
        # decision (bounded: memory must not grow with the file), so that a number repeated within
        # a decision, or a "retry" of another order, is refused.
        self._numbers: OrderedDict[str, tuple[int, str, str, str | None]] = OrderedDict()
        self._horizon = timedelta(seconds=ANSWER_HORIZON_SECS)

    def _pull(self) -> bool:
        read = None if self._done else next(self._source, None)
        if read is None:
            self._done = True
            return False
        event = read[1]
        self._buffer.append(read)
        self._ahead = read[2]
        kind = type(event)  # the reader's own classes: one identity test, not an isinstance chain
        if kind is AnswerEvent:
            self._answers.setdefault((event.decision, event.attempt), read)
        elif kind is AttemptEvent:
            attempts = self._attempts
            decision = event.decision
            attempts[decision] = attempts.get(decision, 0) + 1
        return True

    def __iter__(self) -> Iterator[tuple[int, Any, AnswerEvent | None, datetime]]:
        """Yield (line, event, the attempt's answer or None, the event's time in UTC)."""
        buffer, attempts, numbers = self._buffer, self._attempts, self._numbers
        popleft, pull = buffer.popleft, self._pull
        while buffer or pull():
            pulled = popleft()
            event = pulled[1]
            kind = type(event)
            if kind is AttemptEvent:
                decision = event.decision
                number = event.attempt
                kind = event.kind
                known = (number, kind, event.symbol, event.side if kind == "entry" else None)
                last = numbers.get(decision)
                if last is not None:
                    if number <= last[0]:
                        raise SessionFormatError(
                            self._reader.name, pulled[0], f"attempt {number} of decision {decision!r} "
                            f"comes again: expected attempt {last[0] + 1} or later",
                        )  # fmt: skip
                    if known[1:] != last[1:]:
                        error = _another_order(self._reader.name, pulled[0], event, last)
                        if error is not None:
                            raise error
                    numbers.move_to_end(decision)
                numbers[decision] = known
                if len(numbers) > _RECENT_DECISIONS:
                    numbers.popitem(last=False)
                left = attempts[decision] - 1
                if left:
                    attempts[decision] = left
                else:
                    del attempts[decision]
                yield pulled[0], event, self._answer_for(event, pulled[2]), pulled[2]
            elif kind is AnswerEvent:
                self._check_answer(pulled[0], event)
            else:
                yield pulled[0], event, None, pulled[2]

    def _check_answer(self, line: int, event: AnswerEvent) -> None:
        if line in self._paired:
            self._paired.discard(line)
            return
        raise SessionFormatError(
            self._reader.name,
            line,
            f"answer to decision {event.decision!r} attempt {event.attempt} has no attempt to answer: "
            f"expected it after its attempt, within {ANSWER_HORIZON_SECS:g} s, once",
        )

    def _answer_for(self, attempt: AttemptEvent, at: datetime) -> AnswerEvent | None:
        decision = attempt.decision
        key = (decision, attempt.attempt)
        answers, attempts, pull = self._answers, self._attempts, self._pull
        limit = None
        while True:
            found = answers.pop(key, None)
            if found is not None:
                if limit is None:
                    limit = at + self._horizon
                if found[2] <= limit:  # a later one is refused when it is read
                    self._paired.add(found[0])
                    return found[1]
            # The decision's next attempt, or the horizon, ends the search.
            if decision in attempts:
                return None
            ahead = self._ahead
            if ahead is not None:
                if limit is None:
                    limit = at + self._horizon
                if ahead > limit:
                    return None
            if not pull():
                return None


def _another_order(
    name: str, line: int, event: AttemptEvent, last: tuple[int, str, str, str | None]
) -> SessionFormatError | None:
    """Say how an attempt differs from its decision's earlier attempts (a retry repeats one order).

    None when it is the same order: symbols are compared as the gateway keys them ("BTCUSD" and
    "BTC/USD" are one pair).

    An exit's retries may differ in side: tradeguard sides an exit from the position at each
    try (a cover retried after it filled is recorded as a sell). Sizes may differ too: a bot that
    retried with another quantity did so (tradeguard records it, and refuses it as a mismatch).
    """
    _, kind, symbol, side = last
    differs = []
    if event.kind != kind:
        differs.append(f"kind ({event.kind}, not {kind})")
    if canonical_symbol(event.symbol) != canonical_symbol(symbol):
        differs.append(f"symbol ({event.symbol}, not {symbol})")
    if event.kind == kind == "entry" and event.side != side:
        differs.append(f"side ({event.side}, not {side})")
    if not differs:
        return None
    return SessionFormatError(
        name, line, f"attempt {event.attempt} of decision {event.decision!r} differs from its attempt "
        f"{last[0]} in {' and '.join(differs)}: a decision's attempts are tries of one order "
        "(another order is another decision)",
    )  # fmt: skip


def _count_lines(source: str | os.PathLike[str]) -> int:
    count = 0
    with open(source, "rb") as fh:
        while chunk := fh.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def replay_session(
    source: str | os.PathLike[str] | IO[str],
    modes: Sequence[Mode] = (Mode.FULL,),
    *,
    on_row: Callable[[EventRow], None] | None = None,
    collect_rows: bool = False,
    track: bool = False,
    record_to: Any = None,
    progress: Progress | None = None,
    forget_above: int | None = FORGET_ABOVE,
) -> ReplayResult:
    """Replay a session file in each of `modes`, side by side, in one streaming pass.

    Args:
        source: The session file (path or open text stream).
        modes: The guard modes to run (none: only read and check the file, every line).
        on_row: Called with each per-event row as soon as every mode has handled it.
        collect_rows: Also keep every row in the result (for JSON and HTML reports).
        track: Keep each mode's position history (for plots).
        record_to: Record what the `full` mode's gateway sees (a path, stream or Recorder).
        progress: Called every 10,000 events with (events done, lines in the file, or 0).
        forget_above: Each mode's account forgets what decisions past the retry horizon left
            behind once it holds more than this many orders, claims or audit records, so memory
            follows the live account, not the session's length (None: keep everything; see
            `replay.modes.Simulation`). The figures are the same either way.

    Raises:
        SessionFormatError: A bad line, naming the file and the line.
    """
    total = _count_lines(source) if progress is not None and isinstance(source, str | os.PathLike) else 0
    rows: list[EventRow] = []
    with _fewer_collections(), open_session(source) as reader:
        header = reader.header
        sims = {
            mode: make_simulation(
                mode,
                header,
                track=track,
                record_to=record_to if mode is Mode.FULL else None,
                forget_above=forget_above,
            )
            for mode in modes
        }
        recorder = next(
            (s.recorder for s in sims.values() if isinstance(s, FullGuard) and s.recorder is not None), None
        )
        end = header.start
        zone = session_zone(header)
        rows_wanted = on_row is not None or collect_rows  # a row costs a zone conversion and text
        count = 0
        every = list(sims.values())
        bulk = recorder is None and not rows_wanted  # totals only: prices and attempts need no row
        for line, event, answer, at in _Lookahead(reader):
            count += 1
            end = event.t
            kind = type(event)  # the reader's own classes: one identity test each
            if bulk and kind is PriceEvent:  # `_step`'s commonest branches, without its call
                for sim in every:
                    sim.price(event, at)
            elif bulk and kind is AttemptEvent:
                for sim in every:
                    sim.attempt(event, answer, at)
            else:
                if recorder is not None and kind is not AttemptEvent:
                    recorder.write(event)
                row = _step(
                    sims, line, event, answer, at, recorder=recorder, zone=zone if rows_wanted else None
                )
                if row is not None:
                    if on_row is not None:
                        on_row(row)
                    if collect_rows:
                        rows.append(row)
            if progress is not None and count % 10_000 == 0:
                progress(count, total)
            # No break at the `end` event: the reader refuses any event after it (SessionFormatError).
    totals = {mode: sim.finish(end) for mode, sim in sims.items()}
    if recorder is not None:
        recorder.close()
    return ReplayResult(header, totals, count, end, rows, sims)


def _step(  # noqa: PLR0912 - one branch per event type, each with and without its row
    sims: dict[Mode, Simulation],
    line: int,
    event: Any,
    answer: AnswerEvent | None,
    at: datetime,
    *,
    recorder: Any,
    zone: tzinfo | None,
) -> EventRow | None:
    """Hand one event to every mode; return its table row (None for prices and positions).

    `at` is the event's time in UTC. `zone` None: nobody reads the rows (a bulk replay wanting
    totals only); none is built.
    """
    if isinstance(event, PriceEvent):
        for sim in sims.values():
            sim.price(event, at)
        return None
    if isinstance(event, PositionEvent):
        for sim in sims.values():
            sim.position(event, at)
        return None
    if isinstance(event, AttemptEvent):
        outcomes: dict[Mode, AttemptOutcome | str] = {}
        for mode, sim in sims.items():
            if recorder is not None and mode is Mode.FULL:
                with recorder.annotate(
                    path=event.path, bar=event.bar, position_intent=event.position_intent,
                    reason=event.reason, client_order_id=event.client_order_id,
                ):  # fmt: skip
                    outcomes[mode] = sim.attempt(event, answer, at)
            else:
                outcomes[mode] = sim.attempt(event, answer, at)
        if zone is None:
            return None
        return EventRow(
            line, event.t.astimezone(zone), "attempt", describe_attempt(event), event.symbol,
            describe_answer(answer), outcomes,
        )  # fmt: skip
    if isinstance(event, ExternalEvent):
        done: dict[Mode, AttemptOutcome | str] = {mode: sim.external(event, at) for mode, sim in sims.items()}
        if zone is None:
            return None
        text = f"outside the bot: {event.event.replace('_', ' ')}"
        return EventRow(line, event.t.astimezone(zone), "external", text, event.symbol, None, done)
    if isinstance(event, CancelEvent | ReplaceEvent):
        # Through every mode as the bot did it; `full`'s gateway records its own (a recording replay).
        did: dict[Mode, AttemptOutcome | str] = {
            mode: sim.cancel(event, at) if isinstance(event, CancelEvent) else sim.replace(event, at)
            for mode, sim in sims.items()
        }
        if zone is None:
            return None
        return EventRow(
            line, event.t.astimezone(zone), event.type, _describe_amendment(event), event.symbol,
            event.result, did,
        )  # fmt: skip
    if isinstance(event, NoteEvent):
        for sim in sims.values():
            sim.advance(at)
        if zone is None:
            return None
        return EventRow(line, event.t.astimezone(zone), "note", event.text, event.symbol)
    for sim in sims.values():  # the end event
        sim.advance(at)
    return None
