"""What a claim costs through the claim service: `RemoteClaimLedger` over loopback HTTP vs in process.

Usage: python bench/remote_ledger.py [--claims 500] [--store sqlite|URL]

Both in one run, on one store (a fresh SQLite file by default): the decision cycle a gateway
runs for one entry (claim, fence before the send, SUBMITTED, FILLED), once on a `ClaimStore` in
process (the baseline) and once through the native `/v1` routes served by uvicorn on
127.0.0.1 in this process. Prints cycles/s and p50/p99 of one cycle.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.native_kit import serve_native  # noqa: E402
from tradeguard.domain import Intent, Kind, OrderSpec, Side  # noqa: E402
from tradeguard.domain.lifecycle import ClaimState  # noqa: E402
from tradeguard.ports import ClaimLedger  # noqa: E402
from tradeguard.store import ClaimStore, RemoteClaimLedger  # noqa: E402


def cycles(ledger: ClaimLedger, label: str, n: int) -> None:
    spec = OrderSpec(qty=Decimal(1))
    took: list[float] = []
    started = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        claim = ledger.claim(Intent(label, Kind.ENTRY, "QQQ", Side.BUY, f"d{i}"), spec, owner="w").claim
        claim = ledger.fence_before_send(claim)
        claim = ledger.transition(claim, ClaimState.SUBMITTED, reason="ack", broker_order_id=f"o{i}")
        ledger.transition(claim, ClaimState.FILLED, reason="fill", filled_qty=Decimal(1))
        took.append(time.perf_counter() - t0)
    secs = time.perf_counter() - started
    cuts = statistics.quantiles(took, n=100)
    p50, p99 = cuts[49] * 1e3, cuts[98] * 1e3
    rate = f"{n} cycles in {secs:6.2f} s = {n / secs:7.1f} cycles/s"
    print(f"{label:<11} {rate}; p50 {p50:.2f} ms, p99 {p99:.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--claims", type=int, default=500)
    parser.add_argument("--store", default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db" if args.store == "sqlite" else args.store
        with ClaimStore(url) as store:
            cycles(store, "in-process", args.claims)
            with serve_native(store, url) as service:
                key = service.key("remote")
                with RemoteClaimLedger(service.base_url, api_key=key) as remote:
                    cycles(remote, "remote", args.claims)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
