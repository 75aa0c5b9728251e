"""Replay throughput per guard mode beside the paper broker alone, and peak memory, in one run.

    python bench/replay.py --attempts 100000

A generated session (replay.generate: four symbols, entries, adds and exits, a fifth of the
decisions retried after a lost answer) is replayed in each mode. Each row is timed once without
tracemalloc (attempts/s) and once under it (peak MiB; tracemalloc slows the run, so its time is
not used). "paper broker alone" submits the same attempts as plain market orders straight to a
PaperBroker, with nothing read from the file; "read + check" streams and validates the file with
no account at all.

    python bench/replay.py --memory-sizes 10000,100000

prints instead the tracemalloc peak of each mode at each size, beside the same replay keeping
everything (`forget_above=None`, as replays did before they forgot the past): a replay's peak
should not grow with the session, one keeping everything grows with it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

# This script is named like the package it measures: without its own folder on the path,
# `import replay` finds the package, not this file.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from replay import Mode, replay_session  # noqa: E402
from replay.generate import generate_session  # noqa: E402
from replay.modes import FORGET_ABOVE  # noqa: E402
from tradeguard import (  # noqa: E402
    AttemptEvent,
    OrderRejected,
    OrderRequest,
    PaperBroker,
    PriceEvent,
    Side,
    open_session,
)


def paper_alone(path: Path) -> Callable[[], int]:
    """Return a run that submits the session's attempts straight to a fresh PaperBroker."""
    requests: list[OrderRequest] = []
    prices: dict[str, Decimal] = {}
    with open_session(path) as session:
        for _, event in session:
            if isinstance(event, PriceEvent):
                prices[event.symbol] = event.price
            elif isinstance(event, AttemptEvent):
                coid = f"alone-{len(requests)}"
                requests.append(OrderRequest(event.symbol, Side(event.side), coid, qty=event.qty))

    def run() -> int:
        paper = PaperBroker(cash=Decimal(10) ** 9, allow_short=True)
        for symbol, price in prices.items():
            paper.set_price(symbol, price)
        for request in requests:
            # A duplicate sell the account cannot fill is refused, as in `--guard none`.
            with contextlib.suppress(OrderRejected):
                paper.submit_order(request)
        return len(requests)

    return run


def timed(run: Callable[[], int]) -> tuple[float, float, int]:
    """Return (wall seconds, this process's CPU seconds, attempts) of one run.

    CPU time is printed beside wall time: on a shared machine other processes stretch the wall
    clock, not the CPU this one spent.
    """
    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    count = run()
    return time.perf_counter() - started, time.process_time() - cpu, count


def peak_mib(run: Callable[[], int]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def memory_by_size(sizes: list[int]) -> None:
    """Print the peak MiB of each mode at each session size, bounded and keeping everything."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for size in sizes:
            paths[size] = Path(tmp) / f"generated-{size}.jsonl"
            generate_session(paths[size], size)
        rows: list[tuple[str, list[Mode], int | None]] = [
            *((f"replay --guard {mode.value}", [mode], FORGET_ABOVE) for mode in Mode),
            ("replay --compare (3 modes, one pass)", list(Mode), FORGET_ABOVE),
            *((f"replay --guard {mode.value}, keeping everything", [mode], None) for mode in Mode),
        ]
        heads = " | ".join(f"peak MiB at {size:,} attempts" for size in sizes)
        print(f"| path | {heads} |\n|---|{'---:|' * len(sizes)}")
        for label, modes, bound in rows:
            peaks = []
            for size in sizes:
                path = paths[size]
                peaks.append(peak_mib(lambda: (replay_session(path, modes, forget_above=bound), size)[1]))  # noqa: B023
            print(f"| {label} | {' | '.join(f'{p:.1f}' for p in peaks)} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attempts", type=int, default=100_000)
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc runs")
    parser.add_argument(
        "--memory-sizes",
        metavar="N,N,...",
        help="print only the peak MiB per mode at each of these session sizes (e.g. 10000,100000)",
    )
    args = parser.parse_args()
    if args.memory_sizes:
        memory_by_size([int(n) for n in args.memory_sizes.split(",")])
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generated.jsonl"
        started = time.perf_counter()
        lines = generate_session(path, args.attempts)
        print(
            f"generated {args.attempts:,} attempts ({lines:,} lines, {path.stat().st_size / 2**20:.1f} MiB) "
            f"in {time.perf_counter() - started:.1f} s\n"
        )
        attempts = args.attempts

        def replaying(modes: list[Mode]) -> Callable[[], int]:
            return lambda: (replay_session(path, modes), attempts)[1]

        rows: list[tuple[str, Callable[[], int]]] = [
            ("paper broker alone (no session read)", paper_alone(path)),
            ("read + check the session (no account)", replaying([])),
            *((f"replay --guard {mode.value}", replaying([mode])) for mode in Mode),
            ("replay --compare (3 modes, one pass)", replaying(list(Mode))),
        ]
        print("| path | attempts/s | attempts/CPU-s | peak MiB (tracemalloc) |\n|---|---:|---:|---:|")
        for label, run in rows:
            secs, cpu, count = timed(run)
            peak = "-" if args.no_memory else f"{peak_mib(run):.1f}"
            print(f"| {label} | {count / secs:,.0f} | {count / cpu:,.0f} | {peak} |", flush=True)


if __name__ == "__main__":
    main()
