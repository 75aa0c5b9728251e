"""A duplicate's skip note is held in memory and written a moment later, and never lost but by a kill.

Every read of the audit log through tradeguard shows the notes held in its process; an orderly
close and the interpreter's exit write them; a kill -9 loses the notes held then and nothing
else (claims, transitions and the notes written before are intact); a full buffer is written by
the retry that fills it, or fails that retry and keeps the notes held; a child after fork writes
none of its parent's notes. Real SQLite files, real PostgreSQL, real subprocesses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.conftest import at_head
from tests.mothers import make_intent, make_spec
from tests.store_blocker import blocked_writes
from tests.store_workers import REPO_ROOT, subprocess_env
from tradeguard.config import Settings
from tradeguard.domain import AuditAction
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import StoreError
from tradeguard.store import AuditQuery, ClaimStore, skip_notes
from tradeguard.store.engine import parse_url

SKIPS = AuditQuery(actions=("skip",))


@pytest.fixture
def held_an_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stores made in the test hold their notes until a write, a read, a full buffer or close."""
    monkeypatch.setattr(skip_notes, "MAX_AGE_SECS", 3600.0)


def written(url: str) -> list[str]:
    """The skip notes the database holds, read past tradeguard (no store writes its notes first)."""
    engine = sa.create_engine(parse_url(url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT reason FROM tg_audit WHERE action = 'skip' ORDER BY id"))
            return [str(row[0]) for row in rows]
    finally:
        engine.dispose()


def test_a_note_is_read_through_its_store_at_once(store: ClaimStore, held_an_hour: None) -> None:
    claim = store.claim(make_intent("dup"), make_spec(), owner="w").claim
    store.record_skip(claim, agent_id="bot", reason="duplicate 1")
    assert store.audit_count(SKIPS) == 1
    store.record_skip(claim, agent_id="bot", reason="duplicate 2")
    assert [r.reason for r in store.audit_records(SKIPS)] == ["duplicate 1", "duplicate 2"]


def test_a_note_is_read_through_another_store_of_the_process(store_url: str, held_an_hour: None) -> None:
    with ClaimStore(store_url) as bot, ClaimStore(store_url) as operator:
        claim = bot.claim(make_intent("dup"), make_spec(), owner="w").claim
        bot.record_skip(claim, agent_id="bot", reason="duplicate")
        assert written(store_url) == []  # held, not written
        assert [r.reason for r in operator.audit_records(SKIPS)] == ["duplicate"]
        assert written(store_url) == ["duplicate"]


def test_a_note_keeps_its_place_before_the_stores_next_write(store: ClaimStore, held_an_hour: None) -> None:
    claim = store.claim(make_intent("order"), make_spec(), owner="w").claim
    store.record_skip(claim, agent_id="bot", reason="duplicate while pending")
    store.transition(claim, ClaimState.SUBMITTED, reason="acknowledged")
    assert written(store.url.render_as_string(hide_password=False)) == ["duplicate while pending"]
    records = list(store.audit_records(AuditQuery(client_order_id=claim.client_order_id)))
    assert [r.action for r in records] == [AuditAction.CLAIM, AuditAction.SKIP, AuditAction.TRANSITION]


def test_notes_survive_an_orderly_close(store_url: str, held_an_hour: None) -> None:
    with ClaimStore(store_url) as store:
        claim = store.claim(make_intent("dup"), make_spec(), owner="w").claim
        store.record_skip(claim, agent_id="bot", reason="one")
        store.record_skip(claim, agent_id="bot", reason="two")
        assert written(store_url) == []
    assert written(store_url) == ["one", "two"]
    with pytest.raises(StoreError, match="closed"):
        store.record_skip(claim, agent_id="bot", reason="after close")


def _worker(url: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.skip_notes_worker", url, mode],
        cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_notes_survive_the_interpreters_exit(store_url: str) -> None:
    with _worker(at_head(store_url), "exit") as worker:
        assert worker.wait(120) == 0
    assert written(store_url) == ["duplicate a0", "duplicate a1", "duplicate a2"]


def test_a_kill_loses_only_the_notes_held_then(store_url: str) -> None:
    with _worker(at_head(store_url), "kill") as worker:
        try:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(120)
    assert worker.returncode == -signal.SIGKILL
    with ClaimStore(store_url) as store:
        a, b = (store.get(make_intent(name).key) for name in ("a", "b"))
        assert a is not None and a.state is ClaimState.PENDING
        assert b is not None and b.state is ClaimState.SUBMITTED and b.broker_order_id == "order-b"
        records = [(r.action, r.reason) for r in store.audit_records()]
    assert records == [
        (AuditAction.CLAIM, "claimed a"),
        (AuditAction.SKIP, "duplicate a0"),
        (AuditAction.SKIP, "duplicate a1"),
        (AuditAction.SKIP, "duplicate a2"),
        (AuditAction.CLAIM, "claimed b"),
        (AuditAction.TRANSITION, "acknowledged"),
    ]  # the two notes of "b", held at the kill, are all that was lost


def test_a_full_buffer_is_written_by_the_retry_that_fills_it(
    store_url: str, held_an_hour: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(skip_notes, "MAX_NOTES", 3)
    url = store_url
    with ClaimStore(url) as bot:
        claim = bot.claim(make_intent("dup"), make_spec(), owner="w").claim
        for i in range(5):
            bot.record_skip(claim, agent_id="bot", reason=f"d{i}")
        assert written(url) == ["d0", "d1", "d2"]
    assert written(url) == ["d0", "d1", "d2", "d3", "d4"]


def test_a_full_buffer_the_store_cannot_take_fails_its_retry_and_keeps_the_rest(
    store_url: str, held_an_hour: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(skip_notes, "MAX_NOTES", 3)
    settings = Settings(sqlite_busy_timeout_ms=300, pg_lock_timeout_ms=300)
    with ClaimStore(at_head(store_url), settings=settings) as store:
        claim = store.claim(make_intent("locked"), make_spec(), owner="w").claim
        with blocked_writes(store_url):
            store.record_skip(claim, agent_id="bot", reason="held 1")
            store.record_skip(claim, agent_id="bot", reason="held 2")
            with pytest.raises(StoreError, match="skip notes"):
                store.record_skip(claim, agent_id="bot", reason="the one that failed")
        assert [r.reason for r in store.audit_records(SKIPS)] == ["held 1", "held 2"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_child_after_fork_writes_none_of_its_parents_notes(sqlite_url: str, held_an_hour: None) -> None:
    with ClaimStore(sqlite_url) as store:
        claim = store.claim(make_intent("parent"), make_spec(), owner="w").claim
        store.record_skip(claim, agent_id="bot", reason="the parent's")
        pid = os.fork()
        if pid == 0:  # the child: a write and a close, each of which writes the notes held
            code = 0
            try:
                store.claim(make_intent("child"), make_spec(), owner="c")
                store.close()
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert written(sqlite_url) == []
    assert written(sqlite_url) == ["the parent's"]


def test_the_timer_writes_a_note_no_write_or_read_followed(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(skip_notes, "MAX_AGE_SECS", 0.05)
    with ClaimStore(store_url) as store:
        claim = store.claim(make_intent("quiet"), make_spec(), owner="w").claim
        store.record_skip(claim, agent_id="bot", reason="then quiet")
        for _ in _polls(600):
            if written(store_url):
                break
        assert written(store_url) == ["then quiet"]


def _polls(count: int) -> Iterator[int]:
    """Yield `count` times, 0.1 s apart: a wait for the timer thread, not a measure of it."""
    for i in range(count):
        yield i
        time.sleep(0.1)
