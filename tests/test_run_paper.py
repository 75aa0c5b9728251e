"""`tradeguard run --mode paper` against the local paper server, through alpaca-py's real wire.

The paper server runs in this process on 127.0.0.1, priced from the shipped bars, its clock held
at 10:00 US/Eastern so `/v2/clock` says the market is open whenever the test runs. The SIGINT
test runs the command as a real subprocess and interrupts it mid-day.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from requests_mock import Mocker

from tradeguard import ClaimState, ClaimStore, ManualClock, PaperBroker
from tradeguard.paper.prices import CsvBarPrices
from tradeguard.run.barfile import shipped_day_path
from tradeguard.run.command import prepare
from tradeguard.run.feeds import AlpacaFeed, alpaca_fetcher
from tradeguard.run.settings import Mode, RunSettings, ViewKind
from tradeguard.testing import paper_server

ROOT = Path(__file__).resolve().parents[1]
TEN_AM = datetime(2026, 5, 21, 14, 0, tzinfo=UTC)  # 10:00 US/Eastern, a Thursday


def open_market() -> PaperBroker:
    return PaperBroker(prices=CsvBarPrices(shipped_day_path()), clock=ManualClock(TEN_AM))


def test_the_plain_alpaca_py_bot_trades_the_paper_server_through_the_real_trading_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    with paper_server(open_market()) as server:
        settings = RunSettings(
            strategy="strategies.plain_alpaca",
            mode=Mode.PAPER,
            url=server.url,
            store_url=url,
            speed=1e9,  # the shipped day, replayed as fast as the wire goes
            view=ViewKind.PLAIN,
        )
        out = io.StringIO()
        report = prepare(settings, environ={}, out=out).run()
        orders = server.broker.orders()
    assert report.exit_status == 0 and report.bars == 390, out.getvalue()
    assert "paper on paper server http://127.0.0.1:" in out.getvalue()
    with ClaimStore(url) as store:
        claims = store.list_claims(agent_id="crossover")
    assert len(orders) == len(claims) == report.status.orders_sent > 0
    assert all(row.agrees for row in report.status.positions)


def test_sigint_mid_day_stops_the_run_cleanly_with_a_summary_and_nothing_pending(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with paper_server(open_market()) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tradeguard.cli", "run", "strategies.momentum", "--mode", "paper",
             "--url", server.url, "--store", url, "--speed", "1200", "--view", "plain"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # until the run is well into the day: the 30th bar's status
            seen.append(line)
            if " bar 30/390 " in line:
                break
        proc.send_signal(signal.SIGINT)
        rest, errors = proc.communicate(timeout=60)
        orders = server.broker.orders()
    out = "".join(seen) + rest
    assert proc.returncode == 0, errors
    assert "stopped by: SIGINT after" in out and "after 390 bar(s)" not in out
    assert "summary: strategies.momentum:MomentumStrategy in paper" in out
    with ClaimStore(url) as store:
        claims = store.list_claims(agent_id="momentum")
        assert not store.list_claims(states=[ClaimState.PENDING, ClaimState.UNKNOWN])
        for symbol in ("TQQQ", "SQQQ"):
            at_broker = server.broker.get_position(symbol)
            assert store.position("momentum", symbol).qty == (at_broker.qty if at_broker else 0)
    assert len(orders) == len(claims) > 0  # one order per decision


def test_the_market_data_feed_reads_alpaca_bars_and_carries_a_quiet_symbol_forward(
    requests_mock: Mocker,
) -> None:
    body = {
        "bars": {
            "QQQ": [
                {"t": "2026-05-21T14:00:00Z", "o": 520.1, "h": 520.5, "l": 520.0, "c": 520.4, "v": 1200},
                {"t": "2026-05-21T14:01:00Z", "o": 520.4, "h": 520.9, "l": 520.3, "c": 520.8, "v": 900},
            ],
            "TQQQ": [{"t": "2026-05-21T14:00:00Z", "o": 75.1, "h": 75.2, "l": 75.0, "c": 75.15, "v": 300}],
        },
        "next_page_token": None,
    }
    route = requests_mock.get("https://data.alpaca.markets/v2/stocks/bars", json=body)
    clock = ManualClock(TEN_AM + timedelta(minutes=1, seconds=3))

    def wait(stop: threading.Event, secs: float) -> bool:
        clock.advance(secs)  # the wall clock, fast-forwarded
        return stop.is_set()

    feed = AlpacaFeed(
        alpaca_fetcher("AKTEST", "secret"), ["QQQ", "TQQQ"], clock, TEN_AM + timedelta(minutes=2),
        note=print, lag_secs=0, wait=wait,
    )  # fmt: skip
    minutes = list(feed.minutes(threading.Event()))
    assert route.call_count == 2
    query = route.last_request.qs
    assert query["feed"] == ["iex"] and query["timeframe"] == ["1min"] and query["symbols"] == ["qqq,tqqq"]
    assert [m.local.strftime("%H:%M") for m in minutes] == ["10:00", "10:01"]
    assert str(minutes[1].close("QQQ")) == "520.8"
    assert str(minutes[1].close("TQQQ")) == "75.15" and minutes[1]["TQQQ"].volume == 0  # carried forward


SLEEPER = """
import os
import signal

from tradeguard import Strategy


class Sleeper(Strategy):
    symbols = ("QQQ",)

    def on_bar(self, bars, ctx):
        os.kill(os.getpid(), signal.SIGINT)  # the trader's Ctrl-C, while the bot is about to wait
        ctx.clock.sleep(3600)  # its next check in an hour
"""


def test_ctrl_c_ends_the_strategys_own_wait_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, `ctx.clock.sleep` on the wall clock held a Ctrl-C until the sleep ran out."""
    from tradeguard.clock import SystemClock

    def stop_blind(self: SystemClock, seconds: float) -> None:
        raise AssertionError(f"the strategy slept {seconds} s through a stop")

    monkeypatch.setattr(SystemClock, "sleep", stop_blind)
    bot = tmp_path / "sleeper.py"
    bot.write_text(SLEEPER)
    with paper_server(open_market()) as server:
        settings = RunSettings(
            strategy=str(bot),
            mode=Mode.PAPER,
            url=server.url,
            store_url=f"sqlite:///{tmp_path / 'claims.db'}",
            speed=1e9,
            view=ViewKind.PLAIN,
        )
        out = io.StringIO()
        report = prepare(settings, environ={}, out=out).run()
    assert report.exit_status == 0, out.getvalue()
    assert report.stopped_by == "SIGINT" and report.bars == 1
