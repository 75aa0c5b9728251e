"""`/audit` answers SafeAgent's own item shape: the same calls on SafeAgent 0.1.25's server and on
`tradeguard serve` give items with the same field names and kinds (SQLite and PostgreSQL).

SafeAgent's item is its table row: `committed_at`, not a name of our own, is the settle time.
A shape compares names and kinds (a time is a number, never a text), not values.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tradeguard.service.app import ServiceConfig, create_app
from tradeguard.service.keys import KeyRing
from tradeguard.service.safeagent import SETTLEMENT_HEADER
from tradeguard.store import ClaimStore

_AUDIT_TOKEN = "a" * 40


def _items(client: TestClient, claim_headers: dict[str, str], audit_headers: dict[str, str]) -> list[Any]:
    """Claim two ids, settle one, and return the `/audit` items (newest first)."""
    token = client.post("/claim", json={"request_id": "x1", "action": "a"}, headers=claim_headers).json()
    settled = client.post(
        "/settle/x1",
        json={"result": {"ok": 1}},
        headers={**claim_headers, SETTLEMENT_HEADER: token["settlement_token"]},
    )
    assert settled.json() == {"status": "committed", "request_id": "x1"}
    client.post("/claim", json={"request_id": "x2", "action": "a"}, headers=claim_headers)
    page = client.get("/audit", headers=audit_headers).json()
    assert set(page) == {"items", "total", "limit", "offset"}
    return list(page["items"])


def _shape(item: dict[str, Any]) -> dict[str, str]:
    """Return each field's JSON kind (a Unix time is a number either way)."""
    kinds = {str: "string", float: "number", int: "number", dict: "object", type(None): "null"}
    return {name: kinds[type(value)] for name, value in item.items()}


def _safeagent_items(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    monkeypatch.chdir(tmp_path)  # importing the server opens its default database in the cwd
    monkeypatch.setenv("SAFEAGENT_DB_PATH", str(tmp_path / "default.db"))
    monkeypatch.setenv("SAFEAGENT_AUDIT_TOKEN", _AUDIT_TOKEN)
    monkeypatch.setenv("SAFEAGENT_SETTLEMENT_SECRET", "s" * 40)
    monkeypatch.delenv("SAFEAGENT_TENANT_KEYS", raising=False)
    monkeypatch.delenv("SAFEAGENT_PAYMENT_ADDRESS", raising=False)
    server = pytest.importorskip("safeagent_exec_guard.payment_server", reason="needs safeagent-exec-guard")
    store = importlib.import_module("safeagent_exec_guard.sqlite_store").SQLiteExecutionStore
    with TestClient(server.create_app(store=store(str(tmp_path / "safeagent.db")))) as client:
        return _items(client, {}, {"X-SafeAgent-Audit-Token": _AUDIT_TOKEN})


def test_audit_items_have_safeagents_fields(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = _safeagent_items(tmp_path, monkeypatch)
    ClaimStore(store_url).close()
    with KeyRing(store_url) as ring:
        key, admin = ring.create("bot")[1], ring.create("root", admin=True)[1]
    with TestClient(create_app(ServiceConfig(store_url=store_url))) as client:
        ours = _items(client, {"X-SafeAgent-Api-Key": key}, {"X-SafeAgent-Audit-Token": admin})
    # SafeAgent's agent_id is the payer's wallet address: null when no payment was made.
    assert [item.pop("agent_id") for item in theirs] == [None, None]
    assert [item.pop("agent_id") for item in ours] == ["bot", "bot"]
    assert [_shape(item) for item in ours] == [_shape(item) for item in theirs]
    pending, committed = ours
    assert pending["committed_at"] is None
    assert committed["result"] == {"ok": 1}
    assert committed["claimed_at"] <= committed["committed_at"]


_UNREADABLE = {
    "5000-digit integer": b'{"result": {"x": ' + b"9" * 5000 + b"}}",
    "not UTF-8": b'{"result": {"x": "\xff\xfe"}}',
}


@pytest.mark.parametrize("body", list(_UNREADABLE.values()), ids=list(_UNREADABLE))
def test_a_settle_body_json_cannot_read_answers_as_safeagents_server_does(
    body: bytes, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FastAPI answers a body its JSON reader raises on (not a syntax error) with 400 and a string
    # detail; SafeAgent's server is plain FastAPI, so that is its shape, and tradeguard keeps it
    # (audit 10c D11 asked for the 422 list only if SafeAgent's own server gave it). Only a body
    # nested too deeply is 422 here, as the settle check's own depth refusal is.
    headers = {"content-type": "application/json"}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SAFEAGENT_DB_PATH", str(tmp_path / "default.db"))
    monkeypatch.setenv("SAFEAGENT_SETTLEMENT_SECRET", "s" * 40)
    monkeypatch.delenv("SAFEAGENT_TENANT_KEYS", raising=False)
    monkeypatch.delenv("SAFEAGENT_PAYMENT_ADDRESS", raising=False)
    server = pytest.importorskip("safeagent_exec_guard.payment_server", reason="needs safeagent-exec-guard")
    store = importlib.import_module("safeagent_exec_guard.sqlite_store").SQLiteExecutionStore
    with TestClient(server.create_app(store=store(str(tmp_path / "safeagent.db")))) as client:
        token = client.post("/claim", json={"request_id": "x1", "action": "a"}).json()["settlement_token"]
        theirs = client.post("/settle/x1", content=body, headers={**headers, SETTLEMENT_HEADER: token})
    ClaimStore(store_url).close()
    with KeyRing(store_url) as ring:
        key = ring.create("bot")[1]
    with TestClient(
        create_app(ServiceConfig(store_url=store_url)), headers={"X-SafeAgent-Api-Key": key}
    ) as bot:
        token = bot.post("/claim", json={"request_id": "x1", "action": "a"}).json()["settlement_token"]
        ours = bot.post("/settle/x1", content=body, headers={**headers, SETTLEMENT_HEADER: token})
        still = bot.post("/claim", json={"request_id": "x1", "action": "a"}).json()["status"]
    assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json())
    assert ours.status_code == 400
    assert still == "PENDING"  # nothing settled: the caller may settle again with a readable body
