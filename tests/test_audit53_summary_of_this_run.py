"""A run's summary counts that run's orders and blocked retries, not every run's on its store.

A sim replays the same day on its simulated clock, so a second run on the same `--store` made
claims at the very times the first one did. The summary took "the run's claims" to be those
created since the run's start by that clock, and so counted the first run's orders, states and
blocked duplicates as the second's: "orders sent: 14" for a run that sent 6.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tradeguard import ClaimStore
from tradeguard.cli import main

BOT = '''
from decimal import Decimal

from tradeguard import Bars, Strategy, StrategyContext


class Breakout(Strategy):
    """The README's example: buy TQQQ on a new 30-minute high of QQQ, sell on a 10-minute low."""

    symbols = ("QQQ", "TQQQ")
    closes: list[Decimal]

    def on_start(self, ctx: StrategyContext) -> None:
        self.closes = []

    def on_bar(self, bars: Bars, ctx: StrategyContext) -> None:
        close, before = bars.close("QQQ"), self.closes
        stamp = f"{bars.local:%Y-%m-%d %H:%M}"
        held = ctx.gateway.position("TQQQ")
        if len(before) >= 30 and close > max(before[-30:]) and held.is_flat:
            ctx.gateway.enter("TQQQ", qty=6, intent=f"{stamp} breakout")
        elif len(before) >= 10 and close < min(before[-10:]) and not held.is_flat:
            ctx.gateway.exit("TQQQ", intent=f"{stamp} breakdown")
        self.closes.append(close)
'''


def run(bot: Path, url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, int, int, int]:
    """Run the bot once; return (orders sent, blocked) from its summary and from its own lines."""
    assert main(["run", str(bot), "--store", url, "--view", "plain"]) == 0
    out = capsys.readouterr().out
    summary = re.search(r"orders sent: (\d+); retries and duplicates blocked: (\d+)", out)
    assert summary, out
    states = re.search(r"decisions by state: FILLED (\d+)\n", out)
    assert states, out
    claimed = sum(1 for line in out.splitlines() if re.match(r"\S+ claim ", line))
    skipped = sum(1 for line in out.splitlines() if re.match(r"\S+ skip .*duplicate of", line))
    assert int(states.group(1)) == claimed
    return int(summary.group(1)), int(summary.group(2)), claimed, skipped


def test_a_second_sim_on_the_same_store_sums_up_its_own_orders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bot = tmp_path / "breakout.py"
    bot.write_text(BOT)
    url = f"sqlite:///{tmp_path / 'claims.db'}"

    first = run(bot, url, capsys)
    second = run(bot, url, capsys)

    sent, blocked, claimed, skipped = first
    assert (sent, blocked) == (claimed, skipped) and claimed > 0 and skipped == 0
    sent, blocked, claimed, skipped = second
    assert skipped > 0  # the first run's decisions, met again on the replayed day, are not resent
    assert (sent, blocked) == (claimed, skipped)
    with ClaimStore(url) as store:
        assert len(store.list_claims(agent_id="breakout")) == first[2] + second[2]
