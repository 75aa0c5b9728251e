"""The session format: every line validated, every bad line named by file and line, nothing skipped."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tradeguard import (
    AttemptEvent,
    PriceEvent,
    SessionFormatError,
    SessionHeader,
    SessionWriter,
    open_session,
)

ROOT = Path(__file__).resolve().parents[1]
MAY21 = ROOT / "sessions" / "2026-05-21-tqqq-sqqq.jsonl"

HEADER = {"type": "session", "version": 1, "start": "2026-05-21T09:30:00-04:00"}
PRICE = {"type": "price", "t": "2026-05-21T09:31:00-04:00", "symbol": "TQQQ", "price": "75.33"}
ATTEMPT = {
    "type": "attempt",
    "t": "2026-05-21T09:42:01-04:00",
    "decision": "09:42 base",
    "attempt": 1,
    "kind": "entry",
    "symbol": "TQQQ",
    "side": "buy",
    "qty": 6,
}


def write_lines(tmp_path: Path, *lines: object) -> Path:
    path = tmp_path / "s.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def read_all(path: Path) -> list[object]:
    with open_session(path) as session:
        return [event for _, event in session]


def test_the_may21_session_reads_to_the_end_with_line_numbers() -> None:
    with open_session(MAY21) as session:
        assert session.header.agent_id == "momentum-bot"
        lines = [line for line, _ in session]
    assert lines[0] == 2 and lines == sorted(lines)
    assert len(lines) == len(MAY21.read_text().splitlines()) - 1


def test_written_events_read_back_equal(tmp_path: Path) -> None:
    header = SessionHeader.model_validate(HEADER)
    events = [PriceEvent.model_validate(PRICE), AttemptEvent.model_validate(ATTEMPT)]
    with SessionWriter(tmp_path / "w.jsonl", header) as writer:
        for event in events:
            writer.write(event)
    with open_session(tmp_path / "w.jsonl") as session:
        assert session.header == header
        assert [e for _, e in session] == events


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_session_file_that_opens_but_cannot_be_written_is_closed_before_the_error() -> None:
    # A full disk: the header's write fails inside the constructor, so no caller ever holds
    # the writer to close it; the open file was left to the garbage collector (a warning).
    import gc
    import warnings

    header = SessionHeader.model_validate(HEADER)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(OSError, match="No space left"):
            SessionWriter("/dev/full", header, flush_each=True)
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_qty_may_be_a_string_or_a_number_and_blank_lines_carry_nothing(tmp_path: Path) -> None:
    path = write_lines(tmp_path, HEADER, "", ATTEMPT, {**ATTEMPT, "attempt": 2, "qty": "6"})
    first, second = read_all(path)
    assert isinstance(first, AttemptEvent) and isinstance(second, AttemptEvent)
    assert first.qty == second.qty == 6


BAD = {
    "truncated line": (
        [HEADER, PRICE, json.dumps(ATTEMPT)[:40]],
        3,
        "not valid JSON (the last line is cut short: a truncated file?)",
    ),
    "cut inside a string": (
        [HEADER, '{"type": "price", "symbol": "TQ'],
        2,
        "Unterminated string starting at column",  # said once: JSON's message ends in "at"
    ),
    "unknown event": ([HEADER, {**PRICE, "type": "trade"}], 2, "unknown event type 'trade' (expected one of"),
    "missing type": ([HEADER, {"t": PRICE["t"]}], 2, "no 'type'"),
    "wrong version": ([{**HEADER, "version": 3}], 1, "version 3 is not supported: this tradeguard reads 1"),
    "no version": (
        [{k: v for k, v in HEADER.items() if k != "version"}],
        1,
        'the session header has no version: give "version": 2',
    ),
    "no header": ([PRICE], 1, "expected the session header first"),
    "second header": ([HEADER, HEADER], 2, "a second session header"),
    "times out of order": (
        [HEADER, {**PRICE, "t": "2026-05-21T09:45:00-04:00"}, PRICE],
        3,
        "is before the previous event's 2026-05-21T09:45:00-04:00",
    ),
    "before the start": (
        [HEADER, {**PRICE, "t": "2026-05-21T09:00:00-04:00"}],
        2,
        "none before the header's",
    ),
    "bad field": ([HEADER, {**ATTEMPT, "qty": -6}], 2, "invalid attempt event: qty: Input should be greater"),
    "unknown field": ([HEADER, {**PRICE, "colour": "red"}], 2, "colour: Extra inputs are not permitted"),
    "naive time": ([HEADER, {**PRICE, "t": "2026-05-21T09:31:00"}], 2, "t: Input should have timezone info"),
    "not an object": ([HEADER, [1, 2]], 2, "expected a JSON object (one event), got list"),
    "after the end": ([HEADER, {"type": "end", "t": PRICE["t"]}, PRICE], 3, "an event after the end event"),
    "entry without size": ([HEADER, {**ATTEMPT, "qty": None}], 2, "an entry needs qty or notional"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_line_names_the_file_the_line_and_what_was_expected(tmp_path: Path, case: str) -> None:
    lines, line, expected = BAD[case]
    path = write_lines(tmp_path, *lines)
    if case == "truncated line":
        path.write_text(path.read_text().rstrip("\n"))
    with pytest.raises(SessionFormatError) as caught:
        read_all(path)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert expected in str(caught.value)


def test_an_empty_file_and_a_missing_file_are_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(SessionFormatError, match=r"empty\.jsonl:1: empty file"):
        open_session(empty)
    with pytest.raises(SessionFormatError, match=r"nope\.jsonl: cannot read"):
        open_session(tmp_path / "nope.jsonl")


def test_a_stream_is_named_in_errors() -> None:
    stream = io.StringIO(json.dumps(HEADER) + "\n{oops\n")
    with pytest.raises(SessionFormatError, match=r"^mem:2: not valid JSON"):
        read_all_stream(stream)


def read_all_stream(stream: io.StringIO) -> list[object]:
    with open_session(stream, name="mem") as session:
        return [event for _, event in session]
