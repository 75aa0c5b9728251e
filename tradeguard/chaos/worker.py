"""A bot process of a real-kill chaos run: `python -m tradeguard.chaos.worker ARGS_JSON`.

It runs the strategy from the bar after the last one it finished (the progress file), on a
SQLite claim store and a paper account state file shared with its earlier incarnations, and
SIGKILLs itself at the n-th hit of the chosen crash point. What the checker needs from inside
(each client id's decision, each sell and what was held) goes to a journal file, written and
flushed before the send, so it survives the kill. Exit status 3: the strategy raised.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from datetime import timedelta
from typing import Any, cast

from tradeguard import crashpoints
from tradeguard.chaos.harness import trading_client
from tradeguard.chaos.plan import plan_for
from tradeguard.chaos.tap import AskTap, Decisions, DecisionScope, RequestTap
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.faults import FaultPlan, FaultyBroker
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import RecordedPrices
from tradeguard.run.barfile import read_bar_file
from tradeguard.run.strategy import StrategyContext, load_strategy
from tradeguard.store import ClaimStore

__all__ = ["main"]

BOT_ERROR = 3


def _kill_at(point: str | None, hit: int) -> None:
    count = 0

    def hook(name: str) -> None:
        nonlocal count
        if name == point:
            count += 1
            if count == hit:
                os.kill(os.getpid(), signal.SIGKILL)

    if point is not None and hit > 0:
        crashpoints.set_hook(hook)


def main(spec: dict[str, Any]) -> int:
    """Run the bot until the bars end (0), the strategy raises (3), or the kill."""
    bars = read_bar_file(spec["bars"])
    progress = spec["progress"]
    start = 0
    if os.path.exists(progress):
        with open(progress, encoding="utf-8") as handle:
            start = int(handle.read())
    if start >= len(bars.minutes):
        return 0
    journal_file = open(spec["journal"], "a", encoding="utf-8")  # noqa: SIM115 - held to the end

    def journal(entry: dict[str, Any]) -> None:
        journal_file.write(json.dumps(entry) + "\n")
        journal_file.flush()  # the kernel has it: a SIGKILL of this process cannot lose it

    faults = FaultPlan.load(spec["faults"]) if spec.get("faults") else plan_for(spec["seed"]).faults
    # A restart comes a little after the death, as a supervisor's would.
    clock = ManualClock(bars.minutes[start].ends_at + timedelta(seconds=float(spec.get("restart_secs", 0))))
    settings = Settings()
    paper = PaperBroker(
        prices=RecordedPrices(bars.price_series()), clock=clock, allow_short=True, state_path=spec["state"]
    )
    decisions = Decisions(journal)
    broker = RequestTap(FaultyBroker(AskTap(paper, journal), faults, clock=clock), decisions)
    store = ClaimStore(spec["store"], settings=settings, clock=clock)
    cls = load_strategy(spec["strategy"])
    _kill_at(spec.get("point"), int(spec.get("hit", 0)))
    gateway = OrderGateway(
        broker, store, agent_id=spec["agent"], settings=settings, clock=clock, reconcile_on_start=False
    )
    gateway.reconcile()
    strategy = cls()
    scoped = cast(OrderGateway, DecisionScope(gateway, decisions))
    ctx = StrategyContext(
        gateway=scoped, clock=clock, mode="sim", agent_id=gateway.agent_id,
        _client=functools.partial(trading_client, scoped), _log=lambda _: None,
    )  # fmt: skip
    strategy.on_start(ctx)
    for index in range(start, len(bars.minutes)):
        minute = bars.minutes[index]
        clock.set(max(clock.now(), minute.ends_at))
        paper.step()  # resting orders trade at the minute's close, as in `tradeguard run`
        decisions.at_bar(index)
        try:
            strategy.on_bar(minute, ctx)
            gateway.reconcile_if_due()
        except Exception:  # the supervisor restarts the bot on the next bar
            _done(progress, index + 1)
            return BOT_ERROR
        _done(progress, index + 1)
    return 0


def _done(progress: str, index: int) -> None:
    with open(progress + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(str(index))
    os.replace(progress + ".tmp", progress)


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
