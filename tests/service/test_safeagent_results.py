"""Settle results: how deep one may nest, and stored results served as stored (SQLite, PostgreSQL).

A result nested 300 deep (well under the body limit) was accepted, then every SKIP answer and
every `/audit` page holding it was 500, the admin's too, for good: the response serializer has
a depth limit the settle check did not. Now a result nests at most `MAX_RESULT_DEPTH` levels
(422 before anything is stored), and stored results go out as stored, never re-serialized, so a
row an earlier version accepted cannot break an answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tradeguard.domain.audit import AuditAction
from tradeguard.service.actions import MAX_RESULT_DEPTH
from tradeguard.service.app import ServiceConfig, create_app
from tradeguard.service.keys import KeyRing
from tradeguard.service.safeagent import SETTLEMENT_HEADER
from tradeguard.store import AuditQuery, ClaimStore

_CLAIM = {"request_id": "deep", "action": "pay"}


def _nested(levels: int, opener: str = '{"a":', closer: str = "}") -> str:
    """Return JSON text of objects (or arrays) `levels` deep, the innermost holding 1."""
    return opener * levels + "1" + closer * levels


@pytest.fixture
def clients(store_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The real app on `store_url` with agent "alice"'s key, and the headers of an admin's token."""
    ClaimStore(store_url).close()
    with KeyRing(store_url) as ring:
        alice, admin = ring.create("alice")[1], ring.create("root", admin=True)[1]
    app = create_app(ServiceConfig(store_url=store_url))
    with TestClient(app, headers={"X-SafeAgent-Api-Key": alice}) as bot:
        yield bot, {"X-SafeAgent-Audit-Token": admin}


def _settle(client: TestClient, token: str, result_text: str) -> Any:
    return client.post(
        "/settle/deep",
        content='{"result":' + result_text + "}",
        headers={SETTLEMENT_HEADER: token, "content-type": "application/json"},
    )


def _stored(store_url: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql("SELECT status, result FROM tg_actions").all()]
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "result_text",
    [
        _nested(MAX_RESULT_DEPTH + 1),
        _nested(300),  # the audit's repro: once stored, it broke SKIP and /audit
        '{"a":' + _nested(MAX_RESULT_DEPTH, "[", "]") + "}",
        '{"a":' + _nested(30_000, "[", "]") + "}",  # deeper than Python's JSON reader goes
    ],
    ids=["one-too-deep", "300-objects", "arrays", "30000-arrays"],
)
def test_a_result_nested_too_deeply_is_refused_and_nothing_changes(
    clients: tuple[TestClient, dict[str, str]], store_url: str, result_text: str
) -> None:
    bot, _admin = clients
    token = bot.post("/claim", json=_CLAIM).json()["settlement_token"]
    refused = _settle(bot, token, result_text)
    assert refused.status_code == 422
    [error] = refused.json()["detail"]
    too_deep = f"nested too deeply: at most {MAX_RESULT_DEPTH} levels of objects and arrays"
    if len(result_text) < 10_000:
        assert error["msg"] == too_deep
    else:  # refused by the body's JSON reader, unless a raised recursion limit let it read it
        assert error["msg"] in {too_deep, "nested too deeply to read"}
    assert error["loc"][0] == "body"
    assert _stored(store_url) == [("PENDING", None)]
    with ClaimStore(store_url, must_exist=True) as store:
        actions = [r.action for r in store.audit_records(AuditQuery(agent_id="alice"))]
    assert actions == [AuditAction.CLAIM]
    # The claim is still the caller's to settle, with a result of the allowed depth.
    deepest = _nested(MAX_RESULT_DEPTH)
    assert _settle(bot, token, deepest).json() == {"status": "committed", "request_id": "deep"}
    assert bot.post("/claim", json=_CLAIM).json()["existing"] == json.loads(deepest)


@pytest.mark.parametrize("levels", [300, 900])
def test_a_deep_result_already_stored_is_served_as_stored(
    clients: tuple[TestClient, dict[str, str]], store_url: str, levels: int
) -> None:
    bot, admin = clients
    bot.post("/claim", json=_CLAIM)
    bot.post("/claim", json={"request_id": "plain", "action": "pay"})
    # A row an earlier version accepted (its only check was Python's own recursion limit).
    stored = _nested(levels)
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE tg_actions SET status = 'COMMITTED', result = :r WHERE request_id = 'deep'"),
            {"r": stored},
        )
    engine.dispose()
    again = bot.post("/claim", json=_CLAIM)
    mine = bot.get("/audit")
    everyone = bot.get("/audit", headers=admin)
    assert again.status_code == 200, again.text
    # Checked as text: a 900-deep value is beyond what the test itself could safely parse.
    assert again.text.startswith('{"status":"SKIP","request_id":"deep","agent_id":"alice",')
    assert '"existing":' + stored in again.text
    for page in (mine, everyone):
        assert page.status_code == 200, page.text
        assert '"result":' + stored in page.text
        assert '"request_id":"plain"' in page.text
        assert '"total":2' in page.text
    if levels == 300:
        assert again.json()["existing"] == json.loads(stored)
