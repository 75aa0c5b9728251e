"""The run loop: reconcile, feed the strategy its bars, reconcile on the interval, stop cleanly.

Order of a run: stop signals are caught (SIGINT and SIGTERM only set a flag: an order being
sent is never cut off); a reconcile pass; `on_start`; then each minute: the sim's drills, the
strategy's `on_bar`, a reconcile pass when one is due, the view. At the end, however it ends
(bars exhausted, a signal, an exception): `on_stop`, every UNKNOWN claim looked up once more,
live orders refreshed, a last reconcile pass, and the summary.
"""

from __future__ import annotations

import logging
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from tradeguard.clock import Clock, ManualClock
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import BrokerError, ConfigError
from tradeguard.execution import adopt_order
from tradeguard.gateway import OrderGateway
from tradeguard.reconcile.runner import ReconcileReport
from tradeguard.run.bars import Bars
from tradeguard.run.feeds import Feed
from tradeguard.run.strategy import Strategy, StrategyContext
from tradeguard.run.summary import Monitor, ReconcileStats, RunReport
from tradeguard.run.venue import Venue
from tradeguard.run.view import View

if TYPE_CHECKING:
    from tradeguard.client import GuardedTradingClient

__all__ = ["Runner", "StopFlag", "settle_in_flight"]

_log = logging.getLogger("tradeguard.run")
FeedOpener = Callable[[threading.Event, Callable[[str], None]], Feed | None]


@dataclass
class StopFlag:
    """Why a run should stop, set by a signal or the loop; `event` wakes every wait at once."""

    event: threading.Event = field(default_factory=threading.Event)
    reason: str = ""

    def request(self, reason: str) -> None:
        """Ask the run to stop (the first reason given is kept)."""
        if not self.reason:
            self.reason = reason
        # From a signal handler, Event.set() could wait on the very lock the interrupted main
        # thread holds inside Event.wait(); a short thread takes it once it is released.
        threading.Thread(target=self.event.set, name="tradeguard-stop").start()


@contextmanager
def _signals_stop(flag: StopFlag) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into a stop request for the duration (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, _: FrameType | None) -> None:
        if flag.reason:
            # A second signal: the strategy (or a broker call without a timeout) has not come
            # back to the loop; stop now, as a crash would (a claim being sent stays PENDING for
            # the next reconcile pass to resolve).
            raise KeyboardInterrupt
        flag.request(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def settle_in_flight(gateway: OrderGateway) -> int:
    """Look every UNKNOWN (and this gateway's own PENDING) claim up once more; return how many resolved."""
    resolved = 0
    waiting = gateway.store.list_claims(
        states=[ClaimState.UNKNOWN, ClaimState.PENDING], agent_id=gateway.agent_id
    )
    for claim in waiting:
        if claim.state is ClaimState.PENDING and claim.owner != gateway.owner:
            continue  # another worker's send in progress: its owner resolves it
        try:
            order = gateway.broker.get_order_by_client_id(claim.client_order_id)
        except BrokerError:
            continue  # still unknown: reported, and the next reconcile pass resolves it
        if order is not None:
            adopt_order(
                gateway.store, claim, order, "looked up once more as the run stopped", broker=gateway.broker
            )
            resolved += 1
    return resolved


@dataclass(frozen=True, slots=True)
class _StoppableClock:
    """The run's wall clock as the strategy sees it: a stop (Ctrl-C) ends its sleep at once.

    The strategy's `ctx.clock.sleep` would otherwise hold a Ctrl-C until the sleep ran out (a
    bot waiting minutes for its next check), and a second Ctrl-C is a hard stop.
    """

    inner: Clock
    stop: threading.Event

    def now(self) -> datetime:
        """Return the run's time."""
        return self.inner.now()

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`, or until the run is asked to stop."""
        if seconds > 0:
            self.stop.wait(seconds)


class _ShieldedView:
    """A view whose failing output (a closed pipe, a full disk) never cuts the run's own work short.

    The first failure of `inner` is kept and the view goes quiet; the runner then stops at the
    end of the bar, finishes as after any stop (on_stop, the last lookups and reconcile pass), and
    raises the kept failure, so the command reports it (141 for a closed pipe, 2 for a full
    disk). Entering the view is not shielded: a header that cannot be written stops the run
    before anything is sent.
    """

    def __init__(self, inner: View) -> None:
        self.inner = inner
        self.failure: Exception | None = None

    def __enter__(self) -> _ShieldedView:
        self.inner.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._call(self.inner.__exit__, kind, exc, tb)

    def _call(self, method: Callable[..., object], *args: Any) -> None:
        if self.failure is not None:
            return
        try:
            method(*args)
        except Exception as exc:  # the output's failure, not the strategy's: kept, raised at the end
            self.failure = exc

    def note(self, text: str) -> None:
        """Show a note."""
        self._call(self.inner.note, text)

    def error(self, text: str) -> None:
        """Show an error."""
        self._call(self.inner.error, text)

    def begin(self, feed: Feed) -> None:
        """The bars start."""
        self._call(self.inner.begin, feed)

    def after_bar(self, index: int, bars: Bars, monitor: Monitor, reconcile: ReconcileStats) -> None:
        """Show the run after a bar."""
        self._call(self.inner.after_bar, index, bars, monitor, reconcile)

    def finish(self, report: RunReport) -> None:
        """Show the summary."""
        self._call(self.inner.finish, report)


class Runner:
    """One run of a strategy. Build the parts (see `tradeguard.run.command.prepare`), then `run()`.

    Args:
        strategy: The strategy instance.
        label: The strategy's name for people (``strategies.momentum:MomentumStrategy``).
        venue: The account.
        gateway: The run's gateway (from `assemble.build_gateway`).
        open_feed: Returns the bars' source once the market is open (None if stopped first).
        view: What the trader sees.
        monitor: Reads status and audit records for the view and the summary.
        store_url: The store's URL, for the summary.
        stop: The stop flag; a new one by default.
    """

    def __init__(
        self,
        *,
        strategy: Strategy,
        label: str,
        venue: Venue,
        gateway: OrderGateway,
        open_feed: FeedOpener,
        view: View,
        monitor: Monitor,
        store_url: str,
        stop: StopFlag | None = None,
    ) -> None:
        self.strategy = strategy
        self.label = label
        self.venue = venue
        self.gateway = gateway
        self.open_feed = open_feed
        self.view = _ShieldedView(view)
        self.monitor = monitor
        self.store_url = store_url
        self.stop = stop or StopFlag()
        self.reconcile = ReconcileStats()
        self._bars = 0
        self._first: datetime | None = None
        self._last: datetime | None = None
        self._failed = False

    def run(self) -> RunReport:
        """Run until the bars end or a stop; return the report (also shown by the view)."""
        clock = self.venue.clock
        ctx = StrategyContext(
            gateway=self.gateway,
            clock=clock if isinstance(clock, ManualClock) else _StoppableClock(clock, self.stop.event),
            mode=self.venue.mode.value,
            agent_id=self.gateway.agent_id,
            _client=self._client,
            _log=self.view.note,
        )
        with _signals_stop(self.stop), self.view:
            first = self.gateway.reconcile()
            if first.aborted:
                # Nothing was sent yet; a broker that cannot be read now (wrong URL, bad keys)
                # is a configuration problem, reported in one line.
                raise ConfigError(f"cannot read the account on {self.venue.label}: {first.aborted}")
            self._reconciled(first, "at start")
            started = False
            try:
                self.strategy.on_start(ctx)
                started = True
                self._loop(ctx)
            except Exception as exc:  # the strategy's bug or a guard error: stop cleanly, say why
                self._failed = True
                self.stop.request(f"error: {type(exc).__name__}: {' '.join(str(exc).split())}")
                _log.debug("run failed", exc_info=True)
                self.view.error("".join(traceback.format_exception(exc)))
            report = self._finish(ctx, started)
            self.view.finish(report)
        if self.view.failure is not None:
            raise self.view.failure  # the run finished its work; now say why nothing was shown
        return report

    def _client(self) -> GuardedTradingClient:
        from tradeguard.run.assemble import trading_client

        return trading_client(self.venue, self.gateway)

    def _loop(self, ctx: StrategyContext) -> None:
        feed = self.open_feed(self.stop.event, self.view.note)
        if feed is None:
            return
        self.view.begin(feed)
        for bars in feed.minutes(self.stop.event):
            if self.stop.event.is_set():
                break
            self._first = self._first or bars.at
            self._last = bars.at
            recorder = self.gateway.recorder
            for symbol, bar in bars.by_symbol.items():
                # The market the bot trades in, for a replay: the price its resting orders meet.
                recorder.price(symbol, bar.close)
            self.venue.before_bar(bars, self.view.note, recorder.external)
            self.strategy.on_bar(bars, ctx)
            self._bars += 1
            due = self.gateway.reconcile_if_due()
            if due is not None:
                self._reconciled(due, "on its interval")
            self.view.after_bar(self._bars, bars, self.monitor, self.reconcile)
            if self.view.failure is not None:
                self.stop.request(f"output failed: {type(self.view.failure).__name__}")
                break
        self.stop.request("end of bars")

    def _reconciled(self, report: ReconcileReport, when: str) -> None:
        stats = self.reconcile
        stats.passes += 1
        stats.last_at = report.started_at
        at = f"{report.started_at:%H:%M:%S}Z"
        if report.aborted:
            stats.last_note = f"{when} at {at}: aborted, nothing changed ({report.aborted})"
            stats.problems.append(stats.last_note)
        else:
            stats.changes += len(report.changes)
            stats.problems.extend(f"{a.kind} {a.symbol}: {a.reason}" for a in report.problems)
            stats.last_note = f"{when} at {at}: {len(report.changes)} change(s)"
        if report.changes or report.aborted or report.problems:
            self.view.note(f"reconcile {stats.last_note}")

    def _finish(self, ctx: StrategyContext, started: bool) -> RunReport:
        reason = self.stop.reason or "end of bars"
        self.view.note(f"stopping ({reason}): finishing up, no order in flight is abandoned")
        if started:
            try:
                self.strategy.on_stop(ctx)
            except Exception as exc:
                self._failed = True
                self.view.error(f"on_stop failed: {type(exc).__name__}: {exc}")
        resolved = settle_in_flight(self.gateway)
        if resolved:
            self.view.note(f"{resolved} unknown order(s) resolved by a last lookup")
        self.gateway.refresh()
        self._reconciled(self.gateway.reconcile(), "at stop")
        unresolved = tuple(
            self.gateway.store.list_claims(
                states=[ClaimState.UNKNOWN, ClaimState.PENDING], agent_id=self.gateway.agent_id
            )
        )
        return RunReport(
            strategy=self.label,
            mode=self.venue.mode.value,
            agent_id=self.gateway.agent_id,
            venue=self.venue.label,
            store_url=self.store_url,
            bars=self._bars,
            first_bar=self._first,
            last_bar=self._last,
            stopped_by=reason,
            status=self.monitor.status(),
            reconcile=self.reconcile,
            faults_fired=self.venue.faults_fired(),
            unresolved=unresolved,
            failed=self._failed,
        )
