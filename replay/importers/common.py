"""What every importer shares: proto-events from source lines, written as a valid session.

An importer turns each line (or record) of its source into plain dicts shaped like session
events, each carrying the source line it came from. `write_session` sorts them by time (stably),
numbers each decision's attempts, validates every event with the session models and writes the
file; a value the models refuse is reported against the source line it came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
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
)

__all__ = [
    "EASTERN",
    "ImportReport",
    "Proto",
    "csv_rows",
    "json_items",
    "number",
    "parse_time",
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
    return result


def json_items(text: str, name: str, *, key: str) -> list[tuple[int, Any]]:
    """Return the items of a JSON list (or `{key: [...]}`) with the line each starts on.

    Raises:
        SessionFormatError: Not JSON, or not such a list (naming the line).
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SessionFormatError(name, exc.lineno, f"not valid JSON: {exc.msg}") from None
    if isinstance(doc, dict):
        if not isinstance(doc.get(key), list):
            raise SessionFormatError(name, 1, f'expected a list, or {{"{key}": [...]}}')
        start = re.search(rf'"{key}"\s*:\s*\[', text)
        index = start.end() - 1 if start else text.index("[")
    elif isinstance(doc, list):
        index = text.index("[")
    else:
        raise SessionFormatError(name, 1, f"expected a list of {key}, got {type(doc).__name__}")
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


def csv_rows(path: Path, names: dict[str, str] | None = None) -> list[tuple[int, dict[str, Any]]]:
    """Return a CSV file's rows as dicts by lower-cased header (spaces as `_`, `names` renamed).

    Every value is read as text; empty cells are None. Row i is on line i + 2 (after the header).
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    columns = [re.sub(r"[\s_]+", "_", str(c).strip().lower()) for c in frame.columns]
    columns = [(names or {}).get(c, c) for c in columns]
    return [
        (i + 2, {col: (value if value != "" else None) for col, value in zip(columns, values, strict=True)})
        for i, values in enumerate(frame.itertuples(index=False, name=None))
    ]


def write_session(
    out: str | Path,
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

    Raises:
        SessionFormatError: An event the session models refuse, named by its source line.
    """
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
    with SessionWriter(out, head) as writer:
        for proto in ordered:
            fields = {**proto.fields, "t": proto.t}
            kind = fields["type"]
            if kind == "attempt":
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
                raise SessionFormatError(
                    source, proto.line, f"cannot make a {kind} event: {problems}"
                ) from None
            writer.write(event)
            report.events += 1
        if ordered:
            writer.write(EndEvent(type="end", t=ordered[-1].t))
            report.events += 1
    report.decisions = len(counts)
    return report
