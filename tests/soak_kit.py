"""A soak of several agents, each run as several real processes, on one broker account and one store.

`run_soak` serves one paper account over Alpaca's REST routes (the paper server), whose positions
endpoint trails fills by `lag_secs` of wall time (as Alpaca's does), and starts `processes`
processes of each of `agents` agents (`tests/soak_worker.py`: the real alpaca-py TradingClient
through `AlpacaBroker`, a `FaultyBroker` of its own, the real `OrderGateway` on the PostgreSQL
store). Meanwhile it SIGKILLs and restarts processes at random and closes positions "by hand"
(straight on the account, as a person would), making phantoms. Then it stops the processes,
settles (reconcile passes of every agent past the grace and settle delays) and checks:

- G1: at most one broker order per (agent, decision);
- G3: the account never went short, and no exit sold more than its agent truly held (each
  agent's true holding is its own fills since the last close by hand of the symbol; a close by
  hand takes every agent's shares);
- G4: after settling, each agent's ledger equals its true holding (so the ledgers sum to the
  broker's position), unless the agent has a claim in the symbol that is visibly UNKNOWN;
- G2/G6: every claim in a definite state or UNKNOWN, and each with its audit records.

Run many seeds: `python -m tests.soak_kit --seeds 1-20 --secs 25` (PostgreSQL from
TRADEGUARD_TEST_PG_URL; a schema per seed, dropped after).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.soak_worker import settings_of
from tests.trailing import as_of
from tradeguard.clock import ManualClock
from tradeguard.domain import BrokerOrder, BrokerPosition, OrderRequest, Side
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore
from tradeguard.store.audit import AuditQuery

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ["SPY", "QQQ"]
SETTINGS: dict[str, float] = {
    "lease_secs": 6.0,
    "request_timeout_secs": 2.0,
    "connect_timeout_secs": 1.0,
    "unknown_grace_secs": 3.0,
    "unknown_probe_gap_secs": 0.3,
    "reconcile_interval_secs": 3.0,
    "settle_delay_secs": 0.3,
    "recent_activity_secs": 0.5,
    "position_settle_secs": 1.5,
    "not_sent_probe_secs": 600.0,
}
_DEFINITE = {
    ClaimState.SUBMITTED, ClaimState.PARTIALLY_FILLED, ClaimState.FILLED, ClaimState.CANCELED,
    ClaimState.EXPIRED, ClaimState.REJECTED, ClaimState.NOT_SENT, ClaimState.UNKNOWN,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Fill:
    """One order the account took, in the order it took them, with the position after it."""

    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    after: Decimal
    by_hand: bool


class SoakPaper(PaperBroker):
    """The served account: every order it takes is noted; positions are shown `lag_secs` late."""

    def __init__(self, lag_secs: float) -> None:
        super().__init__(prices=FixedPrices({s: "100" for s in SYMBOLS}), allow_short=True)
        self.lag_secs = lag_secs
        self.fills: list[Fill] = []
        self._by_hand = False
        self._shown: list[tuple[float, dict[str, BrokerPosition]]] = [(0.0, {})]

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Take the order and note it with the position after it."""
        with self._lock:
            order = super().submit_order(request)
            if order.filled_qty:
                after = self.position_qty(order.symbol)
                fill = Fill(
                    order.client_order_id, order.symbol, order.side, order.filled_qty, after, self._by_hand
                )
                self.fills.append(fill)
            self._shown.append((time.monotonic(), {p.symbol: p for p in super().list_positions()}))
            return order

    def close_by_hand(self, symbol: str) -> bool:
        """Close the whole position as a person would (not through any bot); False when flat."""
        with self._lock:
            if self.position_qty(symbol) == 0:
                return False
            self._by_hand = True
            try:
                self.close_position(symbol)
            finally:
                self._by_hand = False
            return True

    def _seen(self) -> dict[str, BrokerPosition]:
        return as_of(self._shown, time.monotonic() - self.lag_secs)

    def list_positions(self) -> list[BrokerPosition]:
        """The positions as they were `lag_secs` ago."""
        with self._lock:
            if not self.lag_secs:
                return super().list_positions()
            return list(self._seen().values())

    def get_position(self, symbol: str) -> BrokerPosition | None:
        """The position as it was `lag_secs` ago."""
        with self._lock:
            if not self.lag_secs:
                return super().get_position(symbol)
            return self._seen().get(symbol)


@dataclass
class SoakReport:
    """What a soak did and what it found."""

    seed: int
    orders: int = 0
    by_hand: int = 0
    kills: int = 0
    faults: int = 0
    calls: int = 0
    errors: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    passes_to_converge: int | None = None

    def line(self) -> str:
        """One line for a log of many runs."""
        return (
            f"seed {self.seed}: {self.calls} calls, {self.orders} orders, {self.faults} faults, "
            f"{self.kills} kills, {self.by_hand} closes by hand, {self.errors} errors, "
            f"converged after {self.passes_to_converge} passes, outcomes {self.outcomes}; "
            f"{len(self.violations)} violations"
        )


START_DEADLINE_SECS = 180.0  # a generous bound on a loaded two-core machine, not a speed check


def run_soak(
    seed: int, store_url: str, folder: str, *, agents: int = 3, processes: int = 2, secs: float = 20.0,
    lag_secs: float = 0.7, decisions: int = 60, by_hand: bool = True, kills: bool = True,
) -> SoakReport:  # fmt: skip
    """Run one soak; see the module docstring."""
    from tradeguard.paper.server import PaperServer

    os.makedirs(folder, exist_ok=True)
    rng = random.Random(seed)
    report = SoakReport(seed)
    paper = SoakPaper(lag_secs)
    server = PaperServer(paper).start()
    names = [f"bot{n}" for n in range(agents)]
    stop = os.path.join(folder, "stop")
    base: dict[str, Any] = {
        "seed": seed, "url": server.url, "store": store_url, "symbols": SYMBOLS, "settings": SETTINGS,
        "decisions": decisions, "stop": stop, "pause_secs": 0.15, "timeout_delay_secs": 0.2,
    }  # fmt: skip
    procs: dict[tuple[str, int], subprocess.Popen[bytes]] = {}
    incarnations: dict[tuple[str, int], int] = defaultdict(int)

    def start(agent: str, number: int) -> None:
        inc = incarnations[(agent, number)]
        incarnations[(agent, number)] += 1
        tag = f"{agent}-{number}"
        spec = {
            **base, "agent": agent, "proc": number, "incarnation": inc,
            "journal": os.path.join(folder, f"journal-{tag}.jsonl"),
            "progress": os.path.join(folder, f"progress-{tag}"),
            "faults": os.path.join(folder, f"faults-{tag}-{inc}"),
            "ready": os.path.join(folder, f"ready-{tag}-{inc}"),
        }  # fmt: skip
        with open(os.path.join(folder, f"stderr-{tag}.txt"), "a", encoding="utf-8") as err:
            procs[(agent, number)] = subprocess.Popen(
                [sys.executable, "-m", "tests.soak_worker", json.dumps(spec)],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip

    def ready(key: tuple[str, int]) -> bool:
        agent, number = key
        return os.path.exists(os.path.join(folder, f"ready-{agent}-{number}-{incarnations[key] - 1}"))

    def check_alive() -> None:
        for key, proc in procs.items():
            code = proc.poll()
            if code not in (None, -signal.SIGKILL):
                raise RuntimeError(f"soak worker {key} exited {code} (folder {folder})")

    try:
        for agent in names:
            for number in range(processes):
                start(agent, number)
        # The soak's time counts from when every worker is set up: on a loaded machine importing
        # alone took longer than a short soak, and the run ended before any decision was made.
        started = time.monotonic()
        while not all(ready(key) for key in procs):
            check_alive()
            if time.monotonic() - started > START_DEADLINE_SECS:
                waited = f"{START_DEADLINE_SECS:g} s"
                raise RuntimeError(f"soak workers not set up after {waited} (folder {folder})")
            time.sleep(0.05)
        ends = time.monotonic() + secs
        while time.monotonic() < ends:
            time.sleep(rng.uniform(0.2, 1.0))
            check_alive()
            roll = rng.random()
            # Only a worker that is set up is killed: one killed while importing tests nothing.
            if roll < 0.3 and kills and any(ready(key) for key in procs):
                key = rng.choice(sorted(k for k in procs if ready(k)))
                procs[key].send_signal(signal.SIGKILL)
                procs[key].wait()
                report.kills += 1
                start(*key)
            elif 0.3 <= roll < 0.5 and by_hand and paper.close_by_hand(rng.choice(SYMBOLS)):
                report.by_hand += 1
        Path(stop).touch()
        for key, proc in procs.items():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise RuntimeError(f"soak worker {key} did not stop (folder {folder})") from None
            if proc.returncode != 0:
                raise RuntimeError(f"soak worker {key} exited {proc.returncode} (folder {folder})")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        server.stop()
    _count(report, folder)
    _settle_and_check(report, paper, store_url, names, folder)
    return report


def _count(report: SoakReport, folder: str) -> None:
    outcomes: dict[str, int] = defaultdict(int)
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.startswith("faults-") and not name.endswith(".tmp"):
            report.faults += int(Path(path).read_text() or 0)
        elif name.startswith("journal-"):
            for line in Path(path).read_text().splitlines():
                entry = json.loads(line)
                if entry["kind"] == "reconcile":
                    report.errors += 1
                    continue
                report.calls += 1
                if "error" in entry:
                    report.errors += 1
                    outcomes[entry["error"].split(":")[0]] += 1
                else:
                    outcomes[entry["outcome"]] += 1
    report.outcomes = dict(sorted(outcomes.items()))


def _true_holdings(
    paper: SoakPaper, agent_of: dict[str, str], report: SoakReport
) -> dict[tuple[str, str], Decimal]:
    """Each agent's shares by its own fills since the last close by hand; G3 checked on the way."""
    held: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for fill in paper.fills:
        if fill.after < 0:
            report.violations.append(f"G3: the account went short: {fill}")
        if fill.by_hand:
            for key in [k for k in held if k[1] == fill.symbol]:
                held[key] = Decimal(0)
            continue
        agent = agent_of.get(fill.client_order_id)
        if agent is None:
            report.violations.append(f"an order no claim names: {fill}")
            continue
        step = fill.qty if fill.side is Side.BUY else -fill.qty
        held[(agent, fill.symbol)] += step
        if fill.side is Side.SELL and held[(agent, fill.symbol)] < 0:
            report.violations.append(
                f"G3: {agent} sold {fill.qty} {fill.symbol} holding {held[(agent, fill.symbol)] + fill.qty}: "
                f"another agent's shares ({fill.client_order_id})"
            )
            held[(agent, fill.symbol)] = Decimal(0)  # counted once; the rest is checked as before
    return held


def _settle_and_check(
    report: SoakReport, paper: SoakPaper, store_url: str, names: list[str], folder: str
) -> None:
    paper.lag_secs = 0.0  # the run is over: the positions endpoint has caught up
    settings = settings_of({"settings": SETTINGS})
    clock = ManualClock(datetime.now(UTC) + timedelta(seconds=60))
    store = ClaimStore(store_url, settings=settings, clock=clock)
    try:
        claims = store.list_claims()
        report.orders = len(paper.orders())
        agent_of = {c.client_order_id: c.agent_id for c in claims}
        decisions: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
        at_broker = {o.client_order_id for o in paper.orders()}
        for c in claims:
            if c.client_order_id in at_broker:
                decisions[(c.agent_id, c.kind, c.symbol, c.intent)].append(c.client_order_id)
        for decision, coids in decisions.items():
            if len(coids) > 1:
                report.violations.append(f"G1: {decision} has {len(coids)} broker orders: {coids}")
        truth = _true_holdings(paper, agent_of, report)
        _dump(folder, paper, store, claims)
        gateways = [
            OrderGateway(paper, store, agent_id=a, settings=settings, clock=clock, reconcile_on_start=False)
            for a in names
        ]
        for number in range(1, 7):
            for gateway in gateways:
                gateway.reconcile()
            clock.advance(settings.reconcile_every_secs)
            if not _drift(store, paper, truth, names):
                report.passes_to_converge = number
                break
        report.violations += [f"G4: {d}" for d in _drift(store, paper, truth, names)]
        if report.violations:  # what the settling passes did, for a run to be read afterwards
            _dump(folder, paper, store, store.list_claims(), name="evidence-after.txt")
        for c in store.list_claims():
            if c.state not in _DEFINITE:
                report.violations.append(f"G2: claim {c.client_order_id} of {c.agent_id} left {c.state}")
            records = list(store.audit_records(AuditQuery(client_order_id=c.client_order_id)))
            if not records:
                report.violations.append(f"G6: claim {c.client_order_id} has no audit record")
    finally:
        store.close()


def _dump(
    folder: str, paper: SoakPaper, store: ClaimStore, claims: list[Any], *, name: str = "evidence.txt"
) -> None:
    """Write what the account took and what the store holds, for a run to be read afterwards."""
    with open(os.path.join(folder, name), "w", encoding="utf-8") as out:
        for fill in paper.fills:
            out.write(f"fill {fill}\n")
        for c in claims:
            out.write(
                f"claim {c.agent_id} {c.kind} {c.symbol} {c.intent} {c.client_order_id} {c.state} "
                f"qty={c.order_qty} filled={c.filled_qty} turn={c.turn_id} {c.created_at} {c.updated_at}\n"
            )
        for r in store.audit_records():
            out.write(f"audit {r}\n")


def _drift(
    store: ClaimStore, paper: SoakPaper, truth: dict[tuple[str, str], Decimal], names: list[str]
) -> list[str]:
    found = []
    for symbol in SYMBOLS:
        unknown = {
            c.agent_id
            for c in store.list_claims(symbol=symbol, states=[ClaimState.UNKNOWN, ClaimState.PENDING])
        }
        total = Decimal(0)
        for agent in names:
            ledger = store.position(agent, symbol).qty
            total += ledger
            true = truth.get((agent, symbol), Decimal(0))
            if ledger != true and agent not in unknown:
                found.append(f"{agent} {symbol}: ledger {ledger}, truly held {true}")
        broker = paper.position_qty(symbol)
        if total != broker and not unknown:
            found.append(f"{symbol}: ledgers sum to {total}, broker holds {broker}")
    return found


def _seeds(text: str) -> list[int]:
    found: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        found += list(range(int(low), int(high or low) + 1))
    return found


def main() -> int:
    """Soak many seeds on PostgreSQL; print one line per seed and every violation."""
    import sqlalchemy as sa

    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--secs", type=float, default=20.0)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--lag", type=float, default=0.7)
    parser.add_argument("--no-hand", action="store_true")
    parser.add_argument("--no-kills", action="store_true")
    parser.add_argument("--keep", default=None, help="keep each run's files under this folder")
    args = parser.parse_args()
    base = os.environ["TRADEGUARD_TEST_PG_URL"]
    admin = sa.create_engine(base)
    bad = 0
    for seed in _seeds(args.seeds):
        # A helper's own schema prefix (the rule: schemas a helper creates carry its name).
        prefix = os.environ.get("TRADEGUARD_SOAK_SCHEMA_PREFIX", "audit25")
        schema = f"{prefix}_soak_{uuid.uuid4().hex[:8]}"
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        try:
            with tempfile.TemporaryDirectory(prefix="audit25-soak-") as scratch:
                folder = os.path.join(args.keep, f"seed-{seed}") if args.keep else scratch
                url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
                report = run_soak(
                    seed,
                    url,
                    folder,
                    agents=args.agents,
                    processes=args.processes,
                    secs=args.secs,
                    lag_secs=args.lag,
                    by_hand=not args.no_hand,
                    kills=not args.no_kills,
                )
                print(report.line(), flush=True)
                for v in report.violations:
                    print("   ", v, flush=True)
                bad += bool(report.violations)
        finally:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
