"""Several bot hosts at once: N processes of one bot sharing a claim store and one paper account.

`run_hosts` serves one paper account over Alpaca's REST routes on loopback (the paper server)
and starts N copies of the strategy under one agent id, as N hosts of one bot would run, each
`python -m tradeguard.chaos.hosts` with its own owner, its own fault plan and its own random
crash point, all on the one claim store (PostgreSQL). The copies move through the bars in
lockstep (a barrier file the supervisor advances), so their clocks and the account's prices agree
as wall clocks of real hosts would; each is SIGKILLed at random and restarted at its next bar.
After the last bar the run settles in this process and the checker holds G1-G4: one order per
decision across all hosts, whatever they did.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from tradeguard import crashpoints
from tradeguard.chaos.checker import Evidence, check_guarded
from tradeguard.chaos.harness import RESTART_SECS, RunOutcome, WorkerFailed, settle_run, trading_client
from tradeguard.chaos.kill import write_bars
from tradeguard.chaos.plan import plan_for
from tradeguard.chaos.tap import Ask, Decisions, DecisionScope, RequestTap, new_ask
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, OrderRequest
from tradeguard.faults import FaultyBroker
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import RecordedPrices
from tradeguard.run.barfile import read_bar_file
from tradeguard.run.bars import BarSeries
from tradeguard.run.strategy import Strategy, StrategyContext, load_strategy, strategy_spec
from tradeguard.store import ClaimStore

__all__ = ["run_hosts"]

POLL_SECS = 0.002  # how often the barrier and the hosts are looked at
RUN_TIMEOUT_SECS = 600.0
BOT_ERROR = 3


class _TappedPaper(PaperBroker):
    """The served account, noting every new sell with the long shares available (G3)."""

    asks: list[Ask]

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        ask = new_ask(self, request)
        if ask is not None:
            self.asks.append(ask)
        return super().submit_order(request)


@dataclass
class _Host:
    number: int
    process: subprocess.Popen[str] | None = None
    incarnation: int = 0
    done: bool = False


def _write(path: str, text: str) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def _read_int(path: str) -> int:
    try:
        with open(path, encoding="utf-8") as handle:
            return int(handle.read() or 0)
    except FileNotFoundError:
        return 0


def run_hosts(
    strategy_cls: type[Strategy], bars: BarSeries, *, seed: int, hosts: int, store_url: str, folder: str
) -> RunOutcome:
    """Run `hosts` copies of the strategy on one store and one account; see the module docstring."""
    from tradeguard.paper.server import PaperServer  # noqa: PLC0415 - only this mode serves HTTP

    os.makedirs(folder, exist_ok=True)
    outcome = RunOutcome(plan_for(seed, crash=False))
    bar_file = write_bars(bars, os.path.join(folder, "bars.csv"))
    clock = ManualClock(bars.minutes[0].ends_at)
    paper = _TappedPaper(prices=RecordedPrices(bars.price_series()), clock=clock, allow_short=True)
    paper.asks = []
    server = PaperServer(paper).start()
    agent = f"{strategy_cls.agent_name()}-{seed}"
    barrier = os.path.join(folder, "barrier")
    _write(barrier, "1")
    spec: dict[str, Any] = {
        "strategy": strategy_spec(strategy_cls), "bars": bar_file,
        "store": store_url, "url": server.url, "agent": agent, "seed": seed, "barrier": barrier,
    }  # fmt: skip
    fleet = [_Host(n) for n in range(hosts)]
    started = time.monotonic()
    try:
        while not all(h.done for h in fleet):
            if time.monotonic() - started > RUN_TIMEOUT_SECS:
                why = f"chaos hosts did not finish in {RUN_TIMEOUT_SECS:g} s (folder {folder})"
                raise WorkerFailed(why, "")
            for host in fleet:
                _tend(host, spec, folder, outcome)
            progress = [_read_int(_progress(folder, h.number)) for h in fleet if not h.done]
            if progress:
                allowed = min(min(progress) + 1, len(bars.minutes))
                if allowed != _read_int(barrier):
                    clock.set(max(clock.now(), bars.minutes[allowed - 1].ends_at))
                    paper.step()  # the shared account's resting orders trade at the minute's close
                    _write(barrier, str(allowed))
            time.sleep(POLL_SECS)
    finally:
        for host in fleet:
            if host.process is not None and host.process.poll() is None:
                host.process.kill()
        server.stop()
    outcome.faults_fired = sum(
        _read_int(os.path.join(folder, name))
        for name in os.listdir(folder)
        if name.startswith("faults-") and not name.endswith(".tmp")
    )
    _settle_and_check(
        strategy_cls,
        paper,
        clock,
        store_url=store_url,
        agent=agent,
        folder=folder,
        hosts=hosts,
        outcome=outcome,
    )
    return outcome


def _progress(folder: str, number: int) -> str:
    return os.path.join(folder, f"progress-{number}")


def _tend(host: _Host, spec: dict[str, Any], folder: str, outcome: RunOutcome) -> None:
    """Start the host if it is not running; note how it ended if it did."""
    if host.done:
        return
    if host.process is not None:
        code = host.process.poll()
        if code is None:
            return
        if code == -signal.SIGKILL:
            outcome.crashes.append(_read_text(os.path.join(folder, f"point-{host.number}")) or "?")
        elif code == BOT_ERROR:
            outcome.bot_errors += 1
        elif code == 0:
            host.done = True
            return
        else:
            why = _read_text(os.path.join(folder, f"stderr-{host.number}.txt"))
            raise WorkerFailed(f"chaos host {host.number} exited {code} (folder {folder})", why)
    mine = {
        **spec, "host": host.number, "incarnation": host.incarnation,
        "progress": _progress(folder, host.number),
        # What this incarnation's faults fired so far (the host's memory dies with a SIGKILL).
        "faults": os.path.join(folder, f"faults-{host.number}-{host.incarnation}"),
        "journal": os.path.join(folder, f"journal-{host.number}.jsonl"),
    }  # fmt: skip
    host.incarnation += 1
    # A file, not a pipe: nobody reads a pipe while the host runs, and a full one would block it.
    with open(os.path.join(folder, f"stderr-{host.number}.txt"), "a", encoding="utf-8") as err:
        host.process = subprocess.Popen(  # noqa: S603 - our own worker, arguments built here
            [sys.executable, "-m", "tradeguard.chaos.hosts", json.dumps(mine)],
            stdout=subprocess.DEVNULL, stderr=err, text=True,
        )  # fmt: skip


def _settle_and_check(
    strategy_cls: type[Strategy], paper: _TappedPaper, clock: ManualClock, *, store_url: str, agent: str,
    folder: str, hosts: int, outcome: RunOutcome,
) -> None:  # fmt: skip
    clock.advance(RESTART_SECS)
    settings = Settings()
    store = ClaimStore(store_url, settings=settings, clock=clock)
    try:
        gateway = OrderGateway(
            paper, store, agent_id=agent, settings=settings, clock=clock, reconcile_on_start=False
        )
        ctx = StrategyContext(
            gateway=gateway, clock=clock, mode="sim", agent_id=agent,
            _client=lambda: cast(Any, None), _log=lambda _: None,
        )  # fmt: skip
        settle_run((strategy_cls(), ctx, gateway), paper, clock, settings, unguarded=False)
        decisions: dict[str, tuple[str, str, str]] = {}
        for number in range(hosts):
            path = os.path.join(folder, f"journal-{number}.jsonl")
            if os.path.exists(path):
                with open(path, encoding="utf-8") as handle:
                    for line in handle:
                        coid, kind, symbol, intent = json.loads(line)["decision"]
                        decisions.setdefault(coid, (kind, symbol, intent))
        orders = paper.orders()
        outcome.orders = len(orders)
        evidence = Evidence(
            orders=orders, positions=paper.list_positions(), asks=paper.asks, decisions=decisions
        )
        outcome.violations = check_guarded(evidence, store, agent)
    finally:
        store.close()


def _host_main(spec: dict[str, Any]) -> int:
    """One host: the bars from its progress on, in step with the barrier; dies where its plan says."""
    from tradeguard.broker.alpaca import AlpacaBroker  # noqa: PLC0415 - the host's own process

    bars = read_bar_file(spec["bars"])
    start = _read_int(spec["progress"])
    if start >= len(bars.minutes):
        return 0
    rng = random.Random(f"{spec['seed']}-{spec['host']}-{spec['incarnation']}")
    # Every host dies once at a random point (the start-up reconcile pass alone hits one), then
    # at random, at most three times in all.
    if spec["incarnation"] == 0 or (spec["incarnation"] < 3 and rng.random() < 0.5):
        point, hit = rng.choice(crashpoints.POINTS), rng.randint(1, 3)
        _write(os.path.join(os.path.dirname(spec["progress"]), f"point-{spec['host']}"), point)
        count = [0]

        def hook(name: str) -> None:
            if name == point:
                count[0] += 1
                if count[0] == hit:
                    os.kill(os.getpid(), signal.SIGKILL)

        crashpoints.set_hook(hook)
    journal_file = open(spec["journal"], "a", encoding="utf-8")  # noqa: SIM115 - held to the end

    def journal(entry: dict[str, Any]) -> None:
        journal_file.write(json.dumps(entry) + "\n")
        journal_file.flush()

    delay = RESTART_SECS if spec["incarnation"] else 0.0
    clock = ManualClock(bars.minutes[start].ends_at + timedelta(seconds=delay))
    settings = Settings()
    alpaca = AlpacaBroker.from_credentials("chaos", "chaos", url_override=spec["url"], settings=settings)
    plan = plan_for(spec["seed"] * 101 + spec["host"] * 11 + spec["incarnation"])
    decisions = Decisions(journal)
    faulty = FaultyBroker(alpaca, plan.faults, clock=clock)
    broker = RequestTap(faulty, decisions)
    store = ClaimStore(spec["store"], settings=settings, clock=clock)
    cls = load_strategy(spec["strategy"])
    gateway = OrderGateway(
        broker, store, agent_id=spec["agent"], settings=settings, clock=clock, reconcile_on_start=False
    )
    gateway.reconcile()
    strategy = cls()
    scoped = cast(OrderGateway, DecisionScope(gateway, decisions))
    ctx = StrategyContext(
        gateway=scoped, clock=clock, mode="sim", agent_id=gateway.agent_id,
        _client=functools.partial(trading_client, scoped, spec["url"]), _log=lambda _: None,
    )  # fmt: skip
    strategy.on_start(ctx)
    for index in range(start, len(bars.minutes)):
        while _read_int(spec["barrier"]) <= index:
            time.sleep(POLL_SECS)
        clock.set(max(clock.now(), bars.minutes[index].ends_at))
        decisions.at_bar(index)
        try:
            strategy.on_bar(bars.minutes[index], ctx)
            gateway.reconcile_if_due()
        except Exception:  # the supervisor restarts the host on the next bar
            _write(spec["faults"], str(len(faulty.injector.fired())))
            _write(spec["progress"], str(index + 1))
            return BOT_ERROR
        # Before the progress: a host killed in between loses no fault the supervisor counted.
        _write(spec["faults"], str(len(faulty.injector.fired())))
        _write(spec["progress"], str(index + 1))
    return 0


if __name__ == "__main__":
    sys.exit(_host_main(json.loads(sys.argv[1])))
