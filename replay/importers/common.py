"""What every importer shares: proto-events from source lines, written as a valid session.

An importer turns each line (or record) of its source into plain dicts shaped like session
events, each carrying the source line it came from. `write_session` sorts them by time (stably),
numbers each decision's attempts, validates every event with the session models and writes the
file; a value the models refuse is reported against the source line it came from.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from tradeguard import (
    AnswerEvent,
    AttemptEvent,
    EndEvent,
    NoteEvent,
    PositionEvent,
    PriceEvent,
    SessionFormatError,
    SessionHeader,
    SessionWriter,
    default_time_in_force,
)

__all__ = [
    "EASTERN",
    "MAX_FIGURE",
    "ImportReport",
    "Proto",
    "csv_rows",
    "is_json",
    "json_items",
    "json_problem",
    "json_text",
    "number",
    "parse_time",
    "read_text",
    "utf8_problem",
    "write_session",
]

EASTERN = ZoneInfo("America/New_York")
_MODELS: dict[str, Any] = {
    "attempt": AttemptEvent,
    "answer": AnswerEvent,
    "price": PriceEvent,
    "position": PositionEvent,
    "note": NoteEvent,
    "end": EndEvent,
}
MAX_FIGURE = Decimal(10**12)
"""Quantities and prices at or beyond this are refused: no real order is that large, and a figure
of that size overflows the exposure arithmetic (28 significant digits) of a replay."""
_GZIP = b"\x1f\x8b"
# `-040:00`: the bot of LOGS.md writes an hour of three digits; the offset meant is -04:00.
_BAD_OFFSET = re.compile(r"([+-])(\d\d)0:(\d\d)$")


@dataclass(slots=True)
class Proto:
    """One event to be: its source line, its time, and its fields (attempt numbers come later)."""

    line: int
    t: datetime
    fields: dict[str, Any]


@dataclass(slots=True)
class ImportReport:
    """What an import wrote."""

    kind: str
    source: str
    session: str
    events: int = 0
    attempts: int = 0
    decisions: int = 0
    notes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-able values (importer-specific fields first)."""
        return {
            **self.extra,
            "kind": self.kind,
            "source": self.source,
            "session": self.session,
            "events": self.events,
            "attempts": self.attempts,
            "decisions": self.decisions,
            "notes": self.notes,
        }


def parse_time(text: str, *, tz: ZoneInfo = EASTERN) -> datetime:
    """Parse an ISO time as written by bots and exports: `Z`, `-040:00`, a space, or no zone (US/Eastern).

    Raises:
        ValueError: Not a time.
    """
    value = text.strip().replace("Z", "+00:00")
    value = _BAD_OFFSET.sub(r"\1\2:\3", value)
    when = datetime.fromisoformat(value)
    return when if when.tzinfo is not None else when.replace(tzinfo=tz)


def number(value: object, what: str, source: str, line: int) -> Decimal:
    """Return `value` (a string or a number) as a Decimal, or raise naming the line."""
    try:
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise SessionFormatError(source, line, f"{what} {value!r} is not a number") from None
    if not result.is_finite():
        raise SessionFormatError(source, line, f"{what} {value!r} is not a finite number")
    if abs(result) >= MAX_FIGURE:
        raise SessionFormatError(
            source, line, f"{what} {value!r} is beyond any real order (expected less than {MAX_FIGURE:,})"
        )
    return result


def utf8_problem(lines: Iterable[bytes]) -> tuple[int, str] | None:
    """Return (line, what is wrong) for the first line that is not UTF-8 text, or None.

    The lines are raw bytes (a file opened in binary mode); the first line may start with a
    UTF-8 byte order mark.
    """
    for line, raw in enumerate(lines, start=1):
        if line == 1 and raw.startswith(_GZIP):
            return 1, "a gzip-compressed file, not text: decompress it first (gunzip)"
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return line, (
                f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {exc.start + 1} ({exc.reason}); "
                "save the file as UTF-8"
            )
    return None


def read_text(source: str | Path) -> str:
    """Return a source file's text: UTF-8, a leading byte order mark dropped.

    Raises:
        SessionFormatError: The file cannot be read, or is not UTF-8 text (naming the line and
            the byte).
    """
    name = str(source)
    try:
        data = Path(source).read_bytes()
    except IsADirectoryError:
        raise SessionFormatError(name, None, "is a directory, not a file") from None
    except OSError as exc:
        raise SessionFormatError(name, None, f"cannot read: {exc.strerror or exc}") from None
    if not data.startswith(_GZIP):
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode("utf-8-sig")
    problem = utf8_problem(io.BytesIO(data))  # the same bytes, line by line, to say where
    assert problem is not None
    raise SessionFormatError(name, problem[0], problem[1])


# Records nest a few levels. Python's JSON parser recurses in C once per level and only the
# recursion limit stops it: where that was raised (py_ecc raises it to 100,000 on import), a
# deep document crashes the process. Depth is counted before parsing.
def json_problem(exc: json.JSONDecodeError) -> str:
    """Say what is wrong with JSON text and at which column, in words.

    `JSONDecodeError.msg` is written to be followed by ": line L column C"; "Unterminated string
    starting at" already ends in "at". (The session reader words it the same way; replay keeps
    to tradeguard's public surface, so the three lines live here too.)
    """
    joint = " column" if exc.msg.endswith(" at") else " at column"
    return f"{exc.msg}{joint} {exc.colno}"


_MAX_DEPTH = 100
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _too_deep_at(text: str) -> int | None:
    """Return where `text` nests arrays or objects past `_MAX_DEPTH` (strings aside), or None."""
    if text.count("[") + text.count("{") <= _MAX_DEPTH:
        return None
    depth = 0
    for token in _TOKENS.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > _MAX_DEPTH:
                return token.start()
        elif char in "]}":
            depth -= 1
    return None


def json_text(text: str, name: str, line: int) -> Any:
    """Parse JSON text (`json.loads`), refusing nesting past `_MAX_DEPTH` levels naming its line.

    Raises:
        SessionFormatError: Nested too deeply (the line is `line` plus the lines before the spot).
        json.JSONDecodeError: Not JSON (the caller says what that means for its source).
    """
    at = _too_deep_at(text)
    if at is None:
        try:
            return json.loads(text)
        except RecursionError:  # within the bound, yet deeper than the stack left allows
            at = 0
        except json.JSONDecodeError:
            raise
        except ValueError as exc:  # an integer of more digits than Python converts (4,300)
            problem = f"a number too long to be a figure: {str(exc).split(';')[0]}"
            raise SessionFormatError(name, line, problem) from None
    problem = "JSON nested too deeply (arrays or objects inside each other) to be a record"
    raise SessionFormatError(name, line + text.count("\n", 0, at), problem)


def is_json(text: str, source: str | Path) -> bool:
    """Whether a source to import is JSON rather than CSV.

    It is when named `.json`, when it opens a list or an object, or when it is a JSON value
    whole: a lone `42`, `"x"` or `null` is a JSON document of the wrong shape, to be refused as
    such, never a CSV header with no rows under it.
    """
    head = text.lstrip()[:1]
    if Path(source).suffix.lower() == ".json" or head in ("[", "{"):
        return True
    if not head:
        return False
    try:
        json.loads(text)  # a CSV fails at its first cell's end: cheap
    except ValueError:
        return False
    return True


_JSON_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}


def json_items(text: str, name: str, *, key: str, one: str | None = None) -> list[tuple[int, Any]]:
    """Return the items of a JSON list (or `{key: [...]}`, or JSON Lines) with the line each starts on.

    `one`: a field that marks a lone object as one record (a history of one order saved as the
    object alone, `json.dumps(order)`): the object is then the list's only item.

    Raises:
        SessionFormatError: Empty, not JSON, or not such a list (naming the line).
    """
    expected = f'expected a list of {key} or {{"{key}": [...]}}'
    if not text.strip():
        raise SessionFormatError(name, 1, f"empty file: {expected}")
    try:
        doc = json_text(text, name, 1)
    except json.JSONDecodeError as exc:
        lines = _json_lines(text, name) if exc.msg == "Extra data" else None
        if lines is not None:
            return lines
        raise SessionFormatError(name, exc.lineno, f"not valid JSON: {json_problem(exc)}") from None
    if isinstance(doc, dict):
        if one is not None and key not in doc and one in doc:
            return [(text.count("\n", 0, len(text) - len(text.lstrip())) + 1, doc)]
        if not isinstance(doc.get(key), list):
            raise SessionFormatError(name, 1, f'{expected}, got an object without a "{key}" list')
        start = re.search(rf'"{key}"\s*:\s*\[', text)
        index = start.end() - 1 if start else text.index("[")
    elif isinstance(doc, list):
        index = text.index("[")
    else:
        got = _JSON_KINDS.get(type(doc), "a number")
        line = text.count("\n", 0, len(text) - len(text.lstrip())) + 1  # where the value starts
        raise SessionFormatError(name, line, f"{expected}, got {got}")
    # Walk the array again item by item, only to learn the line each one starts on.
    decoder = json.JSONDecoder()
    found: list[tuple[int, Any]] = []
    index += 1
    while True:
        while text[index] in " \t\r\n,":
            index += 1
        if text[index] == "]":
            return found
        item, end = decoder.raw_decode(text, index)
        found.append((text.count("\n", 0, index) + 1, item))
        index = end


def _json_lines(text: str, name: str) -> list[tuple[int, Any]] | None:
    """Return the objects of JSON Lines text (one object per line) with their lines, or None.

    What a script writes that saves each record as it comes (`json.dumps` and a line break per
    record) rather than one list. None when the text does not look like that (its first line is no
    object): the caller reports the JSON error as it was.

    Raises:
        SessionFormatError: A later line that is not one JSON object (naming it).
    """
    found: list[tuple[int, Any]] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json_text(raw, name, line)
        except json.JSONDecodeError as exc:
            if not found:
                return None
            problem = f"not valid JSON (a file of one JSON object per line): {json_problem(exc)}"
            raise SessionFormatError(name, line, problem) from None
        if not isinstance(item, dict):
            if not found:
                return None
            got = _JSON_KINDS.get(type(item), "a number")
            raise SessionFormatError(name, line, f"expected one JSON object per line, got {got}")
        found.append((line, item))
    return found


def csv_rows(text: str, name: str, names: dict[str, str] | None = None) -> list[tuple[int, dict[str, Any]]]:
    """Return a CSV text's rows as dicts by lower-cased header (`_` for other signs, `names` renamed).

    Every value is read as text; empty cells are None; blank lines are skipped. Each row comes
    with the line it starts on (a quoted cell may hold line breaks).

    Every row must have the header's cells: a row with fewer is a file cut short or a row that
    lost cells (its missing values would otherwise read as empty), one with more non-empty
    cells has values no column names. A quoted cell that never closes is a file cut short.

    Raises:
        SessionFormatError: An empty file, or a row that is not valid CSV or does not fit the
            header (naming its line).
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, skipinitialspace=True)
    found: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            if cells:  # a blank line is no row
                found.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        if str(exc) == "unexpected end of data":
            raise SessionFormatError(
                name, start, "a quoted field opened on this line never closes: the file is cut short"
            ) from None
        raise SessionFormatError(name, reader.line_num, f"not valid CSV: {exc}") from None
    if not found:
        raise SessionFormatError(name, 1, "empty file: expected a header line, then one row each")
    (_, header), rows = found[0], found[1:]
    columns = _columns(header, names)
    width = len(columns)
    result: list[tuple[int, dict[str, Any]]] = []
    for line, cells in rows:
        if len(cells) < width:
            raise SessionFormatError(
                name,
                line,
                f"a row of {len(cells)} fields under a header of {width}: "
                "the row is cut short or misses cells",
            )
        if any(cell.strip() for cell in cells[width:]):  # a trailing comma adds an empty cell: harmless
            raise SessionFormatError(
                name, line, f"a row of {len(cells)} fields under a header of {width}: more cells than columns"
            )
        values = dict(zip(columns, cells, strict=False))  # beyond the header: empty, checked above
        result.append((line, {col: (value if value != "" else None) for col, value in values.items()}))
    return result


def csv_columns(text: str, names: dict[str, str] | None = None) -> set[str]:
    """Return a CSV text's header columns as `csv_rows` names them (an export with no row has them too)."""
    for cells in csv.reader(io.StringIO(text, newline=""), skipinitialspace=True):
        if cells:
            return set(_columns(cells, names))
    return set()


def _columns(header: list[str], names: dict[str, str] | None) -> list[str]:
    # "Avg. Fill Price", "avg_fill_price" and "AVG FILL PRICE" are one column.
    columns = [re.sub(r"[^0-9a-z]+", "_", c.strip().lower()).strip("_") for c in header]
    return [(names or {}).get(c, c) for c in columns]


def write_session(
    out: str | Path | IO[str],
    protos: Iterable[Proto],
    *,
    report: ImportReport,
    title: str,
    agent_id: str,
    description: str | None = None,
) -> ImportReport:
    """Validate and write the session; fill in `report`'s counts and return it.

    The header names the import as its source. An import holds no account: the session's cash is
    enough never to refuse an order, and shorting is allowed (a sell beyond what is held is
    replayed, not refused for the account's sake).

    A path is written whole or not at all: the session goes to a temporary file beside it, renamed
    over `out` only once every event is valid (a failed import leaves no half file, and an
    existing file untouched). A stream is written as the events come.

    Raises:
        SessionFormatError: An event the session models refuse, named by its source line; or
            `out` cannot be written.
    """
    if not isinstance(out, str | os.PathLike):
        return _write_events(
            out, protos, report=report, title=title, agent_id=agent_id, description=description
        )
    target = Path(out)
    try:
        fd, temporary = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent if str(target.parent) else "."
        )
    except OSError as exc:
        raise SessionFormatError(str(out), None, f"cannot write: {exc.strerror or exc}") from None
    try:
        with open(fd, "w", encoding="utf-8") as handle:
            _write_events(
                handle, protos, report=report, title=title, agent_id=agent_id, description=description
            )
        os.replace(temporary, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise SessionFormatError(str(out), None, f"cannot write: {exc.strerror or exc}") from None
        raise
    return report


def _write_events(
    out: IO[str],
    protos: Iterable[Proto],
    *,
    report: ImportReport,
    title: str,
    agent_id: str,
    description: str | None,
) -> ImportReport:
    """Validate and write the header and the events to an open stream (see `write_session`)."""
    source = report.source
    header = {
        "name": title,
        "agent_id": agent_id,
        "cash": "1000000000",
        "allow_short": True,
        "source": f"tradeguard import {report.kind} {Path(source).name}",
        "description": description,
    }
    ordered = sorted(protos, key=lambda p: p.t)  # stable: equal times keep the source's order
    start = ordered[0].t - timedelta(seconds=1) if ordered else datetime.now(EASTERN)
    head = SessionHeader.model_validate({"type": "session", "version": 1, "start": start, **header})
    counts: dict[str, int] = {}
    priced: set[str] = set()
    unpriced: set[str] = set()  # symbols with an attempt before any price of theirs
    with SessionWriter(out, head) as writer:
        for proto in ordered:
            fields = {**proto.fields, "t": proto.t}
            kind = fields["type"]
            if kind == "price":
                priced.add(str(fields.get("symbol")))
            elif kind == "attempt":
                if not fields.get("time_in_force"):  # the source names none: Alpaca's default for it
                    fields["time_in_force"] = default_time_in_force(str(fields.get("symbol") or "")).value
                if fields.get("symbol") not in priced:
                    unpriced.add(str(fields.get("symbol")))
                counts[fields["decision"]] = counts.get(fields["decision"], 0) + 1
                fields["attempt"] = counts[fields["decision"]]
                report.attempts += 1
            elif kind == "answer" and "attempt" not in fields:
                fields["attempt"] = counts.get(fields["decision"], 1)
            elif kind == "note":
                report.notes += 1
            try:
                event = _MODELS[kind].model_validate(fields)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
                )
                article = "an" if kind[0] in "aeiou" else "a"
                raise SessionFormatError(
                    source, proto.line, f"cannot make {article} {kind} event: {problems}"
                ) from None
            writer.write(event)
            report.events += 1
        if ordered:
            writer.write(EndEvent(type="end", t=ordered[-1].t))
            report.events += 1
    report.decisions = len(counts)
    report.extra["unpriced_symbols"] = sorted(unpriced)
    return report
