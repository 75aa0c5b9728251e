"""Orders per second through the paper broker: in process, with a state file, and over HTTP.

The first rows time `submit_order` alone, in child processes, for this tree's tradeguard and
for the one of a git ref (`--baseline`, default ``main``: the code before a change), interleaved,
as orders per CPU-second (the machine is shared; wall time is shown too): plain market orders
whose answer nobody reads beyond its fields, the same with each answer's `raw` read (what the
paper server does), and a mixed flow over four symbols with price moves and refused oversells
(the count of refusals must match between the trees).

The state file rows: the journal (one appended line per change, `tradeguard.paper.statefile`),
the journal with `fsync_every_change`, and the whole-file rewrite of earlier versions (temp file,
fsync, `os.replace` per change; reproduced here as `WholeFileRewrite`) as the baseline. Each of
these rows is shown as orders per second of wall time and per CPU-second of this process (user
and system time): on a shared machine the wall clock also counts the time other processes held
the cores, which is most of the spread between runs.

Each run alternates a 1-share market buy and sell of TQQQ (so the position stays small and every
order fills), each with its own client_order_id. The HTTP row uses the real alpaca-py
TradingClient against the paper server on 127.0.0.1, one request at a time.

    python bench/paper.py --orders 2000
    python bench/paper.py --orders 20000 --only-submit --repeats 5 --baseline main
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from tradeguard.domain import OrderRequest, Side
from tradeguard.faults import FaultPlan
from tradeguard.paper import PaperBroker
from tradeguard.paper.state import PaperState
from tradeguard.paper.statefile import StateFile
from tradeguard.testing import FaultyBroker, alpaca_client, paper_server

CASH = Decimal(10) ** 9


def _side(i: int) -> Side:
    return Side.BUY if i % 2 == 0 else Side.SELL


class WholeFileRewrite(StateFile):
    """The state file of earlier versions: the whole account rewritten atomically per change."""

    def save(self, state: PaperState) -> None:
        """Write the whole account to a temp file, fsync it and put it in place."""
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".paper-", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(state.to_text())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)


def in_process(
    orders: int, state_path: Path | None = None, *, fsync: bool = False, rewrite: bool = False
) -> tuple[float, float]:
    broker = PaperBroker(cash=CASH, state_path=state_path, fsync_every_change=fsync)
    if rewrite:
        assert state_path is not None
        broker._file = WholeFileRewrite(state_path)  # the baseline: the writer of earlier versions
        broker._file.load(PaperState(cash=CASH))
    return _timed(
        orders, lambda i: broker.submit_order(OrderRequest("TQQQ", _side(i), f"b{i}", qty=Decimal(1)))
    )


def through_faulty_broker(orders: int) -> tuple[float, float]:
    # A plan whose only fault never matches: the cost of looking every call up in a plan.
    plan = FaultPlan.parse("faults: [{route: POST /v2/orders, match: {symbol: NONE}, action: drop}]")
    broker = FaultyBroker(PaperBroker(cash=CASH), plan)
    return _timed(
        orders, lambda i: broker.submit_order(OrderRequest("TQQQ", _side(i), f"b{i}", qty=Decimal(1)))
    )


def over_http(orders: int) -> tuple[float, float]:
    with paper_server(cash=CASH) as server, alpaca_client(server.url) as client:

        def submit(i: int) -> None:
            side = OrderSide.BUY if i % 2 == 0 else OrderSide.SELL
            client.submit_order(
                MarketOrderRequest(
                    symbol="TQQQ", qty=1, side=side, time_in_force=TimeInForce.DAY, client_order_id=f"h{i}"
                )
            )

        return _timed(orders, submit)


# Run in a child process with one tree's tradeguard first on the path; prints one JSON line of
# {workload: [wall seconds, CPU seconds, orders refused]} and the tradeguard it measured.
# "mixed": four symbols, sizes 1-20, more buys than sells, a price move every 50 orders, no
# shorting: the sells that exceed the position are refused (Alpaca's 403), as in a replay.
_SUBMIT_CHILD = """
import json, random, sys, time
from decimal import Decimal
import tradeguard
from tradeguard import OrderRejected, OrderRequest, PaperBroker, Side
orders = int(sys.argv[1])
sides = [Side.BUY, Side.SELL]
plain = [OrderRequest("TQQQ", sides[i % 2], f"s{i}", qty=Decimal(1)) for i in range(orders)]
rng = random.Random(7)
symbols = ["TQQQ", "SQQQ", "SPY", "QQQ"]
mixed, moves = [], {}
for i in range(orders):
    side = Side.BUY if rng.random() < 0.55 else Side.SELL
    mixed.append(OrderRequest(rng.choice(symbols), side, f"m{i}", qty=Decimal(rng.randint(1, 20))))
    if i % 50 == 0:
        moves[i] = (rng.choice(symbols), Decimal(rng.randint(5000, 15000)) / 100)
out = {"tradeguard": tradeguard.__file__}
for workload in ("market", "market, raw read", "mixed"):
    broker = PaperBroker(cash=Decimal(10) ** 9)
    requests = mixed if workload == "mixed" else plain
    submit, read = broker.submit_order, workload.endswith("raw read")
    refused = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for i, request in enumerate(requests):
        if i in moves:
            broker.set_price(*moves[i])
        try:
            answer = submit(request)
        except OrderRejected:
            refused += 1
            continue
        if read:
            answer.raw
    out[workload] = [time.perf_counter() - wall, time.process_time() - cpu, refused]
print(json.dumps(out))
"""


def extract_tree(ref: str, into: Path) -> Path | None:
    """Write `ref`'s tradeguard package under `into`; return the folder to put on the path.

    Returns None (and says why) when this is no git checkout or the ref is unknown.
    """
    root = Path(__file__).resolve().parent.parent
    archive = into / "tree.tar"
    with archive.open("wb") as out:
        done = subprocess.run(
            ["git", "-C", str(root), "archive", ref, "tradeguard"],
            stdout=out,
            stderr=subprocess.PIPE,
            check=False,
        )
    if done.returncode != 0:
        print(f"no baseline: git archive {ref} failed: {done.stderr.decode().strip()}")
        return None
    tree = into / "tree"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def submit_in_child(tree: Path, orders: int) -> dict[str, list[float]]:
    """Time the submit workloads in a fresh interpreter with `tree` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", _SUBMIT_CHILD, str(orders)],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, list[float]] = json.loads(done.stdout)
    return result


def submit_rows(orders: int, repeats: int, baseline: str) -> None:
    """Print submit_order's orders per CPU-second for this tree beside `baseline`'s, interleaved."""
    here = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this tree": here}
        base = extract_tree(baseline, Path(tmp)) if baseline else None
        if base is not None:
            trees[baseline] = base
        runs: dict[tuple[str, str], list[list[float]]] = {}
        for _ in range(repeats):
            for name, tree in trees.items():
                result = submit_in_child(tree, orders)
                assert str(result.pop("tradeguard")).startswith(str(tree)), "measured the wrong tree"
                for workload, secs in result.items():
                    runs.setdefault((workload, name), []).append(secs)
    print(f"submit_order in process: median of {repeats} interleaved runs of {orders} orders each")
    header = f"{'workload':<18} {'tree':<10} {'orders/CPU-s':>12} {'orders/s':>9} {'refused':>7}"
    print(f"{header}   per run (orders/CPU-s)")
    for (workload, name), secs in runs.items():
        cpu = statistics.median(orders / c for _, c, _ in secs)
        wall = statistics.median(orders / w for w, _, _ in secs)
        each = " ".join(f"{orders / c:.0f}" for _, c, _ in secs)
        refused = int(secs[0][2])  # the same every run: the workload is fixed
        print(f"{workload:<18} {name:<10} {cpu:>12,.0f} {wall:>9,.0f} {refused:>7}   {each}")
    if base is not None:
        for workload in ("market", "market, raw read", "mixed"):
            now = statistics.median(orders / c for _, c, _ in runs[(workload, "this tree")])
            before = statistics.median(orders / c for _, c, _ in runs[(workload, baseline)])
            print(f"{workload}: this tree / {baseline} = {now / before:.2f}x (orders per CPU-second)")
    print()


def _timed(orders: int, submit: Callable[[int], object]) -> tuple[float, float]:
    """Return (wall seconds, this process's CPU seconds) of `orders` submits.

    The CPU time (user and system: the journal's `write(2)` is system time) is what the run cost
    this process; on a shared machine other processes stretch the wall clock, not it. The HTTP
    row's server runs in this process (a thread), so its CPU time is counted too.
    """
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(orders):
        submit(i)
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000, help="orders per row (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs; medians are shown")
    parser.add_argument(
        "--baseline",
        default="main",
        help="git ref whose submit_order is timed beside this tree's ('' for none)",
    )
    parser.add_argument("--only-submit", action="store_true", help="only the submit_order rows")
    args = parser.parse_args()
    n = args.orders
    submit_rows(n, args.repeats, args.baseline)
    if args.only_submit:
        return
    here = Path(__file__).resolve().parent  # the project's disk: a tmpfs fsync costs nothing
    runs: dict[str, list[float]] = {}
    cpu_runs: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(dir=here) as tmp:
            rows = [
                ("PaperBroker in process", in_process(n)),
                ("FaultyBroker(PaperBroker), plan never fires", through_faulty_broker(n)),
                ("PaperBroker, state file: journal", in_process(n, Path(tmp) / "j.json")),
                (
                    "PaperBroker, state file: journal, fsync_every_change",
                    in_process(n, Path(tmp) / "f.json", fsync=True),
                ),
                (
                    "PaperBroker, state file: whole file per change (before)",
                    in_process(n, Path(tmp) / "w.json", rewrite=True),
                ),
                ("paper server over HTTP, alpaca-py TradingClient", over_http(n)),
            ]
        for name, (secs, cpu) in rows:
            runs.setdefault(name, []).append(n / secs)
            cpu_runs.setdefault(name, []).append(n / cpu)
    width = max(len(name) for name in runs)
    print(f"median of {args.repeats} interleaved runs of {n} orders each")
    print(f"{'path':<{width}}  {'orders/s':>9} {'orders/CPU-s':>12}   per run (orders/s)")
    for name, rates in runs.items():
        each = " ".join(f"{r:.0f}" for r in rates)
        per_cpu = statistics.median(cpu_runs[name])
        print(f"{name:<{width}}  {statistics.median(rates):>9.0f} {per_cpu:>12.0f}   {each}")
    journal = statistics.median(runs["PaperBroker, state file: journal"])
    bare = statistics.median(runs["PaperBroker in process"])
    before = statistics.median(runs["PaperBroker, state file: whole file per change (before)"])
    print(
        f"journal / in process = {journal / bare:.3f}; journal / whole-file rewrite = {journal / before:.1f}x"
    )
    journal_cpu = statistics.median(cpu_runs["PaperBroker, state file: journal"])
    print(
        f"journal: {journal:,.0f} orders/s, {journal_cpu:,.0f} orders per CPU-second "
        "(target: >= 10,000 orders/s)"
    )


if __name__ == "__main__":
    main()
