"""Where a run's bars come from, and at what pace.

- `SimFeed`: a bar series as fast as the strategy goes; the manual clock is set to the end of
  each minute before the strategy sees it (decisions and fills happen when the close is known).
- `ReplayFeed`: a bar series on the wall clock, one minute every ``60 / speed`` seconds (paper
  mode with a bar file: a day against a paper account in minutes).
- `ServerClockFeed`: a bar series on a paper server's replayed day (`paper-server --bars`): each
  minute once the server's clock has passed its end, so the bot and the account the server prices
  stay on the same minute however far apart the two were started.
- `AlpacaFeed`: Alpaca's 1-minute bars from alpaca-py's `StockHistoricalDataClient`, fetched a
  few seconds after each minute ends, until the session's close.

Every wait is `stop.wait(...)`: a stop signal ends it at once. `wait_for_open` reads the
market's clock (`GET /v2/clock`) and waits for the open the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from tradeguard.clock import Clock, ManualClock
from tradeguard.run.bars import EASTERN, MINUTE, Bar, Bars, BarSeries

if TYPE_CHECKING:
    from tradeguard.broker.alpaca import AlpacaBroker

__all__ = [
    "AlpacaFeed",
    "Feed",
    "ReplayFeed",
    "ServerClockFeed",
    "SimFeed",
    "follows_server_clock",
    "replays_another_day",
    "alpaca_fetcher",
    "bar_file_feed",
    "bars_from_alpaca",
    "wait_for_open",
]

Note = Callable[[str], None]


class Feed(Protocol):
    """A source of minutes of bars."""

    @property
    def total(self) -> int | None:
        """How many minutes it will give, when known."""
        ...

    @property
    def label(self) -> str:
        """What it is, for people."""
        ...

    def minutes(self, stop: threading.Event) -> Iterator[Bars]:
        """Yield each minute once it is complete, until the source ends or `stop` is set."""
        ...


@dataclass
class SimFeed:
    """A bar series on a manual clock, without waiting."""

    series: BarSeries
    clock: ManualClock

    @property
    def total(self) -> int | None:
        """The number of minutes."""
        return len(self.series)

    @property
    def label(self) -> str:
        """The series' source."""
        return f"{self.series.source}, simulated clock"

    def minutes(self, stop: threading.Event) -> Iterator[Bars]:
        """Yield each minute with the clock at its end (retries and faults may have moved it on)."""
        for minute in self.series:
            if stop.is_set():
                return
            self.clock.set(max(self.clock.now(), minute.ends_at))
            yield minute


@dataclass
class ReplayFeed:
    """A bar series on the wall clock, one minute every `interval_secs`."""

    series: BarSeries
    interval_secs: float

    @property
    def total(self) -> int | None:
        """The number of minutes."""
        return len(self.series)

    @property
    def label(self) -> str:
        """The series' source and pace."""
        return f"{self.series.source}, one bar every {self.interval_secs:g}s"

    def minutes(self, stop: threading.Event) -> Iterator[Bars]:
        """Yield the first minute at once, then one per interval."""
        for index, minute in enumerate(self.series):
            if stop.is_set() or (index and stop.wait(self.interval_secs)):
                return
            yield minute


class ServerClockFeed:
    """A bar series paced by a paper server's clock (`paper-server --bars` replays the bars' day).

    Each minute is given once the server's clock has passed its end, never before (no look-ahead:
    the account prices that minute's close by then). Minutes that ended before the feed started
    are skipped but the last one, as when a bot joins a live session. Between minutes the feed
    waits the wall time the server needs to reach the next end at the run's pace, a second at
    most, and reads the clock again, so a server at another `--speed` is followed too.

    Args:
        series: The bars (the file the server replays).
        server_now: Reads the server's clock (`GET /v2/clock`'s timestamp).
        interval_secs: Wall seconds per replayed minute at the run's `--speed`.
        note: Where to say what was skipped and that a clock read failed.
        wait: Waits up to the given seconds unless the stop event is set first; returns whether
            it was (default: `stop.wait`; tests drive a manual clock instead).
    """

    POLL_SECS = 1.0

    def __init__(
        self,
        series: BarSeries,
        server_now: Callable[[], datetime],
        interval_secs: float,
        *,
        note: Note,
        wait: Callable[[threading.Event, float], bool] = threading.Event.wait,
    ) -> None:
        self.series = series
        self._server_now = server_now
        self._interval = interval_secs
        self._note = note
        self._wait = wait

    @property
    def total(self) -> int | None:
        """The number of minutes in the series (some may be skipped at the start)."""
        return len(self.series)

    @property
    def label(self) -> str:
        """The series' source and what paces it."""
        return f"{self.series.source}, on the paper server's clock"

    def minutes(self, stop: threading.Event) -> Iterator[Bars]:
        """Yield each minute once the server's clock has passed its end."""
        minutes = self.series.minutes
        now = self._read(stop)
        if now is None:
            return
        ended = sum(1 for minute in minutes if minute.ends_at <= now)
        if ended > 1:
            first = minutes[ended - 1].local
            self._note(
                f"the paper server's day is at {now.astimezone(EASTERN):%H:%M} ET: "
                f"{ended - 1} earlier minute(s) skipped, starting at the {first:%H:%M} bar"
            )
        for minute in minutes[max(0, ended - 1) :]:
            while now < minute.ends_at:
                ahead_secs = (minute.ends_at - now).total_seconds() * self._interval / 60.0
                if self._wait(stop, min(self.POLL_SECS, max(ahead_secs, 0.01))):
                    return
                now = self._read(stop)
                if now is None:
                    return
            if stop.is_set():
                return
            yield minute

    def _read(self, stop: threading.Event) -> datetime | None:
        """Return the server's time, trying again each poll while it cannot be read (None: stopped)."""
        while not stop.is_set():
            try:
                return self._server_now()
            except Exception as exc:  # a server that went away costs waiting, never a wrong bar
                self._note(f"paper server clock unreadable, trying again: {exc}")
            if self._wait(stop, self.POLL_SECS):
                return None
        return None


def bar_file_feed(
    series: BarSeries,
    interval_secs: float,
    server_now: Callable[[], datetime] | None,
    wall_now: datetime,
    note: Note,
) -> Feed:
    """Return the feed of a paper run on a bar file: the paper server's replayed day, or the wall clock.

    Args:
        series: The bars.
        interval_secs: Wall seconds per minute at the run's `--speed`.
        server_now: Reads the paper server's clock (`--url`), None for Alpaca's paper account.
        wall_now: The wall clock's time now.
        note: Where to say that the server replays another day than the bars'.
    """
    if server_now is not None:
        reads = (server_now(), server_now(), wall_now)
        if follows_server_clock(series, *reads):
            return ServerClockFeed(series, server_now, interval_secs, note=note)
        if replays_another_day(series, *reads):
            day = f"{reads[1].astimezone(EASTERN):%Y-%m-%d %H:%M} ET"
            note(
                f"the paper server replays another day (its clock: {day}) than {series.source}: "
                "its account prices orders at its own bars"
            )
    return ReplayFeed(series, interval_secs)


def follows_server_clock(
    series: BarSeries, server_now: datetime, server_then: datetime, wall_now: datetime
) -> bool:
    """Whether a paper server replays `series`' day: its clock moving, in that day, off the wall's.

    `server_now` and `server_then` are two reads of the server's clock, one after the other. A
    server on the wall clock (no `--bars`), or one whose clock is held (a test's manual clock), is
    paced as before, a minute every interval; one that replays the file's day
    (`paper-server --bars FILE`) is followed, minute by minute.
    """
    return _replaying(server_now, server_then, wall_now) and _in_day(series, server_then)


def replays_another_day(
    series: BarSeries, server_now: datetime, server_then: datetime, wall_now: datetime
) -> bool:
    """Whether a paper server replays a day that is not `series`' (its own `--bars` file, another day).

    Its account then prices orders at that day's prices, whatever bars the run feeds the strategy.
    """
    return _replaying(server_now, server_then, wall_now) and not _in_day(series, server_then)


def _replaying(server_now: datetime, server_then: datetime, wall_now: datetime) -> bool:
    """A server clock that moves and is away from the wall's: `paper-server --bars` replaying a day."""
    return server_then > server_now and abs((server_then - wall_now).total_seconds()) > _WALL_SLACK_SECS


def _in_day(series: BarSeries, at: datetime) -> bool:
    return series.minutes[0].at <= at <= series.minutes[-1].ends_at


_WALL_SLACK_SECS = 300.0


def bars_from_alpaca(raw: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[datetime, dict[str, Bar]]:
    """Group alpaca-py's raw bars (``{"QQQ": [{"t", "o", "h", "l", "c", "v"}, ...]}``) by minute."""
    minutes: dict[datetime, dict[str, Bar]] = {}
    for symbol, rows in raw.items():
        for row in rows or ():
            at = datetime.fromisoformat(str(row["t"]).replace("Z", "+00:00"))
            bar = Bar(
                symbol=symbol.upper(),
                at=at,
                open=Decimal(str(row["o"])),
                high=Decimal(str(row["h"])),
                low=Decimal(str(row["l"])),
                close=Decimal(str(row["c"])),
                volume=int(row.get("v") or 0),
            )
            minutes.setdefault(at, {})[bar.symbol] = bar
    return minutes


class AlpacaFeed:
    """Alpaca's 1-minute bars as they complete, until `until` (the session's close).

    A minute in which a symbol did not trade on the feed (IEX has quiet minutes) carries that
    symbol's last bar forward as a flat bar with no volume; minutes before every symbol has
    traded once are skipped. A failed request is noted and tried again the next minute.

    Args:
        fetch: Returns raw bars for (symbols, start, end); see `bars_from_alpaca`.
        symbols: The strategy's symbols.
        clock: The wall clock.
        until: When to stop (the market's next close).
        note: Where to say that a request failed.
        lag_secs: How long after a minute ends its bar is asked for (Alpaca needs a moment).
        wait: Waits up to the given seconds unless the stop event is set first; returns whether
            it was (default: `stop.wait`; tests fast-forward a manual clock instead).
    """

    @property
    def total(self) -> int | None:
        """Unknown: bars come until the close."""
        return None

    @property
    def label(self) -> str:
        """Where the bars come from."""
        return "Alpaca market data (IEX), 1-minute bars"

    def __init__(
        self,
        fetch: Callable[[Sequence[str], datetime, datetime], Mapping[str, Sequence[Mapping[str, Any]]]],
        symbols: Sequence[str],
        clock: Clock,
        until: datetime,
        *,
        note: Note,
        lag_secs: float = 3.0,
        wait: Callable[[threading.Event, float], bool] = threading.Event.wait,
    ) -> None:
        self._fetch = fetch
        self._symbols = tuple(s.upper() for s in symbols)
        self._clock = clock
        self._until = until
        self._note = note
        self._lag = lag_secs
        self._wait = wait
        self._carry: dict[str, Bar] = {}

    def minutes(self, stop: threading.Event) -> Iterator[Bars]:
        """Yield each completed minute, from the last one completed at the start."""
        last: datetime | None = None
        while not stop.is_set():
            now = self._clock.now()
            current = now.replace(second=0, microsecond=0)  # the minute in progress
            start = current - MINUTE if last is None else last + MINUTE
            if start < current:
                try:
                    raw = self._fetch(self._symbols, start, current - timedelta(seconds=1))
                except Exception as exc:  # a data outage must cost a bar, never the run
                    self._note(f"market data request failed, trying again next minute: {exc}")
                else:
                    for minute in self._complete(bars_from_alpaca(raw), start, current):
                        last = minute.at
                        yield minute
                    last = max(last or start, current - MINUTE)
            if now >= self._until:
                return
            wake = current + MINUTE + timedelta(seconds=self._lag)
            if self._wait(stop, max(0.0, (wake - self._clock.now()).total_seconds())):
                return

    def _complete(
        self, got: dict[datetime, dict[str, Bar]], start: datetime, end: datetime
    ) -> Iterator[Bars]:
        at = start
        while at < end:
            fresh = got.get(at, {})
            self._carry.update(fresh)
            if all(s in self._carry for s in self._symbols) and fresh:
                bars = {s: fresh.get(s) or _flat(self._carry[s], at) for s in self._symbols}
                yield Bars(at, MappingProxyType(bars))
            at += MINUTE


def _flat(last: Bar, at: datetime) -> Bar:
    return Bar(last.symbol, at, last.close, last.close, last.close, last.close, 0)


def alpaca_fetcher(
    key_id: str, secret: str
) -> Callable[[Sequence[str], datetime, datetime], Mapping[str, Sequence[Mapping[str, Any]]]]:
    """Return a fetch function over alpaca-py's `StockHistoricalDataClient` (IEX feed, raw bars)."""
    from alpaca.data.enums import DataFeed
    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.data.requests import StockBarsRequest
    from alpaca.data.timeframe import TimeFrame

    client = StockHistoricalDataClient(key_id, secret, raw_data=True)

    def fetch(
        symbols: Sequence[str], start: datetime, end: datetime
    ) -> Mapping[str, Sequence[Mapping[str, Any]]]:
        request = StockBarsRequest(
            symbol_or_symbols=list(symbols),
            timeframe=TimeFrame.Minute,
            start=start,
            end=end,
            feed=DataFeed.IEX,
        )
        raw = client.get_stock_bars(request)
        return raw if isinstance(raw, Mapping) else {}

    return fetch


def wait_for_open(alpaca: AlpacaBroker, stop: threading.Event, note: Note) -> datetime | None:
    """Wait until the market is open (`GET /v2/clock`); return its next close, or None if stopped."""
    while not stop.is_set():
        market: Any = alpaca.client.get_clock()  # alpaca-py's Clock (the adapter never asks for raw data)
        if market.is_open:
            return market.next_close  # type: ignore[no-any-return]
        wait = (market.next_open - market.timestamp).total_seconds()
        opens = market.next_open.astimezone(EASTERN)
        note(f"market closed: waiting {wait / 3600:.1f} h for the open at {opens:%Y-%m-%d %H:%M} ET")
        if stop.wait(max(1.0, wait)):
            return None
    return None
