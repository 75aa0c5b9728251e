"""Injected time: a `Clock` protocol, the system clock and a manual clock for tests and replays.

Everything that reads the time or waits takes a clock, so replays run in milliseconds and tests
never sleep (STYLE.md 7).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "ReplayClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """A source of the current time and a way to wait."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware UTC."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` (a manual clock advances instead)."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        """Sleep for real."""
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A clock that moves only when told; `sleep` advances it instantly."""

    def __init__(self, start: datetime | None = None) -> None:
        """Start at `start` (aware), or 2026-05-21 13:30 UTC (09:30 US/Eastern)."""
        if start is None:
            start = datetime(2026, 5, 21, 13, 30, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """Return the clock's time.

        No lock: reading one attribute is atomic, and a replay reads the clock several times per
        order. The lock serialises the writers (`advance` reads, adds and stores).
        """
        return self._now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward and return the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to `when` (aware, not earlier than now)."""
        with self._lock:
            if when < self._now:
                raise ValueError("a clock does not go backwards")
            self._now = when

    def sleep(self, seconds: float) -> None:
        """Advance instead of sleeping."""
        self.advance(max(0.0, seconds))


class ReplayClock:
    """A recorded day on the wall clock: `start` when created, then `speed` times as fast as real time.

    For a paper server that replays a bar file: its prices, its `/v2/clock` and its resting orders
    follow the day's bars as a bot trading against it lives through them.

    Attributes:
        start: The replayed time at creation (UTC).
    """

    def __init__(self, start: datetime, speed: float = 1.0) -> None:
        """Start at `start` (aware) now, running `speed` (> 0) seconds of the day per real second."""
        if start.tzinfo is None:
            raise ValueError("ReplayClock needs a timezone-aware start time")
        if not speed > 0:
            raise ValueError(f"a replay runs at a positive speed, got {speed}")
        self.start, self._speed = start.astimezone(UTC), float(speed)
        self._origin = time.monotonic()  # never steps back, unlike the wall clock

    def now(self) -> datetime:
        """Return the replayed day's time."""
        return self.start + timedelta(seconds=(time.monotonic() - self._origin) * self._speed)

    def sleep(self, seconds: float) -> None:
        """Sleep for `seconds` of the replayed day (`seconds / speed` of real time)."""
        if seconds > 0:
            time.sleep(seconds / self._speed)
