"""8 OS processes enter the same decision at the same moment through the paper server (G1).

Each process runs its own gateway and AlpacaBroker (real alpaca-py TradingClient over real HTTP
to the paper server on 127.0.0.1) against one claim store: a SQLite file, or PostgreSQL.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from tests.forks import FORKS
from tests.gateway_race_worker import enter_worker
from tradeguard.testing import orders_of, paper_server

pytestmark = pytest.mark.slow

WORKERS = 8
ROUNDS = 15


def test_eight_processes_one_decision_one_post_per_round(store_url: str) -> None:
    ctx = FORKS
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    with paper_server() as server:
        procs = [
            ctx.Process(target=enter_worker, args=(store_url, server.url, ROUNDS, barrier, results, w))
            for w in range(WORKERS)
        ]
        for p in procs:
            p.start()
        rows = [results.get(timeout=180) for _ in range(WORKERS * ROUNDS)]
        for p in procs:
            p.join(60)
        errors = [r for r in rows if r[0] == "error"]
        assert not errors, errors
        by_round: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for _, r, _, outcome, coid in rows:
            by_round[r].append((outcome, coid))
        orders = orders_of(server.broker)
    for r, answers in by_round.items():
        outcomes = Counter(o for o, _ in answers)
        assert outcomes["submitted"] == 1, (r, outcomes)
        assert outcomes["submitted"] + outcomes["duplicate"] == WORKERS, (r, outcomes)
        coids = {c for _, c in answers}
        assert len(coids) == 1, (r, coids)
        (coid,) = coids
        assert sum(1 for o in orders if o.client_order_id == coid) == 1
    assert len(orders) == ROUNDS
