"""Who may see and move what, through real HTTP: keys, isolation between agents, limits, failures.

One agent can neither read, settle nor detect another's claim: every such answer is identical to
the answer about a claim that does not exist. A revoked key is refused at once. Oversized bodies
and bursts are refused before they cost anything; a store outage is 503, never a made-up status;
errors never echo what was sent.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import httpx
import sqlalchemy as sa

from tests.service.conftest import Launch, NewKey, Service
from tradeguard.service.keys import KeyRing
from tradeguard.service.safeagent import SETTLEMENT_HEADER
from tradeguard.store.engine import parse_url


def _answer(response: httpx.Response) -> tuple[int, Any]:
    return response.status_code, response.json()


def test_another_agents_claim_looks_exactly_like_a_missing_one(service: Service, new_key: NewKey) -> None:
    with service.client(new_key("bot-a")) as a, service.client(new_key("bot-b")) as b:
        claimed = a.post("/claim", json={"request_id": "secret-plan", "action": "email.send"}).json()
        token = {SETTLEMENT_HEADER: claimed["settlement_token"]}
        # b knows a's request id and even its token: settling reads as "no such request".
        theirs = _answer(b.post("/settle/secret-plan", json={"result": {"x": 1}}, headers=token))
        missing = _answer(b.post("/settle/never-claimed", json={"result": {"x": 1}}, headers=token))
        named = _answer(b.post("/settle/secret-plan?agent_id=bot-a", json={"result": {}}, headers=token))
        named_missing = _answer(
            b.post("/settle/secret-plan?agent_id=bot-z", json={"result": {}}, headers=token)
        )
        audit_theirs = b.get("/audit", params={"agent_id": "bot-a"}).json()
        audit_nobody = b.get("/audit", params={"agent_id": "bot-z"}).json()
        audit_own = b.get("/audit").json()
        # The same request id is b's own, new claim: agents never collide.
        b_claim = b.post("/claim", json={"request_id": "secret-plan", "action": "email.send"}).json()
        a_again = a.post("/claim", json={"request_id": "secret-plan", "action": "email.send"}).json()
    assert theirs == missing == (404, {"detail": "request not found"})
    assert named == named_missing == (404, {"detail": "request not found"})
    assert audit_theirs == audit_nobody == audit_own == {"items": [], "total": 0, "limit": 100, "offset": 0}
    assert b_claim["status"] == "PROCEED"
    assert b_claim["agent_id"] == "bot-b"
    assert a_again["status"] == "PENDING"  # b's settle attempts changed nothing


def test_an_admin_key_sees_every_agent(service: Service, new_key: NewKey) -> None:
    with service.client(new_key("bot-a")) as a, service.client(new_key("bot-b")) as b:
        a.post("/claim", json={"request_id": "r", "action": "x"})
        b.post("/claim", json={"request_id": "r", "action": "x"})
    with service.client(new_key("ops", admin=True)) as admin:
        every = admin.get("/audit").json()
        only_b = admin.get("/audit", params={"agent_id": "bot-b"}).json()
    assert sorted(item["agent_id"] for item in every["items"]) == ["bot-a", "bot-b"]
    assert [item["agent_id"] for item in only_b["items"]] == ["bot-b"]


def test_no_key_and_a_bad_key_get_one_401(service: Service, new_key: NewKey) -> None:
    good = new_key("bot-a")
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    body = {"request_id": "r", "action": "x"}
    answers = []
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": f"Bearer {forged}"},
                    {"X-SafeAgent-Api-Key": forged}, {"Authorization": f"Basic {good}"}):  # fmt: skip
        with service.client(**headers) as client:
            response = client.post("/claim", json=body)
            answers.append((response.status_code, response.headers.get("www-authenticate")))
    assert answers == [(401, "Bearer")] * 5


def test_two_different_keys_in_one_request_are_refused_not_served_as_either(
    service: Service, new_key: NewKey
) -> None:
    # Authorization for bot-b and X-SafeAgent-Api-Key for bot-a used to be served as bot-b.
    a, b = new_key("bot-a"), new_key("bot-b")
    both = {"Authorization": f"Bearer {b}", "X-SafeAgent-Api-Key": a}
    with service.client(**both) as client:
        claimed = client.post("/claim", json={"request_id": "r", "action": "x"})
        audit = client.get("/audit")
        sweep = client.post("/sweep")
    for answer in (claimed, audit, sweep):
        assert (answer.status_code, answer.headers.get("www-authenticate")) == (401, "Bearer")
    assert claimed.json() == {"detail": "two different API keys in one request: send one"}
    with service.client(b) as client:  # nothing was claimed under either agent
        assert client.get("/audit").json()["total"] == 0
    with service.client(a) as client:
        assert client.get("/audit").json()["total"] == 0
    # The same key in both headers is one key.
    with service.client(**{"Authorization": f"Bearer {a}", "X-SafeAgent-Api-Key": a}) as client:
        assert client.post("/claim", json={"request_id": "r", "action": "x"}).json()["agent_id"] == "bot-a"


def test_a_revoked_key_is_refused_at_once(service: Service, keys: KeyRing) -> None:
    record, key = keys.create("bot-a")
    with service.client(key) as client:
        assert client.post("/claim", json={"request_id": "r1", "action": "x"}).status_code == 200
        keys.revoke(record.key_id)
        after = client.post("/claim", json={"request_id": "r2", "action": "x"})
        audit = client.get("/audit")
    assert (after.status_code, audit.status_code) == (401, 401)
    assert after.json() == {"detail": "invalid or revoked API key"}


def test_the_safeagent_headers_carry_keys(service: Service, new_key: NewKey) -> None:
    agent, admin = new_key("bot-a"), new_key("ops", admin=True)
    with service.client(**{"X-SafeAgent-Api-Key": agent}) as client:
        assert client.post("/claim", json={"request_id": "r", "action": "x"}).json()["status"] == "PROCEED"
    with service.client(**{"X-SafeAgent-Audit-Token": admin}) as client:
        assert client.post("/sweep").status_code == 200
    with service.client(**{"X-SafeAgent-Audit-Token": agent}) as client:
        assert client.post("/sweep").status_code == 403  # the admin header does not make an admin


def test_a_valid_admin_audit_token_wins_over_the_tenant_key_on_audit_and_sweep(
    service: Service, new_key: NewKey
) -> None:
    # SafeAgent answers /audit for the admin when its audit token is valid, whatever tenant key
    # comes along; an audit token that is not an admin key changes nothing.
    a, b, admin = new_key("bot-a"), new_key("bot-b"), new_key("ops", admin=True)
    for key in (a, b):
        with service.client(key) as client:
            client.post("/claim", json={"request_id": "r", "action": "x"})
    seen: dict[str, tuple[set[str], int]] = {}
    for name, audit_token in (("admin", admin), ("agent", b), ("bogus", admin[:-4] + "AAAA")):
        headers = {"X-SafeAgent-Api-Key": a, "X-SafeAgent-Audit-Token": audit_token}
        with service.client(**headers) as client:
            rows = client.get("/audit").json()["items"]
            seen[name] = ({row["agent_id"] for row in rows}, client.post("/sweep").status_code)
        # Claims stay the tenant's: the admin token never moves them under the admin's agent.
        with service.client(**headers) as client:
            claimed = client.post("/claim", json={"request_id": name, "action": "x"}).json()
        assert claimed["agent_id"] == "bot-a"
    assert seen == {
        "admin": ({"bot-a", "bot-b"}, 200),
        "agent": ({"bot-a"}, 403),
        "bogus": ({"bot-a"}, 403),
    }


def test_an_oversized_body_is_refused_before_parsing(service: Service, new_key: NewKey) -> None:
    big = {"request_id": "r", "action": "x", "pad": "p" * (70 * 1024)}
    with service.client(new_key("bot-a")) as client:
        declared = client.post("/claim", json=big)

        def chunks() -> Any:  # no Content-Length: the limit counts what arrives
            for _ in range(70):
                yield b"p" * 1024

        streamed = client.post("/claim", content=chunks(), headers={"Content-Type": "application/json"})
        audit = client.get("/audit").json()
    assert declared.status_code == streamed.status_code == 413
    assert audit["total"] == 0


def test_a_burst_past_the_rate_gets_429_with_retry_after(
    launch: Launch, store_url: str, new_key: NewKey
) -> None:
    slow = launch(store_url, "--rate", "0.01", "--burst", "3")
    other = new_key("bot-b")
    with slow.client(new_key("bot-a")) as client:
        answers = [client.get("/audit").status_code for _ in range(4)]
        refused = client.get("/audit")
    with slow.client(other) as client:
        unaffected = client.get("/audit").status_code
    assert answers == [200, 200, 200, 429]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert unaffected == 200  # each key has its own bucket


def test_errors_never_echo_what_was_sent(service: Service, new_key: NewKey) -> None:
    secret = "hunter2-do-not-log"
    with service.client(new_key("bot-a")) as client:
        bad_type = client.post("/claim", json={"request_id": {"password": secret}, "action": secret})
        bad_json = client.post(
            "/claim", content=f'{{"request_id": "{secret}"', headers={"Content-Type": "application/json"}
        )
        bad_result = client.post("/settle/r", json={"result": secret})
    for response in (bad_type, bad_json, bad_result):
        assert response.status_code == 422
        assert secret not in response.text
    assert secret not in service.log.read_text()


def test_a_store_outage_is_503_never_a_made_up_status(
    service: Service, store_url: str, new_key: NewKey
) -> None:
    key = new_key("bot-a")
    with service.client(key) as client:
        assert client.post("/claim", json={"request_id": "r1", "action": "x"}).json()["status"] == "PROCEED"
        _drop_actions_table(store_url)  # the keys survive: only the claims' table is gone
        retry = client.post("/claim", json={"request_id": "r1", "action": "x"})
        new = client.post("/claim", json={"request_id": "r2", "action": "x"})
        audit = client.get("/audit")
    for response in (retry, new, audit):
        assert response.status_code == 503
        assert response.json() == {"detail": "claim store unavailable; nothing was decided, retry later"}


def _drop_actions_table(store_url: str) -> None:
    url = parse_url(store_url)
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(str(url.database)) as conn:
            conn.execute("DROP TABLE tg_actions")
        return
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE tg_actions"))
    engine.dispose()


def test_text_the_store_cannot_hold_is_422_not_an_outage(service: Service, new_key: NewKey) -> None:
    with service.client(new_key("bot-a")) as client:
        body = client.post("/claim", json={"request_id": "a\x00b", "action": "x"})
        query = client.get("/audit", params={"action": "a\x00b"})
        nested = client.post(
            "/settle/r", content=b'{"result":' + b"[" * 30000 + b"]" * 30000 + b"}",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        fine = client.post("/claim", json={"request_id": "a\u00e9\U0001f600", "action": "x"})
    assert (body.status_code, query.status_code, nested.status_code) == (422, 422, 422)
    assert fine.json()["request_id"] == "a\u00e9\U0001f600"


def test_a_result_that_is_not_standard_json_is_422_and_nothing_is_stored(
    service: Service, new_key: NewKey
) -> None:
    # Python's JSON reader takes all three; a lone surrogate cannot be stored (no driver encodes
    # it), NaN and Infinity would be stored and answered back as null (the result changed).
    bodies = {
        "surrogate": (b'{"result": {"x": "\\ud800"}}', "it holds a lone surrogate"),
        "surrogate-key": (b'{"result": {"\\udc80": 1}}', "it holds a lone surrogate"),
        "nan": (b'{"result": {"x": NaN}}', "NaN and Infinity"),
        "infinity": (b'{"result": {"x": [1, -Infinity]}}', "NaN and Infinity"),
    }
    with service.client(new_key("bot-a")) as client:
        for request_id, (body, reason) in bodies.items():
            token = client.post("/claim", json={"request_id": request_id, "action": "x"}).json()
            headers = {SETTLEMENT_HEADER: token["settlement_token"], "Content-Type": "application/json"}
            refused = client.post(f"/settle/{request_id}", content=body, headers=headers)
            assert refused.status_code == 422, (request_id, refused.text)
            [error] = refused.json()["detail"]
            assert error["loc"] == ["body", "result"]
            assert error["msg"].startswith(f"not standard JSON: {reason}") and "\n" not in error["msg"]
            retry = client.post("/claim", json={"request_id": request_id, "action": "x"}).json()
            assert retry["status"] == "PENDING"  # nothing stored: a corrected settle still can
            fixed = client.post(f"/settle/{request_id}", json={"result": {"x": "ok"}}, headers=headers)
            assert fixed.json()["status"] == "committed"
        items = {item["request_id"]: item["result"] for item in client.get("/audit").json()["items"]}
    assert items == {key: {"x": "ok"} for key in bodies}
    assert "Traceback" not in service.log.read_text()


def test_a_safeagent_key_beside_another_authorization_scheme_is_served(
    service: Service, new_key: NewKey
) -> None:
    # Audit 22: SafeAgent reads only X-SafeAgent-Api-Key; a proxy's Basic credentials in
    # Authorization made the same request a 401 here.
    key = new_key("bot-a")
    headers = {"X-SafeAgent-Api-Key": key, "Authorization": "Basic cHJveHk6c2VjcmV0"}
    with service.client(**headers) as client:
        answer = client.post("/claim", json={"request_id": "behind-a-proxy", "action": "x"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["agent_id"] == "bot-a"
