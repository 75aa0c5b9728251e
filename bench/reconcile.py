"""One reconcile pass over 1,000 symbols and 10,000 claims: time and memory (G4).

Usage: python bench/reconcile.py [--symbols 1000] [--claims 10000] [--phantoms 50] [--unknown 500] [--db DIR]

The account is built through the real gateway on a SQLite file against the in-process
PaperBroker; then some positions are closed behind the bot's back (phantoms) and some claims are
left UNKNOWN. The figures: the pass that finds and fixes them (two broker reads), and the
steady-state pass right after (nothing to do), with the diff alone timed on the same inputs.
"""

from __future__ import annotations

import argparse
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
from tradeguard.reconcile import diff
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


def timed_pass(gw: OrderGateway, label: str) -> None:
    tracemalloc.start()
    t0 = time.perf_counter()
    report = gw.reconcile()
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{label:<34} {elapsed * 1000:9.1f} ms  peak {peak / 2**20:6.1f} MiB  "
        f"reads {report.reads}  actions {len(report.actions)}  changes {len(report.changes)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--claims", type=int, default=10_000)
    parser.add_argument("--phantoms", type=int, default=50)
    parser.add_argument("--unknown", type=int, default=500, help="claims left UNKNOWN (lost answers)")
    parser.add_argument(
        "--db", default=None, help="folder for the SQLite file (default: a temp dir under /work or /tmp)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.db) as tmp:
        gw, paper, clock = build(
            Path(tmp) / "bench.db", args.symbols, args.claims, args.phantoms, args.unknown
        )
        timed_pass(gw, "pass 1 (phantoms to clear)")
        timed_pass(gw, "pass 2 (steady state, nothing to do)")
        # The pure diff alone on the steady-state inputs: the part that scales with claims.
        store = gw.store
        claims = store.list_claims(states=sorted(ACTIVE_STATES))
        ledger = store.positions("bench")
        from tradeguard.reconcile.runner import Reconciler

        snapshot = Reconciler(paper, store)._read(claims, earlier=None)
        t0 = time.perf_counter()
        actions = diff(claims, ledger, snapshot, clock.now(), store.settings)
        print(
            f"{'diff only (pure, steady state)':<34} {(time.perf_counter() - t0) * 1000:9.1f} ms  "
            f"ledger {len(ledger)} positions, {len(actions)} actions"
        )
        print(f"{'baseline: PaperBroker.list_positions':<34} ", end="")
        t0 = time.perf_counter()
        paper.list_positions()
        print(f"{(time.perf_counter() - t0) * 1000:8.1f} ms")
        store.close()


if __name__ == "__main__":
    main()
