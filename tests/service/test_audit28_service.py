"""Audit 28: the claim service's key check, its store outages and its unknown paths.

* The key check is a read: on SQLite it must not take the write lock, or every request waits
  behind any writer on the file (another bot, a CLI, another service worker) and a read-only
  `/audit` answers 503 when that writer holds the lock past the busy timeout.
* A store outage met while checking the key is answered like every other outage: 503 with
  Retry-After and the fixed text, and the failure is logged for the operator.
* A path with a slash too many or too few is 404, never a redirect to another URL.
* `/claim/test` derives the request id of any agent_id and scope SafeAgent takes (they are only
  hashed, never stored).
* The key ring and the action claims keep the service's PostgreSQL settings, as its claim store
  does: they ran on the defaults (lock and idle-transaction timeouts), and behind a pooler that
  cannot route prepared statements (`pg_prepare_after=0`) the claim path prepared its
  statements after five claims on a connection all the same.
* Workers of a service whose supervisor was SIGKILLed stop on their own: left serving, they held
  the port, so the service could not be started again (and a PENDING claim stays PENDING).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.service.conftest import Launch, NewKey, NewKeyOn, Service, start_service
from tradeguard.config import Settings
from tradeguard.service.app import ServiceConfig, create_app
from tradeguard.store.engine import parse_url

_OUTAGE = {"detail": "claim store unavailable; nothing was decided, retry later"}


def test_a_read_answers_while_another_process_holds_the_sqlite_write_lock(
    sqlite_url: str, launch: Launch, new_key_on: NewKeyOn
) -> None:
    # A short busy timeout: before the fix the key check waited this long for the lock, then 503.
    service = launch(sqlite_url, "--busy-timeout-ms", "300")
    key = new_key_on(sqlite_url)("bot-a")
    with service.client(key) as client:
        assert client.post("/claim", json={"request_id": "r1", "action": "x"}).status_code == 200
        writer = sqlite3.connect(str(parse_url(sqlite_url).database), isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")  # another process on the file, mid-transaction
            audit = client.get("/audit")
            claim = client.post("/claim", json={"request_id": "r2", "action": "x"})
        finally:
            writer.execute("ROLLBACK")
            writer.close()
    assert audit.status_code == 200, audit.text
    assert [item["request_id"] for item in audit.json()["items"]] == ["r1"]
    # A claim is a write: it waits for the lock and, past the busy timeout, says nothing was decided.
    assert (claim.status_code, claim.json()) == (503, _OUTAGE)


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/claim"), ("GET", "/audit"), ("POST", "/settle/r1"), ("POST", "/sweep")]
)
def test_a_store_outage_during_the_key_check_is_the_one_503(
    service: Service, store_url: str, new_key: NewKey, method: str, path: str
) -> None:
    key = new_key("bot-a")
    _drop_table(store_url, "tg_api_keys")
    with service.client(key) as client:
        answer = client.request(method, path, json={"request_id": "r1", "action": "x"})
    assert (answer.status_code, answer.json()) == (503, _OUTAGE)
    assert answer.headers["Retry-After"] == "1"
    assert "claim store failed on" in service.log.read_text()  # the operator learns why


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/claim/"), ("POST", "/settle"), ("GET", "/audit/"), ("GET", "/health/")]
)
def test_a_path_with_a_slash_too_many_or_too_few_is_404_not_a_redirect(
    service: Service, new_key: NewKey, method: str, path: str
) -> None:
    with service.client(new_key("bot-a"), Host="elsewhere.example") as client:
        answer = client.request(method, path, json={"request_id": "r1", "action": "x"})
    assert answer.status_code == 404, (answer.status_code, answer.headers.get("location"))
    assert "location" not in answer.headers


def _drop_table(store_url: str, table: str) -> None:
    url = parse_url(store_url)
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(str(url.database)) as conn:
            conn.execute(f"DROP TABLE {table}")
        return
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {table}"))
    engine.dispose()


def test_claim_test_derives_the_id_of_any_scope_safeagent_takes(service: Service, new_key: NewKey) -> None:
    # agent_id and scope are only hashed: NUL, control characters and a long scope are text
    # SafeAgent derives an id from, so they must derive the same id here (they were 422).
    body = {
        "agent_id": "ägent\x00",
        "action_type": "send_payment",
        "scope": "客户:1\x00\x01\u2028" + "s" * 2000,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = "test:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    with service.client(new_key("bot-a")) as client:
        first = client.post("/claim/test", json=body)
        again = client.post("/claim/test", json=body)
        assert first.status_code == 200, first.text
        token = first.json()["settlement_token"]
        settled = client.post(
            f"/settle/{expected}",
            json={"result": {"ok": True}},
            headers={"X-SafeAgent-Settlement-Token": token},
        )
        skip = client.post("/claim/test", json=body)
    assert (first.json()["status"], first.json()["request_id"], first.json()["test"]) == (
        "PROCEED",
        expected,
        True,
    )
    assert again.json() == {"status": "PENDING", "request_id": expected, "agent_id": "bot-a", "test": True}
    assert settled.json() == {"status": "committed", "request_id": expected}
    assert skip.json()["existing"] == {"ok": True}


def test_workers_stop_when_their_supervisor_is_killed_and_the_service_starts_again(
    sqlite_url: str, tmp_path: Path, new_key_on: NewKeyOn
) -> None:
    key = new_key_on(sqlite_url)("bot-a")
    service = start_service(sqlite_url, tmp_path, "--workers", "2")
    workers = _children(service.process.pid)
    try:
        with service.client(key) as client:
            claimed = client.post("/claim", json={"request_id": "r1", "action": "x"}).json()
        assert claimed["status"] == "PROCEED" and len(workers) == 2
        service.process.kill()  # SIGKILL the supervisor between the claim and its settle
        service.process.wait()
        _wait_until_gone(workers)
        again = start_service(sqlite_url, tmp_path)
        try:
            with again.client(key) as client:
                retry = client.post("/claim", json={"request_id": "r1", "action": "x"}).json()
                token = {"X-SafeAgent-Settlement-Token": claimed["settlement_token"]}
                settled = client.post("/settle/r1", json={"result": {"ok": 1}}, headers=token).json()
        finally:
            assert again.stop() in (0, -signal.SIGTERM)
    finally:
        # Never leave a process behind when the test fails: the supervisor first (it would start
        # new workers), then its workers.
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert retry == {"status": "PENDING", "request_id": "r1", "agent_id": "bot-a"}
    assert settled == {"status": "committed", "request_id": "r1"}


_GONE_DEADLINE_SECS = 60.0  # a generous bound on a loaded machine, not a speed check


def _children(parent: int) -> list[int]:
    # Workers start from the supervisor's backlog after it is ready: wait until both are there.
    deadline = time.monotonic() + _GONE_DEADLINE_SECS
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                    command = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                # A worker, not multiprocessing's resource tracker (the supervisor's child too).
                if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in command:
                    found.append(int(entry.name))
        if len(found) >= 2 or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_until_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + _GONE_DEADLINE_SECS
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"workers {pids} outlived their supervisor"
        time.sleep(0.1)


@pytest.mark.postgres
def test_the_key_ring_and_the_action_claims_keep_the_services_postgresql_settings(
    pg_url: str, new_key_on: NewKeyOn
) -> None:
    key = new_key_on(pg_url)("bot-a")
    settings = Settings(pg_prepare_after=0, pg_lock_timeout_ms=1234, pg_stuck_transaction_secs=7)
    app = create_app(ServiceConfig(store_url=pg_url, settings=settings))
    with TestClient(app, headers={"X-SafeAgent-Api-Key": key}) as client:
        for n in range(8):  # the claim's statements run more often than pg_prepare_after's default
            assert client.post("/claim", json={"request_id": f"r{n}", "action": "x"}).status_code == 200
        sessions = [_session(app.state.keys._engine), _session(app.state.actions._engine)]
    assert sessions == [{"prepared": 0, "lock_timeout": "1234ms", "idle": "7s"}] * 2


def _session(engine: sa.Engine) -> dict[str, object]:
    # The pooled session the requests ran on (one at a time, so the same one each time).
    with engine.connect() as conn:
        return {
            "prepared": conn.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements").scalar_one(),
            "lock_timeout": conn.exec_driver_sql("SHOW lock_timeout").scalar_one(),
            "idle": conn.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar_one(),
        }
