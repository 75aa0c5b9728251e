"""A sim run trades its resting orders as the bars move: a stop-loss fires, a limit below fills.

The sim's paper account matched an order only when it was submitted: nothing traded a resting
order afterwards, so a strategy's stop-loss never fired in `tradeguard run` (rec38) and a limit
entry below the market never filled, whatever the bars did. The sim's market now moves a minute
at a time (`Venue.before_bar`): resting orders trade at each minute's close, and the run's
recording keeps the closes, so a replay of it meets the same prices.

The shipped day's first minutes: TQQQ closes 75.49 at the second bar and 74.83 at the thirteenth;
QQQ 521.14, then 519.60 at the thirteenth.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tradeguard import ClaimStore, PriceEvent, open_session
from tradeguard.cli import main
from tradeguard.run.barfile import shipped_day_path

ROOT = Path(__file__).resolve().parents[1]
MINUTES = 20

STRATEGY = '''
from decimal import Decimal

from tradeguard import Bars, Strategy, StrategyContext


class Resting(Strategy):
    """Buys TQQQ, guards it with a stop, and bids for QQQ below the market and far below it."""

    symbols = ("QQQ", "TQQQ")

    def __init__(self) -> None:
        self.bars = 0

    def on_bar(self, bars: Bars, ctx: StrategyContext) -> None:
        self.bars += 1
        gw = ctx.gateway
        if self.bars == 1:
            gw.enter("TQQQ", qty=6, intent="entry TQQQ")
        elif self.bars == 2:
            gw.exit("TQQQ", intent="stop-loss TQQQ", order_type="stop", stop_price=Decimal("75.00"))
            gw.enter("QQQ", qty=2, intent="dip QQQ", order_type="limit", limit_price=Decimal("519.70"))
            gw.enter("QQQ", qty=1, intent="crash QQQ", order_type="limit", limit_price=Decimal("500.00"))
'''


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "TRADEGUARD_CONFIG", "TRADEGUARD_MODE"):
        monkeypatch.delenv(name, raising=False)


def test_a_sims_stop_loss_fires_and_its_limit_below_the_market_fills_when_the_bars_reach_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    strategy = tmp_path / "resting.py"
    strategy.write_text(textwrap.dedent(STRATEGY))
    bars = tmp_path / "bars.csv"
    lines = [line for line in shipped_day_path().read_text().splitlines() if ",SQQQ," not in line]
    bars.write_text("\n".join(lines[: 1 + 2 * MINUTES]) + "\n")
    store_url, session = f"sqlite:///{tmp_path / 'run.db'}", tmp_path / "run.jsonl"
    args = ["run", str(strategy), "--bars", str(bars), "--view", "plain", "--record", str(session)]
    assert main([*args, "--store", store_url]) == 0
    capsys.readouterr()
    assert main(["claims", "list", "--all", "--store", store_url, "--format", "json"]) == 0
    states = {c["intent"]: c["state"] for c in json.loads(capsys.readouterr().out)}
    assert states == {
        "entry TQQQ": "FILLED",
        "stop-loss TQQQ": "FILLED",  # 74.83 at the thirteenth minute is below 75.00
        "dip QQQ": "FILLED",  # 519.60 at the thirteenth minute is below 519.70
        "crash QQQ": "SUBMITTED",  # 500 was never reached: still resting
    }
    with ClaimStore(store_url) as store:
        held = {p.symbol: p.qty for p in store.positions("resting")}
    assert held == {"QQQ": 2}  # TQQQ flat: the stop sold the 6 (a flat position is not listed)
    # The recording keeps each minute's closes: a replay's resting orders meet the same prices.
    with open_session(session) as reading:
        prices = [e for _, e in reading if isinstance(e, PriceEvent) and e.symbol == "TQQQ"]
    assert len(prices) >= MINUTES - 5  # repeats of a price are left out
    assert min(p.price for p in prices) < 75
