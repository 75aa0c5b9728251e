"""PostgreSQL order-path connections: literals any session reads alike; dead idle connections replaced.

The store binds batched parameters into the statement text itself (`store/connections.py`), so
the literals must mean the same with `standard_conforming_strings` on or off (a pooler in
transaction mode hands out sessions whose settings the store did not make). A pooled connection
whose server session ended while it sat idle must be found out before a transaction is sent on
it: a batch that commits is never re-run, so finding it out afterwards costs an unrecorded order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tests.mothers import make_intent, make_spec
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.store import ClaimStore
from tradeguard.store.audit import AuditQuery
from tradeguard.store.engine import parse_url

AWKWARD = "it's a \\ back'slash \\' \\\\'); -- ünï ☃ \"q\" ?%s E'x' $$"


@pytest.fixture
def app_name() -> str:
    """A unique application_name, so the test can find the store's own server sessions."""
    return f"tg_victim_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def admin(pg_url: str) -> Iterator[sa.Engine]:
    """A separate connection to the same server, to end the store's sessions from outside."""
    engine = sa.create_engine(parse_url(pg_url))
    yield engine
    engine.dispose()


def _terminate(admin: sa.Engine, app_name: str) -> int:
    # The 5 s timeout makes pg_terminate_backend wait until each session has really ended.
    with admin.connect() as conn:
        ended = conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = :a"
            ),
            {"a": app_name},
        ).all()
        conn.commit()
    return sum(1 for (ok,) in ended if ok)


def test_text_round_trips_with_standard_conforming_strings_off(pg_url: str) -> None:
    url = pg_url.replace("options=", "options=-cstandard_conforming_strings%3Doff%20", 1)
    with ClaimStore(url) as store:
        with store._engine.connect() as conn:  # the setting really is off in the store's sessions
            assert conn.exec_driver_sql("SHOW standard_conforming_strings").scalar() == "off"
        claim = store.claim(make_intent(AWKWARD), make_spec(), owner="w", reason=AWKWARD).claim
        sent = store.transition(claim, ClaimState.SUBMITTED, reason=AWKWARD, broker_order_id=AWKWARD[:60])
        filled = store.transition(
            sent, ClaimState.FILLED, reason=AWKWARD, filled_qty=Decimal(1), filled_avg_price=Decimal(2),
            detail={"note": AWKWARD},
        )  # fmt: skip
        assert store.get(filled.key) == filled
        assert (filled.reason, filled.broker_order_id) == (AWKWARD, AWKWARD[:60])
        assert store.claim(make_intent(AWKWARD), make_spec(), owner="w").claim == filled
        records = list(store.audit_records(AuditQuery(client_order_id=filled.client_order_id)))
        assert [r.reason for r in records[1:]] == [AWKWARD, AWKWARD]
        assert records[-1].detail["note"] == AWKWARD


def test_a_terminated_idle_connection_is_replaced_before_a_committing_step(
    pg_url: str, admin: sa.Engine, app_name: str
) -> None:
    with ClaimStore(f"{pg_url}&application_name={app_name}") as store:
        claim = store.claim(make_intent("victim"), make_spec(), owner="w").claim
        assert _terminate(admin, app_name) >= 1  # the pooled connection's server session is gone
        # SUBMITTED is one batch that commits: it could not be re-run had it been sent on the dead one.
        sent = store.transition(
            claim, ClaimState.SUBMITTED, reason="after the restart", broker_order_id="b-1"
        )
        assert store.get(claim.key) == sent
        assert sent.state is ClaimState.SUBMITTED
        assert _terminate(admin, app_name) >= 1
        again = store.claim(make_intent("victim"), make_spec(), owner="w")
        assert again.claim == sent and not again.created


def test_a_durable_transaction_commits_synchronously_whatever_the_session_says(pg_url: str) -> None:
    with ClaimStore(pg_url) as store:
        pool = store._pool
        conn = pool.checkout()
        conn.cursor.execute("SET synchronous_commit = off")  # as another client of a pooler might
        pool.release(conn)
        with pool.write("probing", durable=True) as tx:
            assert tx.conn is conn
            assert tx.one("SHOW synchronous_commit") == ("on",)
        with pool.write("probing", durable=False) as tx:
            assert tx.one("SHOW synchronous_commit") == ("off",)
        with pool.write("probing", durable=True) as tx:
            assert tx.one("SHOW synchronous_commit") == ("on",)
