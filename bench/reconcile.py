"""One reconcile pass over 1,000 symbols and 10,000 claims: time and memory (G4).

Usage: python bench/reconcile.py [--symbols 1000] [--claims 10000] [--phantoms 50] [--db DIR]

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
from tradeguard.broker.paper_prices import FixedPrices
from tradeguard.lifecycle import ACTIVE_STATES
from tradeguard.reconcile import diff


def build(
    db: Path, symbols: int, claims: int, phantoms: int
) -> tuple[OrderGateway, PaperBroker, ManualClock]:
    clock = ManualClock()
    names = [f"S{i:04d}" for i in range(symbols)]
    paper = PaperBroker(prices=FixedPrices(default="10"), clock=clock, cash=Decimal(10) ** 12)
    settings = Settings(recent_activity_secs=0)
    store = ClaimStore(f"sqlite:///{db}", settings=settings, clock=clock)
    gw = OrderGateway(
        paper, store, agent_id="bench", settings=settings, clock=clock, reconcile_on_start=False
    )
    per_symbol = max(1, claims // symbols)
    for n in range(claims):
        gw.enter(names[n % symbols], qty=1, intent=f"bar {n // symbols}")
    for name in names[:phantoms]:
        paper.close_position(name)
    clock.advance(120)
    print(f"built: {symbols} symbols, {claims} claims ({per_symbol}/symbol), {phantoms} phantoms")
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
    parser.add_argument(
        "--db", default=None, help="folder for the SQLite file (default: a temp dir under /work or /tmp)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.db) as tmp:
        gw, paper, clock = build(Path(tmp) / "bench.db", args.symbols, args.claims, args.phantoms)
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
