"""Claims per second and latency of the claim service over HTTP, beside the same claims in process.

Usage: python bench/service.py [--n 300] [--rounds 3] [--pg-url URL]

Each claim is a new request id (PROCEED): one insert-if-absent in `tg_actions` and one audit
record, as `POST /claim` does. Cases, interleaved round by round (median of `--rounds`):

- in process, 1 and 16 threads: `ActionStore.claim` + `ClaimStore.audit` called directly;
- HTTP, 1 and 16 clients: `POST /claim` to `tradeguard serve` (uvicorn, one worker, its own
  process) on loopback, each client with its own keep-alive connection.

`--n` claims per client thread. The store is a fresh SQLite file (and PostgreSQL with --pg-url).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tradeguard.domain.audit import AuditAction  # noqa: E402
from tradeguard.service.actions import ActionStore  # noqa: E402
from tradeguard.service.keys import KeyRing  # noqa: E402
from tradeguard.store import ClaimStore  # noqa: E402

_SERVE = """
import sys
from pathlib import Path
from tradeguard.service.app import ServiceConfig
from tradeguard.service.server import serve
ready = Path(sys.argv[2])
serve(ServiceConfig(store_url=sys.argv[1], rate_per_sec=0), port=0, access_log=False,
      on_ready=lambda host, port: ready.write_text(str(port)))
"""


def start_service(url: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    ready = folder / f"ready-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE, url, str(ready)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not ready.exists() or not ready.read_text():
        if proc.poll() is not None:
            raise SystemExit("the service did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{ready.read_text()}"


def run_threads(
    threads: int, n: int, claim_factory: Callable[[], Callable[[str], None]]
) -> tuple[float, list[float]]:
    """Run `threads` x `n` claims; return the wall time and every claim's latency in seconds."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    prefix = uuid.uuid4().hex[:8]

    def work(index: int) -> None:
        claim = claim_factory()
        barrier.wait()
        mine = latencies[index]
        for i in range(n):
            started = time.perf_counter()
            claim(f"{prefix}-{index}-{i}")
            mine.append(time.perf_counter() - started)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started, [x for xs in latencies for x in xs]


def in_process(url: str) -> Callable[[], Callable[[str], None]]:
    actions = ActionStore(url)
    audit_log = ClaimStore(url)

    def factory() -> Callable[[str], None]:
        def claim(request_id: str) -> None:
            outcome = actions.claim("bench", request_id, "bench.claim")
            assert outcome.answer.value == "PROCEED"
            audit_log.audit(
                AuditAction.CLAIM,
                agent_id="bench",
                reason="bench",
                state="PENDING",
                claim_key=outcome.record.key,
            )

        return claim

    return factory


def over_http(base_url: str, key: str) -> Callable[[], Callable[[str], None]]:
    def factory() -> Callable[[str], None]:
        client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)

        def claim(request_id: str) -> None:
            response = client.post("/claim", json={"request_id": request_id, "action": "bench.claim"})
            assert response.json()["status"] == "PROCEED", response.text

        return claim

    return factory


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_store(label: str, url: str, n: int, rounds: int, folder: Path) -> None:
    with KeyRing(url) as ring:
        key = ring.create("bench")[1]
    proc, base_url = start_service(url, folder)
    try:
        cases = {
            f"{label} in process, 1 thread": (1, in_process(url)),
            f"{label} HTTP, 1 client": (1, over_http(base_url, key)),
            f"{label} in process, 16 threads": (16, in_process(url)),
            f"{label} HTTP, 16 clients": (16, over_http(base_url, key)),
        }
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in cases}
        for _ in range(rounds):  # interleaved: each round runs every case once
            for name, (threads, factory) in cases.items():
                wall, latencies = run_threads(threads, n, factory)
                results[name].append(
                    (len(latencies) / wall, quantile(latencies, 0.5) * 1e6, quantile(latencies, 0.99) * 1e6)
                )
        for name, runs in results.items():
            rate = statistics.median(r[0] for r in runs)
            p50 = statistics.median(r[1] for r in runs)
            p99 = statistics.median(r[2] for r in runs)
            print(f"| {name} | {rate:,.0f} | {p50:,.0f} | {p99:,.0f} |")
    finally:
        proc.terminate()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=300, help="claims per client thread")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg-url", default=None)
    args = parser.parse_args()
    print(f"{args.n} claims per thread, median of {args.rounds} interleaved rounds")
    print("| case | claims/s | p50 µs | p99 µs |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bench_store("SQLite", f"sqlite:///{folder / 'bench.db'}", args.n, args.rounds, folder)
        if args.pg_url:
            import sqlalchemy as sa

            schema = f"tg_bench_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(args.pg_url)
            with admin.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            sep = "&" if "?" in args.pg_url else "?"
            try:
                bench_store("PostgreSQL", f"{args.pg_url}{sep}options=-csearch_path%3D{schema}", args.n,
                            args.rounds, folder)  # fmt: skip
            finally:
                with admin.begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
