"""A plain alpaca-py bot reads its market data from the paper server (no account, no network).

`StockHistoricalDataClient(url_override=server.url)`: the latest trade and quote are the price the
paper account fills at now; bars come from the bars the server replays (`paper-server --bars`) and
only those that ended by its clock: a bot must never see a minute still running, nor the future.
Before, every data route was 404 "endpoint not found" and such a bot could not run offline.
"""

from __future__ import annotations

import csv
import signal
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest, StockLatestQuoteRequest, StockLatestTradeRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from tests.test_paper_server_cli import _run_cli
from tradeguard import ManualClock, PaperBroker
from tradeguard.paper.prices import BarPrices, FixedPrices, MinuteBar
from tradeguard.paper.server import PaperServer
from tradeguard.run.barfile import shipped_day_path
from tradeguard.testing import alpaca_client

OPEN = datetime(2026, 5, 21, 13, 30, tzinfo=UTC)


def _shipped_bars() -> dict[str, list[MinuteBar]]:
    bars: dict[str, list[MinuteBar]] = {}
    with shipped_day_path().open(newline="") as handle:
        for row in csv.DictReader(handle):
            bar = MinuteBar(
                datetime.fromisoformat(row["timestamp"]).astimezone(UTC),
                *(Decimal(row[k]) for k in ("open", "high", "low", "close")),
                volume=int(row["volume"]),
            )
            bars.setdefault(row["symbol"], []).append(bar)
    return bars


def test_latest_trade_and_quote_are_the_price_the_account_fills_at() -> None:
    paper = PaperBroker(prices=FixedPrices({"TQQQ": "75.49", "SPY": "512"}))
    with PaperServer(paper) as server, alpaca_client(server.url) as trading:
        data = StockHistoricalDataClient("key", "secret", url_override=server.url)
        trades = data.get_stock_latest_trade(
            StockLatestTradeRequest(symbol_or_symbols=["TQQQ", "SPY", "NOPE"])
        )
        quotes = data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="TQQQ"))
        bought = trading.submit_order(
            MarketOrderRequest(symbol="TQQQ", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        )
    assert {s: t.price for s, t in trades.items()} == {"TQQQ": 75.49, "SPY": 512}  # no data: left out
    assert (quotes["TQQQ"].bid_price, quotes["TQQQ"].ask_price) == (75.49, 75.49)
    assert float(bought.filled_avg_price or 0) == trades["TQQQ"].price


def test_bars_are_only_those_that_ended_by_the_servers_clock() -> None:
    clock = ManualClock(OPEN + timedelta(minutes=10, seconds=30))  # 09:40:30 ET: 09:40 still running
    paper = PaperBroker(prices=BarPrices(_shipped_bars()), clock=clock)
    with PaperServer(paper) as server:
        data = StockHistoricalDataClient("key", "secret", url_override=server.url)
        request = StockBarsRequest(
            symbol_or_symbols=["TQQQ", "QQQ"],
            timeframe=TimeFrame.Minute,
            start=OPEN,
            end=OPEN + timedelta(hours=6),
        )
        got = data.get_stock_bars(request)
        latest = data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols="TQQQ"))
        clock.advance(60)  # 09:41:30: the 09:40 bar has ended
        later = data.get_stock_bars(request)
        with pytest.raises(APIError) as info:
            data.get_stock_bars(
                StockBarsRequest(
                    symbol_or_symbols="TQQQ", timeframe=TimeFrame(5, TimeFrameUnit.Minute), start=OPEN
                )
            )
    tqqq = got.data["TQQQ"]
    assert [b.timestamp for b in tqqq] == [OPEN + timedelta(minutes=m) for m in range(10)]  # 09:30-09:39
    shipped = _shipped_bars()["TQQQ"]
    assert [(b.open, b.high, b.low, b.close, b.volume) for b in tqqq] == [
        (float(s.open), float(s.high), float(s.low), float(s.close), s.volume) for s in shipped[:10]
    ]
    assert len(got.data["QQQ"]) == 10 and len(later.data["TQQQ"]) == 11
    assert latest["TQQQ"].price == tqqq[-1].close  # the last close known: the price it fills at
    assert info.value.status_code == 422


def test_bars_page_as_alpaca_pages_them() -> None:
    clock = ManualClock(OPEN + timedelta(hours=6, minutes=30))  # the day is over: 390 bars each
    paper = PaperBroker(prices=BarPrices(_shipped_bars()), clock=clock)
    with PaperServer(paper) as server:
        data = StockHistoricalDataClient("key", "secret", url_override=server.url)
        few = data.get_stock_bars(
            StockBarsRequest(symbol_or_symbols="TQQQ", timeframe=TimeFrame.Minute, limit=25)
        )
        raw = data.get("/stocks/bars", {"symbols": "TQQQ,SQQQ", "timeframe": "1Min", "limit": 500})
        every = data.get_stock_bars(
            StockBarsRequest(symbol_or_symbols=["TQQQ", "SQQQ"], timeframe=TimeFrame.Minute)
        )
    assert len(few.data["TQQQ"]) == 25
    assert raw["next_page_token"] == "500"  # 780 bars in all, 500 a page
    assert (len(every.data["TQQQ"]), len(every.data["SQQQ"])) == (390, 390)  # alpaca-py followed the token


def test_the_command_serves_the_replayed_days_bars_up_to_its_clock() -> None:
    with _run_cli("--port", "0", "--bars", str(shipped_day_path()), "--speed", "600") as proc:
        try:  # the server is stopped whatever fails, or leaving the block would wait for it forever
            assert proc.stdout is not None
            url = proc.stdout.readline().split()[4]
            data = StockHistoricalDataClient("key", "secret", url_override=url)
            got = data.get_stock_bars(
                StockBarsRequest(symbol_or_symbols="TQQQ", timeframe=TimeFrame.Minute, start=OPEN)
            )
            with alpaca_client(url) as trading:
                now = trading.get_clock().timestamp
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
    bars = got.data["TQQQ"]
    assert bars and bars[0].timestamp == OPEN
    assert bars[-1].timestamp + timedelta(minutes=1) <= now  # nothing that had not ended
