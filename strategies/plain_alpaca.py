"""A plain alpaca-py bot: the one tradeguard line is where its `TradingClient` comes from.

It buys TQQQ when QQQ's 5-minute average crosses above its 20-minute average and sells when it
crosses back, written the way many Alpaca bots are: a `client_order_id` per decision (bar time
and reason), the position read from Alpaca, and a retry when a request times out or Alpaca
answers 5xx. On alpaca-py's own `TradingClient` that retry is how a bot buys twice; on
`GuardedTradingClient` the retry gets the first order back and nothing is sent.

On its own (Alpaca paper keys in the environment)::

    client = TradingClient(os.environ["APCA_API_KEY_ID"], os.environ["APCA_API_SECRET_KEY"], paper=True)
    bot = CrossoverBot(client)
    for bar in my_bars:                       # your data loop
        bot.on_bar(bar.timestamp, Decimal(str(bar.close)))

Through `tradeguard run` (`CrossoverStrategy` below hands it the run's client), and proved
under seeded faults and crashes the same way::

    tradeguard run strategies.plain_alpaca
    tradeguard chaos strategies.plain_alpaca --runs 200
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.models import Position
from alpaca.trading.requests import MarketOrderRequest
from requests.exceptions import RequestException

from tradeguard import Bars, Strategy, StrategyContext
from tradeguard import GuardedTradingClient as TradingClient  # was: from alpaca.trading.client import ...

__all__ = ["CrossoverBot", "CrossoverStrategy"]

EASTERN = ZoneInfo("America/New_York")


class CrossoverBot:
    """Moving-average crossover on QQQ, trading TQQQ, over an alpaca-py client.

    Args:
        client: An alpaca-py `TradingClient` (here: tradeguard's drop-in).
        symbol: What it trades.
        qty: Shares per entry.
        fast: Bars in the fast average.
        slow: Bars in the slow average.
        retries: Retries of a request that timed out or got a 5xx/429.
        sleep: How it waits before a retry.
    """

    def __init__(
        self,
        client: TradingClient,
        *,
        symbol: str = "TQQQ",
        qty: int = 10,
        fast: int = 5,
        slow: int = 20,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.symbol = symbol
        self.qty = qty
        self.fast = fast
        self.slow = slow
        self.retries = retries
        self.sleep = sleep
        self.closes: deque[Decimal] = deque(maxlen=slow + 1)

    def on_bar(self, bar_time: datetime, signal_close: Decimal) -> None:
        """Buy on a cross up, sell on a cross down."""
        self.closes.append(signal_close)
        if len(self.closes) <= self.slow:
            return
        closes = list(self.closes)
        before = self._average(closes[:-1], self.fast) - self._average(closes[:-1], self.slow)
        now = self._average(closes[1:], self.fast) - self._average(closes[1:], self.slow)
        stamp = f"{bar_time.astimezone(EASTERN):%Y%m%d-%H%M}"
        if before <= 0 < now and not self._holding():
            self._submit(OrderSide.BUY, f"xover-{stamp}-buy")
        elif before >= 0 > now and self._holding():
            self._submit(OrderSide.SELL, f"xover-{stamp}-sell")

    @staticmethod
    def _average(closes: list[Decimal], bars: int) -> Decimal:
        return sum(closes[-bars:], Decimal(0)) / bars

    def _holding(self) -> bool:
        try:
            position = self.client.get_open_position(self.symbol)
        except APIError as exc:
            if exc.status_code == 404:  # Alpaca: "position does not exist"
                return False
            raise
        assert isinstance(position, Position)  # not raw_data: alpaca-py's model
        return Decimal(str(position.qty)) > 0

    def _submit(self, side: OrderSide, client_order_id: str) -> Any:
        order = MarketOrderRequest(
            symbol=self.symbol, qty=self.qty, side=side, time_in_force=TimeInForce.DAY,
            client_order_id=client_order_id,
        )  # fmt: skip
        for attempt in range(self.retries + 1):
            try:
                return self.client.submit_order(order)
            except RequestException:  # a timeout or a dropped connection
                if attempt == self.retries:
                    raise
            except APIError as exc:
                if exc.status_code not in (429, 500, 502, 503, 504) or attempt == self.retries:
                    raise
            self.sleep(2.0)
        return None


class CrossoverStrategy(Strategy):
    """The bot as a `tradeguard run` strategy: the run hands it its alpaca-py client."""

    name = "crossover"
    symbols = ("QQQ", "TQQQ")
    _bot: CrossoverBot

    def on_start(self, ctx: StrategyContext) -> None:
        """Give the bot the run's client; it waits on the run's clock."""
        self._bot = CrossoverBot(ctx.trading_client(), sleep=ctx.clock.sleep)

    def on_bar(self, bars: Bars, ctx: StrategyContext) -> None:
        """Feed the bot QQQ's close."""
        self._bot.on_bar(bars.at, bars.close("QQQ"))
