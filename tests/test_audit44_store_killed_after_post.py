"""Audit 44: the PostgreSQL session of the store is killed between the POST and the state write (G2/G5).

Another session ends the store's connection with `pg_terminate_backend` right after the broker
accepted the order (`after_post`): idle, the dead connection is found out and replaced before the
write (the answer is recorded as if nothing happened); killed while the write waits (a row lock
another session holds), every time it is tried, the bot gets `UnrecordedOrder` (an
`OutcomeUnknown`: "may be at the broker"), never "nothing was sent". Either way the order went out
once: a retry by the same bot, another process and a reconcile pass all find it by its
client_order_id and adopt it, and none sends it again. Real parts: the real PostgreSQL server
(a schema of this test's own; the kills come from another session), the paper server over HTTP
with the real alpaca-py client.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests import audit44_workers as workers
from tests.conftest import pg_base_url
from tests.gateway_kit import ServedRecording, broker_qty
from tradeguard import crashpoints
from tradeguard.clock import ManualClock
from tradeguard.domain import Side
from tradeguard.domain.intents import Intent, Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import OutcomeUnknown, UnrecordedOrder
from tradeguard.gateway import OrderGateway
from tradeguard.store import ClaimStore
from tradeguard.testing import paper_server

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

VICTIM = "audit44_victim"


@pytest.fixture
def schema_url() -> Iterator[tuple[str, str]]:
    """(admin URL, store URL): a fresh `audit44_` schema; the store's sessions are named VICTIM."""
    base = pg_base_url()
    if base is None:
        pytest.skip("PostgreSQL tests need TRADEGUARD_TEST_PG_URL")
    schema = f"audit44_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    admin_url = f"{base}{sep}options=-csearch_path%3D{schema}"
    yield admin_url, f"{admin_url}&application_name={VICTIM}_{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _victims(conn: sa.Connection, name: str, waiting: bool) -> list[int]:
    sql = "SELECT pid FROM pg_stat_activity WHERE application_name = :name AND pid <> pg_backend_pid()"
    if waiting:
        sql += " AND wait_event_type = 'Lock'"
    return [int(r[0]) for r in conn.execute(sa.text(sql), {"name": name})]


def _kill(conn: sa.Connection, pids: list[int]) -> None:
    for pid in pids:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def _gateway(store: ClaimStore, paper_url: str, clock: ManualClock | None = None) -> OrderGateway:
    return OrderGateway(
        workers.broker(paper_url), store, agent_id=workers.AGENT, settings=store.settings,
        clock=clock, reconcile_on_start=False,
    )  # fmt: skip


def _resolved_once(admin_url: str, store_url: str, paper: ServedRecording, paper_url: str, coid: str) -> None:
    """Another process's retry, then a reconcile pass: the order is adopted, never sent again."""
    key = Intent(workers.AGENT, Kind.ENTRY, "TQQQ", Side.BUY, "d1").key
    later = ManualClock(datetime.now(UTC) + timedelta(minutes=5))
    with ClaimStore(admin_url, clock=later) as store:
        other = OrderGateway(
            workers.broker(paper_url), store, agent_id=workers.AGENT, clock=later, reconcile_on_start=False
        )
        report = other.reconcile()
        assert report.aborted is None, report
        retry = other.enter("TQQQ", qty=10, intent="d1")
        assert retry.outcome.value == "duplicate", retry
        claim = store.get(key)
        assert claim is not None and claim.state is ClaimState.FILLED and claim.filled_qty == 10, claim
        assert store.position(workers.AGENT, "TQQQ").qty == 10
    assert paper.recording.submitted(coid) == 1
    assert broker_qty(paper, "TQQQ") == 10


def test_a_store_session_killed_while_idle_after_the_post_is_replaced_and_the_answer_recorded(
    schema_url: tuple[str, str],
) -> None:
    admin_url, store_url = schema_url
    name = store_url.rsplit("application_name=", 1)[1]
    engine = sa.create_engine(admin_url)

    def kill_idle(point: str) -> None:
        if point == "after_post":
            with engine.connect() as conn:
                pids = _victims(conn, name, waiting=False)
                assert pids, "the store holds no session to kill"
                _kill(conn, pids)

    with paper_server(ServedRecording()) as server:
        paper = server.broker
        assert isinstance(paper, ServedRecording)
        try:
            with ClaimStore(store_url) as store:
                gateway = _gateway(store, server.url)
                crashpoints.set_hook(kill_idle)
                try:
                    result = gateway.enter("TQQQ", qty=10, intent="d1")
                finally:
                    crashpoints.set_hook(None)
                assert result.outcome.value == "submitted", result
                assert result.claim is not None and result.claim.state is ClaimState.FILLED
                coid = result.claim.client_order_id
            _resolved_once(admin_url, store_url, paper, server.url, coid)
        finally:
            engine.dispose()


@pytest.mark.parametrize("same_bot_retries", [True, False])
def test_a_store_session_killed_during_the_write_after_the_post_is_a_clear_unrecorded_order(
    schema_url: tuple[str, str], same_bot_retries: bool
) -> None:
    admin_url, store_url = schema_url
    name = store_url.rsplit("application_name=", 1)[1]
    engine = sa.create_engine(admin_url)
    done = threading.Event()
    kills: list[int] = []

    def killer() -> None:
        # Ends every store session that waits for the claim's row lock, until the write gave up.
        with engine.connect() as conn:
            while not done.is_set():
                pids = _victims(conn, name, waiting=True)
                kills.extend(pids)
                _kill(conn, pids)
                conn.commit()
                done.wait(0.01)

    holder = engine.connect()
    thread = threading.Thread(target=killer, daemon=True)

    def block_then_kill(point: str) -> None:
        if point == "after_post":
            # Another session holds the claim's row: the write that records the answer waits for it.
            holder.execute(sa.text("SELECT claim_key FROM tg_claims FOR UPDATE"))
            thread.start()

    with paper_server(ServedRecording()) as server:
        paper = server.broker
        assert isinstance(paper, ServedRecording)
        try:
            with ClaimStore(store_url) as store:
                gateway = _gateway(store, server.url)
                crashpoints.set_hook(block_then_kill)
                try:
                    with pytest.raises(UnrecordedOrder) as raised:
                        gateway.enter("TQQQ", qty=10, intent="d1")
                finally:
                    crashpoints.set_hook(None)
                    done.set()
                    thread.join(30)
                    holder.rollback()
                    holder.close()
                assert isinstance(raised.value, OutcomeUnknown)
                assert "may be at the broker" in str(raised.value)
                assert kills, "no store session was killed"
                [order] = paper.orders()
                coid = order.client_order_id
                assert paper.recording.submitted(coid) == 1
                pending = store.get(Intent(workers.AGENT, Kind.ENTRY, "TQQQ", Side.BUY, "d1").key)
                assert pending is not None and pending.state is ClaimState.PENDING, pending
                if same_bot_retries:
                    # The same bot calls again once the store works: found by its id, not sent again.
                    retry = gateway.enter("TQQQ", qty=10, intent="d1")
                    assert retry.outcome.value == "duplicate", retry
                    assert retry.claim is not None and retry.claim.state is ClaimState.FILLED, retry
                else:
                    # Another process, before the lease lapses: the claim is its owner's to resolve.
                    with ClaimStore(admin_url) as other_store:
                        other = _gateway(other_store, server.url).enter("TQQQ", qty=10, intent="d1")
                    assert other.outcome.value == "duplicate", other
                    assert paper.recording.submitted(coid) == 1
            _resolved_once(admin_url, store_url, paper, server.url, coid)
        finally:
            done.set()
            engine.dispose()
