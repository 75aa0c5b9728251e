"""A QQQ/TQQQ momentum bot in the shape of the May 21 bot: bull side TQQQ, bear side SQQQ.

On each 1-minute QQQ bar it enters on a run of rising (bull) or falling (bear) closes, adds
while the run goes on (scale-in, at most `max_adds`), flips when the run turns the other way,
exits when `stall_bars` closes in a row go against it, and is flat by `flatten_at`. Every decision is
named by its bar time (US/Eastern) and reason, so a retry of the same bar is the same decision;
the bot asks the gateway, not its own memory, what it holds and how many adds it made.

It keeps the habit that hurt on May 21: an answer that might be a timeout is retried after a
short wait. Through the gateway a retry is answered from the first order (or resends the very
same client_order_id once the broker proves it never got it), so the habit is now safe.

Run it: ``tradeguard run strategies.momentum`` (a simulated day), or see README "Run a strategy".
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal
from itertools import pairwise
from zoneinfo import ZoneInfo

from tradeguard import (
    Bars,
    ClaimInProgress,
    LedgerPosition,
    OrderGateway,
    OrderResult,
    Outcome,
    OutcomeUnknown,
    Strategy,
    StrategyContext,
)

__all__ = ["MomentumBot", "MomentumConfig", "MomentumStrategy"]

EASTERN = ZoneInfo("America/New_York")
_MAYBE_SENT = (Outcome.UNKNOWN, Outcome.NOT_SENT)  # what a bot sees as "it timed out"


@dataclass(frozen=True, slots=True)
class MomentumConfig:
    """Knobs of the bot.

    Attributes:
        signal_symbol: The index whose closes make the signal.
        bull_symbol: Bought when the signal rises.
        bear_symbol: Bought when the signal falls.
        lookback_bars: How many consecutive rising (falling) closes make a run.
        stall_bars: How many consecutive closes against a position make it stall (an exit).
        bull_qty: Shares of `bull_symbol` per entry and per add (about $450 at $75).
        bear_qty: Shares of `bear_symbol` per entry and per add (about $430 at $21.50).
        max_adds: Adds allowed per position after its entry.
        retries: How often a timeout-like answer is retried (the same decision each time).
        retry_wait_secs: The pause before a retry.
        last_entry: No new entries or adds from this time (US/Eastern).
        flatten_at: Everything is sold from this time (US/Eastern): no position overnight.
    """

    signal_symbol: str = "QQQ"
    bull_symbol: str = "TQQQ"
    bear_symbol: str = "SQQQ"
    lookback_bars: int = 3
    stall_bars: int = 2
    bull_qty: int = 6
    bear_qty: int = 20
    max_adds: int = 2
    retries: int = 3
    retry_wait_secs: float = 5.0
    last_entry: time = time(15, 45)
    flatten_at: time = time(15, 55)


@dataclass
class MomentumBot:
    """The bot. Feed it bars with `on_bar`; it returns the gateway's answers.

    Attributes:
        gateway: Where every order goes.
        config: The knobs.
        sleep: How the bot waits before a retry (default: the gateway's clock).
    """

    gateway: OrderGateway
    config: MomentumConfig = field(default_factory=MomentumConfig)
    sleep: Callable[[float], None] | None = None
    _closes: deque[Decimal] = field(default_factory=lambda: deque(maxlen=32))

    def on_bar(self, bar_time: datetime, signal_close: Decimal) -> list[OrderResult]:
        """Decide on one bar (its start time and the signal's close) and act through the gateway."""
        cfg = self.config
        self._closes.append(signal_close)
        local = bar_time.astimezone(EASTERN)
        stamp = f"{local:%Y-%m-%d %H:%M}"
        bull = self.gateway.position(cfg.bull_symbol)
        bear = self.gateway.position(cfg.bear_symbol)
        if local.time() >= cfg.flatten_at:
            return [self._exit(p, f"{stamp} end of day") for p in (bull, bear) if not p.is_flat]
        if len(self._closes) <= cfg.lookback_bars:
            return []
        recent = list(self._closes)[-cfg.lookback_bars - 1 :]
        rising = all(b > a for a, b in pairwise(recent))
        falling = all(b < a for a, b in pairwise(recent))
        results: list[OrderResult] = []
        if rising or falling:
            mine, other = (bull, bear) if rising else (bear, bull)
            qty = cfg.bull_qty if rising else cfg.bear_qty
            if not other.is_flat:
                results.append(self._exit(other, f"{stamp} flip"))
            if local.time() < cfg.last_entry:
                if mine.is_flat:
                    results.append(self._enter(mine.symbol, qty, f"{stamp} entry"))
                elif int(mine.qty // qty) - 1 < cfg.max_adds:  # adds made, read from the ledger
                    results.append(self._enter(mine.symbol, qty, f"{stamp} add"))
            return results
        tail = list(self._closes)[-cfg.stall_bars - 1 :]
        if not bull.is_flat and all(b < a for a, b in pairwise(tail)):
            results.append(self._exit(bull, f"{stamp} stall"))
        if not bear.is_flat and all(b > a for a, b in pairwise(tail)):
            results.append(self._exit(bear, f"{stamp} stall"))
        return results

    def _enter(self, symbol: str, qty: int, intent: str) -> OrderResult:
        return self._act(lambda: self.gateway.enter(symbol, qty=qty, intent=intent))

    def _exit(self, held: LedgerPosition, intent: str) -> OrderResult:
        return self._act(lambda: self.gateway.exit(held.symbol, intent=intent))

    def _act(self, call: Callable[[], OrderResult]) -> OrderResult:
        """Call the gateway; retry a timeout-like answer after a pause, with the same decision."""
        sleep = self.sleep or self.gateway.clock.sleep
        for attempt in range(self.config.retries + 1):
            last_try = attempt == self.config.retries
            try:
                result = call()
            except (ClaimInProgress, OutcomeUnknown):  # another worker mid-send; a lost record
                if last_try:
                    raise
            else:
                if result.outcome not in _MAYBE_SENT or last_try:
                    return result
            sleep(self.config.retry_wait_secs)
        raise AssertionError("the loop returns or raises on its last try")


class MomentumStrategy(Strategy):
    """The bot as a `tradeguard run` strategy."""

    name = "momentum"
    symbols = ("QQQ", "TQQQ", "SQQQ")
    config = MomentumConfig()
    _bot: MomentumBot

    def on_start(self, ctx: StrategyContext) -> None:
        """Build the bot on the run's gateway; it waits on the run's clock."""
        self._bot = MomentumBot(ctx.gateway, self.config, sleep=ctx.clock.sleep)

    def on_bar(self, bars: Bars, ctx: StrategyContext) -> None:
        """Decide on QQQ's close; say so when an order was refused or is still unknown."""
        for result in self._bot.on_bar(bars.at, bars.close(self.config.signal_symbol)):
            if result.outcome in (Outcome.REJECTED, Outcome.UNKNOWN):
                ctx.log(f"{result.outcome}: {result.reason}")
