"""`tradeguard paper-server --bars` replays the bars' day: prices, the clock and resting orders move.

Before, the server priced orders from the bar file at the wall clock's time: the file's day long
past, every order filled at its last close, `/v2/clock` said closed, and a limit below the market
never filled. Now the day runs from the server's start, `--speed` times as fast, and resting orders
trade as the replayed prices reach them (between requests too). A real subprocess, a real
alpaca-py client.

The shipped day: TQQQ's 09:30 bar closes 75.49; the 09:42 bar is the first to close below 74.90
(74.83), a close known at 09:43, its minute's end, as `tradeguard run` prices it.
"""

from __future__ import annotations

import csv
import signal
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

from tests.test_paper_server_cli import _run_cli
from tradeguard.cli import main
from tradeguard.run.barfile import shipped_day_path
from tradeguard.testing import alpaca_client

SPEED = 120  # a replayed minute every 0.5 s: the limit is reached some 6 s after the start


def _closes(symbol: str) -> dict[datetime, Decimal]:
    """Each close of `symbol` by the end of its minute, when it is known."""
    with shipped_day_path().open(newline="") as handle:
        return {
            datetime.fromisoformat(row["timestamp"]).astimezone(UTC) + timedelta(minutes=1): Decimal(
                row["close"]
            )
            for row in csv.DictReader(handle)
            if row["symbol"] == symbol
        }


def test_the_server_replays_the_bars_day_and_fills_a_resting_limit_when_the_price_reaches_it() -> None:
    closes = _closes("TQQQ")
    with _run_cli("--port", "0", "--bars", str(shipped_day_path()), "--speed", str(SPEED)) as proc:
        try:  # the server is stopped whatever fails, or leaving the block would wait for it forever
            assert proc.stdout is not None
            url = proc.stdout.readline().split()[4]
            announced = proc.stdout.readline()
            assert announced.startswith(f"replaying {shipped_day_path()} from 2026-05-21 13:31 UTC")
            with alpaca_client(url) as trading:
                clock = trading.get_clock()
                assert clock.is_open and clock.timestamp.date().isoformat() == "2026-05-21"
                bought = trading.submit_order(
                    MarketOrderRequest(
                        symbol="TQQQ", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
                    )
                )
                assert Decimal(str(bought.filled_avg_price)) in set(list(closes.values())[:30])  # not 16:00's
                resting = trading.submit_order(
                    LimitOrderRequest(
                        symbol="TQQQ",
                        qty=2,
                        side=OrderSide.BUY,
                        time_in_force=TimeInForce.DAY,
                        limit_price=74.90,
                    )
                )
                assert resting.status is not OrderStatus.FILLED
                deadline = time.monotonic() + 60
                order = trading.get_order_by_id(resting.id)
                while order.status is not OrderStatus.FILLED and time.monotonic() < deadline:
                    time.sleep(0.2)
                    order = trading.get_order_by_id(resting.id)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
    assert order.status is OrderStatus.FILLED
    price, at = Decimal(str(order.filled_avg_price)), order.filled_at
    assert at is not None and price <= Decimal("74.90")
    # Filled at a close known by then, never before the first close at or below the limit was.
    reached = min(t for t, close in closes.items() if close <= Decimal("74.90"))
    assert reached == datetime(2026, 5, 21, 13, 43, tzinfo=UTC)
    assert at >= reached and price == closes[max(t for t in closes if t <= at)]
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--speed", "60"], "--speed replays a bar file: give --bars too"),
        (["--bars", str(shipped_day_path()), "--speed", "0"], "--speed wants a number above 0"),
        (["--bars", str(shipped_day_path()), "--speed", "nan"], "--speed wants a number above 0"),
    ],
)
def test_a_speed_without_bars_or_out_of_range_is_one_line(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["paper-server", "--port", "0", *args]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"tradeguard: error: {said}")
