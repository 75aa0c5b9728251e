"""`tradeguard run --mode paper --url` follows a paper server that replays the bars' day.

Before, `paper-server --bars FILE --speed 60` and `run --mode paper --url ... --bars FILE
--speed 60` each paced the day from their own start: the seconds between the two starts became
minutes of drift at 60x, so the bot decided on bars minutes older (or newer) than the prices the
account filled at. Now the run reads the server's `/v2/clock` and gives each minute once the
server's day has passed its end, starting at the server's minute. A server on the wall clock, or
one whose clock is held (the in-process servers of other tests), is paced as before.
"""

from __future__ import annotations

import csv
import io
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.test_paper_server_cli import _run_cli
from tradeguard import ManualClock
from tradeguard.run.barfile import load_bars, shipped_day_path
from tradeguard.run.command import prepare
from tradeguard.run.feeds import ReplayFeed, ServerClockFeed, bar_file_feed, follows_server_clock
from tradeguard.run.settings import Mode, RunSettings, ViewKind
from tradeguard.testing import alpaca_client

SPEED = 120  # a replayed minute every 0.5 s
FIRST_CLOSE = datetime(2026, 5, 21, 13, 31, tzinfo=UTC)  # the shipped day's 09:30 bar ends


def _short_day(path: Path, minutes: int) -> Path:
    """Write the shipped day's first `minutes` minutes to `path` (a run of seconds at 120x)."""
    with shipped_day_path().open(newline="") as src, path.open("w", newline="") as dst:
        reader = csv.DictReader(src)
        assert reader.fieldnames is not None
        writer = csv.DictWriter(dst, fieldnames=reader.fieldnames)
        writer.writeheader()
        last = datetime(2026, 5, 21, 13, 30, tzinfo=UTC) + timedelta(minutes=minutes)
        for row in reader:
            if datetime.fromisoformat(row["timestamp"]).astimezone(UTC) < last:
                writer.writerow(row)
    return path


def test_the_feed_starts_at_the_servers_minute_and_never_gives_a_bar_before_it_ended() -> None:
    series = load_bars(None)
    server = ManualClock(FIRST_CLOSE + timedelta(minutes=7, seconds=20))  # 09:38:20 ET
    notes: list[str] = []
    seen: list[tuple[datetime, datetime]] = []

    def wait(stop: threading.Event, secs: float) -> bool:
        server.advance(secs * SPEED)  # the server's day runs 120x the wall's
        return stop.is_set()

    feed = ServerClockFeed(series, server.now, 60.0 / SPEED, note=notes.append, wait=wait)
    stop = threading.Event()
    for minute in feed.minutes(stop):
        seen.append((minute.ends_at, server.now()))
        if len(seen) == 5:
            stop.set()
    # The first bar is the last one that had ended on the server (09:37), then one per minute.
    assert [ends for ends, _ in seen] == [FIRST_CLOSE + timedelta(minutes=m) for m in range(7, 12)]
    assert all(ends <= server_at < ends + timedelta(minutes=1) for ends, server_at in seen)
    assert notes == [
        "the paper server's day is at 09:38 ET: 7 earlier minute(s) skipped, starting at the 09:37 bar"
    ]


def test_a_server_clock_read_that_fails_is_tried_again_not_taken_for_a_time() -> None:
    series = load_bars(None)
    server = ManualClock(FIRST_CLOSE)
    failures = iter([ConnectionError("refused"), None, ConnectionError("reset")])
    notes: list[str] = []

    def now() -> datetime:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return server.now()

    def wait(stop: threading.Event, secs: float) -> bool:
        server.advance(secs * SPEED)
        return stop.is_set()

    feed = ServerClockFeed(series, now, 60.0 / SPEED, note=notes.append, wait=wait)
    stop = threading.Event()
    got = []
    for minute in feed.minutes(stop):
        got.append(minute.ends_at)
        if len(got) == 3:
            stop.set()
    # A failed read waits a poll (two replayed minutes here): the feed starts at the server's
    # minute then, and a minute late after the second failure is given late, never skipped.
    assert got == [FIRST_CLOSE + timedelta(minutes=m) for m in range(2, 5)]
    assert notes == [
        "paper server clock unreadable, trying again: refused",
        "the paper server's day is at 09:33 ET: 2 earlier minute(s) skipped, starting at the 09:32 bar",
        "paper server clock unreadable, trying again: reset",
    ]


def test_only_a_moving_server_clock_inside_the_bars_day_and_off_the_wall_clock_is_followed() -> None:
    series = load_bars(None)
    wall = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
    later = timedelta(milliseconds=3)
    in_day = FIRST_CLOSE + timedelta(minutes=30)
    assert follows_server_clock(series, in_day, in_day + later, wall)
    assert not follows_server_clock(series, in_day, in_day, wall)  # held: a test's manual clock
    assert not follows_server_clock(series, wall, wall + later, wall)  # the wall clock (no --bars)
    day_over = FIRST_CLOSE + timedelta(hours=7)
    assert not follows_server_clock(series, day_over, day_over + later, wall)  # another day's end


WATCHER = """
from datetime import UTC
from tradeguard import Strategy


class Watcher(Strategy):
    symbols = ("TQQQ",)

    def on_bar(self, bars, ctx):
        server = ctx.trading_client().get_clock().timestamp.astimezone(UTC)
        ctx.log(f"seen {bars.ends_at.isoformat()} server {server.isoformat()}")
"""


def test_a_run_started_after_the_paper_server_trades_on_the_servers_minute(tmp_path: Path) -> None:
    bars = _short_day(tmp_path / "short.csv", 12)
    strategy = tmp_path / "watcher.py"
    strategy.write_text(WATCHER)
    with _run_cli("--port", "0", "--bars", str(bars), "--speed", str(SPEED)) as proc:
        try:  # the server is stopped whatever fails, or leaving the block would wait for it forever
            assert proc.stdout is not None
            url = proc.stdout.readline().split()[4]
            proc.stdout.readline()
            with alpaca_client(url) as trading:  # the bot starts some four replayed minutes late
                deadline = time.monotonic() + 30
                while trading.get_clock().timestamp < FIRST_CLOSE + timedelta(minutes=4):
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            settings = RunSettings(
                strategy=str(strategy), mode=Mode.PAPER, url=url, bars=str(bars),
                store_url=f"sqlite:///{tmp_path / 'claims.db'}", speed=SPEED, view=ViewKind.PLAIN,
            )  # fmt: skip
            out = io.StringIO()
            report = prepare(settings, environ={}, out=out).run()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
    assert report.exit_status == 0, out.getvalue()
    seen = [
        (datetime.fromisoformat(words[1]), datetime.fromisoformat(words[3]))
        for words in (line.split()[-4:] for line in out.getvalue().splitlines() if " seen " in line)
    ]
    # It joined the server's day (not its 09:30 bar), then had every minute to the file's end,
    # each once the server's clock had passed its end.
    assert seen[0][0] >= FIRST_CLOSE + timedelta(minutes=3)
    assert [ends for ends, _ in seen] == [seen[0][0] + timedelta(minutes=m) for m in range(len(seen))]
    assert seen[-1][0] == FIRST_CLOSE + timedelta(minutes=11)
    assert all(server_at >= ends for ends, server_at in seen)
    assert "earlier minute(s) skipped" in out.getvalue()


def test_a_server_replaying_another_day_is_said_and_the_bars_keep_the_wall_clock_pace() -> None:
    series = load_bars(None)
    wall = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
    other_day = iter([datetime(2026, 6, 2, 14, 15, tzinfo=UTC), datetime(2026, 6, 2, 14, 15, 1, tzinfo=UTC)])
    notes: list[str] = []
    feed = bar_file_feed(series, 0.5, lambda: next(other_day), wall, notes.append)
    assert isinstance(feed, ReplayFeed) and feed.interval_secs == 0.5
    assert notes == [
        "the paper server replays another day (its clock: 2026-06-02 10:15 ET) than "
        f"{series.source}: its account prices orders at its own bars"
    ]
    held = datetime(2026, 5, 21, 14, 0, tzinfo=UTC)
    assert isinstance(bar_file_feed(series, 0.5, lambda: held, wall, notes.append), ReplayFeed)
    assert isinstance(bar_file_feed(series, 0.5, None, wall, notes.append), ReplayFeed)
    assert len(notes) == 1
