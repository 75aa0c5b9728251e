"""`tradeguard import bot-log` of logs as bots really leave them, then replayed.

Two shapes a new user's log takes that LOGS.md's grammar does not show, each of which lost the
day's duplicates:

* A time with milliseconds after a comma (`[2026-05-21 09:42:05,123-040:00 ENTER ...`), as
  Python's `logging` writes `%(asctime)s`. The time was read up to the seconds, its zone dropped,
  and the line's message read as `,123-040:00 ENTER ...`: every order line became a note, and the
  import said the log had no order attempts (exit 0), so a replay showed nothing to block.
* Lines before the first timed one (a banner the bot printed on start, `nohup` output): the whole
  log was refused ("expected a line starting [YYYY-..."), though every line without a time after
  the first timed one is kept as a note (LOGS.md: unknown messages are kept, never dropped).
  They are notes at the first timed line's time now; a file with no timed line at all is still
  refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradeguard.cli import main

_DAY = [
    "[2026-05-21 09:42:05{ms}-040:00 ENTER BULL stage=base symbol=TQQQ qty=6 est_price=75.30 stop=74.00 "
    "target=77.00 score=5 bar=2026-05-21T09:42:00-04:00",
    "[2026-05-21 09:42:12{ms}-040:00 SAFEAGENT SKIP: duplicate order blocked buy TQQQ qty=6 "
    "bar=2026-05-21T09:42:00-04:00 — returning cached result",
    "[2026-05-21 11:26:26{ms}-040:00 EXIT TRAIL_EXIT_BULL symbol=TQQQ qty=6 price=75.50 held_min=99",
    "[2026-05-21 11:26:28{ms}-040:00 EXIT TRAIL_EXIT_BULL symbol=TQQQ qty=6 price=75.50 held_min=99",
]


def _import_and_replay(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[list[dict[str, object]], dict[str, dict[str, float]]]:
    log, session = tmp_path / "bot.log", tmp_path / "bot.jsonl"
    log.write_text(text, encoding="utf-8")
    assert main(["import", "bot-log", str(log), "-o", str(session)]) == 0
    assert "no order attempts" not in capsys.readouterr().err
    events = [json.loads(line) for line in session.read_text().splitlines()]
    assert main(["replay", str(session), "--compare", "--json"]) == 0
    return events, json.loads(capsys.readouterr().out)


def test_times_with_comma_milliseconds_keep_their_zone_and_their_order_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "".join(line.format(ms=f",{n}07") + "\n" for n, line in enumerate(_DAY))
    events, figures = _import_and_replay(text, tmp_path, capsys)
    attempts = [e for e in events if e["type"] == "attempt"]
    assert [(e["side"], e["symbol"]) for e in attempts] == [("buy", "TQQQ")] * 2 + [("sell", "TQQQ")] * 2
    assert attempts[0]["t"] in ("2026-05-21T09:42:05.007000-04:00", "2026-05-21T13:42:05.007000Z")
    assert figures["none"]["duplicate_orders_sent"] == 2
    assert figures["entry-only"]["duplicate_attempts_blocked"] == 1
    assert figures["full"]["duplicate_attempts_blocked"] == 2
    assert figures["full"]["duplicate_orders_sent"] == 0


def test_lines_before_the_first_timed_line_are_notes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    banner = "momentum bot v2.3 starting\nnohup: ignoring input\n\n"
    text = banner + "".join(line.format(ms="") + "\n" for line in _DAY)
    events, figures = _import_and_replay(text, tmp_path, capsys)
    notes = [e for e in events if e["type"] == "note"]
    assert [e["text"] for e in notes[:2]] == ["momentum bot v2.3 starting", "nohup: ignoring input"]
    first_attempt = next(e for e in events if e["type"] == "attempt")
    assert notes[0]["t"] == first_attempt["t"]  # the first timed line's time: nothing before it
    assert figures["full"]["duplicate_attempts_blocked"] == 2


def test_a_file_without_any_timed_line_is_still_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log, session = tmp_path / "notes.txt", tmp_path / "out.jsonl"
    log.write_text("just some text\nno times here\n")
    assert main(["import", "bot-log", str(log), "-o", str(session)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"tradeguard: error: {log}:1: ")
    assert not session.exists()


@pytest.mark.parametrize("side", ["BUY", "Buy", "OrderSide.BUY"])
def test_a_skip_naming_its_side_in_capitals_or_as_alpaca_pys_enum_is_a_blocked_retry(
    side: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `f"... blocked {side} {symbol} ..."` with alpaca-py's OrderSide prints OrderSide.BUY: the
    # line was kept as a note, and the retry SafeAgent blocked was gone from the replay.
    text = "".join(line.format(ms="") + "\n" for line in _DAY[:2]).replace("blocked buy", f"blocked {side}")
    events, figures = _import_and_replay(text, tmp_path, capsys)
    attempts = [e for e in events if e["type"] == "attempt"]
    assert [(e["side"], e["symbol"], e["attempt"]) for e in attempts] == [
        ("buy", "TQQQ", 1),
        ("buy", "TQQQ", 2),
    ]
    assert figures["none"]["duplicate_orders_sent"] == 1
    assert figures["entry-only"]["duplicate_attempts_blocked"] == 1


def test_a_skip_without_a_side_is_refused_naming_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log, session = tmp_path / "bot.log", tmp_path / "bot.jsonl"
    text = "".join(line.format(ms="") + "\n" for line in _DAY[:2]).replace("blocked buy ", "blocked ")
    log.write_text(text)
    assert main(["import", "bot-log", str(log), "-o", str(session)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"tradeguard: error: {log}:2: a SAFEAGENT SKIP line without")
    assert not session.exists()


def test_a_retry_spelling_the_same_qty_and_bar_otherwise_is_the_same_decision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # LOGS.md: lines with the same side, symbol, qty and bar are attempts of one decision. The
    # SKIP spells them as the guard stored them (6.0, the bar in UTC): they were another decision,
    # with a first attempt inferred, so every mode placed the order twice and none blocked it.
    text = "".join(line.format(ms="") + "\n" for line in _DAY[:2]).replace(
        "qty=6 bar=2026-05-21T09:42:00-04:00 —", "qty=6.0 bar=2026-05-21T13:42:00Z —"
    )
    events, figures = _import_and_replay(text, tmp_path, capsys)
    attempts = [e for e in events if e["type"] == "attempt"]
    assert [(e["decision"], e["attempt"]) for e in attempts] == [
        ("buy TQQQ qty=6 bar=2026-05-21T09:42:00-04:00", 1),
        ("buy TQQQ qty=6 bar=2026-05-21T09:42:00-04:00", 2),
    ]
    assert figures["none"]["duplicate_orders_sent"] == 1
    assert figures["entry-only"]["duplicate_attempts_blocked"] == 1
    assert figures["full"]["orders_placed"] == 1
