"""Audit 28: the claim service's key check, its store outages and its unknown paths.

* The key check is a read: on SQLite it must not take the write lock, or every request waits
  behind any writer on the file (another bot, a CLI, another service worker) and a read-only
  `/audit` answers 503 when that writer holds the lock past the busy timeout.
* A store outage met while checking the key is answered like every other outage: 503 with
  Retry-After and the fixed text, and the failure is logged for the operator.
* A path with a slash too many or too few is 404, never a redirect to another URL.
* `/claim/test` derives the request id of any agent_id and scope SafeAgent takes (they are only
  hashed, never stored).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest
import sqlalchemy as sa

from tests.service.conftest import Launch, NewKey, NewKeyOn, Service
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
