"""An action claim or settle and its audit record commit together or not at all (G5, G6).

A store that fails the audit record after the claim row committed answered 503 "nothing was
decided" while the claim was in fact recorded: the retry got PENDING forever (the settlement
token never reached anyone) and no `claim` record was ever written. Here the audit table refuses
inserts (a trigger: a full disk, a connection lost between two statements) on SQLite and
PostgreSQL, through the real app and the real store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tradeguard.domain.audit import AuditAction
from tradeguard.service.app import ServiceConfig, create_app
from tradeguard.service.keys import KeyRing
from tradeguard.service.safeagent import SETTLEMENT_HEADER
from tradeguard.store import AuditQuery, ClaimStore

_CLAIM = {"request_id": "pay-1", "action": "payment.send"}


class AuditOutage:
    """Makes every insert into the audit log fail while on (SQLite or PostgreSQL trigger)."""

    def __init__(self, url: str) -> None:
        self._engine = sa.create_engine(url)
        self._sqlite = self._engine.dialect.name == "sqlite"

    def __enter__(self) -> None:
        with self._engine.begin() as conn:
            if self._sqlite:
                conn.exec_driver_sql(
                    "CREATE TRIGGER svc_fail_audit BEFORE INSERT ON tg_audit"
                    " BEGIN SELECT RAISE(ABORT, 'simulated outage'); END"
                )
            else:
                conn.exec_driver_sql(
                    "CREATE FUNCTION svc_fail_audit() RETURNS trigger LANGUAGE plpgsql"
                    " AS $$ BEGIN RAISE EXCEPTION 'simulated outage'; END $$"
                )
                conn.exec_driver_sql(
                    "CREATE TRIGGER svc_fail_audit BEFORE INSERT ON tg_audit"
                    " FOR EACH ROW EXECUTE FUNCTION svc_fail_audit()"
                )

    def __exit__(self, *exc: object) -> None:
        with self._engine.begin() as conn:
            if self._sqlite:
                conn.exec_driver_sql("DROP TRIGGER svc_fail_audit")
            else:
                conn.exec_driver_sql("DROP TRIGGER svc_fail_audit ON tg_audit")
                conn.exec_driver_sql("DROP FUNCTION svc_fail_audit()")

    def actions(self) -> list[tuple[Any, ...]]:
        """Return every stored action claim as (request_id, status, result)."""
        with self._engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT request_id, status, result FROM tg_actions").all()
        return [tuple(row) for row in rows]

    def close(self) -> None:
        """Release the connections."""
        self._engine.dispose()


@pytest.fixture
def outage(store_url: str) -> Iterator[AuditOutage]:
    """An audit outage switch on the service's store."""
    ClaimStore(store_url).close()
    switch = AuditOutage(store_url)
    yield switch
    switch.close()


@pytest.fixture
def client(store_url: str, outage: AuditOutage) -> Iterator[TestClient]:
    """The real app on `store_url`, sending an agent key of "bot"."""
    with KeyRing(store_url) as ring:
        key = ring.create("bot")[1]
    app = create_app(ServiceConfig(store_url=store_url))
    with TestClient(app, headers={"X-SafeAgent-Api-Key": key}) as test_client:
        yield test_client


def _records(store_url: str) -> list[tuple[AuditAction, str | None]]:
    with ClaimStore(store_url, must_exist=True) as store:
        return [(r.action, r.state) for r in store.audit_records(AuditQuery(agent_id="bot"))]


def test_a_claim_whose_audit_record_fails_is_not_recorded(
    client: TestClient, outage: AuditOutage, store_url: str
) -> None:
    with outage:
        refused = client.post("/claim", json=_CLAIM)
    assert refused.status_code == 503
    assert refused.json() == {"detail": "claim store unavailable; nothing was decided, retry later"}
    assert outage.actions() == []  # "nothing was decided" is true
    retry = client.post("/claim", json=_CLAIM).json()
    assert retry["status"] == "PROCEED"  # the retry the answer asked for gets the claim and its token
    settled = client.post(
        "/settle/pay-1", json={"result": {"ok": 1}}, headers={SETTLEMENT_HEADER: retry["settlement_token"]}
    )
    assert settled.json() == {"status": "committed", "request_id": "pay-1"}
    assert _records(store_url) == [(AuditAction.CLAIM, "PENDING"), (AuditAction.TRANSITION, "COMMITTED")]


def test_a_settle_whose_audit_record_fails_stores_no_result(
    client: TestClient, outage: AuditOutage, store_url: str
) -> None:
    token = client.post("/claim", json=_CLAIM).json()["settlement_token"]
    with outage:
        refused = client.post("/settle/pay-1", json={"result": {"ok": 1}}, headers={SETTLEMENT_HEADER: token})
    assert refused.status_code == 503
    assert outage.actions() == [("pay-1", "PENDING", None)]
    again = client.post("/settle/pay-1", json={"result": {"ok": 2}}, headers={SETTLEMENT_HEADER: token})
    assert again.json() == {"status": "committed", "request_id": "pay-1"}
    assert client.post("/claim", json=_CLAIM).json()["existing"] == {"ok": 2}
    assert _records(store_url) == [
        (AuditAction.CLAIM, "PENDING"),
        (AuditAction.TRANSITION, "COMMITTED"),
        (AuditAction.SKIP, "COMMITTED"),
    ]


def test_duplicates_and_conflicts_whose_audit_record_fails_change_nothing(
    client: TestClient, outage: AuditOutage, store_url: str
) -> None:
    token = client.post("/claim", json=_CLAIM).json()["settlement_token"]
    with outage:
        pending = client.post("/claim", json=_CLAIM)
        conflict = client.post("/claim", json={**_CLAIM, "action": "payment.refund"})
        # Settled again: the compare-and-set finds it PENDING, so this would be the first result.
        settle = client.post("/settle/pay-1", json={"result": {"ok": 1}}, headers={SETTLEMENT_HEADER: token})
    assert [pending.status_code, conflict.status_code, settle.status_code] == [503, 503, 503]
    assert outage.actions() == [("pay-1", "PENDING", None)]
    assert _records(store_url) == [(AuditAction.CLAIM, "PENDING")]
