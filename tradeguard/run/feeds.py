"""Where a run's bars come from, and at what pace.

- `SimFeed`: a bar series as fast as the strategy goes; the manual clock is set to the end of
  each minute before the strategy sees it (decisions and fills happen when the close is known).
- `ReplayFeed`: a bar series on the wall clock, one minute every ``60 / speed`` seconds (paper
  mode with a bar file: a day against a paper account in minutes).
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
    "SimFeed",
    "alpaca_fetcher",
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
