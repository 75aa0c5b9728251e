"""A QQQ/TQQQ momentum bot in the shape of the May 21 bot: bull side TQQQ, bear side SQQQ.

On each 1-minute QQQ bar it enters on a run of rising (bull) or falling (bear) closes, adds
while the run continues, flips when it turns, and exits when momentum stalls. Every decision
is named by its bar time and reason, so a retry of the same bar is the same intent, and the
bot asks the gateway, not its own memory, what it holds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial
from itertools import pairwise

from tradeguard import OrderGateway, OrderResult, Outcome

__all__ = ["MomentumBot", "MomentumConfig"]


@dataclass(frozen=True, slots=True)
class MomentumConfig:
    """Knobs of the example bot.

    Attributes:
        bull_symbol: Bought when QQQ rises.
        bear_symbol: Bought when QQQ falls.
        lookback_bars: How many consecutive closes make a run.
        entry_qty: Shares per entry and per add.
        max_adds: Adds allowed per turn after the entry.
        retries: How often the bot re-asks after an UNKNOWN outcome (the same intent each time).
    """

    bull_symbol: str = "TQQQ"
    bear_symbol: str = "SQQQ"
    lookback_bars: int = 3
    entry_qty: int = 6
    max_adds: int = 2
    retries: int = 3


@dataclass
class MomentumBot:
    """The example bot. Feed it bars with `on_bar`; it returns the gateway's answers."""

    gateway: OrderGateway
    config: MomentumConfig = field(default_factory=MomentumConfig)
    _closes: deque[Decimal] = field(default_factory=lambda: deque(maxlen=8))
    _adds: int = 0

    def on_bar(self, bar_time: datetime, qqq_close: Decimal) -> list[OrderResult]:
        """Decide on one bar and act through the gateway."""
        self._closes.append(qqq_close)
        cfg = self.config
        if len(self._closes) <= cfg.lookback_bars:
            return []
        recent = list(self._closes)[-cfg.lookback_bars - 1 :]
        rising = all(b > a for a, b in pairwise(recent))
        falling = all(b < a for a, b in pairwise(recent))
        stamp = f"{bar_time:%Y-%m-%d %H:%M}"
        bull = self.gateway.position(cfg.bull_symbol)
        bear = self.gateway.position(cfg.bear_symbol)
        results: list[OrderResult] = []
        if rising or falling:
            want, other = (cfg.bull_symbol, bear) if rising else (cfg.bear_symbol, bull)
            if not other.is_flat:
                results.append(self._act(lambda: self.gateway.exit(other.symbol, intent=f"{stamp} flip")))
            mine = bull if rising else bear
            if mine.is_flat:
                self._adds = 0
                results.append(
                    self._act(lambda: self.gateway.enter(want, qty=cfg.entry_qty, intent=f"{stamp} entry"))
                )
            elif self._adds < cfg.max_adds:
                self._adds += 1
                results.append(
                    self._act(lambda: self.gateway.enter(want, qty=cfg.entry_qty, intent=f"{stamp} add"))
                )
        else:
            for held in (bull, bear):
                if not held.is_flat:
                    exit_call = partial(self.gateway.exit, held.symbol, intent=f"{stamp} stall")
                    results.append(self._act(exit_call))
        return results

    def _act(self, call: Callable[[], OrderResult]) -> OrderResult:
        """Call the gateway, retrying an UNKNOWN outcome with the same intent (safe by design)."""
        result: OrderResult = call()
        for _ in range(self.config.retries):
            if result.outcome is not Outcome.UNKNOWN:
                break
            result = call()
        return result
