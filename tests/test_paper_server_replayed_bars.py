"""`tradeguard paper-server --bars` replays the bars' day: prices, the clock and resting orders move.

Before, the server priced orders from the bar file at the wall clock's time: the file's day long
past, every order filled at its last close, `/v2/clock` said closed, and a limit below the market
never filled. Now the day runs from the server's start, `--speed` times as fast, and resting orders
trade as the replayed prices reach them (between requests too). A real subprocess, a real
alpaca-py client.

The shipped day: TQQQ opens near 75.49 and first closes below 74.90 at 09:42 (74.83).
"""

from __future__ import annotations

import csv
import signal
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

from tests.test_paper_server_cli import _run_cli
from tradeguard.cli import main
from tradeguard.run.barfile import shipped_day_path
from tradeguard.testing import alpaca_client

SPEED = 600  # a replayed minute every 0.1 s


def _closes(symbol: str) -> dict[datetime, Decimal]:
    with shipped_day_path().open(newline="") as handle:
        return {
            datetime.fromisoformat(row["timestamp"]).astimezone(UTC): Decimal(row["close"])
            for row in csv.DictReader(handle)
            if row["symbol"] == symbol
        }


def test_the_server_replays_the_bars_day_and_fills_a_resting_limit_when_the_price_reaches_it() -> None:
    closes = _closes("TQQQ")
    with _run_cli("--port", "0", "--bars", str(shipped_day_path()), "--speed", str(SPEED)) as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[4]
        assert proc.stdout.readline().startswith(f"replaying {shipped_day_path()} from 2026-05-21 13:30 UTC")
        try:
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
                deadline = time.monotonic() + 20
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
    # Filled at the replayed close of its minute, not before the day first reached the limit.
    assert price in closes.values() and at >= datetime(2026, 5, 21, 13, 42, tzinfo=UTC)
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
