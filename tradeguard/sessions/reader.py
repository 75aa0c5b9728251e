"""Read a session file as a stream: one line at a time, each validated, in constant memory.

Every problem raises `SessionFormatError` naming the file, the line and what was expected; no
line is skipped (blank lines hold nothing and are passed over). Checks across lines need only
the previous line: the header comes first and only once, times never go back, nothing follows
the `end` event.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from pydantic import ValidationError

from tradeguard.errors import SessionFormatError
from tradeguard.sessions.model import EVENT_TYPES, SESSION_VERSION, SessionHeader, event_adapter

__all__ = ["SessionReader", "describe_validation_error", "open_session"]

_EXPECTED = ", ".join(EVENT_TYPES)
# Events nest a few levels. Python's JSON parser recurses in C once per level, and only the
# recursion limit stops it: where a program has raised that limit, a line of 100,000 `[` crashes
# the process (a segmentation fault) instead of raising. So depth is counted before parsing.
_MAX_DEPTH = 100
_TOO_DEEP = "JSON nested too deeply to be an event (arrays or objects inside each other)"
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')


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
                self._file: IO[str] = open(source, encoding="utf-8")  # noqa: SIM115 - closed by close()
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
            return json.loads(text)
        except json.JSONDecodeError as exc:
            cut = "" if raw.endswith("\n") else " (the last line is cut short: a truncated file?)"
            raise self._fail(f"not valid JSON{cut}: {exc.msg} at column {exc.colno}") from None
        except RecursionError:  # within _MAX_DEPTH, yet deeper than the stack left allows
            raise self._fail(_TOO_DEEP) from None

    def _next_object(self) -> dict[str, Any] | None:
        """Return the next non-blank line as a JSON object, or None at the end of the file."""
        for raw in self._file:
            self._line += 1
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
        if version != SESSION_VERSION:
            got = f"{version!r} (a string)" if isinstance(version, str) else repr(version)
            raise self._fail(
                f"session format version {got} is not supported: this tradeguard reads "
                f"{SESSION_VERSION} (a number)"
            )
        try:
            return SessionHeader.model_validate(obj)
        except ValidationError as exc:
            raise self._fail(describe_validation_error(exc, "session header")) from None

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        # The fast path hands each raw line to pydantic-core's own JSON parser in one call. Any
        # line it refuses is read again by `_checked`, the slow path, which finds the same fault
        # and says what it is (bad JSON, a cut line, an unknown type, a second header, a field).
        # The adapter's own validator: `TypeAdapter.validate_json` is a Python layer over it that
        # only forwards options this reader never sets.
        validate_json = event_adapter().validator.validate_json
        previous: datetime = self.header.start
        ended = False
        for raw in self._file:
            self._line += 1
            try:
                event = validate_json(raw)
            except ValidationError:
                event = self._checked(raw)
                if event is None:  # a blank line
                    continue
            if ended:
                raise self._fail("an event after the end event")
            t = event.t
            if t < previous:
                raise self._fail(
                    f"time {t.isoformat()} is before the previous event's {previous.isoformat()} "
                    "(events must be in time order, none before the header's start)"
                )
            previous = t
            ended = event.type == "end"
            yield self._line, event

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
        if kind not in EVENT_TYPES:
            got = "no 'type'" if kind is None else f"unknown event type {kind!r}"
            raise self._fail(f"{got} (expected one of {_EXPECTED})")
        try:
            return event_adapter().validate_python(obj)
        except ValidationError as exc:
            raise self._fail(describe_validation_error(exc, f"{kind} event")) from None


def open_session(source: str | os.PathLike[str] | IO[str], *, name: str | None = None) -> SessionReader:
    """Open a session for streaming (a context manager; iterate it for (line, event) pairs)."""
    return SessionReader(source, name=name)
