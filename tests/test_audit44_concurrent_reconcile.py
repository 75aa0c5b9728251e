"""Audit 44: reconcile passes in two processes at once while the account's orders fill (G2, G4).

Three agents share one served paper account and one PostgreSQL store. Their orders rest at the
broker and fill one share per matching step while two reconcile processes run full passes
started together at a barrier, over and over. Passes must be idempotent and converge: each
claim ends with the broker's fills, each ledger holds its agent's fills exactly once (no fill
adopted twice, none lost), the ledgers sum to the broker's position, and a last pass finds
nothing to do. Real processes, the paper server over HTTP with the real alpaca-py client, the
real PostgreSQL server (a schema of this test's own).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests import audit44_workers as workers
from tests.forks import FORKS
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import Side
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore
from tradeguard.testing import paper_server

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CTX = FORKS
SYMBOL = "TQQQ"
# Passes look at every claim at once (no "recent activity" grace) and read twice quickly; the
# positions endpoint here is current, so an exit waits out others' fills only briefly.
PASS_SETTINGS = {
    "recent_activity_secs": 0.0, "settle_delay_secs": 0.05, "unknown_probe_gap_secs": 0.05,
    "position_settle_secs": 1.0,
}  # fmt: skip
ROUNDS = 10


@pytest.fixture
def audit_pg(pg_url: str) -> str:
    """A store URL on the real PostgreSQL server, in a fresh schema dropped afterwards (conftest)."""
    return pg_url


def _gateway(store: ClaimStore, paper_url: str, agent: str, clock: ManualClock | None = None) -> OrderGateway:
    return OrderGateway(
        workers.broker(paper_url), store, agent_id=agent, settings=store.settings, clock=clock,
        reconcile_on_start=False,
    )  # fmt: skip


def _fill_all(paper: PaperBroker) -> None:
    while paper.step():
        pass


def _passes(url: str, paper_url: str, rounds: int, stepping: PaperBroker | None) -> list[tuple[str, str]]:
    """Two reconcile processes, `rounds` passes each started together; the account fills meanwhile.

    The test joins each start (a barrier of three) and then runs one matching step (one share
    of every resting order), so the fills land while both passes read and apply.
    """
    barrier = CTX.Barrier(3)
    out = CTX.Queue()
    procs = [
        CTX.Process(
            target=workers.reconcile_worker, args=(url, paper_url, PASS_SETTINGS, barrier, rounds, out)
        )
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    rows: list[tuple[str, str]] = []
    try:
        for _ in range(rounds):
            barrier.wait(120)
            if stepping is not None:
                stepping.step()
        while len(rows) < 2 * rounds and not any(r[0] == "error" for r in rows):
            rows.append(out.get(timeout=120))
    finally:
        barrier.abort()
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.kill()
    return rows


def test_two_reconcile_processes_racing_while_orders_fill_adopt_every_fill_once(audit_pg: str) -> None:
    paper = PaperBroker(prices=FixedPrices({SYMBOL: "50"}), max_fill_qty=1, fill_on_submit=False)
    with paper_server(paper) as server:
        settings = Settings(**PASS_SETTINGS)
        with ClaimStore(audit_pg, settings=settings) as store:
            gw = {a: _gateway(store, server.url, a) for a in ("a", "b", "c")}
            # c holds 6 before the race (filled and booked), then exits 4 of them in it.
            assert gw["c"].enter(SYMBOL, qty=6, intent="setup").outcome.value == "submitted"
            _fill_all(paper)
            gw["c"].reconcile()
            assert store.position("c", SYMBOL).qty == 6
            for n in range(3):
                assert gw["a"].enter(SYMBOL, qty=4, intent=f"a{n}").outcome.value == "submitted"
                assert gw["b"].enter(SYMBOL, qty=3, intent=f"b{n}").outcome.value == "submitted"
        rows = _passes(audit_pg, server.url, ROUNDS, paper)
        assert not [r for r in rows if r[0] == "error"], rows
        _fill_all(paper)
        with ClaimStore(audit_pg, settings=settings) as store:
            # The exit only now: a sell resting beside the buys would be refused as a wash trade.
            sold = _gateway(store, server.url, "c").exit(SYMBOL, qty=4, intent="x1")
            assert sold.outcome.value == "submitted", sold
        rows = _passes(audit_pg, server.url, 4, paper)
        assert not [r for r in rows if r[0] == "error"], rows
        _fill_all(paper)
        rows = _passes(audit_pg, server.url, 3, None)  # the fills left, caught up by racing passes too
        assert not [r for r in rows if r[0] == "error"], rows

        later = ManualClock(datetime.now(UTC) + timedelta(minutes=10))
        with ClaimStore(audit_pg, settings=settings, clock=later) as store:
            orders = {o.client_order_id: o for o in paper.orders()}
            truth: dict[str, Decimal] = defaultdict(Decimal)
            for claim in store.list_claims(symbol=SYMBOL):
                order = orders[claim.client_order_id]
                assert claim.state is ClaimState.FILLED, claim
                assert claim.filled_qty == order.filled_qty == order.qty, (claim, order)
                truth[claim.agent_id] += order.filled_qty if order.side is Side.BUY else -order.filled_qty
            assert dict(truth) == {"a": 12, "b": 9, "c": 2}
            for agent, qty in truth.items():
                assert store.position(agent, SYMBOL).qty == qty, agent
            assert paper.position_qty(SYMBOL) == sum(truth.values())
            last = _gateway(store, server.url, "a", later).reconciler.run()
            assert last.aborted is None and not last.actions, last
