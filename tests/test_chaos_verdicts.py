"""`tradeguard chaos` reports the run it made, and only violations that happened (audit 14b).

- H2: a short the bot meant (`enter(side="sell")`, sent `sell_to_open`) was reported as a G3
  accident, in every run.
- H3: with `--workers`, `--unguarded`, `--faults` and `--crash-points` were ignored while the
  report named them: they are refused now.
- M1: runs with really killed bot processes drew the seed's random faults instead of the
  campaign's plan (`--faults`); and their sells never reached the checker (G3 went unchecked).
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.requests import MarketOrderRequest
from requests.exceptions import RequestException

from strategies.momentum import MomentumStrategy
from tradeguard import Bars, Strategy, StrategyContext, crashpoints
from tradeguard.chaos.campaign import chaos
from tradeguard.chaos.tap import Ask, AskTap
from tradeguard.chaos.unguarded import PlainGateway, SendLog
from tradeguard.cli import main
from tradeguard.clock import ManualClock
from tradeguard.domain import OrderRequest, PositionIntent, Side
from tradeguard.errors import ConfigError
from tradeguard.faults import FaultPlan
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.run.barfile import load_bars
from tradeguard.run.bars import BarSeries


class Shorter(Strategy):
    """Opens a short on purpose every ten bars and covers it five bars later."""

    symbols = ("QQQ", "TQQQ")

    def on_start(self, ctx: StrategyContext) -> None:
        self.bar = 0

    def on_bar(self, bars: Bars, ctx: StrategyContext) -> None:
        self.bar += 1
        stamp = f"{bars.local:%Y-%m-%d %H:%M}"
        held = ctx.gateway.position("TQQQ")
        if self.bar % 10 == 1 and held.is_flat:
            ctx.gateway.enter("TQQQ", qty=5, side="sell", intent=f"{stamp} short")
        elif self.bar % 10 == 6 and not held.is_flat:
            ctx.gateway.exit("TQQQ", intent=f"{stamp} cover")


def _morning() -> BarSeries:
    day = load_bars(None)
    return BarSeries(day.source, day.minutes[:60], day.symbols)


def test_a_short_the_strategy_meant_is_no_g3_violation() -> None:
    result = chaos(Shorter, runs=6, seed=2, kill_every=0, bars=_morning())
    assert result.ok, [str(v) for run in result.failing for v in run.violations]
    assert sum(r.orders for r in result.runs) > 0


def test_an_accidental_sell_is_still_one() -> None:
    clock = ManualClock()
    paper = PaperBroker(prices=FixedPrices({"TQQQ": "75"}), clock=clock, allow_short=True)
    journal: list[dict[str, object]] = []
    tap = AskTap(paper, journal.append)
    tap.submit_order(
        OrderRequest("TQQQ", Side.SELL, "meant", qty=Decimal(5), position_intent=PositionIntent.SELL_TO_OPEN)
    )
    tap.submit_order(OrderRequest("TQQQ", Side.SELL, "plain", qty=Decimal(2)))
    assert [a.opens for a in tap.asks] == [True, False]
    # Journaled as it happens, for the checker of a run whose bot process is killed.
    assert [Ask.from_json(entry["ask"]) for entry in journal] == tap.asks  # type: ignore[arg-type]


def test_a_killed_run_sends_under_the_campaigns_fault_plan() -> None:
    refuse_every_post = FaultPlan.parse(
        "seed: 1\nfaults:\n  - route: POST /v2/orders\n    action: reject\n", source="refuse.yaml"
    )
    seed = 0  # run_seed's first block: real processes with kill_every=1
    result = chaos(
        MomentumStrategy, only_seed=seed, bars=_morning(), kill_every=1, faults=refuse_every_post,
        crash_points=crashpoints.POINTS,
    )  # fmt: skip
    assert result.killed == [seed]
    assert result.runs[0].orders == 0  # every POST refused, as in the plan


@pytest.mark.parametrize(
    "option", [{"unguarded": True}, {"faults": FaultPlan(seed=1)}, {"crash_points": ("after_post",)}]
)
def test_several_workers_refuse_the_options_they_would_ignore(option: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="--workers"):
        chaos(MomentumStrategy, runs=1, hosts=2, store_url="postgresql+psycopg://x/y", **option)  # type: ignore[arg-type]


def test_the_unguarded_twin_sends_the_side_the_strategy_asked_for() -> None:
    # Audit 14b M5: `--unguarded` dropped `side=` and bought where the guarded run sold short.
    clock = ManualClock()
    paper = PaperBroker(prices=FixedPrices({"TQQQ": "75"}), clock=clock, allow_short=True)
    plain = PlainGateway(paper, agent_id="bot", clock=clock, log=SendLog())
    plain.enter("TQQQ", qty=5, side="sell", intent="short")
    assert plain.position("TQQQ").qty == -5
    plain.exit("TQQQ", intent="cover")
    assert [(o.side, o.qty) for o in paper.orders()] == [(Side.SELL, Decimal(5)), (Side.BUY, Decimal(5))]
    assert paper.get_position("TQQQ") is None


class ResendsUnderANewIdItself(Strategy):
    """An alpaca-py bot with May 21's bug: a timed-out order is sent again under a new client id."""

    symbols = ("QQQ", "TQQQ")

    def on_start(self, ctx: StrategyContext) -> None:
        self.client = ctx.trading_client()
        self.bar = 0

    def client_order_id(self, stamp: str, attempt: int) -> str:
        return f"{stamp}-a{attempt}"  # the bug: each try is a new order to the broker

    def on_bar(self, bars: Bars, ctx: StrategyContext) -> None:
        self.bar += 1
        if self.bar % 3:
            return
        stamp = f"{bars.local:%Y%m%d-%H%M}"
        for attempt in range(3):
            coid = self.client_order_id(stamp, attempt)
            request = MarketOrderRequest(
                symbol="TQQQ", qty=5, side="buy", time_in_force="day", client_order_id=coid
            )
            try:
                self.client.submit_order(request)
                return
            except (RequestException, APIError):
                continue


class RetriesUnderItsOwnId(ResendsUnderANewIdItself):
    """The same bot without the bug: every try of a bar's order has the bar's one client id."""

    def client_order_id(self, stamp: str, attempt: int) -> str:
        return stamp


def test_a_bot_that_resends_a_timed_out_order_under_a_new_id_fails_g1() -> None:
    # Audit 14b H1: each id was its own decision to the checker, so "G1-G4 held" for a bot that
    # bought twice after every lost answer.
    result = chaos(ResendsUnderANewIdItself, only_seed=3000029, kill_every=0)  # answers lost, lookups failed
    found = [str(v) for run in result.runs for v in run.violations if v.guarantee.name == "G1"]
    assert found and "2 broker orders for one decision" in found[0], found


def test_a_bot_that_retries_a_timed_out_order_under_its_own_id_passes() -> None:
    # The same bot, retrying as it should (the same client id each time): one order per decision.
    result = chaos(RetriesUnderItsOwnId, only_seed=3000029, kill_every=0)
    assert result.ok, [str(v) for run in result.failing for v in run.violations]
    assert result.runs[0].orders > 0


def test_the_report_says_how_many_failing_runs_it_did_not_list(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Audit 14b LOW: 151 failing runs were cut to 20 lines with nothing said.
    status = main(["chaos", "strategies.momentum", "--runs", "40", "--seed", "1", "--unguarded",
                   "--kill-every", "0", "--save", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    failing = int(re.search(r"(\d+) failing run", out).group(1))  # type: ignore[union-attr]
    assert status == 1 and failing > 20
    assert f"... and {failing - 20} more failing run(s)" in out


class RaisesItsOwnError(Strategy):
    """A strategy with a bug of its own: its signal code fails on every bar."""

    symbols = ("QQQ", "TQQQ")

    def on_bar(self, bars: Bars, ctx: StrategyContext) -> None:
        raise KeyError("signal")


def test_a_strategy_that_raises_its_own_error_fails_the_run() -> None:
    # Audit 14b M2: 1,170 bot errors and "G1-G4 held", exit 0. An error no injected fault
    # explains (raised in a bar where none fired, and not a broker, store or transport error)
    # is the strategy's own: the run fails, once per run.
    result = chaos(RaisesItsOwnError, runs=3, seed=1, kill_every=0, bars=_morning())
    assert not result.ok
    found = [v for run in result.runs for v in run.violations]
    assert len(found) == 3 and all(v.guarantee.name == "BOT" and "KeyError" in v.detail for v in found)


def test_errors_that_faults_explain_are_restarts_not_failures() -> None:
    # The drop-in bot of strategies.plain_alpaca lets some injected 5xx escape as APIError: restarted.
    from strategies.plain_alpaca import CrossoverStrategy

    result = chaos(CrossoverStrategy, runs=20, seed=1, kill_every=0)
    assert result.ok, [str(v) for run in result.failing for v in run.violations]
