"""Bars per second of a simulated day: the momentum strategy on the bare paper broker, through the
gateway, and as `tradeguard run` runs it.

Usage: python bench/run.py [--days 3] [--bars FILE | seed:N]

All three in one run, on the same bars (the shipped day by default), best of `--days` days each:

- bare: MomentumBot on the in-process PaperBroker directly (no claims, no ledger): the floor;
- gateway: MomentumBot through OrderGateway on a SQLite file, reconciling on its interval;
- tradeguard run: the whole command path (`prepare(...).run()`): gateway, reconcile passes, the
  audit-fed plain view (to a buffer), the final look-ups and summary.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the example strategies live in the repository, not the wheel

from strategies.momentum import MomentumBot  # noqa: E402
from tradeguard import (  # noqa: E402
    ClaimStore,
    LedgerPosition,
    ManualClock,
    OrderGateway,
    OrderRequest,
    OrderResult,
    Outcome,
    PaperBroker,
    PositionIntent,
    Settings,
    Side,
)
from tradeguard.paper.prices import RecordedPrices  # noqa: E402
from tradeguard.run.barfile import load_bars  # noqa: E402
from tradeguard.run.bars import BarSeries  # noqa: E402
from tradeguard.run.command import prepare  # noqa: E402
from tradeguard.run.settings import RunSettings, ViewKind  # noqa: E402


class BareGateway:
    """What MomentumBot calls, straight on the paper broker: no claim, no ledger, no guard."""

    def __init__(self, paper: PaperBroker, clock: ManualClock) -> None:
        self.paper = paper
        self.clock = clock
        self.n = 0

    def position(self, symbol: str) -> LedgerPosition:
        held = self.paper.get_position(symbol)
        return LedgerPosition("bare", symbol, held.qty if held else Decimal(0), None, None)

    def _send(self, symbol: str, side: Side, qty: Decimal, intent: PositionIntent) -> OrderResult:
        self.n += 1
        order = self.paper.submit_order(
            OrderRequest(symbol, side, f"bare-{self.n}", qty=qty, position_intent=intent)
        )
        return OrderResult(Outcome.SUBMITTED, None, order, "bare")

    def enter(self, symbol: str, *, qty: int, intent: str) -> OrderResult:
        return self._send(symbol, Side.BUY, Decimal(qty), PositionIntent.BUY_TO_OPEN)

    def exit(self, symbol: str, *, intent: str) -> OrderResult:
        return self._send(symbol, Side.SELL, self.position(symbol).qty, PositionIntent.SELL_TO_CLOSE)


def paper_for(series: BarSeries) -> tuple[PaperBroker, ManualClock]:
    clock = ManualClock(series.minutes[0].at)
    return PaperBroker(prices=RecordedPrices(series.price_series()), clock=clock, allow_short=True), clock


def drive(series: BarSeries, clock: ManualClock, bot: MomentumBot, each_bar: Callable[[], object]) -> float:
    started = time.perf_counter()
    for minute in series:
        clock.set(max(clock.now(), minute.ends_at))
        bot.on_bar(minute.at, minute.close("QQQ"))
        each_bar()
    return time.perf_counter() - started


def bare(series: BarSeries, _: Path) -> float:
    paper, clock = paper_for(series)
    return drive(series, clock, MomentumBot(BareGateway(paper, clock)), lambda: None)  # type: ignore[arg-type]


def gateway(series: BarSeries, folder: Path) -> float:
    paper, clock = paper_for(series)
    store = ClaimStore(f"sqlite:///{folder / 'gateway.db'}", settings=Settings(), clock=clock)
    guard = OrderGateway(paper, store, agent_id="bench", clock=clock)
    try:
        return drive(series, clock, MomentumBot(guard), guard.reconcile_if_due)
    finally:
        store.close()


def command(series: BarSeries, folder: Path, source: str | None) -> float:
    settings = RunSettings(
        strategy="strategies.momentum",
        bars=source,
        store_url=f"sqlite:///{folder / 'run.db'}",
        view=ViewKind.PLAIN,
    )
    prepared = prepare(settings, environ={}, out=io.StringIO())
    started = time.perf_counter()
    report = prepared.run()
    assert report.bars == len(series) and report.exit_status == 0
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=3, help="days per case; the best is kept")
    parser.add_argument("--bars", help="bar file or seed:N (default: the shipped day)")
    args = parser.parse_args()
    series = load_bars(args.bars)
    cases: dict[str, Callable[[BarSeries, Path], float]] = {
        "bare paper broker (no guard)": bare,
        "OrderGateway, SQLite file": gateway,
        "tradeguard run (sim, plain view)": lambda s, f: command(s, f, args.bars),
    }
    print(
        f"{len(series)} bars of {', '.join(series.symbols)} from {series.source}, best of {args.days} day(s)"
    )
    rows = []
    for name, case in cases.items():
        times = []
        for _ in range(args.days):
            with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp:  # the project's disk, not tmpfs
                times.append(case(series, Path(tmp)))
        rows.append((name, min(times)))
    base = rows[0][1]
    print(f"\n{'path':<36} {'bars/s':>9} {'day, s':>8} {'x bare':>7}")
    for name, secs in rows:
        print(f"{name:<36} {len(series) / secs:9,.0f} {secs:8.3f} {secs / base:7.1f}")


if __name__ == "__main__":
    main()
