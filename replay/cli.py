"""The `tradeguard replay` and `tradeguard import` commands, as plain functions.

`tradeguard/cli/replay.py` parses the arguments and calls these; keeping the logic here keeps the
command line a thin layer (and its later move to another CLI library a small change).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import replay
from replay.engine import EventRow, ReplayResult, replay_session
from replay.importers import IMPORTERS
from replay.metrics import Mode
from replay.plot import write_plot
from replay.report import write_report
from replay.table import event_header, event_line, totals_table, trader_summary
from tradeguard import ConfigError, SessionHeader, open_session

__all__ = ["MAY21", "resolve_session", "result_json", "run_import", "run_replay", "shipped_sessions_dir"]

MAY21 = "2026-05-21-tqqq-sqqq.jsonl"


def shipped_sessions_dir() -> Path:
    """Return the folder of the sessions that ship with tradeguard (installed, or the checkout's)."""
    installed = Path(replay.__file__).parent / "sessions"
    if installed.is_dir():
        return installed
    return Path(replay.__file__).resolve().parent.parent / "sessions"


def resolve_session(name: str) -> str:
    """Return `name` if it is a file, else the shipped session of that file name.

    Raises:
        ConfigError: Neither exists.
    """
    if Path(name).is_file():
        return name
    shipped = shipped_sessions_dir() / Path(name).name
    if shipped.is_file():
        return str(shipped)
    raise ConfigError(f"session file {name} does not exist (shipped sessions: {MAY21})")


def _progress(err: IO[str]) -> Any:
    def show(done: int, total: int) -> None:
        share = f" of ~{total:,} lines ({done / total:.0%})" if total else ""
        print(f"replayed {done:,} events{share}", file=err, flush=True)

    return show


def result_json(result: ReplayResult, modes: Sequence[Mode], *, compare: bool) -> dict[str, Any]:
    """Return the `--json` document: one mode's object, or one per mode under its name."""

    def one(mode: Mode) -> dict[str, Any]:
        doc = {"session": result.header.name, **result.totals[mode].as_dict()}
        doc["events"] = [_row_for(row, mode) for row in result.rows]
        return doc

    if compare:
        return {mode.value: one(mode) for mode in modes}
    return one(modes[0])


def _row_for(row: EventRow, mode: Mode) -> dict[str, Any]:
    doc = row.as_dict()
    outcome = doc.pop("outcomes").get(mode.value)
    if outcome is not None:
        doc.update(outcome)
    return doc


def run_replay(
    session: str,
    *,
    guard: str = "full",
    compare: bool = False,
    as_json: bool = False,
    plot: str | None = None,
    report: str | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """Replay `session`; print the per-event table and totals (or JSON); write plot and report.

    Raises:
        SessionFormatError: A bad session file (the command exits 2).
        ConfigError: A missing file, an unknown mode, or `--plot` without matplotlib.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    path = resolve_session(session)
    try:
        modes = list(Mode) if compare else [Mode(guard)]
    except ValueError:
        raise ConfigError(
            f"--guard must be one of {', '.join(m.value for m in Mode)}, got {guard!r}"
        ) from None
    if plot and importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("--plot needs matplotlib, which is not installed: pip install 'tradeguard[plot]'")
    with open_session(path) as peek:
        header: SessionHeader = peek.header

    def print_row(row: EventRow) -> None:
        print(event_line(row, modes), file=out)

    if not as_json:
        print(f"{header.name} ({path})", file=out)
        print(f"guard: {', '.join(m.value for m in modes)}; times {header.timezone}\n", file=out)
        print(event_header(modes), file=out)
    result = replay_session(
        path,
        modes,
        on_row=None if as_json else print_row,
        collect_rows=as_json or report is not None,
        track=plot is not None or report is not None,
        progress=_progress(err),
    )
    if as_json:
        json.dump(result_json(result, modes, compare=compare), out, indent=2)
        print(file=out)
    else:
        print(f"\n{result.events:,} events replayed\n", file=out)
        for line in totals_table(result.totals):
            print(line, file=out)
        print("\nIn a trader's terms:", file=out)
        for line in trader_summary(result.totals):
            print(line, file=out)
    if plot is not None:
        write_plot(result, plot)
        print(f"wrote {plot}", file=err)
    if report is not None:
        write_report(result, report)
        print(f"wrote {report}", file=err)
    return 0


def run_import(
    kind: str, source: str, session: str, *, as_json: bool = False, out: IO[str] | None = None
) -> int:
    """Import `source` of `kind` as the session file `session`; print what was found.

    Raises:
        SessionFormatError: A malformed source, naming the line (the command exits 2).
        ConfigError: An unknown kind.
    """
    out = out or sys.stdout
    importer = IMPORTERS.get(kind)
    if importer is None:
        raise ConfigError(f"unknown import kind {kind!r}: expected one of {', '.join(IMPORTERS)}")
    report = importer(source, session)
    if as_json:
        json.dump(report.as_dict(), out, indent=2)
        print(file=out)
        return 0
    print(
        f"wrote {session}: {report.events:,} events, {report.attempts:,} attempts of "
        f"{report.decisions:,} decisions, {report.notes:,} notes kept",
        file=out,
    )
    duplicates = report.extra.get("duplicates")
    if duplicates is not None:
        print(f"{report.extra['orders']:,} orders, {len(duplicates):,} suspected duplicates", file=out)
        for d in duplicates:
            print(
                f"  {d['submitted_at']}  {d['side']} {d['qty']} {d['symbol']}  order {d['id']} repeats "
                f"{d['duplicate_of']} after {d['seconds_after']:g} s",
                file=out,
            )
    print(f"what a guard would have blocked: tradeguard replay {session} --compare", file=out)
    return 0
