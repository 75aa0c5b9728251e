"""G3/G5 on PostgreSQL: a process frozen inside a store transaction stalls other writers only briefly.

A bot process can freeze (SIGSTOP, a debugger, a VM paused, a swap storm) between two statements
of one transaction, say while sizing an exit under its symbol's lock. Every other process's exit
or fill in that symbol then waits for the lock. The server ends such a session after
`Settings.pg_stuck_transaction_secs` (rolling its transaction back, the locks with it), so the
others go on; the frozen process, when it resumes, gets StoreError and what it wrote is gone: a
claim it was making was never committed, so it sends nothing. Real processes, the real server, a real SIGSTOP.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal

import pytest

from tests.mothers import make_intent, make_spec
from tests.store_workers import WORKER_SCRIPT, subprocess_env
from tradeguard.config import Settings
from tradeguard.domain.audit import AuditAction
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.domain.orders import Side
from tradeguard.errors import StoreError
from tradeguard.store import ClaimStore
from tradeguard.store.audit import write_audit

pytestmark = pytest.mark.postgres

STUCK_SECS = 2.0
NOTE = "written by the frozen process"


def _hold(store: ClaimStore, qty: int) -> None:
    """Book `qty` QQQ into bot's ledger: an entry claimed, acknowledged and filled."""
    claim = store.claim(make_intent("entry"), make_spec(qty), owner="bot-worker").claim
    sent = store.transition(claim, ClaimState.SUBMITTED, reason="accepted", broker_order_id="b-1")
    store.transition(
        sent, ClaimState.FILLED, reason="filled", filled_qty=Decimal(qty), filled_avg_price=Decimal("500")
    )


def _wait_stopped(pid: int, within_secs: float = 30) -> None:
    deadline = time.monotonic() + within_secs
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.01)
    raise AssertionError(f"worker {pid} never stopped")


def test_a_process_frozen_mid_transaction_holds_the_symbol_only_until_the_stuck_limit(pg_url: str) -> None:
    settings = Settings(pg_stuck_transaction_secs=STUCK_SECS)
    with ClaimStore(pg_url, settings=settings) as store:
        _hold(store, 5)
        frozen = subprocess.Popen(
            [sys.executable, str(WORKER_SCRIPT), "freeze-in-transaction", pg_url, NOTE, str(STUCK_SECS)],
            stdout=subprocess.PIPE, text=True, env=subprocess_env(),
        )  # fmt: skip
        answers: list[object] = []
        try:
            assert frozen.stdout is not None
            assert frozen.stdout.readline().strip() == "frozen"
            _wait_stopped(frozen.pid)

            # Another worker of the bot sizes an exit in the same symbol: it needs the lock.
            def size_exit() -> None:
                intent = make_intent("exit", kind=Kind.EXIT, side=Side.SELL)
                answers.append(
                    store.claim_exit(
                        intent, make_spec(5), owner="other-worker", broker_available=Decimal(5), reason="exit"
                    )
                )

            started = time.monotonic()
            sizing = threading.Thread(target=size_exit, daemon=True)
            sizing.start()
            sizing.join(timeout=STUCK_SECS + 20)
            waited = time.monotonic() - started
            assert not sizing.is_alive(), "the exit's sizing still waits for the frozen process's lock"
            assert waited >= STUCK_SECS * 0.9  # it did wait for the lock: the freeze was real
            outcome, _room = answers[0]  # type: ignore[misc]
            assert outcome is not None and outcome.created
            assert outcome.claim.order_qty == 5

            frozen.send_signal(signal.SIGCONT)
            said, _ = frozen.communicate(timeout=60)
        finally:
            if frozen.poll() is None:
                frozen.send_signal(signal.SIGCONT)
                frozen.kill()
                frozen.wait()
        # The frozen process learns its transaction is gone; nothing it wrote was committed.
        assert said.startswith("store-error:"), said
        assert "idle-in-transaction timeout" in said
        assert [r for r in store.audit_records() if r.reason == NOTE] == []


def test_a_stuck_limit_of_zero_is_no_limit(pg_url: str) -> None:
    """0 keeps PostgreSQL's own default (no limit), for a deployment that sets its own."""
    with ClaimStore(pg_url, settings=Settings(pg_stuck_transaction_secs=0)) as store:
        rows = store._pool.read("reading a setting", "SHOW idle_in_transaction_session_timeout", ())
    assert rows[0][0] == "0"


def test_the_stuck_limit_is_set_on_every_store_session(pg_url: str) -> None:
    with ClaimStore(pg_url, settings=Settings(pg_stuck_transaction_secs=7.5)) as store:
        rows = store._pool.read("reading a setting", "SHOW idle_in_transaction_session_timeout", ())
    assert rows[0][0] == "7500ms"


def test_a_negative_stuck_limit_is_refused() -> None:
    with pytest.raises(Exception, match="pg_stuck_transaction_secs must not be negative"):
        Settings(pg_stuck_transaction_secs=-1)


def test_a_frozen_transactions_store_error_says_what_happened(pg_url: str) -> None:
    """In process: the resumed transaction's error names the timeout; nothing it wrote is kept."""
    settings = Settings(pg_stuck_transaction_secs=0.5)
    with ClaimStore(pg_url, settings=settings) as store:
        lost = pytest.raises(StoreError, match="idle-in-transaction timeout")
        with lost, store._pool.write("writing a record", durable=True) as tx:
            write_audit(tx, at=store.clock.now(), agent_id="bot", action=AuditAction.LEDGER, reason=NOTE)
            tx.flush()
            time.sleep(1.5)  # frozen between statements
        assert [r for r in store.audit_records() if r.reason == NOTE] == []
        # The store goes on: the dead session is not reused.
        assert store.claim(make_intent("after"), make_spec(), owner="w").created


def _conninfo(store: ClaimStore) -> dict[str, str]:
    conn = store._pool.checkout()
    try:
        return dict(conn.dbapi.info.get_parameters())
    finally:
        store._pool.release(conn)


def test_store_connections_give_up_on_a_silent_server(pg_url: str) -> None:
    """TCP keepalives and a send timeout: a request whose network path went dark fails, never hangs."""
    with ClaimStore(pg_url) as store:
        info = _conninfo(store)
    assert info["keepalives"] == "1"
    assert info["keepalives_idle"] == "10"
    assert info["tcp_user_timeout"] == "30000"
    assert info["connect_timeout"] == "10"


def test_connection_options_in_the_url_win(pg_url: str) -> None:
    with ClaimStore(f"{pg_url}&keepalives_idle=3&tcp_user_timeout=5000") as store:
        info = _conninfo(store)
    assert info["keepalives_idle"] == "3"
    assert info["tcp_user_timeout"] == "5000"
    assert info["keepalives_count"] == "2"
