"""Where the paper broker's fill prices come from: a small `PriceSource` port and three sources.

- `FixedPrices`: one price per symbol (and an optional default), for tests and quick runs.
- `RecordedPrices`: a session's recorded prices, a mapping of symbol to timed prices; the price
  at a time is the last one recorded at or before it.
- `CsvBarPrices`: a bar file (``timestamp,symbol,open,high,low,close[,volume]``); the price at a
  time is the close of the last bar that started at or before it.
- `BarPrices`: minute bars kept whole: the price at a time is the close of the last bar that
  ended by then, and the bars that ended by then are market data (the paper server's
  `/v2/stocks/...` routes).

A source answers None when it has no price; the paper broker then leaves a market order open
until a price appears instead of inventing one. A source that names its symbols (a ``symbols``
attribute, as `FixedPrices` and `RecordedPrices` have) makes them tradable on the paper venue
even when the asset list does not know them (`named_symbols`).
"""

from __future__ import annotations

import bisect
import csv
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Protocol, runtime_checkable

from tradeguard.domain.orders import canonical_symbol
from tradeguard.errors import ConfigError

__all__ = [
    "DEFAULT_PRICE",
    "BarPrices",
    "CsvBarPrices",
    "MinuteBar",
    "FixedPrices",
    "PriceSource",
    "RecordedPrices",
    "named_symbols",
    "to_price",
]

DEFAULT_PRICE = Decimal("100.00")
"""Fill price of every tradable symbol when a PaperBroker is built without a price source."""

PriceLike = Decimal | int | str


@runtime_checkable
class PriceSource(Protocol):
    """A price per symbol and time; None when the source has none."""

    def price(self, symbol: str, at: datetime) -> Decimal | None:
        """Return the price of `symbol` at `at` (aware UTC), or None if unknown."""
        ...


def named_symbols(source: PriceSource | None) -> frozenset[str]:
    """Return the symbols `source` gives a price of their own (none for a source that cannot say).

    A crypto pair is named with its slash ("BTCUSD" -> "BTC/USD"), as the account names it.
    """
    names = getattr(source, "symbols", None)
    if names is None or isinstance(names, str):
        return frozenset()
    return frozenset(canonical_symbol(str(name)) for name in names)


def to_price(value: object, where: str) -> Decimal:
    """Return `value` as a positive price, or raise ConfigError naming `where`."""
    try:
        # str() first: Decimal(float) would carry binary noise into fill prices.
        price = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ConfigError(f"{where}: price {value!r} is not a number") from exc
    if not price.is_finite() or price <= 0:
        raise ConfigError(f"{where}: price {value!r} must be a positive number")
    return price


class FixedPrices:
    """The same price at every time.

    Args:
        prices: Price per symbol (Decimal, int or numeric string; floats are refused so no
            binary noise reaches fill prices).
        default: Price of a symbol not in `prices`; None means such symbols have no price.
    """

    def __init__(self, prices: Mapping[str, PriceLike] | None = None, default: PriceLike | None = None):
        self._prices = {sym.upper(): to_price(p, f"price of {sym}") for sym, p in (prices or {}).items()}
        self._default = None if default is None else to_price(default, "default price")

    def price(self, symbol: str, at: datetime) -> Decimal | None:
        """Return the fixed price of `symbol`."""
        return self._prices.get(symbol.upper(), self._default)

    @property
    def symbols(self) -> list[str]:
        """Return the symbols given a price of their own (the default names none)."""
        return sorted(self._prices)


class RecordedPrices:
    """Timed prices per symbol, e.g. the prices a recorded session saw.

    Args:
        series: Symbol to an iterable of (aware time, price) pairs, in any order.
    """

    def __init__(self, series: Mapping[str, Iterable[tuple[datetime, PriceLike]]]):
        self._times: dict[str, list[datetime]] = {}
        self._prices: dict[str, list[Decimal]] = {}
        for symbol, points in series.items():
            ordered = sorted(points, key=lambda point: point[0])
            for when, _ in ordered:
                if when.tzinfo is None:
                    raise ConfigError(f"recorded price of {symbol} at {when} has no timezone")
            self._times[symbol.upper()] = [when for when, _ in ordered]
            self._prices[symbol.upper()] = [to_price(p, f"price of {symbol}") for _, p in ordered]

    def price(self, symbol: str, at: datetime) -> Decimal | None:
        """Return the last price of `symbol` recorded at or before `at`."""
        times = self._times.get(symbol.upper())
        if not times:
            return None
        index = bisect.bisect_right(times, at)
        return self._prices[symbol.upper()][index - 1] if index else None

    @property
    def symbols(self) -> list[str]:
        """Return the symbols with at least one price."""
        return sorted(self._times)

    @property
    def first_time(self) -> datetime | None:
        """Return the earliest time any symbol has a price (None without prices)."""
        return min((times[0] for times in self._times.values() if times), default=None)


class CsvBarPrices(RecordedPrices):
    """Close prices from a CSV bar file.

    The file has a header row with at least ``timestamp`` and ``close``, and ``symbol`` unless
    `symbol` is given. Timestamps are ISO 8601 with a timezone (a naive time is a trading bug).

    Args:
        path: The CSV file.
        symbol: The symbol of every bar, for single-symbol files without a ``symbol`` column.

    Raises:
        ConfigError: The file is missing or malformed ("bars.csv:7: ...").
    """

    def __init__(self, path: str | os.PathLike[str], symbol: str | None = None):
        name = os.fspath(path)
        series: dict[str, list[tuple[datetime, PriceLike]]] = {}
        try:
            with open(name, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                columns = set(reader.fieldnames or ())
                missing = {"timestamp", "close"} - columns
                if symbol is None and "symbol" not in columns:
                    missing.add("symbol")
                if missing:
                    raise ConfigError(f"{name}:1: missing column(s) {', '.join(sorted(missing))}")
                for row in reader:
                    where = f"{name}:{reader.line_num}"
                    when = _parse_time(row["timestamp"], where)
                    bar_symbol = symbol or (row.get("symbol") or "").strip()
                    if not bar_symbol:
                        raise ConfigError(f"{where}: empty symbol")
                    series.setdefault(bar_symbol, []).append((when, to_price(row["close"], where)))
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read bar file: {exc.strerror or exc}") from exc
        super().__init__(series)


def _parse_time(text: str | None, where: str) -> datetime:
    try:
        when = datetime.fromisoformat((text or "").strip())
    except ValueError as exc:
        raise ConfigError(f"{where}: timestamp {text!r} is not ISO 8601") from exc
    if when.tzinfo is None:
        raise ConfigError(f"{where}: timestamp {text!r} has no timezone")
    return when


_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class MinuteBar:
    """One symbol's bar of one minute, as market data.

    Attributes:
        at: The minute it starts (aware).
        open: First trade price.
        high: Highest trade price.
        low: Lowest trade price.
        close: Last trade price.
        volume: Shares traded.
    """

    at: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int = 0


class BarPrices(RecordedPrices):
    """Minute bars per symbol: each close is the price from its minute's end, when it is known.

    The bars that ended by a time are what a market-data read at that time may see (no bar of a
    minute still running, nothing ahead).

    Args:
        bars: Symbol to its minute bars, in any order.
    """

    def __init__(self, bars: Mapping[str, Iterable[MinuteBar]]):
        self._bars = {symbol.upper(): sorted(seq, key=lambda bar: bar.at) for symbol, seq in bars.items()}
        # Each bar's end is its price's time: `_times` (RecordedPrices) holds the ends, in order.
        super().__init__(
            {symbol: [(bar.at + _MINUTE, bar.close) for bar in seq] for symbol, seq in self._bars.items()}
        )

    def ends(self, after: datetime, until: datetime) -> list[datetime]:
        """Return the minute ends (a close becoming the price) in (`after`, `until`], oldest first."""
        found: set[datetime] = set()
        for times in self._times.values():
            found.update(times[bisect.bisect_right(times, after) : bisect.bisect_right(times, until)])
        return sorted(found)

    def ended(
        self, symbol: str, now: datetime, start: datetime | None = None, end: datetime | None = None
    ) -> list[MinuteBar]:
        """Return `symbol`'s bars that ended by `now`, starting within [`start`, `end`], oldest first."""
        seq, ends = self._bars.get(symbol.upper(), []), self._times.get(symbol.upper(), [])
        known = seq[: bisect.bisect_right(ends, now)]
        return [bar for bar in known if (start is None or bar.at >= start) and (end is None or bar.at <= end)]
