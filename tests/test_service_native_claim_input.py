"""The native `/v1/claims` and `/v1/exits` routes refuse what no gateway sends (audit 14a D2, D5).

- D2: derived client_order_ids are public functions of an agent's intent. Another agent key
  claimed one first under its own intent and blocked that agent's decision for good (ids are
  unique in the store); the refusal also told the prober the decision existed. An id in the
  derived namespace is now only ever this intent's own.
- D5: an order whose figure overflowed Decimal answered 500 (and reset the keep-alive
  connection); NaN, negative and zero figures were stored as PENDING claims; a non-ASCII id was
  taken. Each is now a 422 naming the field, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.mothers import make_intent, make_spec
from tests.native_kit import NativeService, serve_native
from tradeguard.clock import ManualClock
from tradeguard.domain.intents import derive_client_order_id
from tradeguard.service import codec
from tradeguard.store import ClaimStore, RemoteClaimLedger


@pytest.fixture
def served(store_url: str, clock: ManualClock) -> Iterator[tuple[NativeService, ClaimStore]]:
    with ClaimStore(store_url, clock=clock) as store, serve_native(store, store_url) as service:
        yield service, store


def _post(service: NativeService, agent: str, path: str, body: dict[str, Any]) -> requests.Response:
    headers = {"Authorization": f"Bearer {service.key(agent)}"}
    return requests.post(service.base_url + path, json=body, headers=headers, timeout=30)


def _body(name: str, agent: str, **extra: Any) -> dict[str, Any]:
    intent = make_intent(name, agent=agent)
    return {"intent": codec.intent_json(intent), "order": make_spec("6").as_payload(), "owner": "w1", **extra}


def test_another_agents_derived_client_order_id_cannot_be_squatted(
    served: tuple[NativeService, ClaimStore],
) -> None:
    service, store = served
    alices = derive_client_order_id(make_intent("09:42 buy", agent="alice").key)
    squat = _post(service, "mallory", "/v1/claims", _body("anything", "mallory", client_order_id=alices))
    assert squat.status_code == 422 and "shape of a derived id" in squat.json()["message"]
    assert store.list_claims(agent_id="mallory") == []
    mine = _post(service, "alice", "/v1/claims", _body("09:42 buy", "alice"))
    assert mine.status_code == 201 and mine.json()["claim"]["client_order_id"] == alices
    # An intent's own derivation, given explicitly, is the same claim.
    again = _post(service, "alice", "/v1/claims", _body("09:42 buy", "alice", client_order_id=alices))
    assert again.status_code == 200 and again.json()["created"] is False


@pytest.mark.parametrize(
    ("field", "value"),
    [("qty", "1E+999999999"), ("qty", "NaN"), ("qty", "-1"), ("qty", "0"), ("qty", "1e400"),
     ("limit_price", "-5")],
)  # fmt: skip
def test_an_order_figure_that_is_not_a_positive_finite_number_is_refused(
    served: tuple[NativeService, ClaimStore], field: str, value: str
) -> None:
    service, store = served
    body = _body("09:42 buy", "bot")
    body["order"] = {**body["order"], field: value}
    if field == "limit_price":
        body["order"]["order_type"] = "limit"
    for path in ("/v1/claims", "/v1/exits"):
        extra = {"broker_available": "6", "reason": "exit"} if path == "/v1/exits" else {}
        answer = _post(service, "bot", path, {**body, **extra})
        assert answer.status_code == 422, answer.text
        assert field in answer.json()["message"] or "order spec" in answer.json()["message"]
    assert store.list_claims(agent_id="bot") == []
    assert _post(service, "bot", "/v1/claims", _body("09:42 buy", "bot")).status_code == 201


def test_a_client_order_id_that_is_not_printable_ascii_is_refused(
    served: tuple[NativeService, ClaimStore],
) -> None:
    service, store = served
    answer = _post(service, "bot", "/v1/claims", _body("09:42 buy", "bot", client_order_id="a bé"))
    assert answer.status_code == 422 and "ASCII" in answer.json()["message"]
    assert store.list_claims(agent_id="bot") == []


def test_a_bots_own_client_order_id_with_the_prefix_is_its_own(
    served: tuple[NativeService, ClaimStore],
) -> None:
    # Review 15: the first version refused every "tg-..." id, which a local store takes.
    service, _store = served
    answer = _post(service, "bot", "/v1/claims", _body("09:42 buy", "bot", client_order_id="tg-mybot-0001"))
    assert answer.status_code == 201 and answer.json()["claim"]["client_order_id"] == "tg-mybot-0001"


def test_a_retry_under_its_own_earlier_derived_id_gets_the_stores_answer(
    served: tuple[NativeService, ClaimStore],
) -> None:
    # The bot read its first order's id back from the broker and sent a new decision under it:
    # the answer is the store's "in use", as for any reused id of its own, not a namespace refusal.
    service, _store = served
    first = _post(service, "bot", "/v1/claims", _body("09:42 buy", "bot")).json()["claim"]["client_order_id"]
    reused = _post(service, "bot", "/v1/claims", _body("09:43 buy", "bot", client_order_id=first))
    _post(service, "bot", "/v1/claims", _body("09:44 buy", "bot", client_order_id="mine-1"))
    plain = _post(service, "bot", "/v1/claims", _body("09:45 buy", "bot", client_order_id="mine-1"))
    assert (reused.status_code, reused.json()["code"]) == (plain.status_code, plain.json()["code"])
    assert "derived" not in reused.json()["message"]


@pytest.mark.parametrize("coid", [".", "..", "a.b"])
def test_a_client_order_id_of_dots_is_looked_up_not_read_as_a_path_step(
    served: tuple[NativeService, ClaimStore], coid: str
) -> None:
    # Audit 22: "." and ".." went into the URL as path steps, which the HTTP client folds away:
    # the lookup reached another route (a 307 redirect), a StoreError for a valid Alpaca id.
    service, _store = served
    answer = _post(service, "bot", "/v1/claims", _body(f"dots {coid}", "bot", client_order_id=coid))
    assert answer.status_code == 201, answer.text
    with RemoteClaimLedger(service.base_url, api_key=service.key("bot")) as remote:
        found = remote.get_by_client_order_id(coid)
        assert found is not None and found.client_order_id == coid
        assert remote.get_by_client_order_id(coid + ".") is None
