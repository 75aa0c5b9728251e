"""Audit 67: drop-in bots of two agents racing different decisions in one symbol, 8 processes.

Audit 44 raced the gateway's `enter`/`exit`; this is the one-import `GuardedTradingClient`,
whose sells are classified as exits by the agent's ledger and the broker's position, whose
orders are keyed by the caller's client_order_id (retried by a second process) or by content,
and whose `close_position` closes the agent's own turn. Each agent holds 20 in the symbol;
buys, sells and closes interleave. Checked on what the account took: each client_order_id
POSTed once, no fill took the account or an agent below zero, every sell carried
`sell_to_close`; then, after reconcile passes, every claim is definite, each ledger equals its
agent's fills and the ledgers sum to the broker's. Real processes, the paper server over HTTP,
the real PostgreSQL server.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests import audit67_workers as workers
from tests.audit44_workers import broker
from tests.forks import FORKS
from tests.test_audit44_mixed_decisions_race import CountingPaper
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import PositionIntent, Side
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.gateway import OrderGateway
from tradeguard.store import ClaimStore
from tradeguard.testing import paper_server

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SYMBOLS = ["RACEA", "RACEB"]
AGENTS = ("a", "b")
HELD = 20


def _plans(agent: str) -> list[list[list[dict[str, Any]]]]:
    """Each of the agent's four processes: its calls per round (one round per symbol)."""
    per_process: list[list[list[dict[str, Any]]]] = [[], [], [], []]
    for s in SYMBOLS:
        ops = [
            [{"call": "sell", "qty": 8, "coid": "x1"}, {"call": "buy", "qty": 3, "coid": "e1"}],
            [{"call": "close"}],  # the whole position, whatever it is by then
            [{"call": "sell", "qty": 8, "coid": "x1"}],  # process 1's sell, retried
            [{"call": "buy", "qty": 4}, {"call": "sell", "qty": 10}],  # no ids: known by content
        ]
        for p, calls in enumerate(ops):
            per_process[p].append(
                [
                    {**op, "symbol": s, **({"coid": f"{agent}-{s}-{op['coid']}"} if "coid" in op else {})}
                    for op in calls
                ]
            )
    return per_process


def test_eight_dropin_processes_of_two_agents_racing_buys_sells_and_closes_keep_g1_to_g4(
    pg_url: str,
) -> None:
    paper = CountingPaper()
    with paper_server(paper) as server:
        settings = Settings(position_settle_secs=0.2, settle_delay_secs=0.05, recent_activity_secs=0.2)
        with ClaimStore(pg_url, settings=settings) as store:
            for agent in AGENTS:
                gw = OrderGateway(
                    broker(server.url), store, agent_id=agent, settings=settings, reconcile_on_start=False
                )
                for s in SYMBOLS:
                    assert gw.enter(s, qty=HELD, intent=f"{agent}-{s}-setup").outcome.value == "submitted"
        barrier = FORKS.Barrier(len(AGENTS) * 4)
        out = FORKS.Queue()
        procs = [
            FORKS.Process(
                target=workers.dropin_race_worker, args=(pg_url, server.url, agent, plan, barrier, out)
            )
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
        assert not [r for r in rows if r[0] in ("error", "raised")], rows

        later = ManualClock(datetime.now(UTC) + timedelta(minutes=5))
        with ClaimStore(pg_url, settings=settings, clock=later) as store:
            claims = {c.client_order_id: c for c in store.list_claims()}
            assert {coid: n for coid, n in paper.posts.items() if n > 1} == {}, rows
            for request in paper.requests:
                if request.side is Side.SELL:
                    assert request.position_intent is PositionIntent.SELL_TO_CLOSE, (request, rows)
            truth: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
            for coid, symbol, side, qty, after in paper.fills:
                assert after >= 0, (coid, symbol, after)
                agent = claims[coid].agent_id
                truth[(agent, symbol)] += qty if side is Side.BUY else -qty
                assert truth[(agent, symbol)] >= 0, (agent, symbol, coid, rows)
            for agent in AGENTS:
                gw = OrderGateway(
                    broker(server.url), store, agent_id=agent, settings=settings, clock=later,
                    reconcile_on_start=False,
                )  # fmt: skip
                for _ in range(2):
                    assert gw.reconcile().aborted is None
                    later.advance(10)
            for claim in store.list_claims():
                assert claim.state not in (ClaimState.PENDING, ClaimState.UNKNOWN), claim
            for s in SYMBOLS:
                for agent in AGENTS:
                    assert store.position(agent, s).qty == truth[(agent, s)], (agent, s, rows)
                assert paper.position_qty(s) == sum(truth[(a, s)] for a in AGENTS)
