"""Audit 67: a drop-in bot frozen (SIGSTOP) after its POST, before it records the answer (G1, G3).

Audit 44 froze the gateway's sender there; this is the one-import `GuardedTradingClient` path,
where an order without a client_order_id is known by its content within the dedup window. The
bot's process stops right after the broker answered; the lease lapses; the same bot restarted
(another process) retries the same order, which must answer with the first order, never a
second one; the account moves on; then SIGCONT: the frozen call must neither send again nor
book its fill twice, and the ledger ends as the broker. Real processes, the paper server over
HTTP with the real alpaca-py client, a SQLite file and the real PostgreSQL server.
"""

from __future__ import annotations

import json
import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests import audit67_workers as workers
from tests.forks import FORKS
from tests.gateway_kit import ServedRecording, broker_qty
from tests.test_audit44_frozen_sender import _stopped
from tests.test_hardening_races import _wait_for
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.store import ClaimStore
from tradeguard.testing import orders_of, paper_server

pytestmark = [pytest.mark.slow]

LEASE = 1.0


def _freeze(url: str, paper_url: str, side: str, qty: int, tmp: Path) -> tuple[Any, Path]:
    marker, result = tmp / f"frozen-{side}", tmp / f"result-{side}"
    proc = FORKS.Process(
        target=workers.frozen_submit, args=(url, paper_url, side, qty, str(marker), str(result), LEASE)
    )
    proc.start()
    _wait_for(
        lambda: not proc.is_alive() or (marker.exists() and _stopped(proc.pid or 0)),
        60,
        "the drop-in sender to freeze after its POST",
    )
    if not marker.exists():
        proc.join(30)
        pytest.fail(f"the sender never froze: {result.read_text() if result.exists() else 'no result'}")
    return proc, result


def _resume(proc: Any, result: Path) -> dict[str, str]:
    os.kill(proc.pid or 0, signal.SIGCONT)
    proc.join(60)
    assert not proc.is_alive(), "the resumed sender did not finish"
    return dict(json.loads(result.read_text())) if result.exists() else {"error": "no result"}


def _lease_lapsed(url: str, kind: Kind) -> str:
    with ClaimStore(url) as store:
        [claim] = [c for c in store.list_claims(kind=kind) if c.state is ClaimState.PENDING]
        _wait_for(lambda: datetime.now(UTC) > claim.lease_expires_at, 30, "the lease to lapse")
        return claim.client_order_id


def test_a_dropin_entry_frozen_after_its_post_is_answered_to_its_retry_and_never_rebooked(
    store_url: str, tmp_path: Path
) -> None:
    with paper_server(ServedRecording()) as server:
        paper = server.broker
        assert isinstance(paper, ServedRecording)
        proc, result = _freeze(store_url, server.url, "buy", 10, tmp_path)
        try:
            coid = _lease_lapsed(store_url, Kind.ENTRY)
            with workers.client(store_url, server.url, LEASE) as bot:
                retry = bot.submit_order(workers.order("buy", 10))  # the restarted bot's retry
                assert retry.client_order_id == coid
                assert bot.gateway.position("TQQQ").qty == 10
                bot.close_position("TQQQ")  # the account moves on while the first call is frozen
                assert bot.gateway.position("TQQQ").is_flat
        finally:
            outcome = _resume(proc, result)
        assert "error" not in outcome, outcome
        assert paper.recording.submitted(coid) == 1
        assert len(orders_of(paper, client_order_id=coid)) == 1
        assert broker_qty(paper, "TQQQ") == 0
        with ClaimStore(store_url) as store:
            assert store.position(workers.AGENT, "TQQQ").is_flat
            [entry] = store.list_claims(kind=Kind.ENTRY)
            assert entry.state is ClaimState.FILLED and entry.filled_qty == 10, entry


def test_a_dropin_exit_frozen_after_its_post_is_answered_to_its_retry_and_leaves_the_new_turn_alone(
    store_url: str, tmp_path: Path
) -> None:
    with paper_server(ServedRecording()) as server:
        paper = server.broker
        assert isinstance(paper, ServedRecording)
        with workers.client(store_url, server.url, LEASE) as bot:
            bot.submit_order(workers.order("buy", 10))
        proc, result = _freeze(store_url, server.url, "sell", 10, tmp_path)
        try:
            coid = _lease_lapsed(store_url, Kind.EXIT)
            with workers.client(store_url, server.url, LEASE) as bot:
                retry = bot.submit_order(workers.order("sell", 10))  # the same sell, retried
                assert retry.client_order_id == coid
                assert bot.gateway.position("TQQQ").is_flat
                bot.submit_order(workers.order("buy", 7))  # a new turn while the sell's sender is frozen
                assert bot.gateway.position("TQQQ").qty == 7
        finally:
            outcome = _resume(proc, result)
        assert "error" not in outcome, outcome
        assert paper.recording.submitted(coid) == 1
        assert broker_qty(paper, "TQQQ") == 7
        with ClaimStore(store_url) as store:
            assert store.position(workers.AGENT, "TQQQ").qty == 7
            [sell] = store.list_claims(kind=Kind.EXIT)
            assert sell.state is ClaimState.FILLED and sell.filled_qty == 10, sell
