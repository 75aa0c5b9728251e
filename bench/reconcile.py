"""One reconcile pass over 1,000 (or 10,000) symbols and 10,000 claims: time and memory (G4).

Usage: python bench/reconcile.py [--symbols 1000] [--claims 10000] [--phantoms 50] [--unknown 500]
                                 [--repeats 3] [--db DIR]

The account is built through the real gateway on a SQLite file against the in-process
PaperBroker; then some positions are closed behind the bot's back (phantoms) and some claims are
left UNKNOWN. The figures: the pass that finds and fixes them (two broker reads), then the
steady-state pass (nothing to do) interleaved with its baselines: the broker reads alone (the
paper broker's positions and open orders) and the pure diff on the same inputs; medians of
`--repeats`. Memory is traced in a pass of its own (tracemalloc slows Python several times).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

from tradeguard import ClaimStore, ManualClock, OrderGateway, PaperBroker, Settings
from tradeguard.domain.lifecycle import ACTIVE_STATES, ClaimState
from tradeguard.faults import Fault, FaultAction, FaultPlan
from tradeguard.paper.assets import Asset
from tradeguard.paper.prices import FixedPrices
from tradeguard.reconcile import ReconcileReport, diff
from tradeguard.reconcile.runner import Reconciler
from tradeguard.testing import FaultyBroker


def build(
    db: Path, symbols: int, claims: int, phantoms: int, unknown: int
) -> tuple[OrderGateway, PaperBroker, ManualClock]:
    clock = ManualClock()
    names = [f"S{i:04d}" for i in range(symbols)]
    paper = PaperBroker(
        prices=FixedPrices(default="10"),
        clock=clock,
        cash=Decimal(10) ** 12,
        assets=[Asset(name) for name in names],  # made-up symbols: not in the shipped list
    )
    settings = Settings(recent_activity_secs=0)
    store = ClaimStore(f"sqlite:///{db}", settings=settings, clock=clock)
    # The last `unknown` orders are placed but their answers lost, and the gateway's own lookup
    # fails too: those claims stay UNKNOWN for the reconciler to resolve by client_order_id.
    first = claims - unknown + 1
    lost = list(range(first, claims + 1))
    plan = FaultPlan(
        (
            Fault("POST /v2/orders", FaultAction.ACCEPT_THEN_TIMEOUT, nth=lost, delay_secs=0),
            Fault("GET /v2/orders:by_client_order_id", FaultAction.ERROR, nth=list(range(1, unknown + 1))),
        )
    )
    broker = FaultyBroker(paper, plan, clock=clock)
    gw = OrderGateway(
        broker, store, agent_id="bench", settings=settings, clock=clock, reconcile_on_start=False
    )
    for n in range(claims):
        gw.enter(names[n % symbols], qty=1, intent=f"bar {n // symbols}")
    gw = OrderGateway(
        paper, store, agent_id="bench", settings=settings, clock=clock, reconcile_on_start=False
    )
    for name in names[:phantoms]:
        paper.close_position(name)
    clock.advance(120)
    print(
        f"built: {symbols} symbols, {claims} claims ({claims // symbols}/symbol), "
        f"{len(store.list_claims(states=[ClaimState.UNKNOWN]))} UNKNOWN claims, {phantoms} phantoms"
    )
    return gw, paper, clock


def timed_pass(gw: OrderGateway) -> tuple[float, ReconcileReport]:
    """Return the seconds of one pass (no tracemalloc: it slows Python several times over)."""
    t0 = time.perf_counter()
    report = gw.reconcile()
    return time.perf_counter() - t0, report


def peak_mib(gw: OrderGateway) -> float:
    """Return the peak memory of one pass, traced on its own (the timings are not)."""
    tracemalloc.start()
    gw.reconcile()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--claims", type=int, default=10_000)
    parser.add_argument("--phantoms", type=int, default=50)
    parser.add_argument("--unknown", type=int, default=500, help="claims left UNKNOWN (lost answers)")
    parser.add_argument("--repeats", type=int, default=3, help="steady-state passes; the median is shown")
    parser.add_argument(
        "--db", default=None, help="folder for the SQLite file (default: a temp dir under /work or /tmp)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.db) as tmp:
        gw, paper, clock = build(
            Path(tmp) / "bench.db", args.symbols, args.claims, args.phantoms, args.unknown
        )
        first, report = timed_pass(gw)
        print(
            f"{'pass 1 (resolves what was built)':<40} {first * 1000:9.1f} ms  reads {report.reads}  "
            f"actions {len(report.actions)}  changes {len(report.changes)}"
        )
        store = gw.store
        claims = store.list_claims(states=sorted(ACTIVE_STATES))
        ledger = store.all_positions()
        reader = Reconciler(paper, store)
        rows: dict[str, list[float]] = {"steady": [], "broker": [], "diff": []}
        for _ in range(args.repeats):  # interleaved: the pass, then its two baselines
            rows["steady"].append(timed_pass(gw)[0])
            t0 = time.perf_counter()
            paper.list_positions()
            paper.list_orders(status="open")
            rows["broker"].append(time.perf_counter() - t0)
            snapshot = reader._read(claims, earlier=None)
            t0 = time.perf_counter()
            diff(claims, ledger, snapshot, clock.now(), store.settings)
            rows["diff"].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1000 for k, v in rows.items()}
        each = {k: " ".join(f"{x * 1000:.0f}" for x in v) for k, v in rows.items()}
        print(f"{'pass 2+ (steady state, nothing to do)':<40} {med['steady']:9.1f} ms  runs {each['steady']}")
        print(f"{'baseline: the broker reads alone':<40} {med['broker']:9.1f} ms  runs {each['broker']}")
        print(f"{'the pure diff alone':<40} {med['diff']:9.1f} ms  runs {each['diff']}")
        print(
            f"steady pass / broker reads = {med['steady'] / med['broker']:.2f}; "
            f"steady pass over the broker reads = {med['steady'] - med['broker']:.0f} ms "
            f"({args.symbols} symbols; target: pass < 1 s at 10,000)"
        )
        print(f"{'peak memory of a steady pass':<40} {peak_mib(gw):9.1f} MiB (tracemalloc, timed apart)")
        store.close()


if __name__ == "__main__":
    main()
