"""Leases and fencing: a live lease cannot be taken over; a worker taken over cannot move the claim.

Two stores on one database stand for two workers; a shared ManualClock lapses leases without
sleeping. Then a real process is killed with SIGKILL right after claiming.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.mothers import make_intent, make_spec
from tests.store_workers import WORKER_SCRIPT, subprocess_env
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import ClaimInProgress, LeaseLost
from tradeguard.store import AuditQuery, ClaimStore

LEASE = Settings().lease_secs


@pytest.fixture
def workers(store_url: str, clock: ManualClock) -> Iterator[tuple[ClaimStore, ClaimStore]]:
    with ClaimStore(store_url, clock=clock) as a, ClaimStore(store_url, clock=clock) as b:
        yield a, b


def test_a_live_lease_cannot_be_taken_over(
    workers: tuple[ClaimStore, ClaimStore], clock: ManualClock
) -> None:
    a, b = workers
    claim = a.claim(make_intent("live"), make_spec(), owner="A").claim
    clock.advance(LEASE - 1)
    with pytest.raises(ClaimInProgress, match="live lease") as caught:
        b.take_over(claim, "B")
    assert caught.type is ClaimInProgress
    assert b.get(claim.key) == claim


def test_a_taken_over_worker_cannot_move_the_claim(
    workers: tuple[ClaimStore, ClaimStore], clock: ManualClock
) -> None:
    a, b = workers
    claim = a.claim(make_intent("fenced"), make_spec(), owner="A").claim
    clock.advance(LEASE)
    taken = b.take_over(claim, "B")
    # A PENDING claim may have been sent: the new owner gets UNKNOWN, to resolve at the broker.
    assert (taken.state, taken.epoch, taken.owner) == (ClaimState.UNKNOWN, 2, "B")
    assert taken.lease_expires_at == clock.now() + timedelta(seconds=LEASE)
    with pytest.raises(LeaseLost, match="epoch 2"):
        a.transition(claim, ClaimState.SUBMITTED, reason="late ack", broker_order_id="b-1")
    with pytest.raises(ClaimInProgress):  # the stale snapshot cannot take it back either
        a.take_over(claim, "A")
    # The new owner resolves it; the same client_order_id is all anyone ever sends.
    resolved = b.transition(taken, ClaimState.FILLED, reason="found at broker", filled_qty=Decimal(1))
    assert resolved.client_order_id == claim.client_order_id
    again = a.claim(make_intent("fenced"), make_spec(), owner="A")
    assert not again.created and again.claim == resolved
    [rec] = a.audit_records(AuditQuery(actions=("takeover",)))
    assert (rec.prev_state, rec.state, rec.detail["to_owner"]) == ("PENDING", "UNKNOWN", "B")


def test_take_over_of_a_submitted_claim_keeps_its_state(
    workers: tuple[ClaimStore, ClaimStore], clock: ManualClock
) -> None:
    a, b = workers
    sent = a.transition(a.claim(make_intent("sent"), make_spec(), owner="A").claim, ClaimState.SUBMITTED,
                        reason="accepted")  # fmt: skip
    clock.advance(LEASE + 1)
    taken = b.take_over(sent, "B")
    assert (taken.state, taken.epoch) == (ClaimState.SUBMITTED, 2)
    with pytest.raises(LeaseLost):
        a.transition(sent, ClaimState.FILLED, reason="fill", filled_qty=Decimal(1))
    assert a.position("bot", "QQQ").is_flat


def test_a_finished_claim_cannot_be_taken_over(
    workers: tuple[ClaimStore, ClaimStore], clock: ManualClock
) -> None:
    a, b = workers
    claim = a.claim(make_intent("done"), make_spec(), owner="A").claim
    done = a.transition(claim, ClaimState.CANCELED, reason="canceled")
    clock.advance(LEASE * 10)
    with pytest.raises(ClaimInProgress):
        b.take_over(done, "B")


# -- a real crash -----------------------------------------------------------------------------


def claim_then_sigkill(url: str, name: str) -> str:
    """Run a worker that claims `name` and hangs; SIGKILL it once it has claimed; return its line."""
    with subprocess.Popen(
        [sys.executable, str(WORKER_SCRIPT), "claim-and-hang", url, name],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=subprocess_env(),
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline().strip() if ready else ""
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    assert line.startswith("claimed "), f"the worker did not claim: {line!r}"
    return line


@pytest.mark.slow
def test_a_worker_killed_after_claiming_leaves_a_pending_claim_that_blocks_resending(store_url: str) -> None:
    ClaimStore(store_url).close()
    line = claim_then_sigkill(store_url, "crash-after-claim")
    intent = make_intent("crash-after-claim")
    clock = ManualClock(datetime.now(UTC))
    with ClaimStore(store_url, clock=clock) as store:
        left = store.get(intent.key)
        assert left is not None
        assert line == f"claimed {left.client_order_id} 1"
        assert (left.state, left.owner) == (ClaimState.PENDING, "doomed-worker")
        again = store.claim(intent, make_spec(), owner="survivor")
        assert not again.created and again.claim == left  # no second order for this decision
        with pytest.raises(ClaimInProgress):
            store.take_over(left, "survivor")  # its lease may still be running: hands off
        clock.advance(LEASE + 1)
        taken = store.take_over(left, "survivor")
        # It may have been sent before the kill: only the broker can say; never a new id.
        assert (taken.state, taken.client_order_id, taken.epoch) == (
            ClaimState.UNKNOWN,
            left.client_order_id,
            2,
        )
        assert store.claim(intent, make_spec(), owner="survivor").claim == taken
