"""Decision races: several real processes of one or more agents fire different (or the same)
decisions in one symbol at the same instant, on one served paper account; some are SIGKILLed at
crash points; a reconcile pass may run meanwhile. Then every guarantee is checked on what the
account took and what the store holds.

`python -m tests.decision_race_kit --store sqlite|pg --rounds 100 --seed 1` runs random rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.soak_kit import SETTINGS as SOAK_SETTINGS
from tests.soak_kit import SoakPaper
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, OrderRequest, Side
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYMBOLS = ["".join(p) for p in itertools.product("XYZ", string.ascii_uppercase, string.ascii_uppercase)]
# The soak's settings (short leases and grace periods), with a positions lag to match `--lag`.
SETTINGS: dict[str, float] = {**SOAK_SETTINGS, "position_settle_secs": 0.3}
SCENARIOS = [
    "entries", "exit_vs_entries", "partial_exits", "same_name", "same_intent", "same_coid",
    "same_coid_client", "agents_exits", "agents_mixed", "limit_exits", "agents_same_name",
    "client_coids", "client_sells", "client_close", "same_content",
]  # fmt: skip
OK_ERRORS = ("OrderInProgress", "ClaimInProgress", "OrderOutcomeUnknown", "OrderNotSent", "APIError")
CRASH_POINTS = ["after_claim", "before_post", "after_post", "exit_before_claim"]


class RacePaper(SoakPaper):
    """SoakPaper that also counts every POST per client_order_id (refused ones too)."""

    def __init__(self, lag_secs: float) -> None:
        PaperBroker.__init__(
            self, prices=FixedPrices(dict.fromkeys(SYMBOLS, "100")), allow_short=True, cash=10**10
        )
        self.lag_secs = lag_secs
        self.fills = []
        self._by_hand = False
        self._shown = [(0.0, {})]
        self.posts: dict[str, int] = defaultdict(int)

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        with self._lock:
            self.posts[request.client_order_id] += 1
            return super().submit_order(request)


@dataclass
class Worker:
    proc: subprocess.Popen[str]

    @classmethod
    def start(cls) -> Worker:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.decision_race_worker"], cwd=ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        return cls(proc)

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        """Close the pipes and wait for the process (it ends when its stdin closes)."""
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None and not pipe.closed:
                with contextlib.suppress(BrokenPipeError):  # killed: nothing reads the pipe
                    pipe.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def answer(self) -> list[dict[str, Any]] | None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            return None  # killed
        return list(json.loads(line))


@dataclass
class RoundReport:
    name: str
    violations: list[str] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)


def _plan(
    rng: random.Random, scenario: str, symbol: str, tag: str, workers: int
) -> tuple[dict[str, int], list[tuple[str, list[dict[str, Any]]]]]:
    """Return (holdings to set up per agent, [(agent, ops)] per worker)."""
    agent = f"{tag}a"
    hold: dict[str, int] = {}
    plans: list[tuple[str, list[dict[str, Any]]]] = []
    if scenario == "entries":
        for w in range(workers):
            plans.append(
                (agent, [{"kind": "entry", "symbol": symbol, "intent": f"in{w}", "qty": rng.randint(1, 9)}])
            )
    elif scenario == "exit_vs_entries":
        hold[agent] = rng.randint(1, 20)
        for w in range(workers):
            if w < rng.randint(1, 2):
                q = None if rng.random() < 0.5 else rng.randint(1, 25)
                plans.append((agent, [{"kind": "exit", "symbol": symbol, "intent": f"out{w}", "qty": q}]))
            else:
                plans.append(
                    (
                        agent,
                        [{"kind": "entry", "symbol": symbol, "intent": f"in{w}", "qty": rng.randint(1, 9)}],
                    )
                )
    elif scenario == "partial_exits":
        hold[agent] = rng.randint(2, 20)
        for w in range(workers):
            q = None if rng.random() < 0.2 else rng.randint(1, hold[agent])
            plans.append((agent, [{"kind": "exit", "symbol": symbol, "intent": f"out{w}", "qty": q}]))
    elif scenario == "same_name":
        hold[agent] = rng.randint(0, 10)
        for w in range(workers):
            kind = "entry" if w % 2 == 0 else "exit"
            qty = 5 if kind == "entry" else None
            plans.append((agent, [{"kind": kind, "symbol": symbol, "intent": "same", "qty": qty}]))
    elif scenario == "same_intent":
        for _ in range(workers):
            plans.append(
                (agent, [{"kind": "entry", "symbol": symbol, "intent": "one", "qty": 7}] * rng.randint(1, 2))
            )
    elif scenario in ("same_coid", "same_coid_client"):
        coid = f"bot-{tag}-{rng.randint(0, 10**6)}"
        kind = "coid" if scenario == "same_coid" else "client"
        for _ in range(workers):
            plans.append((agent, [{"kind": kind, "symbol": symbol, "intent": "c", "qty": 3, "coid": coid}]))
    elif scenario == "agents_exits":
        agents = [f"{tag}g{k}" for k in range(rng.randint(2, 3))]
        for a in agents:
            hold[a] = rng.randint(1, 12)
        for w in range(workers):
            a = agents[w % len(agents)]
            q = None if rng.random() < 0.4 else rng.randint(1, 14)
            plans.append((a, [{"kind": "exit", "symbol": symbol, "intent": f"out{w}", "qty": q}]))
    elif scenario == "agents_mixed":
        agents = [f"{tag}g{k}" for k in range(rng.randint(2, 3))]
        for a in agents:
            hold[a] = rng.randint(0, 12)
        for w in range(workers):
            a = agents[w % len(agents)]
            ops = []
            for i in range(rng.randint(1, 3)):
                if rng.random() < 0.5:
                    ops.append(
                        {"kind": "entry", "symbol": symbol, "intent": f"in{w}.{i}", "qty": rng.randint(1, 6)}
                    )
                else:
                    q = None if rng.random() < 0.4 else rng.randint(1, 10)
                    ops.append({"kind": "exit", "symbol": symbol, "intent": f"out{w}.{i}", "qty": q})
            plans.append((a, ops))
    elif scenario == "limit_exits":
        hold[agent] = rng.randint(2, 20)
        for w in range(workers):
            q = None if rng.random() < 0.3 else rng.randint(1, hold[agent])
            price = rng.choice([50, 200])  # marketable, or resting above the price
            plans.append(
                (agent, [{"kind": "exit", "symbol": symbol, "intent": f"out{w}", "qty": q, "limit": price}])
            )
    elif scenario == "agents_same_name":
        agents = [f"{tag}g{k}" for k in range(rng.randint(2, 3))]
        for a in agents:
            hold[a] = rng.randint(0, 8)
        for w in range(workers):
            a = agents[w % len(agents)]
            kind = rng.choice(["entry", "exit"])
            plans.append(
                (
                    a,
                    [
                        {
                            "kind": kind,
                            "symbol": symbol,
                            "intent": "same",
                            "qty": 4 if kind == "entry" else None,
                        }
                    ],
                )
            )
    elif scenario == "client_coids":
        for w in range(workers):
            coid = f"bot-{tag}-{w}"
            plans.append(
                (
                    agent,
                    [
                        {
                            "kind": "client",
                            "symbol": symbol,
                            "intent": "c",
                            "qty": rng.randint(1, 5),
                            "coid": coid,
                        }
                    ],
                )
            )
    elif scenario == "same_content":
        qty = rng.randint(1, 5)
        for _ in range(workers):
            plans.append(
                (agent, [{"kind": "client", "symbol": symbol, "intent": "c", "qty": qty, "coid": None}])
            )
    elif scenario == "client_sells":
        hold[agent] = rng.randint(2, 20)
        for w in range(workers):
            plans.append(
                (
                    agent,
                    [
                        {
                            "kind": "client_sell",
                            "symbol": symbol,
                            "qty": rng.randint(1, hold[agent]),
                            "coid": f"s-{tag}-{w}",
                            "to_close": True,
                        }
                    ],
                )
            )
    elif scenario == "client_close":
        agents = [f"{tag}g{k}" for k in range(rng.randint(1, 3))]
        for a in agents:
            hold[a] = rng.randint(1, 12)
        for w in range(workers):
            a = agents[w % len(agents)]
            q = None if rng.random() < 0.5 else rng.randint(1, 12)
            plans.append((a, [{"kind": "client_close", "symbol": symbol, "qty": q}]))
    else:
        raise ValueError(scenario)
    return hold, plans


def run_round(
    rng: random.Random, store_url: str, paper: RacePaper, server_url: str, workers: list[Worker],
    scenario: str, symbol: str, tag: str, *, crash: bool, reconcile_racer: bool, stall: bool = False,
) -> RoundReport:  # fmt: skip
    report = RoundReport(f"{tag} {scenario} {symbol} crash={crash} recon={reconcile_racer}")
    settings = Settings(**SETTINGS)
    hold, plans = _plan(rng, scenario, symbol, tag, len(workers))
    setup_store = ClaimStore(store_url, settings=settings)
    try:
        for agent, qty in hold.items():
            if qty:
                gw = OrderGateway(
                    paper, setup_store, agent_id=agent, settings=settings, reconcile_on_start=False
                )
                r = gw.enter(symbol, qty=qty, intent="setup")
                assert r.outcome.value == "submitted", r
    finally:
        setup_store.close()
    time.sleep(settings.position_settle_secs)  # the set-up fills are not "recent" for the race
    crash_at = rng.randrange(len(workers)) if crash else None
    recon_at = rng.randrange(len(workers)) if reconcile_racer else None
    go = time.time() + 0.3
    for w, (worker, (agent, planned)) in enumerate(zip(workers, plans, strict=True)):
        ops = planned
        if w == recon_at:
            kind = rng.choice(["reconcile", "reconcile_all"])
            ops = [{"kind": kind}, *ops] if rng.random() < 0.5 else [*ops, {"kind": kind}]
        command = {
            "go": go, "store": store_url, "paper": server_url, "agent": agent, "ops": ops,
            "settings": SETTINGS,
            "crash": {
                "point": rng.choice(CRASH_POINTS), "nth": 1, "mode": "stop" if stall else "kill"
            } if w == crash_at else None,
        }  # fmt: skip
        worker.send(command)
    order = [w for w in range(len(workers)) if w != crash_at] + ([crash_at] if crash_at is not None else [])
    for w in order:
        worker = workers[w]
        if stall and w == crash_at:
            pause = rng.uniform(0, 9)
            time.sleep(pause)
            report.name += f" stalled {pause:.1f}s"
            if rng.random() < 0.7:
                runner = OrderGateway(
                    paper,
                    store_url,
                    agent_id=plans[w][0],
                    settings=Settings(**SETTINGS),
                    reconcile_on_start=False,
                )
                runner.reconciler.run()
                runner.store.close()
            # It may stop itself only now (held up before its point): wake it until it answers.
            import select

            assert worker.proc.stdout is not None
            while True:
                worker.proc.send_signal(signal.SIGCONT)
                ready, _, _ = select.select([worker.proc.stdout], [], [], 0.5)
                if ready:
                    break
        answer = worker.answer()
        if answer is None:
            report.results.append((w, "killed"))
            workers[w] = Worker.start()
            # restarted, the bot retries the decisions it was running
            agent, ops = plans[w]
            workers[w].send({
                "go": 0, "store": store_url, "paper": server_url, "agent": agent, "ops": ops,
                "settings": SETTINGS, "crash": None,
            })  # fmt: skip
            answer = workers[w].answer()
            report.results.append((w, answer))
            for res in answer or []:
                if "error" in res and not res["error"].startswith(OK_ERRORS):
                    report.violations.append(f"error after restart: worker {w}: {res}")
        else:
            report.results.append((w, answer))
            for res in answer:
                if "error" in res and not res["error"].startswith(OK_ERRORS):
                    report.violations.append(f"error: worker {w}: {res}")
    _check(report, store_url, paper, symbol, hold, plans, scenario)
    return report


def _check(
    report: RoundReport, store_url: str, paper: RacePaper, symbol: str, hold: dict[str, int],
    plans: list[tuple[str, list[dict[str, Any]]]], scenario: str,
) -> None:  # fmt: skip
    settings = Settings(**SETTINGS)
    agents = sorted({a for a, _ in plans} | set(hold))
    clock = ManualClock(datetime.now(UTC) + timedelta(seconds=120))
    store = ClaimStore(store_url, settings=settings, clock=clock)
    try:
        claims = [c for c in store.list_claims(symbol=symbol)]
        agent_of = {c.client_order_id: c.agent_id for c in claims}
        orders = [o for o in paper.orders() if o.symbol == symbol]
        at_broker = {o.client_order_id for o in orders}
        per_decision: dict[tuple[Any, ...], set[str]] = defaultdict(set)
        for c in claims:
            if c.client_order_id in at_broker:
                per_decision[(c.agent_id, c.kind, c.intent)].add(c.client_order_id)
        for d, coids in per_decision.items():
            if len(coids) > 1:
                report.violations.append(f"G1: {d} has {len(coids)} orders {coids}")
        for o in orders:
            if paper.posts[o.client_order_id] > 1:
                report.violations.append(
                    f"G1: {o.client_order_id} POSTed {paper.posts[o.client_order_id]} times"
                )
            if o.client_order_id not in agent_of:
                report.violations.append(f"order without claim {o.client_order_id}")
        # truth per agent
        truth: dict[str, Decimal] = defaultdict(Decimal)
        for fill in paper.fills:
            if fill.symbol != symbol:
                continue
            if fill.after < 0:
                report.violations.append(f"G3: account short: {fill}")
            a = agent_of.get(fill.client_order_id)
            if a is None:
                continue
            truth[a] += fill.qty if fill.side is Side.BUY else -fill.qty
            if truth[a] < 0:
                report.violations.append(f"G3: {a} sold more than it held: {fill}")
        if scenario in ("same_intent", "same_content") and len(orders) > 1:
            report.violations.append(f"G1: same intent gave {len(orders)} orders")
        gateways = [
            OrderGateway(paper, store, agent_id=a, settings=settings, clock=clock, reconcile_on_start=False)
            for a in agents
        ]
        lag, paper.lag_secs = paper.lag_secs, 0.0  # the race is over: the positions read caught up
        try:
            for _ in range(4):
                for g in gateways:
                    g.reconcile()
                clock.advance(10)
        finally:
            paper.lag_secs = lag
        total = Decimal(0)
        for a in agents:
            led = store.position(a, symbol).qty
            total += led
            if led != truth.get(a, Decimal(0)):
                report.violations.append(f"G4: {a} ledger {led} truly {truth.get(a, Decimal(0))}")
        if total != paper.position_qty(symbol):
            report.violations.append(f"G4: ledgers {total} broker {paper.position_qty(symbol)}")
        for c in store.list_claims(symbol=symbol):
            if c.state in (ClaimState.PENDING, ClaimState.UNKNOWN):
                report.violations.append(f"G2: {c.client_order_id} {c.kind} {c.intent} left {c.state}")
    finally:
        store.close()


@contextmanager
def race_bench(
    store_url: str, workers: int, *, lag_secs: float = 0.0
) -> Iterator[tuple[RacePaper, str, list[Worker]]]:
    """Serve a fresh paper account and start `workers` worker processes; stop both afterwards."""
    from tradeguard.paper.server import PaperServer

    paper = RacePaper(lag_secs)
    server = PaperServer(paper).start()
    started: list[Worker] = []
    try:
        started.extend(Worker.start() for _ in range(workers))
        yield paper, server.url, started
    finally:
        for w in started:
            w.close()
        server.stop()


def main() -> int:
    import sqlalchemy as sa

    parser = argparse.ArgumentParser()
    parser.add_argument("--store", default="sqlite")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--lag", type=float, default=0.0)
    parser.add_argument("--crash", type=float, default=0.3)
    parser.add_argument("--recon", type=float, default=0.3)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--settle", type=float, default=0.3)
    parser.add_argument("--faults", action="store_true")
    parser.add_argument("--stall", action="store_true")
    parser.add_argument("--cli-reconcile", action="store_true")
    args = parser.parse_args()
    SETTINGS["position_settle_secs"] = args.settle
    from tradeguard.paper.server import PaperServer

    rng = random.Random(args.seed)
    schema = None
    if args.store == "pg":
        base = os.environ["TRADEGUARD_TEST_PG_URL"]
        schema = f"audit31_race_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(base)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    else:
        folder = tempfile.mkdtemp(prefix="decision-race-")
        url = f"sqlite:///{folder}/claims.db"
    paper = RacePaper(args.lag)
    plan = None
    if args.faults:
        from tests.soak_worker import _plan as soak_plan

        plan = soak_plan(random.Random(args.seed), 0.2)
    server = PaperServer(paper, fault_plan=plan).start()
    stop_cli = threading.Event()
    cli_runs: list[int] = []

    def cli_loop() -> None:
        while not stop_cli.is_set():
            cli = os.path.join(os.path.dirname(sys.executable), "tradeguard")
            done = subprocess.run(
                [cli, "reconcile", "--store", url, "--paper-url", server.url, "--format", "json"],
                cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"}, check=False,
            )  # fmt: skip
            cli_runs.append(done.returncode)
            if done.returncode not in (0, 1):
                print("CLI reconcile failed:", done.returncode, done.stderr[-500:], flush=True)
            time.sleep(0.3)

    cli_thread = threading.Thread(target=cli_loop, daemon=True)
    if args.cli_reconcile:
        cli_thread.start()
    workers = [Worker.start() for _ in range(args.workers)]
    bad = 0
    held_counts: dict[str, int] = defaultdict(int)
    stats: dict[str, int] = defaultdict(int)
    try:
        symbols = list(SYMBOLS)
        rng.shuffle(symbols)
        for n in range(args.rounds):
            scenario = rng.choice(args.scenarios.split(","))
            rep = run_round(
                rng, url, paper, server.url, workers, scenario, symbols[n], f"r{args.seed}n{n}",
                crash=rng.random() < args.crash, reconcile_racer=rng.random() < args.recon, stall=args.stall,
            )  # fmt: skip
            held_counts[scenario] += 1
            for _, answer in rep.results:
                if answer == "killed":
                    stats["killed"] += 1
                    continue
                for res in answer:
                    stats[res.get("outcome") or res["error"].split(":")[0]] += 1
            if rep.violations:
                bad += 1
                print("FAIL", rep.name, flush=True)
                for v in rep.violations:
                    print("   ", v, flush=True)
                print("    results:", rep.results, flush=True)
        print("rounds per scenario:", dict(held_counts), "failed rounds:", bad, flush=True)
        print(
            "outcomes:",
            dict(stats),
            "orders:",
            len(paper.orders()),
            "cli runs:",
            cli_runs.count(0),
            cli_runs.count(1),
            flush=True,
        )
        if plan is not None:
            print("faults fired:", len(server.fired_faults()), flush=True)
    finally:
        stop_cli.set()
        if args.cli_reconcile:
            cli_thread.join(60)
        for w in workers:
            w.close()
        server.stop()
        if schema:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
