"""Real kills: one chaos run as bot processes SIGKILLed at a crash point and restarted.

The supervisor starts `python -m tradeguard.chaos.worker` on a SQLite claim store file and a
paper account state file in the run's folder; the worker SIGKILLs itself at the planned hit of
the planned point (counted in that process: the n-th incarnation dies at `crash_hits[n]`), and the
supervisor starts the next one on the same files, until the bars are done. Then, in this
process, the run settles (`harness.settle_run`) on the same store and account and the checker
reads the store and the journal the workers wrote before each send.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from typing import Any, cast

from tradeguard.chaos.checker import Evidence, check_guarded
from tradeguard.chaos.harness import RESTART_SECS, RunOutcome, WorkerFailed, settle_run
from tradeguard.chaos.plan import RunPlan
from tradeguard.chaos.tap import Ask
from tradeguard.chaos.worker import BOT_ERROR
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import RecordedPrices
from tradeguard.run.bars import BarSeries
from tradeguard.run.strategy import Strategy, StrategyContext, strategy_spec
from tradeguard.store import ClaimStore

__all__ = ["run_killed", "write_bars"]

WORKER_TIMEOUT_SECS = 300.0  # a worker that runs longer is stuck: the run fails loudly


def write_bars(bars: BarSeries, path: str) -> str:
    """Write `bars` as a CSV bar file the worker reads; return the path."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["timestamp", "symbol", "open", "high", "low", "close", "volume"])
        for minute in bars.minutes:
            for bar in minute.by_symbol.values():
                out.writerow(
                    [bar.at.isoformat(), bar.symbol, bar.open, bar.high, bar.low, bar.close, bar.volume]
                )
    return path


def run_killed(
    strategy_cls: type[Strategy],
    bars: BarSeries,
    bar_file: str,
    plan: RunPlan,
    folder: str,
    *,
    store_url: str | None = None,
) -> RunOutcome:
    """Run `plan` with real bot processes in `folder`; see the module docstring.

    The worker loads the strategy by `strategy_spec` (a class from a file by the file's path).
    `store_url` puts the claims in that store (PostgreSQL) instead of a
    SQLite file in `folder`; the run's agent id carries its seed, so runs sharing one database
    never see each other's claims.
    """
    os.makedirs(folder, exist_ok=True)
    outcome = RunOutcome(plan)
    # The run's own fault plan (a `--faults` file, or the seed's random draw), as its in-process
    # twin has it: the worker would otherwise draw the seed's random one (audit 14b M1).
    faults_file = os.path.join(folder, "faults.json")
    with open(faults_file, "w", encoding="utf-8") as handle:
        handle.write(plan.faults.as_text())
    spec: dict[str, Any] = {
        "strategy": strategy_spec(strategy_cls),
        "bars": bar_file,
        "store": store_url or f"sqlite:///{os.path.join(folder, 'claims.db')}",
        "agent": f"{strategy_cls.agent_name()}-{plan.seed}",
        "state": os.path.join(folder, "paper.json"),
        "journal": os.path.join(folder, "journal.jsonl"),
        "progress": os.path.join(folder, "progress"),
        "seed": plan.seed,
        "faults": faults_file,
        "point": plan.crash_point,
    }
    incarnation = 0
    while True:
        hit = plan.crash_hits[incarnation] if incarnation < len(plan.crash_hits) else 0
        spec.update(hit=hit, restart_secs=RESTART_SECS if incarnation else 0)
        done = subprocess.run(  # noqa: S603 - our own worker, arguments built here
            [sys.executable, "-m", "tradeguard.chaos.worker", json.dumps(spec)],
            capture_output=True, text=True, timeout=WORKER_TIMEOUT_SECS, check=False,
        )  # fmt: skip
        incarnation += 1
        if done.returncode == -signal.SIGKILL:
            outcome.crashes.append(str(plan.crash_point))
        elif done.returncode == BOT_ERROR:
            outcome.bot_errors += 1
        elif done.returncode == 0:
            break
        else:
            raise WorkerFailed(f"chaos worker exited {done.returncode} (folder {folder})", done.stderr)
    _settle_and_check(strategy_cls, bars, spec, outcome)
    return outcome


def _settle_and_check(
    strategy_cls: type[Strategy], bars: BarSeries, spec: dict[str, Any], outcome: RunOutcome
) -> None:
    clock = ManualClock(bars.minutes[-1].ends_at + timedelta(seconds=RESTART_SECS))
    settings = Settings()
    paper = PaperBroker(
        prices=RecordedPrices(bars.price_series()), clock=clock, allow_short=True, state_path=spec["state"]
    )
    store = ClaimStore(spec["store"], settings=settings, clock=clock)
    try:
        agent = spec["agent"]
        gateway = OrderGateway(
            paper, store, agent_id=agent, settings=settings, clock=clock, reconcile_on_start=False
        )
        strategy = strategy_cls()
        ctx = StrategyContext(
            gateway=gateway, clock=clock, mode="sim", agent_id=agent,
            _client=lambda: cast(Any, None), _log=lambda _: None,
        )  # fmt: skip
        settle_run((strategy, ctx, gateway), paper, clock, settings, unguarded=False)
        decisions: dict[str, tuple[str, str, str]] = {}
        asks: list[Ask] = []
        with open(spec["journal"], encoding="utf-8") as handle:
            for line in handle:
                entry = json.loads(line)
                if "decision" in entry:
                    coid, kind, symbol, intent = entry["decision"]
                    decisions.setdefault(coid, (kind, symbol, intent))
                else:
                    asks.append(Ask.from_json(entry["ask"]))
        orders = paper.orders()
        outcome.orders = len(orders)
        evidence = Evidence(orders=orders, positions=paper.list_positions(), asks=asks, decisions=decisions)
        outcome.violations = check_guarded(evidence, store, agent)
    finally:
        store.close()
