"""Issue 8, multi-process defects: lost ledger fills, oversized concurrent exits, stalled senders.

Real OS processes (forked from the preloaded fork server of tests/forks.py: no state shared
with this process, as separate bots), real
claim stores (a SQLite file and PostgreSQL), and where orders are sent, the paper server over
HTTP with the real alpaca-py TradingClient inside AlpacaBroker. Waits are bounded and fail with
a message; nothing asserts on time.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests import hardening_workers as workers
from tests.forks import FORKS
from tests.gateway_kit import MAY21_PRICES, ServedRecording, broker_qty
from tradeguard.broker.alpaca import AlpacaBroker
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import Side
from tradeguard.domain.intents import Intent, Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.gateway import OrderGateway
from tradeguard.reconcile.runner import Reconciler
from tradeguard.store import ClaimStore
from tradeguard.testing import orders_of, paper_server

pytestmark = pytest.mark.slow

CTX = FORKS
WORKERS = 8
DECISIONS = 15


def _wait_for(condition: Callable[[], bool], timeout_secs: float, what: str) -> None:
    """Poll `condition` until true; fail naming `what` after `timeout_secs` (a bound, not a check)."""
    deadline = time.monotonic() + timeout_secs
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


def _errors(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return [r for r in rows if r[0] == "error"]


# -- defect 1: the PostgreSQL ledger loses concurrent fills -----------------------------------------


def test_ledger_keeps_every_concurrent_fill_of_one_agent_in_one_symbol(store_url: str) -> None:
    """Defect 1: 8 processes of one agent record 15 different one-share fills each in one
    symbol, 20 rounds: after every round the ledger holds exactly 8 * 15 more shares. (Each round
    is 120 concurrent fills; a lost update shows within the first rounds, so 50 bought time only.)"""
    rounds = 20
    barrier = CTX.Barrier(WORKERS + 1)
    results = CTX.Queue()
    procs = [
        CTX.Process(
            target=workers.ledger_race_worker, args=(store_url, rounds, DECISIONS, barrier, results, w)
        )
        for w in range(WORKERS)
    ]
    for p in procs:
        p.start()
    seen: list[Decimal] = []
    try:
        with ClaimStore(store_url) as store:
            for _ in range(rounds):
                barrier.wait(timeout=300)  # start of the round
                barrier.wait(timeout=300)  # every worker finished it
                seen.append(store.position("race-bot", "TQQQ").qty)
    except Exception:
        pass  # a worker broke the barrier: its error is reported below
    rows = [results.get(timeout=120) for _ in range(WORKERS)]
    for p in procs:
        p.join(60)
    assert not _errors(rows), _errors(rows)
    expected = [Decimal(WORKERS * DECISIONS * (r + 1)) for r in range(rounds)]
    lost = [(r, e - s) for r, (s, e) in enumerate(zip(seen, expected, strict=True)) if s != e]
    assert not lost, f"fills lost (round, shares): {lost}"


def test_eight_processes_entering_different_decisions_book_every_share(store_url: str) -> None:
    """Defect 1, end to end: 8 processes each enter 15 different one-share TQQQ decisions
    through the paper server: ledger == broker position == 120."""
    barrier = CTX.Barrier(WORKERS)
    results = CTX.Queue()
    with paper_server(prices=MAY21_PRICES) as server:
        procs = [
            CTX.Process(
                target=workers.enter_many_worker, args=(store_url, server.url, DECISIONS, barrier, results, w)
            )
            for w in range(WORKERS)
        ]
        for p in procs:
            p.start()
        rows = [results.get(timeout=300) for _ in range(WORKERS * DECISIONS)]
        for p in procs:
            p.join(60)
        assert not _errors(rows), _errors(rows)
        assert {r[3] for r in rows} == {"submitted"}
        at_broker = broker_qty(server.broker, "TQQQ")
    with ClaimStore(store_url) as store:
        ledger = store.position("race-bot", "TQQQ").qty
    assert (ledger, at_broker) == (WORKERS * DECISIONS, WORKERS * DECISIONS)


# -- defect 5: exit sizing is not atomic ------------------------------------------------------------


def test_twelve_concurrent_exits_never_ask_for_more_than_is_held(store_url: str) -> None:
    """Defect 5: 12 processes exit a 10-share long under 12 different exit decisions at once.
    The quantity asked of the broker, summed over every POST (refused ones too), never
    exceeds what the account held."""
    exiters, rounds = 12, 3
    barrier = CTX.Barrier(exiters + 1)
    results = CTX.Queue()
    with paper_server(ServedRecording()) as server:
        paper = server.broker
        assert isinstance(paper, ServedRecording)
        procs = [
            CTX.Process(target=workers.exit_worker, args=(store_url, server.url, rounds, barrier, results, w))
            for w in range(exiters)
        ]
        for p in procs:
            p.start()
        oversold: list[tuple[int, Decimal, list[Decimal]]] = []
        with ClaimStore(store_url) as store:
            gateway = OrderGateway(paper, store, agent_id="exit-bot", reconcile_on_start=False)
            try:
                for r in range(rounds):
                    gateway.enter("TQQQ", qty=10, intent=f"r{r} entry")
                    held = broker_qty(paper, "TQQQ")
                    before = len(paper.recording.requests)
                    barrier.wait(timeout=300)  # all exits go
                    barrier.wait(timeout=300)  # all exits answered
                    asked = [a.qty for a in paper.recording.requests[before:] if a.side == "sell"]
                    if sum(asked) > held:
                        oversold.append((r, held, asked))
            except Exception:
                pass  # a worker broke the barrier: its error is reported below
        rows = []
        while len([r for r in rows if r[0] == "error"]) + len(rows) < exiters * rounds:
            try:
                rows.append(results.get(timeout=60))
            except Exception:
                break
        for p in procs:
            p.join(60)
    assert not _errors(rows), _errors(rows)
    assert not oversold, f"(round, held, quantities asked): {oversold}"


# -- defect 3: a stalled sender's claim is marked NOT_SENT while its order fills --------------------


def _stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def _stall(store_url: str, paper_url: str, point: str, tmp: Path) -> tuple[multiprocessing.Process, Path]:
    """Start a worker and wait until it froze at `point`; fail clearly if it never does."""
    marker, result = tmp / "frozen", tmp / "result"
    proc = CTX.Process(
        target=workers.stall_worker, args=(store_url, paper_url, point, str(marker), str(result))
    )
    proc.start()
    _wait_for(
        lambda: not proc.is_alive() or (marker.exists() and _stopped(proc.pid or 0)),
        60,
        f"the worker to freeze at crash point {point!r}",
    )
    if not marker.exists():
        proc.join(30)
        outcome = result.read_text() if result.exists() else "no result"
        pytest.fail(
            f"the worker never stopped at {point!r} (crashpoints.hit not called?); it ended: {outcome}"
        )
    return proc, result


def _reconcile_later(store_url: str, paper_url: str, ahead_secs: float) -> None:
    """One reconcile pass by another worker, on a clock `ahead_secs` past the real time."""
    clock = ManualClock(datetime.now(UTC) + timedelta(seconds=ahead_secs))
    settings = Settings()
    broker = AlpacaBroker.from_credentials("paper-key", "paper-secret", url_override=paper_url)
    with ClaimStore(store_url, settings=settings, clock=clock) as store:
        report = Reconciler(broker, store, settings=settings, clock=clock).run()
        assert report.aborted is None, report.aborted


def _claim_after_lease(store_url: str) -> tuple[str, str, datetime]:
    key = Intent(workers.STALL_AGENT, Kind.ENTRY, "TQQQ", Side.BUY, workers.STALL_INTENT).key
    with ClaimStore(store_url) as store:
        claim = store.get(key)
    assert claim is not None and claim.state is ClaimState.PENDING, claim
    return key, claim.client_order_id, claim.lease_expires_at


@pytest.mark.parametrize("point", ["after_claim", "before_post"])
def test_stalled_sender_never_sends_on_a_lapsed_lease_or_its_order_is_adopted(
    store_url: str, tmp_path: Path, point: str
) -> None:
    """Defect 3: a process freezes (SIGSTOP) after its durable claim; its 1 s lease lapses;
    another process's reconcile pass marks the claim NOT_SENT; then SIGCONT. Frozen before the
    lease check ("after_claim") or right after it ("before_post": the send re-checks the lease
    once more before the POST), it must not send at all. (An order that still lands after
    NOT_SENT is adopted: `test_hardening_gateway.py`, `test_stateful.py`.)"""
    with paper_server(ServedRecording()) as server:
        paper = server.broker
        assert isinstance(paper, ServedRecording)
        proc, result = _stall(store_url, server.url, point, tmp_path)
        try:
            key, coid, lease_end = _claim_after_lease(store_url)
            _wait_for(lambda: datetime.now(UTC) > lease_end, 30, "the frozen worker's lease to lapse")
            _reconcile_later(store_url, server.url, ahead_secs=120)
            with ClaimStore(store_url) as store:
                marked = store.get(key)
            assert marked is not None and marked.state is ClaimState.NOT_SENT, marked
        finally:
            os.kill(proc.pid or 0, signal.SIGCONT)
        proc.join(60)
        assert not proc.is_alive(), "the resumed worker did not finish"
        outcome = result.read_text() if result.exists() else "no result"
        assert paper.recording.submitted(coid) == 0, (
            f"the resumed worker sent on its lapsed lease ({outcome})"
        )
        _reconcile_later(store_url, server.url, ahead_secs=240)
        assert orders_of(paper, client_order_id=coid) == [], outcome
        with ClaimStore(store_url) as store:
            unsent = store.get(key)
            assert unsent is not None and unsent.state is ClaimState.NOT_SENT, (unsent, outcome)
            assert store.position(workers.STALL_AGENT, "TQQQ").is_flat
