"""Orders per second through the paper broker: in process, with a state file, and over HTTP.

Each run alternates a 1-share market buy and sell of TQQQ (so the position stays small and every
order fills), each with its own client_order_id. The HTTP row uses the real alpaca-py
TradingClient against the paper server on 127.0.0.1, one request at a time.

    python bench/paper.py --orders 1000
"""

from __future__ import annotations

import argparse
import statistics
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
from tradeguard.testing import FaultyBroker, alpaca_client, paper_server

CASH = Decimal(10) ** 9


def _side(i: int) -> Side:
    return Side.BUY if i % 2 == 0 else Side.SELL


def in_process(orders: int, state_path: Path | None = None) -> float:
    broker = PaperBroker(cash=CASH, state_path=state_path)
    return _timed(
        orders, lambda i: broker.submit_order(OrderRequest("TQQQ", _side(i), f"b{i}", qty=Decimal(1)))
    )


def through_faulty_broker(orders: int) -> float:
    # A plan whose only fault never matches: the cost of looking every call up in a plan.
    plan = FaultPlan.parse("faults: [{route: POST /v2/orders, match: {symbol: NONE}, action: drop}]")
    broker = FaultyBroker(PaperBroker(cash=CASH), plan)
    return _timed(
        orders, lambda i: broker.submit_order(OrderRequest("TQQQ", _side(i), f"b{i}", qty=Decimal(1)))
    )


def over_http(orders: int) -> float:
    with paper_server(cash=CASH) as server, alpaca_client(server.url) as client:

        def submit(i: int) -> None:
            side = OrderSide.BUY if i % 2 == 0 else OrderSide.SELL
            client.submit_order(
                MarketOrderRequest(
                    symbol="TQQQ", qty=1, side=side, time_in_force=TimeInForce.DAY, client_order_id=f"h{i}"
                )
            )

        return _timed(orders, submit)


def _timed(orders: int, submit: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for i in range(orders):
        submit(i)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000, help="orders per row (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs; medians are shown")
    args = parser.parse_args()
    n = args.orders
    here = Path(__file__).resolve().parent  # the project's disk: a tmpfs fsync costs nothing
    runs: dict[str, list[float]] = {}
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(dir=here) as tmp:
            rows = [
                ("PaperBroker in process", in_process(n)),
                ("FaultyBroker(PaperBroker), plan never fires", through_faulty_broker(n)),
                ("PaperBroker in process, JSON state file", in_process(n, Path(tmp) / f"s{repeat}.json")),
                ("paper server over HTTP, alpaca-py TradingClient", over_http(n)),
            ]
        for name, secs in rows:
            runs.setdefault(name, []).append(n / secs)
    width = max(len(name) for name in runs)
    print(f"median of {args.repeats} interleaved runs of {n} orders each")
    print(f"{'path':<{width}}  {'orders/s':>9}   per run")
    for name, rates in runs.items():
        each = " ".join(f"{r:.0f}" for r in rates)
        print(f"{name:<{width}}  {statistics.median(rates):>9.0f}   {each}")
    state = statistics.median(runs["PaperBroker in process, JSON state file"])
    bare = statistics.median(runs["PaperBroker in process"])
    print(f"state file / in process = {state / bare:.3f} (target: state file >= 10,000 orders/s)")


if __name__ == "__main__":
    main()
