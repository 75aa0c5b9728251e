"""Audit 44: a sender frozen (SIGSTOP) after its POST, before it records the answer (G1, fencing).

A bot process stops right after the broker answered its POST (`after_post`): the order is at
the broker, the claim still PENDING under the frozen process's lease. The lease lapses; another
process takes the decision over (a retry of the same decision, or a reconcile pass) and finds
the order by its client_order_id; the account moves on (the position is closed, or entered
again). Then SIGCONT: the frozen process must neither send again nor move the claim back nor
book its fill a second time. Real processes, the paper server over HTTP with the real alpaca-py
client, the real PostgreSQL server (a schema of this test's own).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests import audit44_workers as workers
from tests.forks import FORKS
from tests.gateway_kit import ServedRecording, broker_qty
from tests.test_hardening_races import _wait_for
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import Side
from tradeguard.domain.intents import Intent, Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.gateway import OrderGateway
from tradeguard.store import ClaimStore
from tradeguard.testing import orders_of, paper_server

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CTX = FORKS
LEASE = 1.0


@pytest.fixture
def audit_pg(pg_url: str) -> str:
    """A store URL on the real PostgreSQL server, in a fresh schema dropped afterwards (conftest)."""
    return pg_url


def _stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def _freeze(
    url: str, paper_url: str, kind: str, qty: int, intent: str, tmp: Path
) -> tuple[multiprocessing.Process, Path]:
    marker, result = tmp / f"frozen-{intent}", tmp / f"result-{intent}"
    proc = CTX.Process(
        target=workers.frozen_send,
        args=(url, paper_url, kind, qty, intent, str(marker), str(result), LEASE),
    )
    proc.start()
    _wait_for(
        lambda: not proc.is_alive() or (marker.exists() and _stopped(proc.pid or 0)),
        60,
        "the sender to freeze after its POST",
    )
    if not marker.exists():
        proc.join(30)
        pytest.fail(f"the sender never froze: {result.read_text() if result.exists() else 'no result'}")
    return proc, result


def _gateway(store: ClaimStore, paper_url: str, clock: ManualClock | None = None) -> OrderGateway:
    return OrderGateway(
        workers.broker(paper_url), store, agent_id=workers.AGENT, settings=store.settings,
        clock=clock, reconcile_on_start=False,
    )  # fmt: skip


def _resume(proc: multiprocessing.Process, result: Path) -> dict[str, str]:
    os.kill(proc.pid or 0, signal.SIGCONT)
    proc.join(60)
    assert not proc.is_alive(), "the resumed sender did not finish"
    return dict(json.loads(result.read_text())) if result.exists() else {"error": "no result"}


def test_a_sender_frozen_after_its_post_and_taken_over_by_a_retry_neither_resends_nor_rebooks(
    audit_pg: str, tmp_path: Path
) -> None:
    with paper_server(ServedRecording()) as server:
        paper = server.broker
        assert isinstance(paper, ServedRecording)
        proc, result = _freeze(audit_pg, server.url, "entry", 10, "d1", tmp_path)
        outcome: dict[str, str] = {}
        try:
            key = Intent(workers.AGENT, Kind.ENTRY, "TQQQ", Side.BUY, "d1").key
            with ClaimStore(audit_pg, settings=Settings(lease_secs=LEASE)) as store:
                frozen = store.get(key)
                assert frozen is not None and frozen.state is ClaimState.PENDING, frozen
                coid = frozen.client_order_id
                _wait_for(lambda: datetime.now(UTC) > frozen.lease_expires_at, 30, "the lease to lapse")
                taker = _gateway(store, server.url)
                retry = taker.enter("TQQQ", qty=10, intent="d1")
                assert retry.outcome.value == "duplicate", retry
                assert retry.claim is not None and retry.claim.state is ClaimState.FILLED, retry
                assert store.position(workers.AGENT, "TQQQ").qty == 10
                # The account moves on while the first sender is still frozen: the position is closed.
                sold = taker.exit("TQQQ", intent="x1")
                assert sold.outcome.value == "submitted", sold
                assert store.position(workers.AGENT, "TQQQ").is_flat
        finally:
            outcome = _resume(proc, result)
        assert "error" not in outcome, outcome
        assert paper.recording.submitted(coid) == 1, outcome
        assert len(orders_of(paper, client_order_id=coid)) == 1
        assert broker_qty(paper, "TQQQ") == 0
        with ClaimStore(audit_pg) as store:
            claim = store.get(key)
            assert claim is not None and claim.state is ClaimState.FILLED and claim.filled_qty == 10, claim
            assert store.position(workers.AGENT, "TQQQ").is_flat, outcome
            later = ManualClock(datetime.now(UTC) + timedelta(minutes=5))
            with ClaimStore(audit_pg, clock=later) as ahead:
                report = _gateway(ahead, server.url, later).reconcile()
            assert not report.actions, report
            assert store.position(workers.AGENT, "TQQQ").is_flat


def test_an_exit_frozen_after_its_post_and_adopted_by_a_pass_leaves_the_new_turn_alone(
    audit_pg: str, tmp_path: Path
) -> None:
    with paper_server(ServedRecording()) as server:
        paper = server.broker
        assert isinstance(paper, ServedRecording)
        with ClaimStore(audit_pg) as store:
            assert _gateway(store, server.url).enter("TQQQ", qty=10, intent="e1").outcome.value == "submitted"
        proc, result = _freeze(audit_pg, server.url, "exit", 10, "x1", tmp_path)
        outcome: dict[str, str] = {}
        try:
            with ClaimStore(audit_pg) as store:
                [exit_claim] = store.list_claims(kind=Kind.EXIT)
                assert exit_claim.state is ClaimState.PENDING, exit_claim
                coid = exit_claim.client_order_id
                _wait_for(lambda: datetime.now(UTC) > exit_claim.lease_expires_at, 30, "the lease to lapse")
                later = ManualClock(datetime.now(UTC) + timedelta(seconds=120))
                with ClaimStore(audit_pg, clock=later) as ahead:
                    report = _gateway(ahead, server.url, later).reconcile()
                    assert report.aborted is None, report
                adopted = store.get(exit_claim.key)
                assert adopted is not None and adopted.state is ClaimState.FILLED, adopted
                assert store.position(workers.AGENT, "TQQQ").is_flat
                # A new turn while the exit's sender is still frozen.
                again = _gateway(store, server.url).enter("TQQQ", qty=7, intent="e2")
                assert again.outcome.value == "submitted", again
        finally:
            outcome = _resume(proc, result)
        assert "error" not in outcome, outcome
        assert paper.recording.submitted(coid) == 1, outcome
        assert broker_qty(paper, "TQQQ") == 7
        with ClaimStore(audit_pg) as store:
            held = store.position(workers.AGENT, "TQQQ")
            assert held.qty == Decimal(7), (held, outcome)
            claim = store.get(exit_claim.key)
            assert claim is not None and claim.state is ClaimState.FILLED and claim.filled_qty == 10
