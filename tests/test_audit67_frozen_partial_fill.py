"""Audit 67: an exit frozen (SIGSTOP) after its POST was answered with a partial fill (G1, G2, G3).

Alpaca paper fills are sometimes partial. The sender's answer says `partially_filled` 4 of 10;
it stops before recording it. Its lease lapses, a reconcile pass (another process's store)
adopts the order as it then is, the rest fills and is adopted too, and the agent enters again.
Then SIGCONT: the frozen sender's stale answer (4 filled) must neither move the claim back, nor
book a fill twice, nor send again; the claim and the ledger end as the broker. Real processes,
the paper server over HTTP with the real alpaca-py client, a SQLite file and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests import audit44_workers as workers
from tests.gateway_kit import ServedRecording, broker_qty
from tests.test_audit44_frozen_sender import _freeze, _gateway, _resume
from tests.test_hardening_races import _wait_for
from tradeguard.clock import ManualClock
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.store import ClaimStore
from tradeguard.testing import paper_server

pytestmark = [pytest.mark.slow]


def test_an_exit_frozen_after_a_partial_fill_answer_never_rebooks_nor_moves_its_claim_back(
    store_url: str, tmp_path: Path
) -> None:
    with paper_server(ServedRecording(max_fill_qty=Decimal(4))) as server:
        paper = server.broker
        assert isinstance(paper, ServedRecording)
        with ClaimStore(store_url) as store:
            gateway = _gateway(store, server.url)
            assert gateway.enter("TQQQ", qty=10, intent="e1").outcome.value == "submitted"
            while broker_qty(paper, "TQQQ") < 10:
                paper.step()
            later = ManualClock(datetime.now(UTC) + timedelta(seconds=120))
            with ClaimStore(store_url, clock=later) as ahead:
                _gateway(ahead, server.url, later).reconcile()
            assert store.position(workers.AGENT, "TQQQ").qty == 10
        proc, result = _freeze(store_url, server.url, "exit", 10, "x1", tmp_path)
        outcome: dict[str, str] = {}
        try:
            with ClaimStore(store_url) as store:
                [exit_claim] = store.list_claims(kind=Kind.EXIT)
                assert exit_claim.state is ClaimState.PENDING, exit_claim
                coid = exit_claim.client_order_id
                assert paper.get_order_by_client_id(coid) is not None
                assert broker_qty(paper, "TQQQ") == 6  # 4 of 10 sold so far
                _wait_for(lambda: datetime.now(UTC) > exit_claim.lease_expires_at, 30, "the lease to lapse")
                later = ManualClock(datetime.now(UTC) + timedelta(seconds=120))
                with ClaimStore(store_url, clock=later) as ahead:
                    assert _gateway(ahead, server.url, later).reconcile().aborted is None
                    adopted = store.get(exit_claim.key)
                    assert adopted is not None and adopted.state is ClaimState.PARTIALLY_FILLED, adopted
                    while broker_qty(paper, "TQQQ") > 0:
                        paper.step()
                    later.advance(60)
                    assert _gateway(ahead, server.url, later).reconcile().aborted is None
                done = store.get(exit_claim.key)
                assert done is not None and done.state is ClaimState.FILLED, done
                assert store.position(workers.AGENT, "TQQQ").is_flat
                again = _gateway(store, server.url).enter("TQQQ", qty=3, intent="e2")
                assert again.outcome.value == "submitted", again
        finally:
            outcome = _resume(proc, result)
        assert "error" not in outcome, outcome
        assert paper.recording.submitted(coid) == 1, outcome
        assert broker_qty(paper, "TQQQ") == 3
        with ClaimStore(store_url) as store:
            claim = store.get(exit_claim.key)
            assert claim is not None and claim.state is ClaimState.FILLED and claim.filled_qty == 10, claim
            assert store.position(workers.AGENT, "TQQQ").qty == 3, outcome
