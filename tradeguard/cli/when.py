"""Times on the command line: `30m`, `1h`, `2d`, `today`, `yesterday`, `now`, or ISO 8601.

A duration means that long before now. `today` and `yesterday` mean midnight in this machine's
local time zone (set `TZ` to choose another), and so does an ISO time or date without a zone
(`2026-05-21T09:30` is 09:30 local time); `2026-05-21T09:30-04:00` and `...Z` carry their own.
Every result is timezone-aware.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

import click

__all__ = ["WHEN", "TimeParam", "parse_when"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
WHEN = "30m, 1h, 2d, today, yesterday, now, or ISO (no zone = local time)"


def parse_when(text: str, now: datetime) -> datetime:
    """Return the aware time `text` names, relative to the aware `now`.

    Raises:
        ValueError: `text` is none of the forms in the module docstring.
    """
    value = text.strip().lower()
    local_now = now.astimezone()
    if value == "now":
        return now
    if value in ("today", "yesterday"):
        day = local_now.date() - timedelta(days=0 if value == "today" else 1)
        # Naive, then astimezone(): the local zone's offset at that midnight, not today's (DST).
        return datetime.combine(day, time()).astimezone()
    match = _DURATION.match(value)
    parsed = None
    if match is None:
        try:
            parsed = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a time: expected {WHEN}") from None
    try:
        if parsed is None:
            assert match is not None
            when = now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
        else:
            when = parsed if parsed.tzinfo is not None else parsed.astimezone()  # naive: local time
        when.astimezone(UTC)  # the store compares in UTC: the time must have a UTC form too
    except (OverflowError, ValueError):  # "99999999d", "0001-01-01T00:00+05:00"
        raise ValueError(f"{text!r} is out of range: a time must fall in the years 1 to 9999") from None
    return when


class TimeParam(click.ParamType[datetime]):
    """A Click parameter type for `parse_when`, relative to the time the command runs."""

    name = "TIME"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        """Return the aware time, or fail the command naming the option."""
        if isinstance(value, datetime):
            return value
        from tradeguard.clock import SystemClock

        try:
            return parse_when(str(value), SystemClock().now())
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
