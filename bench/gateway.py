"""What the guard costs per order: OrderGateway.enter vs calling the same broker directly (G1, G5).

Usage: python bench/gateway.py [--n 2000] [--pg-url URL]

Both paths hit the same in-process PaperBroker (market orders fill on submit), in the same run;
the difference is the claim (durable before the send), the transition with its fill and ledger
update, and the audit records. Also timed: a retry of a known decision (the duplicate path,
which makes one broker lookup to return the original order fresh).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from tradeguard import ClaimStore, OrderGateway, OrderRequest, PaperBroker, Settings, Side


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1e6, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6


def timed(n: int, call: Callable[[int], object]) -> list[float]:
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - t0)
    return samples


def run(label: str, url: str, n: int, rows: list[tuple[str, float, float]]) -> None:
    paper = PaperBroker(cash=Decimal(10) ** 12)
    direct = timed(
        n, lambda i: paper.submit_order(OrderRequest("BASE", Side.BUY, f"direct-{label}-{i}", qty=Decimal(1)))
    )
    store = ClaimStore(url, settings=Settings())
    gateway = OrderGateway(paper, store, agent_id=f"bench-{os.getpid()}", reconcile_on_start=False)
    guarded = timed(n, lambda i: gateway.enter("TQQQ", qty=1, intent=f"bench {i}"))
    retries = timed(n, lambda i: gateway.enter("TQQQ", qty=1, intent=f"bench {i}"))
    store.close()
    d50, d99 = percentiles(direct)
    g50, g99 = percentiles(guarded)
    r50, r99 = percentiles(retries)
    rows.append((f"broker directly ({label} run)", d50, d99))
    rows.append((f"guarded enter, {label}", g50, g99))
    rows.append((f"  overhead over direct, {label}", g50 - d50, g99 - d99))
    rows.append((f"guarded retry (duplicate), {label}", r50, r99))
    print(
        f"{label}: {n} orders, guarded {n / sum(guarded):.0f} orders/s vs direct {n / sum(direct):.0f}/s, "
        f"mean overhead {statistics.mean(guarded) * 1e6 - statistics.mean(direct) * 1e6:.0f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--pg-url", default=os.environ.get("TRADEGUARD_TEST_PG_URL"))
    args = parser.parse_args()
    rows: list[tuple[str, float, float]] = []
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory(dir=here) as tmp:  # the disk the project is on, not tmpfs
        run("SQLite file", f"sqlite:///{Path(tmp) / 'gateway.db'}", args.n, rows)
    if args.pg_url:
        run("PostgreSQL", args.pg_url, args.n, rows)
    print()
    print(f"{'path':<44} {'p50 us':>9} {'p99 us':>9}")
    for name, p50, p99 in rows:
        print(f"{name:<44} {p50:9.0f} {p99:9.0f}")


if __name__ == "__main__":
    main()
