"""The SafeAgent-compatible routes through real HTTP (uvicorn on loopback, SQLite and PostgreSQL).

The shapes are SafeAgent's (shared/SAFEAGENT.md); what must differ from the original is tested
here too: a PENDING claim stays PENDING on every retry, settling needs the owner's key and the
settlement token, and every claim, duplicate and settle is in the claim store's audit log.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

import httpx

from tests.service.conftest import NewKey, Service
from tradeguard.domain.audit import AuditAction
from tradeguard.service.safeagent import SETTLEMENT_HEADER
from tradeguard.store import AuditQuery, ClaimStore


def _claim(
    client: httpx.Client, request_id: str, action: str = "email.send", **headers: str
) -> dict[str, Any]:
    response = client.post("/claim", json={"request_id": request_id, "action": action}, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_claim_then_settle_then_skip_with_the_stored_result(service: Service, new_key: NewKey) -> None:
    with service.client(new_key("bot-a")) as client:
        first = _claim(client, "req-1")
        assert first["status"] == "PROCEED"
        assert first["request_id"] == "req-1"
        assert first["agent_id"] == "bot-a"
        token = str(first["settlement_token"])
        assert set(first) == {"status", "request_id", "agent_id", "settlement_token"}

        settled = client.post(
            "/settle/req-1", json={"result": {"sent": 1}}, headers={SETTLEMENT_HEADER: token}
        )
        assert settled.json() == {"status": "committed", "request_id": "req-1"}

        again = _claim(client, "req-1")
        assert again == {
            "status": "SKIP",
            "request_id": "req-1",
            "agent_id": "bot-a",
            "existing": {"sent": 1},
        }

        second = client.post(
            "/settle/req-1", json={"result": {"sent": 2}}, headers={SETTLEMENT_HEADER: token}
        )
        assert second.json() == {"status": "already_committed", "request_id": "req-1"}
        assert _claim(client, "req-1")["existing"] == {"sent": 1}  # the first result wins


def test_a_pending_claim_stays_pending_on_every_retry(service: Service, new_key: NewKey) -> None:
    with service.client(new_key("bot-a")) as client:
        token = str(_claim(client, "req-1")["settlement_token"])
        for _ in range(3):
            # Even a retry that shows the token is not settled for it with a made-up result.
            retry = _claim(client, "req-1", **{SETTLEMENT_HEADER: token})
            assert retry == {"status": "PENDING", "request_id": "req-1", "agent_id": "bot-a"}
        rows = client.get("/audit").json()
    assert rows["total"] == 1
    assert rows["items"][0]["status"] == "PENDING"
    assert rows["items"][0]["result"] is None


def test_claim_test_derives_the_request_id_as_safeagent_does(service: Service, new_key: NewKey) -> None:
    body = {"agent_id": "my-agent", "action_type": "send_payment", "scope": "customer:123"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = "test:" + hashlib.sha256(canonical.encode()).hexdigest()
    with service.client(new_key("bot-a")) as client:
        first = client.post("/claim/test", json=body).json()
        again = client.post("/claim/test", json=body).json()
        reserved = client.post("/claim", json={"request_id": expected, "action": "send_payment"})
    assert first["status"] == "PROCEED"
    assert first["request_id"] == expected
    assert first["test"] is True
    assert again == {"status": "PENDING", "request_id": expected, "agent_id": "bot-a", "test": True}
    assert reserved.status_code == 422  # the test: prefix is the test route's alone


def test_settle_needs_the_settlement_token(service: Service, new_key: NewKey) -> None:
    with service.client(new_key("bot-a")) as client:
        token = str(_claim(client, "req-1")["settlement_token"])
        missing = client.post("/settle/req-1", json={"result": {}})
        wrong = client.post("/settle/req-1", json={"result": {}}, headers={SETTLEMENT_HEADER: token[::-1]})
        right = client.post(
            "/settle/req-1", json={"result": {"ok": True}}, headers={SETTLEMENT_HEADER: token}
        )
    assert (missing.status_code, wrong.status_code) == (403, 403)
    assert missing.json() == wrong.json() == {"detail": "settlement token missing or wrong"}
    assert right.json()["status"] == "committed"


def test_an_admin_settles_a_claim_whose_token_was_lost(service: Service, new_key: NewKey) -> None:
    with service.client(new_key("bot-a")) as bot, service.client(new_key("ops", admin=True)) as admin:
        _claim(bot, "req-1")  # the PROCEED answer (and its token) is lost
        assert _claim(bot, "req-1")["status"] == "PENDING"
        wrong = admin.post(
            "/settle/req-1?agent_id=bot-a", json={"result": {}}, headers={SETTLEMENT_HEADER: "x"}
        )
        done = admin.post("/settle/req-1?agent_id=bot-a", json={"result": {"checked": "provider"}})
        skip = _claim(bot, "req-1")
    assert wrong.status_code == 403  # a token shown must be the right one, even by an admin
    assert done.json() == {"status": "committed", "request_id": "req-1"}
    assert skip["existing"] == {"checked": "provider"}


def test_the_same_request_id_for_another_action_is_a_conflict(service: Service, new_key: NewKey) -> None:
    with service.client(new_key("bot-a")) as client:
        _claim(client, "req-1", "email.send")
        other = client.post("/claim", json={"request_id": "req-1", "action": "payment.send"})
    assert other.status_code == 409


def test_settle_of_an_unknown_request_is_404(service: Service, new_key: NewKey) -> None:
    with service.client(new_key("bot-a")) as client:
        response = client.post("/settle/nope", json={"result": {}}, headers={SETTLEMENT_HEADER: "t"})
    assert response.status_code == 404
    assert response.json() == {"detail": "request not found"}


def test_settle_without_a_token_is_403_whether_or_not_the_request_exists(
    service: Service, new_key: NewKey
) -> None:
    # SafeAgent checks the token first: an id a caller never claimed answers as a known one does.
    with service.client(new_key("bot-a")) as client:
        _claim(client, "req-1", "email.send")
        known = client.post("/settle/req-1", json={"result": {}})
        unknown = client.post("/settle/never-claimed", json={"result": {}})
    assert (known.status_code, unknown.status_code) == (403, 403)
    assert known.json() == unknown.json() == {"detail": "settlement token missing or wrong"}


def test_audit_filters_pages_newest_first(service: Service, new_key: NewKey) -> None:
    with service.client(new_key("bot-a")) as client:
        for n in range(5):
            _claim(client, f"req-{n}", "email.send" if n % 2 else "payment.send")
        token = str(_claim(client, "req-9", "email.send")["settlement_token"])
        client.post("/settle/req-9", json={"result": {"n": 9}}, headers={SETTLEMENT_HEADER: token})
        everything = client.get("/audit").json()
        emails = client.get("/audit", params={"action": "email.send"}).json()
        committed = client.get("/audit", params={"status": "COMMITTED"}).json()
        page = client.get("/audit", params={"limit": 2, "offset": 1}).json()
        newest = everything["items"][0]["claimed_at"]
        since = client.get("/audit", params={"from_ts": newest}).json()
        before = client.get("/audit", params={"to_ts": newest - 1e-3}).json()
        wrong = ({"limit": 0}, {"limit": 1001}, {"status": "x"})
        bad = [client.get("/audit", params=p).status_code for p in wrong]
    ids = [item["request_id"] for item in everything["items"]]
    assert ids == ["req-9", "req-4", "req-3", "req-2", "req-1", "req-0"]
    assert everything["total"] == 6
    assert (everything["limit"], everything["offset"]) == (100, 0)
    assert {item["request_id"] for item in emails["items"]} == {"req-1", "req-3", "req-9"}
    assert [item["result"] for item in committed["items"]] == [{"n": 9}]
    assert [item["request_id"] for item in page["items"]] == ["req-4", "req-3"]
    assert page["total"] == 6
    assert [item["request_id"] for item in since["items"]] == ["req-9"]
    assert before["total"] == 5
    assert bad == [422, 422, 422]


def test_every_claim_duplicate_and_settle_is_in_the_audit_log(
    service: Service, store_url: str, new_key: NewKey
) -> None:
    with service.client(new_key("bot-a")) as client:
        token = str(_claim(client, "req-1")["settlement_token"])
        _claim(client, "req-1")
        client.post("/settle/req-1", json={"result": {"ok": 1}}, headers={SETTLEMENT_HEADER: token})
        _claim(client, "req-1")
    with ClaimStore(store_url, must_exist=True) as store:
        records = list(store.audit_records(AuditQuery(agent_id="bot-a")))
    assert [(r.action, r.state) for r in records] == [
        (AuditAction.CLAIM, "PENDING"),
        (AuditAction.SKIP, "PENDING"),
        (AuditAction.TRANSITION, "COMMITTED"),
        (AuditAction.SKIP, "COMMITTED"),
    ]
    assert {r.detail["request_id"] for r in records} == {"req-1"}
    assert records[2].prev_state == "PENDING"
    assert records[2].detail["admin_without_token"] is False


def test_sweep_reports_and_changes_nothing(service: Service, new_key: NewKey) -> None:
    with service.client(new_key("bot-a")) as bot, service.client(new_key("ops", admin=True)) as admin:
        _claim(bot, "req-1")
        refused = bot.post("/sweep")
        report = admin.post("/sweep").json()
        still = _claim(bot, "req-1")
    assert refused.status_code == 403
    # Pending for less than the stale age (300 s): nothing to report, and nothing ever deleted.
    assert report == {"swept": 0, "stale_pending": 0, "requires_reconciliation": False, "action": "none"}
    assert still["status"] == "PENDING"


def test_health_needs_no_key(service: Service) -> None:
    with service.client() as client:
        assert client.get("/health").json() == {"status": "ok"}


def test_a_request_id_with_a_line_break_can_be_settled(service: Service, new_key: NewKey) -> None:
    # SafeAgent takes any text as a request id, a line break too, and settles it by its path
    # (audit 22): a claim that cannot be settled would stay PENDING for good.
    with service.client(new_key("bot-a")) as client:
        for request_id in ("two\nlines", "crlf\r\n", "\n"):
            token = str(_claim(client, request_id)["settlement_token"])
            path = "/settle/" + quote(request_id, safe="")
            settled = client.post(path, json={"result": {"ok": True}}, headers={SETTLEMENT_HEADER: token})
            assert settled.json() == {"status": "committed", "request_id": request_id}, settled.text
            assert _claim(client, request_id)["existing"] == {"ok": True}
