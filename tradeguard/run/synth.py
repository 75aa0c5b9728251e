"""A realistic day of 1-minute QQQ, TQQQ and SQQQ bars, generated deterministically from a seed.

QQQ follows a random walk in ten-second steps whose volatility has the intraday U shape (busy
open, quiet lunch, busier close) and whose drift changes every 15-60 minutes, so there are runs
for a momentum bot to find. TQQQ and SQQQ track three times QQQ's move since the open, up and
down, with a little tracking noise, from the levels of May 21 (TQQQ about $75, SQQQ about
$21.50). The same seed gives the same bars on every machine (`random.Random` is specified).
"""

from __future__ import annotations

import csv
import math
import os
import random
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from tradeguard.run.bars import EASTERN, Bar

__all__ = ["DAY", "SHIPPED_SEED", "generate_day", "write_csv"]

DAY = date(2026, 5, 21)
SHIPPED_SEED = 21
_OPEN = {"QQQ": 520.0, "TQQQ": 75.0, "SQQQ": 21.5}
_LEVERAGE = {"QQQ": 1, "TQQQ": 3, "SQQQ": -3}
_VOLUME = {"QQQ": 55_000, "TQQQ": 90_000, "SQQQ": 120_000}
_MINUTES = 390  # 09:30 to 16:00
_STEPS = 6  # ten-second steps per minute: enough for a high and a low
_MINUTE_VOL = 0.011 / math.sqrt(_MINUTES)  # a 1.1% day
_CENT = Decimal("0.01")


def _u_shape(minute: int) -> float:
    """Relative volatility (and volume) of a minute of the session."""
    return 0.75 + 1.3 * math.exp(-minute / 25) + 0.7 * math.exp(-(_MINUTES - 1 - minute) / 20)


def _qqq_paths(rng: random.Random) -> list[list[float]]:
    """Return QQQ's ten-second prices for each minute, each list starting at the minute's open."""
    price = _OPEN["QQQ"]
    drift, regime_left = 0.0, 0
    paths = []
    for minute in range(_MINUTES):
        if regime_left == 0:
            drift, regime_left = rng.gauss(0.0, 0.0001), rng.randint(15, 60)
        regime_left -= 1
        sigma = _MINUTE_VOL * _u_shape(minute) / math.sqrt(_STEPS)
        path = [price]
        for _ in range(_STEPS):
            price *= math.exp(drift / _STEPS + sigma * rng.gauss(0.0, 1.0))
            path.append(price)
        paths.append(path)
    return paths


def _cents(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(_CENT, ROUND_HALF_EVEN)


def generate_day(seed: int = SHIPPED_SEED, day: date = DAY) -> list[Bar]:
    """Return a session of 390 one-minute bars of QQQ, SQQQ and TQQQ, minute by minute."""
    rng = random.Random(seed)
    paths = _qqq_paths(rng)
    start = datetime.combine(day, time(9, 30), tzinfo=EASTERN).astimezone(UTC)
    qqq_open = _OPEN["QQQ"]
    bars: list[Bar] = []
    for minute, path in enumerate(paths):
        at = start + timedelta(minutes=minute)
        for symbol in sorted(_OPEN):
            noise = 1 + rng.gauss(0.0, 0.00003) if symbol != "QQQ" else 1.0
            leverage = _LEVERAGE[symbol]
            prices = [_OPEN[symbol] * (1 + leverage * (q / qqq_open - 1)) * noise for q in path]
            volume = _VOLUME[symbol] * _u_shape(minute) * rng.lognormvariate(0.0, 0.35)
            bars.append(
                Bar(
                    symbol=symbol,
                    at=at,
                    open=_cents(prices[0]),
                    high=_cents(max(prices)),
                    low=_cents(min(prices)),
                    close=_cents(prices[-1]),
                    volume=int(volume),
                )
            )
    return bars


def write_csv(bars: Iterable[Bar], path: str | os.PathLike[str]) -> None:
    """Write bars as a bar file, timestamps in US/Eastern with their offset."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["timestamp", "symbol", "open", "high", "low", "close", "volume"])
        for bar in bars:
            local = bar.at.astimezone(EASTERN).isoformat()
            writer.writerow([local, bar.symbol, bar.open, bar.high, bar.low, bar.close, bar.volume])
