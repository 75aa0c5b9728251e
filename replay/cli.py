"""The `tradeguard replay` and `tradeguard import` commands, as plain functions.

`tradeguard/cli/replay.py` parses the arguments and calls these; keeping the logic here keeps the
command line a thin layer (and its later move to another CLI library a small change).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import stat
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import replay
from replay.engine import EventRow, ReplayResult, replay_session
from replay.importers import IMPORTERS
from replay.importers.common import utf8_problem
from replay.metrics import Mode
from replay.plot import write_plot
from replay.report import write_report
from replay.table import event_header, event_line, totals_table, trader_summary
from tradeguard import ConfigError, SessionFormatError, SessionHeader, open_session

__all__ = [
    "MAY21",
    "check_output",
    "resolve_session",
    "result_json",
    "run_import",
    "run_replay",
    "shipped_sessions_dir",
]

MAY21 = "2026-05-21-tqqq-sqqq.jsonl"


def shipped_sessions_dir() -> Path:
    """Return the folder of the sessions that ship with tradeguard (installed, or the checkout's)."""
    installed = Path(replay.__file__).parent / "sessions"
    if installed.is_dir():
        return installed
    return Path(replay.__file__).resolve().parent.parent / "sessions"


def resolve_session(name: str) -> str:
    """Return `name` if it is a regular file, else the shipped session of that file name.

    Raises:
        ConfigError: Neither exists, or `name` is a directory, a device or a pipe.
    """
    path = Path(name)
    if path.is_dir():
        raise ConfigError(f"session file {name} is a directory: give a session file (.jsonl) in it")
    if path.is_file():
        return name
    if path.exists():
        # /dev/null, /dev/zero (a line without end), a pipe from `<(zcat day.jsonl.gz)`: a replay
        # reads its session more than once, and only a regular file reads the same each time.
        raise ConfigError(
            f"session file {name} is not a regular file (a device or a pipe): a replay reads the "
            "session more than once; save it to a file first"
        )
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
        return {**_summary(result, mode), "events": [_row_for(row, mode) for row in result.rows]}

    if compare:
        return {mode.value: one(mode) for mode in modes}
    return one(modes[0])


def _summary(result: ReplayResult, mode: Mode) -> dict[str, Any]:
    """One mode's `--json` object without its events."""
    return {"session": result.header.name, **result.totals[mode].as_dict()}


def _write_json(out: IO[str], result: ReplayResult, spools: Mapping[Mode, IO[str]], *, compare: bool) -> None:
    """Write `result_json`'s document, each mode's events copied from its spool (one per line)."""

    def one(mode: Mode, indent: str) -> None:
        # The summary without its closing "}", the events to follow in it.
        head = json.dumps(_summary(result, mode), indent=2)[:-2].replace("\n", "\n" + indent)
        out.write(f'{head},\n{indent}  "events": [')
        spool = spools[mode]
        spool.seek(0)
        for n, line in enumerate(spool):
            out.write(f"{',' if n else ''}\n{indent}    {line.rstrip()}")
        out.write(f"\n{indent}  ]\n{indent}}}")

    if compare:
        out.write("{")
        for n, mode in enumerate(spools):
            out.write(f"{',' if n else ''}\n  {json.dumps(mode.value)}: ")
            one(mode, "  ")
        out.write("\n}\n")
    else:
        one(next(iter(spools)), "")
        out.write("\n")


def _row_for(row: EventRow, mode: Mode) -> dict[str, Any]:
    doc = row.as_dict()
    outcome = doc.pop("outcomes").get(mode.value)
    if outcome is not None:
        doc.update(outcome)
    return doc


def check_output(path: str, option: str) -> None:
    """Refuse an output file that cannot be written, before any work is done for it.

    Raises:
        ConfigError: `path` is a directory, its folder does not exist, or it cannot be written.
    """
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        raise ConfigError(f"{option} {path} is a directory: give a file name")
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ConfigError(f"{option} {path}: cannot write there (permission denied)")


def _not_utf8(path: str) -> SessionFormatError | None:
    """Locate the first byte of `path` that is not UTF-8 text (read again in binary, line by line)."""
    try:
        with open(path, "rb") as raw:
            problem = utf8_problem(raw)
    except OSError:
        return None
    return None if problem is None else SessionFormatError(path, *problem)


def run_replay(
    session: str,
    *,
    guard: str | None = None,
    compare: bool = False,
    as_json: bool = False,
    plot: str | None = None,
    report: str | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """Replay `session`; print the per-event table and totals (or JSON); write plot and report.

    `guard` None is `full`; with `compare` (all three modes) it must be None. Every check that
    needs no replay (the modes, the output files, matplotlib) is made before the replay starts.

    Raises:
        SessionFormatError: A bad session file (the command exits 2).
        ConfigError: A missing file, an unknown mode, `--guard` with `--compare`, an output file
            that cannot be written, or `--plot` without matplotlib.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    path = resolve_session(session)
    if compare and guard is not None:
        raise ConfigError("--compare runs all three modes and --guard names one: give one or the other")
    try:
        modes = list(Mode) if compare else [Mode(guard or Mode.FULL.value)]
    except ValueError:
        raise ConfigError(
            f"--guard must be one of {', '.join(m.value for m in Mode)}, got {guard!r}"
        ) from None
    if plot and importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("--plot needs matplotlib, which is not installed: pip install 'tradeguard[plot]'")
    for option, target in (("--plot", plot), ("--report", report)):
        if target is not None:
            check_output(target, option)
            # The session is what was recorded: a chart or page written over it would lose it.
            if _same_file(target, path):
                raise ConfigError(f"{option} {target} is the session being replayed: give another name")
            _refuse_other_file(target, option)
    if plot is not None and report is not None and (plot == report or _same_file(plot, report)):
        raise ConfigError(f"--plot and --report both name {plot}: give each its own file")
    try:
        return _replay(
            path, modes, compare=compare, as_json=as_json, plot=plot, report=report, out=out, err=err
        )
    except UnicodeDecodeError:
        # The reader decodes the file in blocks: the error does not say on which line the bad
        # byte is. Read it again, in binary, to say so.
        located = _not_utf8(path)
        if located is None:
            raise
        raise located from None


def _replay(
    path: str,
    modes: list[Mode],
    *,
    compare: bool,
    as_json: bool,
    plot: str | None,
    report: str | None,
    out: IO[str],
    err: IO[str],
) -> int:
    with open_session(path) as peek:
        header: SessionHeader = peek.header
    try:
        ZoneInfo(header.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problem = f"timezone {header.timezone!r} is not a known time zone (e.g. America/New_York, UTC)"
        raise SessionFormatError(path, 1, problem) from None

    def print_row(row: EventRow) -> None:
        print(event_line(row, modes), file=out)

    if not as_json:
        print(f"{header.name} ({path})", file=out)
        print(f"guard: {', '.join(m.value for m in modes)}; times {header.timezone}\n", file=out)
        print(event_header(modes), file=out)
    with contextlib.ExitStack() as stack:
        # --json: each mode's rows go to a file of their own as they happen, and are copied into
        # the document at the end, so memory stays flat however long the session (audit 18 #10).
        spools = {
            mode: stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8"))
            for mode in (modes if as_json else ())
        }

        def spool_row(row: EventRow) -> None:
            for mode, spool in spools.items():
                spool.write(json.dumps(_row_for(row, mode)) + "\n")

        result = replay_session(
            path,
            modes,
            on_row=spool_row if as_json else print_row,
            collect_rows=report is not None,
            track=plot is not None or report is not None,
            progress=_progress(err),
        )
        if as_json:
            _write_json(out, result, spools, compare=compare)
    if not as_json:
        print(f"\n{result.events:,} events replayed\n", file=out)
        for line in totals_table(result.totals):
            print(line, file=out)
        print("\nIn a trader's terms:", file=out)
        for line in trader_summary(result.totals):
            print(line, file=out)
    if plot is not None:
        try:
            write_plot(result, plot)
        except OSError as exc:  # a full disk, a device that refuses: one line, not a traceback
            raise ConfigError(f"--plot {plot}: cannot write: {exc.strerror or exc}") from None
        print(f"wrote {plot}", file=err)
    if report is not None:
        try:
            missing = write_report(result, report)
        except OSError as exc:
            raise ConfigError(f"--report {report}: cannot write: {exc.strerror or exc}") from None
        print(f"wrote {report}" + (f" without the chart: {missing}" if missing else ""), file=err)
    return 0


# What a chart or a page written before starts with: only such a file (or an empty one) is replaced.
_OUTPUT_STARTS = {
    "--plot": (b"\x89PNG\r\n\x1a\n", "a PNG chart"),
    "--report": (b"<!doctype html", "an HTML report"),
}


def _refuse_other_file(target: str, option: str) -> None:
    """Refuse an existing file that is not an earlier chart or page: another session, a store, a bar file.

    Run again, a replay replaces its own chart and page; a typo naming a recording or a claim
    store must not write over it.

    Raises:
        ConfigError: `target` holds something else, said in one line.
    """
    start, what = _OUTPUT_STARTS[option]
    if not os.path.isfile(target):  # nothing there, or a device (/dev/null) that keeps nothing
        return
    try:
        with open(target, "rb") as fh:
            head = fh.read(len(start))
    except OSError as exc:
        raise ConfigError(f"{option} {target}: cannot read it: {exc.strerror or exc}") from None
    if head and head.lower() != start.lower():
        raise ConfigError(f"{option} {target} exists and is not {what}: it is kept; give another name")


def _same_file(one: str, other: str) -> bool:
    """Whether two paths name one existing file (through links too)."""
    try:
        return os.path.samefile(one, other)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


def _check_import_output(source: str, session: str, *, force: bool) -> None:
    """Refuse an output that is the input, exists (without `force`), is no regular file or is unwritable.

    Checked before the source is read, so a refusal costs nothing and changes nothing.

    Raises:
        ConfigError: Said in one line.
    """
    target = Path(session)
    if target.exists() and Path(source).exists() and os.path.samefile(target, source):  # links too
        raise ConfigError(f"-o {session} is the file being imported: give another name for the session")
    if target.is_dir():
        raise ConfigError(f"-o {session} is a directory: give a file name (SESSION.jsonl)")
    if os.path.lexists(target):  # a link that leads nowhere is there too
        other = _not_regular(target)
        if other is not None:  # --force replaces a session file, never a pipe, link or device
            raise ConfigError(
                f"-o {session} is {other}, not a regular file: give a file name for the session"
            )
        if not force:
            raise ConfigError(f"-o {session} exists: pass --force to replace it, or give another name")
    check_output(session, "-o")


def _not_regular(path: Path) -> str | None:
    """Say what `path` (which exists) is when it is not a regular file, or None when it is one."""
    mode = path.lstat().st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def run_import(
    kind: str,
    source: str,
    session: str,
    *,
    as_json: bool = False,
    force: bool = False,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """Import `source` of `kind` as the session file `session`; print what was found.

    `session` `-` writes the session to `out` (then what was found goes to `err`). A file is
    written whole or not at all, and an existing one is replaced only with `force`.

    Raises:
        SessionFormatError: A malformed source, naming the line (the command exits 2).
        ConfigError: An unknown kind, or an output that cannot or may not be written.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    importer = IMPORTERS.get(kind)
    if importer is None:
        raise ConfigError(f"unknown import kind {kind!r}: expected one of {', '.join(IMPORTERS)}")
    to_stdout = session == "-"
    if to_stdout:
        # Held until the import is whole: a malformed source must not leave half a session.
        buffer = io.StringIO()
        report = importer(source, buffer)
        report.session = "-"
        out.write(buffer.getvalue())
        out.flush()
        said = err
    else:
        _check_import_output(source, session, force=force)
        report = importer(source, session)
        said = out
    if report.attempts == 0:
        # Written all the same (a quiet day is a real session), but a replay has nothing to show.
        print(
            f"tradeguard: warning: {source} has no order attempts: the session replays to nothing "
            "(is it the right file?)",
            file=err,
        )
    if as_json:
        json.dump(report.as_dict(), said, indent=2)
        print(file=said)
        return 0
    where = "the session to stdout" if to_stdout else session
    print(
        f"wrote {where}: {report.events:,} events, {report.attempts:,} attempts of "
        f"{report.decisions:,} decisions, {report.notes:,} notes kept",
        file=said,
    )
    duplicates = report.extra.get("duplicates")
    if duplicates is not None:
        repeated = report.extra.get("repeated_rows_dropped", 0)
        rows = "row" if repeated == 1 else "rows"
        dropped = f" ({repeated:,} repeated {rows} of the same order id dropped)" if repeated else ""
        unfilled = report.extra.get("unfilled_orders", 0)
        ended = (
            f"; {unfilled:,} canceled, expired or replaced with nothing filled (kept as notes)"
            if unfilled
            else ""
        )
        rejected = report.extra.get("rejected_orders", 0)
        ended += f"; {rejected:,} rejected (kept as notes)" if rejected else ""
        still_open = report.extra.get("open_orders", 0)
        ended += f"; {still_open:,} still open with nothing filled (kept as notes)" if still_open else ""
        multi = report.extra.get("multi_leg_orders", 0)
        orders = "order" if multi == 1 else "orders"
        ended += f"; {multi:,} multi-leg options {orders} (kept as notes: not guarded)" if multi else ""
        print(
            f"{report.extra['orders']:,} orders{dropped}, {len(duplicates):,} suspected duplicates{ended}",
            file=said,
        )
        for d in duplicates:
            print(
                f"  {d['submitted_at']}  {d['side']} {d['qty']} {d['symbol']}  order {d['id']} repeats "
                f"{d['duplicate_of']} after {d['seconds_after']:g} s",
                file=said,
            )
    unpriced = report.extra.get("unpriced_symbols")
    if unpriced:
        print(
            f"no price known for {', '.join(unpriced)} before its first order: a replay fills and "
            "values those orders at the paper broker's default price, $100.00 (their dollar "
            "figures are not real until the session has price events)",
            file=said,
        )
    if not to_stdout and report.attempts:
        print(f"what a guard would have blocked: tradeguard replay {session} --compare", file=said)
    return 0
