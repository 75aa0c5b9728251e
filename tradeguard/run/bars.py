"""Bars: what a strategy sees, and the minutes of a run checked for gaps.

`Bar` is one symbol's minute, `Bars` one minute of every symbol, `BarSeries` a run's minutes. A
bar is labelled by the minute it starts, as Alpaca labels them; its close is known only when the
minute ends, so a run acts on a bar at `Bars.ends_at` and the paper broker fills at the last close
known at that time (`BarSeries.price_series`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from tradeguard.errors import ConfigError

if TYPE_CHECKING:
    from tradeguard.paper.prices import BarPrices

__all__ = ["EASTERN", "MINUTE", "Bar", "BarSeries", "Bars"]

EASTERN = ZoneInfo("America/New_York")
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Bar:
    """One symbol's bar of one minute.

    Attributes:
        symbol: Upper-case ticker.
        at: The minute the bar starts (aware).
        open: First trade price.
        high: Highest trade price.
        low: Lowest trade price.
        close: Last trade price.
        volume: Shares traded.
    """

    symbol: str
    at: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int = 0

    def problem(self) -> str | None:
        """Return what makes this bar impossible, or None."""
        if self.at.tzinfo is None:
            return f"timestamp {self.at.isoformat()} has no timezone"
        if self.at.second or self.at.microsecond:
            return f"timestamp {self.at.isoformat()} is not on a whole minute (1-minute bars)"
        prices = (self.open, self.high, self.low, self.close)
        if any(not p.is_finite() or p <= 0 for p in prices):
            return f"{self.symbol} prices must be positive numbers"
        if self.low > min(self.open, self.close) or self.high < max(self.open, self.close):
            return f"{self.symbol} high/low {self.high}/{self.low} do not contain open/close"
        if self.volume < 0:
            return f"{self.symbol} volume {self.volume} is negative"
        return None


@dataclass(frozen=True, slots=True)
class Bars:
    """One minute of bars, one per symbol: what `Strategy.on_bar` receives.

    Attributes:
        at: The minute the bars start (aware UTC).
        by_symbol: Each symbol's bar.
    """

    at: datetime
    by_symbol: Mapping[str, Bar]

    def __getitem__(self, symbol: str) -> Bar:
        try:
            return self.by_symbol[symbol.upper()]
        except KeyError:
            have = ", ".join(sorted(self.by_symbol)) or "none"
            raise KeyError(f"no {symbol} bar at {self.local:%H:%M} ET (bars of: {have})") from None

    def close(self, symbol: str) -> Decimal:
        """Return the close of `symbol`'s bar."""
        return self[symbol].close

    @property
    def ends_at(self) -> datetime:
        """When the minute ends: the earliest time its closes are known."""
        return self.at + MINUTE

    @property
    def local(self) -> datetime:
        """The bar's start in US/Eastern, the time traders name bars by."""
        return self.at.astimezone(EASTERN)


@dataclass(frozen=True, slots=True)
class BarSeries:
    """The minutes of a run, in order, each with a bar of every symbol.

    Attributes:
        source: Where the bars came from (a file name, ``seed:7``), for messages.
        minutes: The minutes, oldest first.
        symbols: The symbols every minute has.
    """

    source: str
    minutes: tuple[Bars, ...]
    symbols: tuple[str, ...]

    @classmethod
    def assemble(cls, bars: Iterable[tuple[Bar, str]], source: str) -> BarSeries:
        """Check and group bars, each with where it came from (``"bars.csv:7"``).

        Each symbol's rows must come in time order, one per minute: the rows may interleave
        (minute by minute, as Alpaca's bars arrive) or come a symbol after another (what
        alpaca-py's ``bars.df.to_csv()`` writes). Within a trading day (US/Eastern date) every
        minute from the first to the last must have a bar of every symbol.

        Raises:
            ConfigError: The first bad row, or the first gap, with where it is.
        """
        by_minute: dict[datetime, dict[str, Bar]] = {}
        first_row: dict[datetime, str] = {}  # where each minute was first met, for messages
        latest: dict[str, datetime] = {}  # each symbol's latest minute so far
        for bar, where in bars:
            problem = bar.problem()
            if problem is not None:
                raise ConfigError(f"{where}: {problem}")
            at = bar.at.astimezone(EASTERN)
            before = latest.get(bar.symbol)
            if before is not None and at < before:
                raise ConfigError(
                    f"{where}: rows out of time order ({at:%Y-%m-%d %H:%M} ET after a later "
                    f"{bar.symbol} bar, {before:%H:%M} ET)"
                )
            if before == at:
                raise ConfigError(f"{where}: a second {bar.symbol} bar for {at:%Y-%m-%d %H:%M} ET")
            latest[bar.symbol] = at
            minute = by_minute.get(at)
            if minute is None:
                minute = by_minute[at] = {}
                first_row[at] = where
            minute[bar.symbol] = bar
        order = sorted(by_minute)
        minutes = [by_minute[at] for at in order]
        wheres = [first_row[at] for at in order]
        if not minutes:
            raise ConfigError(f"{source}: no bars")
        symbols = tuple(sorted(set().union(*minutes)))
        _check_gaps(minutes, wheres, symbols)
        frozen = tuple(Bars(_start(m).astimezone(UTC), MappingProxyType(dict(m))) for m in minutes)
        return cls(source=source, minutes=frozen, symbols=symbols)

    def __iter__(self) -> Iterator[Bars]:
        return iter(self.minutes)

    def __len__(self) -> int:
        return len(self.minutes)

    def require(self, symbols: Sequence[str]) -> None:
        """Raise ConfigError unless every one of `symbols` has bars."""
        missing = [s for s in symbols if s.upper() not in self.symbols]
        if missing:
            raise ConfigError(
                f"{self.source}: no {', '.join(missing)} bars (it has {', '.join(self.symbols)}; "
                f"the strategy needs {', '.join(symbols)})"
            )

    def bar_prices(self) -> BarPrices:
        """Return the bars as a paper price source.

        Each close is the price from its minute's end (as `price_series` has it), and the bars that
        ended by a time are the market data of that time (the paper server's `/v2/stocks/bars`).
        """
        from tradeguard.paper.prices import BarPrices, MinuteBar

        by_symbol: dict[str, list[MinuteBar]] = {symbol: [] for symbol in self.symbols}
        for minute in self.minutes:
            for symbol, bar in minute.by_symbol.items():
                by_symbol[symbol].append(
                    MinuteBar(bar.at, bar.open, bar.high, bar.low, bar.close, bar.volume)
                )
        return BarPrices(by_symbol)

    def price_series(self) -> dict[str, list[tuple[datetime, Decimal]]]:
        """Each symbol's closes, timed at the end of their minute (when the close is known)."""
        series: dict[str, list[tuple[datetime, Decimal]]] = {s: [] for s in self.symbols}
        for minute in self.minutes:
            for symbol, bar in minute.by_symbol.items():
                series[symbol].append((minute.ends_at, bar.close))
        return series


def _start(minute: Mapping[str, Bar]) -> datetime:
    return next(iter(minute.values())).at.astimezone(EASTERN)


def _check_gaps(minutes: list[dict[str, Bar]], wheres: list[str], symbols: tuple[str, ...]) -> None:
    for index, minute in enumerate(minutes):
        at = _start(minute)
        missing = [s for s in symbols if s not in minute]
        if missing:
            raise ConfigError(
                f"{wheres[index]}: gap: no {', '.join(missing)} bar for {at:%Y-%m-%d %H:%M} ET "
                "(every minute needs a bar of every symbol)"
            )
        if index:
            before = _start(minutes[index - 1])
            if before.date() == at.date() and at - before != MINUTE:
                raise ConfigError(
                    f"{wheres[index]}: gap: no bars from {before + MINUTE:%H:%M} to "
                    f"{at - MINUTE:%H:%M} ET on {at:%Y-%m-%d}{_outside_hours_hint(before + MINUTE, at)}"
                )


def _outside_hours_hint(first_missing: datetime, resumes: datetime) -> str:
    """A hint for a gap outside 09:30-16:00 ET, where a feed's bars are sparse (minutes without trades)."""
    opens, closes = time(9, 30), time(16, 0)
    if opens <= first_missing.time() and resumes.time() <= closes:
        return ""
    return (
        " (pre- and post-market minutes without trades have no bar in Alpaca's data: "
        "keep the file to 09:30-16:00 ET, or give every minute a bar)"
    )
