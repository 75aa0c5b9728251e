"""Migration 0005 (the audit log's time index dropped) on a store in use, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic import command

from tests.mothers import make_intent, make_spec
from tradeguard.domain import AuditAction
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.store import ClaimStore
from tradeguard.store.audit import AuditQuery
from tradeguard.store.engine import _alembic_config, parse_url
from tradeguard.store.schema import SCHEMA_HEAD


def _audit_indexes(url: str) -> set[str]:
    engine = sa.create_engine(parse_url(url))
    try:
        with engine.connect() as conn:
            return {str(i["name"]) for i in sa.inspect(conn).get_indexes("tg_audit")}
    finally:
        engine.dispose()


def test_a_store_at_0004_upgrades_and_its_audit_log_reads_by_time(store_url: str) -> None:
    with ClaimStore(store_url) as store:
        claim = store.claim(make_intent("old"), make_spec(), owner="w").claim
        store.transition(claim, ClaimState.SUBMITTED, reason="sent")
    engine = sa.create_engine(parse_url(store_url))
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
    engine.dispose()
    assert _audit_indexes(store_url) == {"ix_tg_audit_at"}
    with ClaimStore(store_url) as store:  # opening upgrades to the head
        assert _audit_indexes(store_url) == set()
        later = store.claim(make_intent("new"), make_spec(), owner="w").claim
        records = list(store.audit_records(AuditQuery(since=claim.created_at, until=later.created_at)))
        assert [r.action for r in records] == [AuditAction.CLAIM, AuditAction.TRANSITION]
        assert store.audit_count(AuditQuery(since=later.created_at)) == 1
        assert store.audit_count(AuditQuery(until=claim.created_at - timedelta(seconds=1))) == 0
    engine = sa.create_engine(parse_url(store_url))
    with engine.connect() as conn:
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    assert version == SCHEMA_HEAD
