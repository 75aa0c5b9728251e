"""The native `/v1` routes through real HTTP: the lifecycle, isolation between agents, revocation.

The service runs in uvicorn on loopback (`tests.native_kit`) over a real SQLite file and over the
real PostgreSQL server (`store_url`); requests go out with `requests`, and `RemoteClaimLedger`
must raise the same exceptions a local store does.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from tests.mothers import make_intent, make_spec
from tests.native_kit import NativeService, serve_native
from tradeguard.clock import ManualClock
from tradeguard.domain.audit import AuditAction
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import (
    ClaimInProgress,
    ConfigError,
    IllegalTransition,
    IntentMismatch,
    LeaseLost,
    StoreError,
)
from tradeguard.ports import account_key_from_id
from tradeguard.service import codec
from tradeguard.store import AuditQuery, ClaimStore, RemoteClaimLedger, open_ledger


@pytest.fixture
def served(store_url: str, clock: ManualClock) -> Iterator[tuple[NativeService, ClaimStore]]:
    """The native routes over a ClaimStore on `store_url`, on the test's clock."""
    with ClaimStore(store_url, clock=clock) as store, serve_native(store, store_url) as service:
        yield service, store


def call(service: NativeService, key: str | None, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = ({} if key is None else {"Authorization": f"Bearer {key}"}) | kwargs.pop("headers", {})
    return requests.request(method, service.base_url + path, headers=headers, timeout=30, **kwargs)


def claim_body(name: str, agent: str = "bot", qty: str = "6") -> dict[str, Any]:
    intent = make_intent(name, agent=agent)
    return {"intent": codec.intent_json(intent), "order": make_spec(qty).as_payload(), "owner": "w1"}


def version(claim: dict[str, Any]) -> dict[str, Any]:
    return {k: claim[k] for k in ("state", "epoch", "attempts", "filled_qty")}


# -- the lifecycle ------------------------------------------------------------------------------


def test_claim_submit_fill_moves_the_ledger_and_a_duplicate_returns_the_claim(
    served: tuple[NativeService, ClaimStore],
) -> None:
    service, store = served
    key = service.key("bot")
    first = call(service, key, "POST", "/v1/claims", json=claim_body("09:42 buy"))
    assert first.status_code == 201 and first.json()["created"] is True
    claim = first.json()["claim"]
    assert claim["state"] == "PENDING" and claim["client_order_id"].startswith("tg-")
    again = call(service, key, "POST", "/v1/claims", json=claim_body("09:42 buy", qty="6.0"))
    assert again.status_code == 200 and again.json() == {"claim": claim, "created": False}

    path = f"/v1/claims/{claim['key']}/transitions"
    ack = {"expect": version(claim), "to": "SUBMITTED", "reason": "ack", "broker_order_id": "o-1"}
    sent = call(service, key, "POST", path, json=ack)
    assert sent.status_code == 200 and sent.json()["state"] == "SUBMITTED"
    filled = call(service, key, "POST", path, json={"expect": version(sent.json()), "to": "FILLED",
                                                    "reason": "fill", "filled_qty": "6",
                                                    "filled_avg_price": "530.25"})  # fmt: skip
    assert filled.status_code == 200 and filled.json()["filled_avg_price"] == "530.25"
    position = call(service, key, "GET", "/v1/position", params={"agent_id": "bot", "symbol": "QQQ"})
    assert position.json()["qty"] == "6" and store.position("bot", "QQQ").qty == 6

    stale = call(
        service, key, "POST", path, json={"expect": version(claim), "to": "UNKNOWN", "reason": "late"}
    )
    assert (stale.status_code, stale.json()["code"]) == (409, "lease_lost")
    illegal = call(
        service, key, "POST", path, json={"expect": version(filled.json()), "to": "PENDING", "reason": "x"}
    )
    assert (illegal.status_code, illegal.json()["code"]) == (409, "illegal_transition")
    trail = call(
        service, key, "GET", "/v1/audit", params={"client_order_id": claim["client_order_id"]}
    ).json()
    assert [(r["action"], r["state"]) for r in trail["items"]] == [
        ("claim", "PENDING"), ("transition", "SUBMITTED"), ("transition", "FILLED"),
    ]  # fmt: skip


def test_the_remote_ledger_raises_the_library_exceptions(served: tuple[NativeService, ClaimStore]) -> None:
    service, _store = served
    with RemoteClaimLedger(service.base_url, api_key=service.key("bot")) as remote:
        claim = remote.claim(make_intent("x"), make_spec(6), owner="w").claim
        remote.transition(claim, ClaimState.SUBMITTED, reason="ack")
        with pytest.raises(LeaseLost):
            remote.transition(claim, ClaimState.UNKNOWN, reason="stale snapshot")
        with pytest.raises(IntentMismatch) as mismatch:
            remote.claim(make_intent("x"), make_spec(7), owner="w")
        assert (mismatch.value.existing["qty"], mismatch.value.requested["qty"]) == ("6", "7")
        with pytest.raises(ClaimInProgress):
            remote.take_over(remote.get(claim.key), "w2")  # type: ignore[arg-type]
        moved = remote.get(claim.key)
        assert moved is not None
        remote.transition(moved, ClaimState.FILLED, reason="f", filled_qty=Decimal(6))
        with pytest.raises(IllegalTransition):
            remote.transition(remote.get(claim.key), ClaimState.PENDING, reason="no")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="at most 48 characters"):
            remote.claim(make_intent("y", symbol="QQQ"), make_spec(6), owner="w", client_order_id="x" * 49)


def test_error_codes_round_trip_to_the_same_exception_types() -> None:
    errors = [
        IntentMismatch("k", {"qty": "6"}, {"qty": "7"}), LeaseLost("l"), ClaimInProgress("c"),
        IllegalTransition("i"), ConfigError("bad"), ValueError("bad value"),
    ]  # fmt: skip
    for error in errors:
        status, body = codec.error_body(error)
        assert 400 <= status < 500
        with pytest.raises(type(error) if type(error) is not ValueError else ConfigError) as raised:
            codec.raise_error(body["code"], body["message"], body)
        assert str(raised.value) == str(error)
    outage = StoreError("db down")
    outage.__cause__ = OSError("disk")
    assert codec.error_body(outage)[0] == 503 and codec.error_body(StoreError("coid taken"))[0] == 409


# -- isolation ----------------------------------------------------------------------------------


def test_another_agent_cannot_read_move_or_detect_a_claim_or_position(
    served: tuple[NativeService, ClaimStore],
) -> None:
    service, store = served
    a_key, b_key = service.key("bot-a"), service.key("bot-b")
    made = call(service, a_key, "POST", "/v1/claims", json=claim_body("a1", agent="bot-a")).json()["claim"]
    path = f"/v1/claims/{made['key']}/transitions"
    call(
        service,
        a_key,
        "POST",
        path,
        json={"expect": version(made), "to": "FILLED", "reason": "f", "filled_qty": "6"},
    )
    missing = "0" * 64

    def same_as_missing(method: str, suffix: str, **kwargs: Any) -> None:
        theirs = call(service, b_key, method, f"/v1/claims/{made['key']}{suffix}", **kwargs)
        nothing = call(service, b_key, method, f"/v1/claims/{missing}{suffix}", **kwargs)
        assert theirs.status_code == nothing.status_code == 404
        assert theirs.json() == nothing.json() == {"code": "not_found", "message": "claim not found"}

    same_as_missing("GET", "")
    same_as_missing("POST", "/transitions", json={"expect": version(made), "to": "CANCELED", "reason": "x"})
    same_as_missing("POST", "/takeover", json={"expect": version(made), "owner": "thief"})
    coid = call(service, b_key, "GET", f"/v1/claims/by-client-order-id/{made['client_order_id']}")
    assert coid.status_code == 404
    for agent in ("bot-a", "nobody"):
        read = call(service, b_key, "GET", "/v1/position", params={"agent_id": agent, "symbol": "QQQ"})
        assert (read.status_code, read.json()["message"]) == (404, "position not found")
    forged = call(service, b_key, "POST", "/v1/claims", json=claim_body("b-as-a", agent="bot-a"))
    assert (forged.status_code, forged.json()["code"]) == (403, "forbidden")
    assert call(service, b_key, "GET", "/v1/claims").json()["items"] == []
    assert call(service, b_key, "GET", "/v1/claims", params={"agent_id": "bot-a"}).json()["items"] == []
    assert call(service, b_key, "GET", "/v1/audit").json()["items"] == []
    assert call(service, b_key, "GET", "/v1/positions").json()["items"] == []
    assert call(service, b_key, "GET", "/v1/agents").json()["items"] == []
    with RemoteClaimLedger(service.base_url, api_key=b_key) as b:
        assert b.get(made["key"]) is None and b.all_positions() == [] and b.symbols_in_motion() == set()
        a_claim = store.get(made["key"])
        assert a_claim is not None
        with pytest.raises(LeaseLost):
            b.transition(a_claim, ClaimState.CANCELED, reason="not mine")
    after = store.get(made["key"])
    assert after is not None and after.state is ClaimState.FILLED and store.position("bot-a", "QQQ").qty == 6
    admin = service.key("ops", admin=True)
    assert call(service, admin, "GET", f"/v1/claims/{made['key']}").json()["agent_id"] == "bot-a"
    assert [p["agent_id"] for p in call(service, admin, "GET", "/v1/positions").json()["items"]] == ["bot-a"]


def test_a_dedup_window_is_read_only_by_the_agent_that_opened_it(
    served: tuple[NativeService, ClaimStore],
) -> None:
    service, store = served
    a_key, b_key = service.key("bot-a"), service.key("bot-b")
    with (
        RemoteClaimLedger(service.base_url, api_key=a_key) as a,
        RemoteClaimLedger(service.base_url, api_key=b_key) as b,
    ):
        assert a.claim_window("content", window_secs=60, claim_key="a-claim") == "a-claim"
        assert a.window_holder("content") == "a-claim"
        assert b.window_holder("content") is None  # the same content key names bot-b's own window
        assert b.claim_window("content", window_secs=60, claim_key="b-claim") == "b-claim"
        assert (a.window_holder("content"), b.window_holder("content")) == ("a-claim", "b-claim")
    assert store.window_holder("content") is None  # the store keeps them under scoped keys
    empty = call(service, a_key, "GET", "/v1/windows", params={"content_key": ""})
    assert empty.status_code == 422


def test_an_agent_key_writes_audit_records_only_for_its_own_agent(
    served: tuple[NativeService, ClaimStore],
) -> None:
    service, store = served
    with RemoteClaimLedger(service.base_url, api_key=service.key("bot-b")) as b:
        b.audit(AuditAction.ERROR, agent_id="*", reason="account-wide report")
        with pytest.raises(ConfigError, match="refused"):
            b.audit(AuditAction.ERROR, agent_id="bot-a", reason="forged")
    assert [(r.agent_id, r.reason) for r in store.audit_records(AuditQuery())] == [
        ("bot-b", "account-wide report")
    ]


def test_an_audit_detail_nested_too_deeply_is_refused_and_the_log_stays_readable(
    served: tuple[NativeService, ClaimStore],
) -> None:
    """Audit 7c (native twin of D6): a 300-deep detail was stored (204) and then broke every
    `GET /v1/audit` page that held it, the admin's too; now it is refused with 422, nothing stored."""
    service, store = served
    key = service.key("bot-b")
    deep: dict[str, object] = {}
    for _ in range(300):
        deep = {"d": deep}
    body = {"action": "error", "agent_id": "bot-b", "reason": "deep", "fields": {"detail": deep}}
    refused = call(service, key, "POST", "/v1/audit", json=body)
    assert (refused.status_code, refused.json()["code"]) == (422, "invalid_request"), refused.text
    assert "nested too deeply" in refused.json()["message"]
    skipped = call(service, key, "POST", "/v1/skips", json={**body, "claim_key": None})
    assert skipped.status_code == 422, skipped.text
    shallow = {**body, "fields": {"detail": {"why": {"a": [1, 2]}}}}
    assert call(service, key, "POST", "/v1/audit", json=shallow).status_code == 204
    admin = service.key("ops", admin=True)
    for reader in (key, admin):
        page = call(service, reader, "GET", "/v1/audit")
        assert page.status_code == 200 and [r["reason"] for r in page.json()["items"]] == ["deep"]
    assert [r.detail for r in store.audit_records(AuditQuery())] == [{"why": {"a": [1, 2]}}]


# -- keys ---------------------------------------------------------------------------------------


def test_a_revoked_key_is_refused_and_records_nothing(served: tuple[NativeService, ClaimStore]) -> None:
    service, store = served
    record, key = service.keys.create("bot")
    store.register_account("bot", account_key_from_id("bot's account"))  # as its gateway does at start
    with RemoteClaimLedger(service.base_url, api_key=key) as remote:
        remote.claim(make_intent("before"), make_spec(), owner="w")
        service.keys.revoke(record.key_id)
        with pytest.raises(ConfigError, match="refused the API key"):
            remote.claim(make_intent("after"), make_spec(), owner="w")
    assert store.get(make_intent("after").key) is None and store.get(make_intent("before").key) is not None
    for sent in (None, key, "tgk_0000000000000000_" + "A" * 43):
        answer = call(service, sent, "GET", "/v1/claims")
        assert (answer.status_code, answer.json()["code"]) == (401, "unauthorized")


def test_an_unreachable_service_is_a_store_error_naming_it(served: tuple[NativeService, ClaimStore]) -> None:
    service, _store = served
    remote = RemoteClaimLedger(service.base_url, api_key=service.key("bot"))
    service.stop()
    with pytest.raises(StoreError, match=f"claim service {service.base_url} could not be reached"):
        remote.claim(make_intent("late"), make_spec(), owner="w")
    remote.close()


def test_open_ledger_chooses_the_store_by_url(sqlite_url: str) -> None:
    with pytest.raises(ConfigError, match="needs api_key"):
        open_ledger("https://claims.example:8787")
    with pytest.raises(ConfigError, match="takes none"):
        open_ledger(sqlite_url, api_key="tgk_x")
    with open_ledger(sqlite_url) as local:  # type: ignore[attr-defined]
        assert isinstance(local, ClaimStore)
    assert "secret" not in repr(
        RemoteClaimLedger("http://127.0.0.1:9", api_key="secret", settings=local.settings)
    )


def test_nul_characters_are_refused_before_the_store(served: tuple[NativeService, ClaimStore]) -> None:
    service, store = served
    key = service.key("bot")
    body = claim_body("nul") | {"reason": "a\u0000b"}
    answer = call(service, key, "POST", "/v1/claims", json=body)
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_request")
    assert store.get(make_intent("nul").key) is None
    query = call(service, key, "GET", "/v1/claims", params={"symbol": "Q\u0000"})
    assert query.status_code == 422


def test_counters_past_the_stores_64_bit_integers_are_refused_not_failed_in_the_store(
    served: tuple[NativeService, ClaimStore],
) -> None:
    """Before, an epoch, attempts count, turn or audit cursor of 2**63 reached the database and came
    back 503 or 500 (found by the native routes' schemathesis run, 1d809a1); a fixed case here, so a
    shorter fuzz run cannot lose it."""
    service, store = served
    key = service.key("bot")
    huge = 2**63
    claimed = call(service, key, "POST", "/v1/claims", json=claim_body("09:42 buy")).json()["claim"]
    path = f"/v1/claims/{claimed['key']}/transitions"
    for field in ("epoch", "attempts"):
        expect = version(claimed) | {field: huge}
        moved = call(service, key, "POST", path, json={"expect": expect, "to": "SUBMITTED", "reason": "ack"})
        assert (moved.status_code, moved.json()["code"]) == (422, "invalid_request"), (field, moved.text)
    turned = call(service, key, "POST", "/v1/claims", json=claim_body("09:43 buy") | {"turn_id": huge})
    assert (turned.status_code, turned.json()["code"]) == (422, "invalid_request"), turned.text
    paged = call(service, key, "GET", "/v1/audit", params={"after_id": huge})
    assert paged.status_code == 422, paged.text
    kept = store.get(claimed["key"])
    assert kept is not None and kept.state.value == "PENDING"
    assert store.get(make_intent("09:43 buy").key) is None  # nothing stored


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('"a\\ud800"', "a lone surrogate (text that is not Unicode) is not allowed"),
        ("NaN", "NaN is not a JSON number"),
        ("-Infinity", "-Infinity is not a JSON number"),
    ],
)
def test_json_that_is_not_standard_is_refused_before_the_store(
    served: tuple[NativeService, ClaimStore], text: str, problem: str
) -> None:
    # Stored, a lone surrogate made every later read of the audit log fail; NaN came back null.
    service, store = served
    key = service.key("bot")
    body = '{"action": "error", "agent_id": "bot", "reason": "r", "fields": {"detail": {"x": TEXT}}}'
    body = body.replace("TEXT", text)
    headers = {"Content-Type": "application/json"}
    answer = call(service, key, "POST", "/v1/audit", data=body.encode(), headers=headers)
    assert (answer.status_code, answer.json()) == (422, {"code": "invalid_request", "message": problem})
    fine = body.replace(text, '"a\\ud83d\\ude00 caf\u00e9 NaN"')  # a surrogate pair is one character
    assert call(service, key, "POST", "/v1/audit", data=fine.encode(), headers=headers).status_code == 204
    read = call(service, key, "GET", "/v1/audit", params={"agent_id": "bot"})
    assert read.status_code == 200, read.text
    assert [r["detail"] for r in read.json()["items"]] == [{"x": "a\U0001f600 caf\u00e9 NaN"}]
    assert len(list(store.audit_records(AuditQuery()))) == 1


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/audit", {"since": "0001-01-01T00:00:00+05:00"}),
        ("/v1/claims", {"updated_since": "0001-01-01T00:00:00+05:00"}),
        ("/v1/turns/cleared", {"since": "0001-01-01T00:00:00+05:00"}),
        ("/v1/turns/moved", {"since": "0001-01-01T00:00:00+05:00"}),
    ],
)
def test_a_time_that_overflows_in_utc_is_a_422_not_a_500(
    served: tuple[NativeService, ClaimStore], path: str, params: dict[str, str]
) -> None:
    service, _ = served
    answer = call(service, service.key("bot"), "GET", path, params=params)
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_request"), answer.text


def test_racing_clients_through_two_services_on_one_database_create_each_claim_once(
    pg_url: str, clock: ManualClock
) -> None:
    """Eight clients claim the same 40 decisions in different orders through two service
    instances (each with its own store and connections) on one PostgreSQL: one creation each."""
    intents = [make_intent(f"race-{i}") for i in range(40)]
    with (
        ClaimStore(pg_url, clock=clock) as one,
        ClaimStore(pg_url, clock=clock) as two,
        serve_native(one, pg_url) as first,
        serve_native(two, pg_url) as second,
    ):
        key = first.key("bot")
        created: list[tuple[str, str, bool]] = []
        lock = threading.Lock()

        failures: list[BaseException] = []

        def client(n: int) -> None:
            service = (first, second)[n % 2]
            order = intents[n:] + intents[:n]
            try:
                with RemoteClaimLedger(service.base_url, api_key=key, settings=one.settings) as remote:
                    for intent in order:
                        out = remote.claim(intent, make_spec(3), owner=f"w{n}")
                        with lock:
                            created.append((intent.key, out.claim.client_order_id, out.created))
            except Exception as exc:  # reported below: a thread's exception is otherwise lost
                failures.append(exc)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
    assert len(created) == 8 * 40
    assert Counter(k for k, _coid, made in created if made) == Counter({i.key: 1 for i in intents})
    assert len({(k, coid) for k, coid, _made in created}) == 40


def test_a_sender_whose_claim_was_taken_over_is_fenced_off_by_the_service(
    served: tuple[NativeService, ClaimStore], clock: ManualClock
) -> None:
    """The fence decides on the lease the sender read, not on the one stored since."""
    service, store = served
    with RemoteClaimLedger(service.base_url, api_key=service.key("bot")) as remote:
        frozen = remote.claim(make_intent("frozen"), make_spec(), owner="w1").claim
        assert remote.fence_before_send(frozen) is frozen  # fresh lease: nothing written
        clock.advance(store.settings.lease_secs + 1)
        taken = remote.take_over(frozen, "w2")
        assert taken.state is ClaimState.UNKNOWN and taken.epoch == 2
        with pytest.raises(LeaseLost):
            remote.fence_before_send(frozen)  # the frozen sender wakes up: it must not send
