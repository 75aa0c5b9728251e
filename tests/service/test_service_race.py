"""G1 over HTTP: 16 clients racing on 100 request ids through two service processes on one
PostgreSQL get exactly one PROCEED per request id.

Two real service processes (one of them running two uvicorn workers, so three processes in all)
share the database; 16 client threads, each with its own connection, claim every request id in
an order of their own, alternating between the services, released together by a barrier.
"""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest

from tests.service.conftest import Launch, NewKeyOn, Service
from tradeguard.domain.audit import AuditAction
from tradeguard.store import AuditQuery, ClaimStore

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CLIENTS = 16
INTENTS = 100  # 1,600 claims, every id contended by 16 clients; 200 doubled the time only


def _client_run(
    services: list[Service], key: str, seed: int, barrier: threading.Barrier
) -> list[tuple[str, str]]:
    order = [f"intent-{n:03d}" for n in range(INTENTS)]
    random.Random(seed).shuffle(order)
    clients = [service.client(key) for service in services]
    seen = []
    try:
        barrier.wait()
        for n, request_id in enumerate(order):
            response = clients[(n + seed) % 2].post(
                "/claim", json={"request_id": request_id, "action": "buy"}
            )
            assert response.status_code == 200, response.text
            seen.append((request_id, response.json()["status"]))
    finally:
        for client in clients:
            client.close()
    return seen


def test_exactly_one_proceed_per_intent_through_two_services(
    pg_url: str, launch: Launch, new_key_on: NewKeyOn
) -> None:
    services = [launch(pg_url), launch(pg_url, "--workers", "2")]
    new_key = new_key_on(pg_url)
    key, admin = new_key("racer"), new_key("ops", admin=True)
    barrier = threading.Barrier(CLIENTS)
    results: list[list[tuple[str, str]]] = [[] for _ in range(CLIENTS)]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = _client_run(services, key, index, barrier)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors

    answers = [answer for seen in results for answer in seen]
    assert len(answers) == CLIENTS * INTENTS
    proceeds = Counter(request_id for request_id, status in answers if status == "PROCEED")
    assert len(proceeds) == INTENTS
    assert set(proceeds.values()) == {1}
    assert {status for _, status in answers} == {"PROCEED", "PENDING"}

    with services[1].client(admin) as client:
        assert client.get("/audit", params={"limit": 1}).json()["total"] == INTENTS
    with ClaimStore(pg_url, must_exist=True) as store:
        assert store.audit_count(AuditQuery(agent_id="racer", actions=(AuditAction.CLAIM.value,))) == INTENTS
