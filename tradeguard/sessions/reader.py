"""Read a session file as a stream: one line at a time, each validated, in constant memory.

Every problem raises `SessionFormatError` naming the file, the line and what was expected; no
line is skipped (blank lines hold nothing and are passed over). Checks across lines need only
the previous line: the header comes first and only once, times never go back, nothing follows
the `end` event.

In a version 2 file an answer lost in transport (a `timeout` or `error` without `placed`) may be
resolved by a later `resolution` line. The reader hands such an answer on with `placed` set from
its resolution, holding the lines after it back until the resolution comes or
`RESOLUTION_HORIZON_SECS` of session time pass (rare: most answers are not lost), so whoever
reads the answer knows what became of the send. The `resolution` line is handed on too, in its
place. A resolution that found the order filled (`filled_avg_price`) gives the answer its fill
too, and a `price` event for the symbol is handed on right after the answer, at its time: the
price line a recording writes after a filled answer, so that what follows (the bot's retries)
is priced as the run priced it.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from pydantic import ValidationError

from tradeguard.errors import SessionFormatError
from tradeguard.sessions.model import (
    EVENT_TYPES,
    RESOLUTION_HORIZON_SECS,
    SUPPORTED_VERSIONS,
    AnswerEvent,
    PriceEvent,
    ResolutionEvent,
    SessionHeader,
    event_adapter,
    event_types,
)

__all__ = ["SessionReader", "describe_validation_error", "json_problem", "open_session"]

_LOST = frozenset({"timeout", "error"})
"""Answers whose send may or may not have placed the order: what a `resolution` settles."""
# Events nest a few levels. Python's JSON parser recurses in C once per level, and only the
# recursion limit stops it: where a program has raised that limit, a line of 100,000 `[` crashes
# the process (a segmentation fault) instead of raising. So depth is counted before parsing.
_MAX_DEPTH = 100
_TOO_DEEP = "JSON nested too deeply to be an event (arrays or objects inside each other)"
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
# The longest line read: an event is well under a kilobyte and a note a few; a file with no line
# breaks (a binary dump, a JSON array on one line) would otherwise be read whole into memory.
MAX_LINE_CHARS = 1 << 20
# A UTF-16 surrogate escape: only such lines can hold a lone surrogate, which JSON allows and no
# UTF-8 output can print (each is then checked the slow way).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_LONE_SURROGATE = "a lone UTF-16 surrogate escape (\\ud800-\\udfff) in a string: not text"


def _digits(exc: ValueError) -> str:
    """Python's refusal of a huge integer, without its advice to raise the limit."""
    return str(exc).split(";")[0]


def json_problem(exc: json.JSONDecodeError) -> str:
    """Say what is wrong with JSON text and at which column, in words.

    `JSONDecodeError.msg` is written to be followed by ": line L column C"; "Unterminated string
    starting at" already ends in "at".
    """
    joint = " column" if exc.msg.endswith(" at") else " at column"
    return f"{exc.msg}{joint} {exc.colno}"


def _too_deep(text: str) -> bool:
    """True when `text` nests arrays or objects more than `_MAX_DEPTH` levels (strings aside)."""
    if text.count("[") + text.count("{") <= _MAX_DEPTH:
        return False
    depth = 0
    for char in _STRINGS.sub("", text):
        if char in "[{":
            depth += 1
            if depth > _MAX_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


def describe_validation_error(exc: ValidationError, what: str) -> str:
    """Return pydantic's complaint as one line: the fields at fault and what they needed."""
    parts = []
    for error in exc.errors()[:3]:
        # The first element of an event's location is its type tag; the field follows.
        loc = [str(p) for p in error["loc"] if str(p) not in EVENT_TYPES]
        field = ".".join(loc)
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}" if field else message)
    more = len(exc.errors()) - 3
    suffix = f" (and {more} more)" if more > 0 else ""
    return f"invalid {what}: " + "; ".join(parts) + suffix


class SessionReader:
    """The header of a session file, and an iterator over its events as (line number, event).

    Use as a context manager (the file is closed at the end), or iterate once to the end.

    Args:
        source: A path, or an open text stream (then `name` names it in errors).
        name: How errors name the source (default: the path).

    Raises:
        SessionFormatError: The file cannot be read or its first line is not a valid header.
    """

    def __init__(self, source: str | os.PathLike[str] | IO[str], *, name: str | None = None) -> None:
        if isinstance(source, str | os.PathLike):
            self.name = name or os.fspath(source)
            try:
                # "utf-8-sig": a byte order mark some editors put first is dropped, as importers do.
                self._file: IO[str] = open(source, encoding="utf-8-sig")  # noqa: SIM115 - closed by close()
            except OSError as exc:
                raise SessionFormatError(self.name, None, f"cannot read: {exc.strerror or exc}") from exc
            self._owned = True
        else:
            self.name = name or str(getattr(source, "name", "<stream>"))
            self._file = source
            self._owned = False
        self._line = 0
        try:
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the file (when this reader opened it)."""
        if self._owned:
            self._file.close()

    def __enter__(self) -> SessionReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, problem: str, line: int | None = None) -> SessionFormatError:
        return SessionFormatError(self.name, self._line if line is None else line, problem)

    def _loads(self, raw: str, text: str) -> Any:
        """Parse one line's JSON; raise what is wrong with it as a `SessionFormatError`."""
        if _too_deep(text):
            raise self._fail(_TOO_DEEP)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            cut = "" if raw.endswith("\n") else " (the last line is cut short: a truncated file?)"
            raise self._fail(f"not valid JSON{cut}: {json_problem(exc)}") from None
        except RecursionError:  # within _MAX_DEPTH, yet deeper than the stack left allows
            raise self._fail(_TOO_DEEP) from None
        except ValueError as exc:  # an integer of more digits than Python converts (4,300)
            raise self._fail(f"a number too long to be a figure: {_digits(exc)}") from None
        self._check_text(text, obj)
        return obj

    def _check_text(self, text: str, obj: Any = None) -> None:
        """Refuse a lone UTF-16 surrogate (valid JSON, yet no UTF-8 text can hold or print it).

        `obj`: the line parsed, when it was (else it is parsed here, only if it may hold one).
        """
        if _SURROGATE_ESCAPE.search(text) is None:
            return
        try:
            json.dumps(json.loads(text) if obj is None else obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise self._fail(_LONE_SURROGATE) from None

    def _lines(self) -> Iterator[str]:
        """The file's lines, each read at most `MAX_LINE_CHARS` + 1 characters at a time.

        A line that long is refused by `_long` (see the loops) before more of it is read.
        """
        return iter(functools.partial(self._file.readline, MAX_LINE_CHARS + 1), "")

    def _long(self, raw: str) -> None:
        """Refuse a line longer than `MAX_LINE_CHARS` (a file with no line breaks, a dump)."""
        if not raw.endswith("\n"):
            raise self._fail(f"a line longer than {MAX_LINE_CHARS:,} characters: not a session event")

    def _next_object(self) -> dict[str, Any] | None:
        """Return the next non-blank line as a JSON object, or None at the end of the file."""
        for raw in self._lines():
            self._line += 1
            if len(raw) > MAX_LINE_CHARS:
                self._long(raw)
            text = raw.strip()
            if not text:
                continue
            try:
                obj = self._loads(raw, text)
            except UnicodeDecodeError as exc:
                raise self._fail(f"not UTF-8 text: {exc.reason}") from None
            if not isinstance(obj, dict):
                raise self._fail(f"expected a JSON object (one event), got {type(obj).__name__}")
            return obj
        return None

    def _read_header(self) -> SessionHeader:
        obj = self._next_object()
        if obj is None:
            raise self._fail("empty file: expected a session header line", line=1)
        if obj.get("type") != "session":
            raise self._fail(
                'expected the session header first ({"type": "session", "version": 1, "start": ...}), '
                f"got type {obj.get('type')!r}"
            )
        version = obj.get("version")
        if "version" not in obj:
            give = f'"version": {max(SUPPORTED_VERSIONS)}'
            raise self._fail(f"the session header has no version: give {give} (the format it follows)")
        if type(version) is float and version.is_integer():
            # JSON has one number type: a writer that keeps numbers as floats (JavaScript's
            # JSON.stringify aside) writes version 1 as 1.0.
            version = obj["version"] = int(version)
        if type(version) is not int or version not in SUPPORTED_VERSIONS:
            got = f"{version!r} (a string)" if isinstance(version, str) else repr(version)
            reads = " or ".join(map(str, SUPPORTED_VERSIONS))
            raise self._fail(
                f"session format version {got} is not supported: this tradeguard reads {reads} (a number)"
            )
        try:
            return SessionHeader.model_validate(obj)
        except ValidationError as exc:
            raise self._fail(describe_validation_error(exc, "session header")) from None

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        return ((line, event) for line, event, _ in self.timed())

    def timed(self) -> Iterator[tuple[int, Any, datetime]]:
        """Iterate the events as (line number, event, the event's time in UTC).

        The same events as iterating the reader, each with its time converted once: an aware
        time with an offset (pydantic gives every event a tzinfo of its own) costs a conversion
        of each side every time two are compared, and a replay compares each event's time
        several times. A time beyond datetime's range in UTC is handed on as written.
        """
        events = self._events()
        # A version 1 file holds no resolutions: its events go straight through.
        return events if self.header.version == 1 else self._resolved(events)

    def _events(self) -> Iterator[tuple[int, Any, datetime]]:
        # The fast path hands each raw line to pydantic-core's own JSON parser in one call. Any
        # line it refuses is read again by `_checked`, the slow path, which finds the same fault
        # and says what it is (bad JSON, a cut line, an unknown type, a second header, a field).
        # The adapter's own validator: `TypeAdapter.validate_json` is a Python layer over it that
        # only forwards options this reader never sets.
        validate_json = event_adapter(self.header.version).validator.validate_json
        written = self.header.start  # the previous time, as written (for the error below)
        previous = _in_utc(written)  # and in UTC, to compare with: see `timed`
        ended = False
        for raw in self._lines():
            self._line += 1
            if len(raw) > MAX_LINE_CHARS:
                self._long(raw)
            try:
                event = validate_json(raw)
            except ValidationError:
                event = self._checked(raw)
                if event is None:  # a blank line
                    continue
            else:
                if "\\u" in raw:  # rare: only an escape can hide a lone surrogate
                    self._check_text(raw)
            if ended:
                raise self._fail("an event after the end event")
            t = event.t
            try:
                at = t.astimezone(UTC)
            except OverflowError:  # beyond datetime's range in UTC: compared as written
                at = t
            if at < previous:
                raise self._fail(
                    f"time {t.isoformat()} is before the previous event's {written.isoformat()} "
                    "(events must be in time order, none before the header's start)"
                )
            previous, written = at, t
            ended = event.type == "end"
            yield self._line, event, at

    def _checked(self, raw: str) -> Any:
        """Parse and validate one line the slow way; raise what is wrong with it (None: blank)."""
        text = raw.strip()
        if not text:
            return None
        obj = self._loads(raw, text)
        if not isinstance(obj, dict):
            raise self._fail(f"expected a JSON object (one event), got {type(obj).__name__}")
        kind = obj.get("type")
        if kind == "session":
            raise self._fail("a second session header: only the first line may be one")
        version = self.header.version
        types = event_types(version)
        if kind not in types:
            if kind in EVENT_TYPES:
                raise self._fail(
                    f"a {kind} event needs session format version 2 or later "
                    f"(this file's header says version {version})"
                )
            got = "no 'type'" if kind is None else f"unknown event type {kind!r}"
            raise self._fail(f"{got} (expected one of {', '.join(types)})")
        try:
            return event_adapter(version).validate_python(obj)
        except ValidationError as exc:
            raise self._fail(describe_validation_error(exc, f"{kind} event")) from None

    def _resolved(self, events: Iterator[tuple[int, Any, datetime]]) -> Iterator[tuple[int, Any, datetime]]:
        """Hand `events` on, each lost answer with `placed` set from its `resolution` (see the module).

        Each held line is an entry `[line, event, key, time in UTC]`; `key` is set while the entry
        is a lost answer still open to a resolution, and is what holds the lines after it back.
        """
        horizon = timedelta(seconds=RESOLUTION_HORIZON_SECS)
        held: deque[list[Any]] = deque()
        waiting: dict[tuple[str, int], list[Any]] = {}  # key -> the open answer's entry
        for line, event, at in events:
            kind = type(event)
            if kind is ResolutionEvent:
                self._resolve(held, waiting, line, event, horizon)
            opens = kind is AnswerEvent and event.placed is None and event.result in _LOST
            if not held and not opens:
                yield line, event, at  # the common case: nothing waits
                continue
            entry = [line, event, None, at]
            if opens:
                key = (event.decision, event.attempt)
                earlier = waiting.get(key)
                if earlier is not None:  # a second answer to one attempt (refused downstream)
                    earlier[2] = None
                entry[2] = key
                waiting[key] = entry
            held.append(entry)
            now = event.t
            while held:
                first = held[0]
                key = first[2]
                if key is not None:
                    if now - first[1].t <= horizon:
                        break  # still open: what follows it waits
                    first[2] = None  # no resolution within the horizon: placed stays unknown
                    del waiting[key]
                held.popleft()
                yield first[0], first[1], first[3]
        while held:
            first = held.popleft()
            yield first[0], first[1], first[3]

    def _resolve(
        self,
        held: deque[list[Any]],
        waiting: dict[tuple[str, int], list[Any]],
        line: int,
        event: ResolutionEvent,
        horizon: timedelta,
    ) -> None:
        """Set `placed` on the open answer `event` resolves; refuse a resolution of nothing."""
        key = (event.decision, event.attempt)
        entry = waiting.pop(key, None)
        if entry is None or event.t - entry[1].t > horizon:
            raise self._fail(
                f"resolution of decision {event.decision!r} attempt {event.attempt} resolves no lost "
                "answer: expected it after that attempt's timeout or error answer without 'placed', "
                f"within {RESOLUTION_HORIZON_SECS:g} s, once",
                line,
            )
        price, symbol = event.filled_avg_price, event.symbol
        if price is None or symbol is None:  # (the model refuses a price without its symbol)
            entry[1] = entry[1].model_copy(update={"placed": event.placed})
            entry[2] = None
            return
        lost = entry[1]
        fill = {"filled_qty": event.filled_qty, "filled_avg_price": price}
        entry[1] = lost.model_copy(update={"placed": event.placed} | fill)
        entry[2] = None
        # The answer is still held (its key held it): its price follows it, before the lines
        # after it. Numbered with the resolution's line, where the price was read.
        priced = PriceEvent(type="price", t=lost.t, symbol=symbol, price=price)
        index = next(i for i, held_entry in enumerate(held) if held_entry is entry)
        held.insert(index + 1, [line, priced, None, entry[3]])


def _in_utc(t: datetime) -> datetime:
    """`t` in UTC, or as written when that is beyond datetime's range."""
    try:
        return t.astimezone(UTC)
    except OverflowError:
        return t


def open_session(source: str | os.PathLike[str] | IO[str], *, name: str | None = None) -> SessionReader:
    """Open a session for streaming (a context manager; iterate it for (line, event) pairs)."""
    return SessionReader(source, name=name)
