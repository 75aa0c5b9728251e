"""What the trader sees while a run goes: a live view on a terminal, plain lines elsewhere.

- `LiveView` (Rich): positions guard vs broker, open claims, the last decisions and blocked
  retries, reconcile status, and a progress bar when the number of bars is known. It redraws at
  most every `refresh_secs` of wall time, so a simulated day is not slowed by drawing.
- `PlainView`: one line per audit event (claims, blocked retries, state changes, reconcile
  actions), a status line every `status_every` bars, for logs and pipes.

Both end with the same summary (`summary.format_summary`).
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from tradeguard.clock import Clock
from tradeguard.domain import AuditAction, AuditRecord
from tradeguard.run.bars import EASTERN, Bars
from tradeguard.run.feeds import Feed
from tradeguard.run.settings import ViewKind
from tradeguard.run.summary import Monitor, ReconcileStats, RunReport, Status, format_summary

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = ["LiveView", "PlainView", "View", "choose_view", "describe_record"]

# Audit records worth a line: decisions, blocked retries, state changes, reconcile acts, errors.
_SHOWN = frozenset(
    {AuditAction.CLAIM, AuditAction.SKIP, AuditAction.TRANSITION, AuditAction.RECONCILE, AuditAction.ERROR}
)


class View(Protocol):
    """A run's display; used as a context manager around the run."""

    def __enter__(self) -> View: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def note(self, text: str) -> None:
        """Show a line from the run, the strategy or a drill."""

    def error(self, text: str) -> None:
        """Show an error (a traceback from the strategy) on stderr."""

    def begin(self, feed: Feed) -> None:
        """The bars start to come from `feed`."""

    def after_bar(self, index: int, bars: Bars, monitor: Monitor, reconcile: ReconcileStats) -> None:
        """Show the run after its `index`-th bar."""

    def finish(self, report: RunReport) -> None:
        """Show the summary."""


def describe_record(record: AuditRecord) -> str | None:
    """Return a record as one line, or None for records not worth a line (ledger bookkeeping)."""
    if record.action not in _SHOWN:
        return None
    what = " ".join(x for x in (record.kind, record.symbol, record.side, record.qty) if x)
    state = f"[{record.state}]" if record.state else ""
    return f"{record.action:<10} {what:<22} {state:<18} {record.reason}"


class PlainView:
    """Plain lines on `out`, for pipes and logs.

    Args:
        out: Where lines go (stdout).
        clock: Stamps lines with the run's time (US/Eastern).
        header: Lines printed first.
        status_every: Print a status line every this many bars.
    """

    def __init__(self, out: TextIO, clock: Clock, header: list[str], status_every: int = 30) -> None:
        self._out = out
        self._clock = clock
        self._header = header
        self._every = status_every
        self._total: int | None = None

    def __enter__(self) -> PlainView:
        for line in self._header:
            self._print(line, stamp=False)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._out.flush()

    def _print(self, text: str, *, stamp: bool = True) -> None:
        prefix = f"{self._clock.now().astimezone(EASTERN):%H:%M:%S} " if stamp else ""
        print(prefix + text, file=self._out, flush=True)

    def note(self, text: str) -> None:
        """Print a note."""
        self._print(text)

    def error(self, text: str) -> None:
        """Print an error on stderr."""
        print(text.rstrip(), file=sys.stderr, flush=True)

    def begin(self, feed: Feed) -> None:
        """Say where bars come from."""
        self._total = feed.total
        self._print(f"bars: {feed.label}" + (f", {feed.total} minute(s)" if feed.total else ""))

    def after_bar(self, index: int, bars: Bars, monitor: Monitor, reconcile: ReconcileStats) -> None:
        """Print the bar's events, and a status line every few bars."""
        for record in monitor.new_records():
            line = describe_record(record)
            if line is not None:
                self._print(line)
        if index % self._every == 0:
            self._print(status_line(index, self._total, bars, monitor.status()))

    def finish(self, report: RunReport) -> None:
        """Print the summary."""
        for line in format_summary(report):
            self._print(line, stamp=False)


def status_line(index: int, total: int | None, bars: Bars, status: Status) -> str:
    """Return one line of status after a bar."""
    of = f"/{total}" if total else ""
    held = ", ".join(
        f"{r.symbol} {r.guard}/{'?' if r.broker is None else r.broker}" for r in status.positions
    )
    return (
        f"bar {index}{of} {bars.local:%H:%M} ET: {status.orders_sent} order(s) sent, {status.blocked} "
        f"blocked, {len(status.open_claims)} open claim(s); guard/broker {held}"
    )


class LiveView:
    """The Rich live view. See the module docstring.

    Args:
        console: A Rich console (stdout's, or a recording one in tests).
        clock: The run's clock, shown in the header.
        header: Lines shown at the top.
        refresh_secs: Least wall time between redraws.
        monotonic: The wall clock for `refresh_secs` (injected for tests).
    """

    def __init__(
        self,
        console: Console,
        clock: Clock,
        header: list[str],
        refresh_secs: float = 0.25,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        from rich.live import Live

        self.console = console
        self._clock = clock
        self._header = header
        self._refresh = refresh_secs
        self._monotonic = monotonic
        self._events: deque[str] = deque(maxlen=10)
        self._total: int | None = None
        self._index = 0
        self._started = monotonic()
        self._drawn = float("-inf")
        self._status: Status | None = None
        self._reconcile = ReconcileStats()
        self._live = Live(console=console, auto_refresh=False, transient=False)

    def __enter__(self) -> LiveView:
        self._live.start()
        self._draw(force=True)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._live.stop()

    def note(self, text: str) -> None:
        """Add a note to the event list."""
        self._events.append(f"{self._clock.now().astimezone(EASTERN):%H:%M:%S} {text}")
        self._draw()

    def error(self, text: str) -> None:
        """Print an error above the live display."""
        self.console.print(text.rstrip(), style="red", markup=False, highlight=False)

    def begin(self, feed: Feed) -> None:
        """Start the progress bar when the number of bars is known."""
        self._total = feed.total
        self._started = self._monotonic()

    def after_bar(self, index: int, bars: Bars, monitor: Monitor, reconcile: ReconcileStats) -> None:
        """Take the bar's events; redraw (with a fresh status) when the refresh time has come."""
        self._index = index
        self._reconcile = reconcile
        for record in monitor.new_records():
            line = describe_record(record)
            if line is not None:
                self._events.append(f"{record.at.astimezone(EASTERN):%H:%M:%S} {line}")
        if index == self._total or self._monotonic() - self._drawn >= self._refresh:
            self._status = monitor.status()
            self._draw(force=True)

    def finish(self, report: RunReport) -> None:
        """Draw the final status, stop the live display, print the summary."""
        self._status = report.status
        self._draw(force=True)
        self._live.stop()
        for line in format_summary(report):
            self.console.print(line, markup=False, highlight=False)

    def _draw(self, *, force: bool = False) -> None:
        if not force and self._monotonic() - self._drawn < self._refresh:
            return
        self._drawn = self._monotonic()
        self._live.update(self.render(), refresh=True)

    def render(self) -> RenderableType:
        """Return the view as one Rich renderable."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        now = self._clock.now().astimezone(EASTERN)
        parts: list[Any] = [Text(" · ".join([*self._header, f"{now:%Y-%m-%d %H:%M:%S} ET"]), style="bold")]
        if self._total:
            rate = self._index / max(self._monotonic() - self._started, 1e-9)
            parts.append(ProgressBar(total=self._total, completed=self._index, width=60))
            parts.append(Text(f"{self._index}/{self._total} bars, {rate:,.0f} bars/s"))
        elif self._index:
            parts.append(Text(f"{self._index} bar(s)"))
        status = self._status
        if status is not None:
            positions = Table(title="positions: guard vs broker", title_justify="left")
            for column in ("symbol", "guard", "broker", ""):
                positions.add_column(column)
            for row in status.positions:
                broker = "?" if row.broker is None else str(row.broker)
                mark = Text("ok", style="green") if row.agrees else Text("differs", style="red")
                positions.add_row(row.symbol, str(row.guard), broker, mark)
            parts.append(positions)
            parts.append(
                Text(
                    f"orders sent {status.orders_sent} · retries/duplicates blocked {status.blocked} · "
                    f"nothing to sell {status.skipped} · open claims {len(status.open_claims)}"
                )
            )
            for claim in status.open_claims[:5]:
                parts.append(Text(f"  open: {claim.state} {claim.kind} {claim.symbol} {claim.intent!r}"))
        parts.append(Text(f"reconcile: {self._reconcile.passes} pass(es); last {self._reconcile.last_note}"))
        parts.append(Text("last decisions:", style="bold"))
        parts.extend(Text(line, overflow="ellipsis", no_wrap=True) for line in self._events)
        return Group(*parts)


def choose_view(kind: ViewKind, out: TextIO, clock: Clock, header: list[str]) -> View:
    """Return the live view on a terminal (or when asked for), plain lines otherwise."""
    if kind is ViewKind.LIVE or (kind is ViewKind.AUTO and out.isatty()):
        return LiveView(_console(out, force_terminal=kind is ViewKind.LIVE or None), clock, header)
    return PlainView(out, clock, header)


def _console(out: TextIO, *, force_terminal: bool | None) -> Console:
    """Return a Rich console on `out` whose closed pipe is an error, not Rich's `SystemExit(1)`.

    Rich exits the process from inside a write when its reader goes away; the run must instead
    finish its work (the last lookups, the closing reconcile pass) and then end with 141.
    """
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    return _Console(file=out, force_terminal=force_terminal)
