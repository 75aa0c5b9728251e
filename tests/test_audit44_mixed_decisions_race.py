"""Audit 44: different decisions of two agents racing in one symbol from 8 processes (G1, G3, G4).

Two agents share one served paper account and one PostgreSQL store; each runs four processes.
In each round all eight start together (a barrier) in a fresh symbol where both agents hold 20
shares: entries and exits of the same agent and of the other agent interleave, and two
processes of one agent race the *same* exit decision. Checked on what the account took: each
order POSTed once, at most one order per decision, no fill took the account or an agent below
zero (no exit sold more than its agent held), every exit carried `sell_to_close`; then, after
reconcile passes, every claim is definite, each ledger equals its agent's fills and the ledgers
sum to the broker's position. Real processes, the paper server over HTTP with the real alpaca-py
client, the real PostgreSQL server (a schema of this test's own).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests import audit44_workers as workers
from tests.forks import FORKS
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, OrderRequest, PositionIntent, Side
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore
from tradeguard.testing import paper_server

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CTX = FORKS
SYMBOLS = ["RACEA", "RACEB"]
AGENTS = ("a", "b")
HELD = 20


class CountingPaper(PaperBroker):
    """The served account; counts the POSTs of each client_order_id and logs each fill."""

    def __init__(self) -> None:
        super().__init__(prices=FixedPrices(dict.fromkeys(SYMBOLS, "100")), cash=10**9)
        self.posts: dict[str, int] = defaultdict(int)
        self.requests: list[OrderRequest] = []
        self.fills: list[tuple[str, str, Side, Decimal, Decimal]] = []  # coid, symbol, side, qty, after
        self._log = threading.Lock()

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        with self._log:
            self.posts[request.client_order_id] += 1
            self.requests.append(request)
            order = super().submit_order(request)
            if order.filled_qty:
                after = self.position_qty(order.symbol)
                self.fills.append((order.client_order_id, order.symbol, order.side, order.filled_qty, after))
            return order


@pytest.fixture
def audit_pg(pg_url: str) -> str:
    """A store URL on the real PostgreSQL server, in a fresh schema dropped afterwards (conftest)."""
    return pg_url


def _plans(agent: str) -> list[list[list[dict[str, Any]]]]:
    """Each of the agent's four processes: its ops per round (one round per symbol)."""
    per_process: list[list[list[dict[str, Any]]]] = [[], [], [], []]
    for s in SYMBOLS:
        ops = [
            [{"kind": "exit", "qty": 8, "intent": "x1"}, {"kind": "entry", "qty": 3, "intent": "e1"}],
            [{"kind": "exit", "intent": "x2"}],  # the whole position, whatever it is by then
            [{"kind": "exit", "qty": 8, "intent": "x1"}],  # the same decision as process 1's exit
            [{"kind": "entry", "qty": 4, "intent": "e2"}, {"kind": "exit", "qty": 10, "intent": "x3"}],
        ]
        for p, round_ops in enumerate(ops):
            per_process[p].append(
                [{**op, "symbol": s, "intent": f"{agent}-{s}-{op['intent']}"} for op in round_ops]
            )
    return per_process


def test_eight_processes_of_two_agents_racing_entries_and_exits_keep_g1_and_g3(audit_pg: str) -> None:
    paper = CountingPaper()
    with paper_server(paper) as server:
        settings = Settings(position_settle_secs=0.2, settle_delay_secs=0.05, recent_activity_secs=0.2)
        with ClaimStore(audit_pg, settings=settings) as store:
            for agent in AGENTS:
                gw = OrderGateway(
                    workers.broker(server.url),
                    store,
                    agent_id=agent,
                    settings=settings,
                    reconcile_on_start=False,
                )
                for s in SYMBOLS:
                    assert gw.enter(s, qty=HELD, intent=f"{agent}-{s}-setup").outcome.value == "submitted"
        barrier = CTX.Barrier(len(AGENTS) * 4)
        out = CTX.Queue()
        procs = [
            CTX.Process(target=workers.race_worker, args=(audit_pg, server.url, agent, plan, barrier, out))
            for agent in AGENTS
            for plan in _plans(agent)
        ]
        for p in procs:
            p.start()
        rows: list[tuple[str, ...]] = []
        expected = sum(len(ops) for agent in AGENTS for plan in _plans(agent) for ops in plan)
        try:
            while len(rows) < expected and not any(r[0] == "error" for r in rows):
                rows.append(out.get(timeout=120))
        finally:
            for p in procs:
                p.join(60)
                if p.is_alive():
                    p.kill()
        assert not [r for r in rows if r[0] != "ok"], [r for r in rows if r[0] != "ok"]

        later = ManualClock(datetime.now(UTC) + timedelta(minutes=5))
        with ClaimStore(audit_pg, settings=settings, clock=later) as store:
            claims = {c.client_order_id: c for c in store.list_claims()}
            # G1: each order POSTed once; one order per decision.
            assert {coid: n for coid, n in paper.posts.items() if n > 1} == {}
            per_decision: dict[tuple[str, str], set[str]] = defaultdict(set)
            for order in paper.orders():
                claim = claims[order.client_order_id]
                per_decision[(claim.agent_id, claim.intent)].add(order.client_order_id)
            assert {d: c for d, c in per_decision.items() if len(c) > 1} == {}
            # G3: every exit closes; no fill took the account or an agent below zero.
            for request in paper.requests:
                if request.side is Side.SELL:
                    assert request.position_intent is PositionIntent.SELL_TO_CLOSE, request
            truth: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
            for coid, symbol, side, qty, after in paper.fills:
                assert after >= 0, (coid, symbol, after)
                agent = claims[coid].agent_id
                truth[(agent, symbol)] += qty if side is Side.BUY else -qty
                assert truth[(agent, symbol)] >= 0, (agent, symbol, coid, rows)
            # G2/G4 after passes: definite claims, ledgers equal to the fills and to the broker.
            for agent in AGENTS:
                gw = OrderGateway(
                    workers.broker(server.url), store, agent_id=agent, settings=settings, clock=later,
                    reconcile_on_start=False,
                )  # fmt: skip
                for _ in range(2):
                    assert gw.reconcile().aborted is None
                    later.advance(10)
            for claim in store.list_claims():
                assert claim.state not in (ClaimState.PENDING, ClaimState.UNKNOWN), claim
            for s in SYMBOLS:
                for agent in AGENTS:
                    assert store.position(agent, s).qty == truth[(agent, s)], (agent, s)
                assert paper.position_qty(s) == sum(truth[(a, s)] for a in AGENTS)
