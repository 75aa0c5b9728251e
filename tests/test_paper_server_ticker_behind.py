"""`paper-server --bars`: a matching pass that falls behind still trades each minute's close it passed.

The server's ticker matched resting orders at the price of the moment it woke. At a high
`--speed` (3600x: a replayed minute every 17 ms) a pass a few milliseconds late skipped a whole
minute, and a stop or limit that only that minute's close reached never traded, or traded later at
another close (review45). Now each pass first runs one as of every minute's end it slept through
(`PaperBroker.step(at=...)`: that end's prices, the orders there by then, fills stamped then).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tradeguard import ManualClock, OrderRequest, PaperBroker, Side
from tradeguard.cli.paper import _trade_resting
from tradeguard.domain.orders import OrderStatus, OrderType
from tradeguard.paper.prices import BarPrices, MinuteBar

OPEN = datetime(2026, 5, 21, 13, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def _bars(*closes: str) -> BarPrices:
    """TQQQ bars from 09:30 ET, one a minute, closing at `closes` (each known at its minute's end)."""
    rows = []
    for i, close in enumerate(closes):
        price = Decimal(close)
        rows.append(MinuteBar(OPEN + i * MINUTE, price, price, price, price, 100))
    return BarPrices({"TQQQ": rows})


def _limit_buy(paper: PaperBroker, coid: str, limit: str) -> None:
    paper.submit_order(
        OrderRequest(
            "TQQQ", Side.BUY, coid, qty=Decimal(2), order_type=OrderType.LIMIT, limit_price=Decimal(limit)
        )
    )


def test_a_pass_as_of_a_passed_minute_trades_at_its_close_only_the_orders_there_by_then() -> None:
    # 75.40, then 74.80 (below the 74.90 limit) for one minute only, then 75.30.
    clock = ManualClock(OPEN + MINUTE)
    paper = PaperBroker(prices=_bars("75.40", "74.80", "75.30", "75.35"), clock=clock)
    _limit_buy(paper, "early", "74.90")
    clock.set(OPEN + 3 * MINUTE + timedelta(seconds=5))  # the ticker slept through 09:32-09:33
    _limit_buy(paper, "late", "74.90")  # placed at 75.30, after 74.80's minute: it rests
    assert paper.step() == []  # at 75.30 now: the minute's close that reached it is gone
    filled = paper.step(at=OPEN + 2 * MINUTE)
    assert [(o.client_order_id, o.status, o.filled_avg_price, o.updated_at) for o in filled] == [
        ("early", OrderStatus.FILLED, Decimal("74.80"), OPEN + 2 * MINUTE)  # filled then, at its close
    ]
    late = paper.get_order_by_client_id("late")
    assert late is not None and late.status is not OrderStatus.FILLED
    assert paper.get_position("TQQQ") is not None and paper.get_position("TQQQ").qty == 2  # type: ignore[union-attr]
    assert paper.clock.now() == OPEN + 3 * MINUTE + timedelta(seconds=5)  # the pass left the clock alone


def test_the_ticker_trades_a_close_it_slept_through() -> None:
    clock = ManualClock(OPEN + MINUTE)
    prices = _bars("75.40", "74.80", "75.30", "75.35", "75.50")
    paper = PaperBroker(prices=prices, clock=clock)
    _limit_buy(paper, "resting", "74.90")
    stop = threading.Event()
    ticker = threading.Thread(target=_trade_resting, args=(paper, prices, clock, stop, 0.002), daemon=True)
    ticker.start()
    try:
        time.sleep(0.05)  # a few passes at 75.40: nothing trades
        order = paper.get_order_by_client_id("resting")
        assert order is not None and order.status is not OrderStatus.FILLED
        clock.advance(180)  # one late wake-up: 09:32 (74.80) and 09:33 passed unseen
        deadline = time.monotonic() + 30
        while order.status is not OrderStatus.FILLED and time.monotonic() < deadline:
            time.sleep(0.01)
            order = paper.get_order_by_client_id("resting")
            assert order is not None
    finally:
        stop.set()
        ticker.join(timeout=30)
    assert order.status is OrderStatus.FILLED
    assert (order.filled_avg_price, order.updated_at) == (Decimal("74.80"), OPEN + 2 * MINUTE)
