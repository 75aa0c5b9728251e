"""PostgreSQL: a step's timestamps and rows in binary (store/pg_step.py); the pool's pid after fork.

Once a step statement is prepared, the store sends its `timestamptz` parameters in binary and
reads every step's rows in binary (less CPU on both sides). What must hold: the instants stored
and read back are the ones given, to the microsecond, before the statement is prepared and
after (including instants before 2000, PostgreSQL's binary epoch, and ones given in another
offset), and a timestamp goes in binary only where the server reads a `timestamptz`: anywhere
else, or a value of another type where it reads one, goes as text as before.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.mothers import make_intent, make_spec
from tests.test_store_pg_fast_fill import fill
from tradeguard.clock import ManualClock
from tradeguard.domain import Side
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.store import ClaimStore
from tradeguard.store.connections import process_id
from tradeguard.store.pg_step import StepConn

pytestmark = pytest.mark.postgres

# Past the prepare threshold (5) of every step: the first runs send text, the later ones binary.
RUNS = 8


def _stored_times(store: ClaimStore, key: str) -> tuple[datetime, datetime, datetime]:
    pool = store._pool
    conn = pool.checkout()
    try:
        conn.cursor.execute(
            "SELECT created_at, updated_at, lease_expires_at FROM tg_claims WHERE claim_key = %s", (key,)
        )
        (row,) = conn.cursor.fetchall()
    finally:
        pool.release(conn)
    return row[0], row[1], row[2]


@pytest.mark.parametrize(
    "start",
    [
        datetime(2026, 5, 21, 13, 30, 0, 999_999, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),  # before the binary epoch: negative
        datetime(1970, 1, 1, 0, 0, 0, 123_457, tzinfo=UTC),
    ],
)
def test_the_instants_of_claims_moves_and_fills_are_stored_and_read_to_the_microsecond(
    pg_url: str, start: datetime
) -> None:
    clock = ManualClock(start)
    with ClaimStore(pg_url, clock=clock) as store:
        for i in range(RUNS):
            clock.advance(1.000_001)
            at = clock.now()
            outcome = store.claim(make_intent(f"e{i}"), make_spec(1), owner="w")
            claim = outcome.claim
            assert outcome.created and claim.created_at == claim.updated_at == at
            assert _stored_times(store, claim.key) == (at, at, claim.lease_expires_at)
            again = store.claim(make_intent(f"e{i}"), make_spec(1), owner="w")
            assert not again.created and again.claim == claim == store.get(claim.key)
            clock.advance(0.000_003)
            moved = store.transition(claim, ClaimState.UNKNOWN, reason="no answer")
            assert moved.updated_at == clock.now() and moved.lease_expires_at == claim.lease_expires_at
            assert moved == store.get(claim.key)
            clock.advance(0.5)
            resent = store.transition(moved, ClaimState.PENDING, reason="again", owner="w2")
            assert resent.updated_at == clock.now() and resent.owner == "w2"
            assert resent.lease_expires_at > claim.lease_expires_at
            assert _stored_times(store, claim.key) == (at, clock.now(), resent.lease_expires_at)
            assert resent == store.get(claim.key)
            sent = store.transition(resent, ClaimState.SUBMITTED, reason="accepted", broker_order_id=f"c{i}")
            clock.advance(0.25)
            filled = fill(store, sent, 1)
            assert filled.updated_at == clock.now() and filled == store.get(claim.key)
            # Flat again, so every entry opens a turn and the next one's fill is a fast fill too.
            out = store.claim(make_intent(f"x{i}", kind=Kind.EXIT, side=Side.SELL), make_spec(1), owner="w")
            out_sent = store.transition(out.claim, ClaimState.SUBMITTED, reason="sent", broker_order_id="x")
            assert fill(store, out_sent, 1).filled_qty == Decimal(1)
        assert store.position("bot", "QQQ").is_flat


@pytest.fixture
def step_conn(pg_url: str) -> Iterator[tuple[psycopg.Connection[Any], StepConn]]:
    url = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn, StepConn(conn)


def test_a_timestamp_goes_in_binary_only_where_the_server_reads_a_timestamptz(
    step_conn: tuple[psycopg.Connection[Any], StepConn],
) -> None:
    conn, steps = step_conn
    # The first parameter is read as timestamptz, the second as text, the third as timestamp
    # (no zone): binary bytes there would be read as a text or as another type.
    sql = "SELECT ?::timestamptz, ?::text, ?::timestamp"
    ist = timezone(timedelta(hours=5, minutes=30))
    for i in range(RUNS):
        at = datetime(1999, 12, 31, 23, 59, 59, i, tzinfo=ist)
        with conn.cursor() as cur:
            ((stamp, text, naive),) = steps.call(cur, sql, (at, at, at))
        assert stamp == at
        assert text == at.isoformat(" ") or datetime.fromisoformat(text) == at
        # Text to `timestamp` drops the offset, as it always did.
        assert naive == at.replace(tzinfo=None)
    assert steps._formats[sql] == [1, 0, 0]  # prepared, and only the timestamptz is binary


def test_a_text_where_the_server_reads_a_timestamptz_is_sent_as_text(
    step_conn: tuple[psycopg.Connection[Any], StepConn],
) -> None:
    conn, steps = step_conn
    sql = "SELECT ?::timestamptz + interval '1 microsecond', ?::int"
    at = datetime(2026, 5, 21, 13, 30, 0, 5, tzinfo=UTC)
    for i in range(RUNS):
        with conn.cursor() as cur:
            assert steps.call(cur, sql, (at, i)) == [(at + timedelta(microseconds=1), i)]
    assert steps._formats[sql] == [1, 0]
    # The same statement with a text where the timestamp was: the cursor sends it (as text).
    with conn.cursor() as cur:
        rows = steps.call(cur, sql, ("2026-05-21 13:30:00.000005+00", 9))
    assert rows == [(at + timedelta(microseconds=1), 9)]
    # And with NULL there: NULL, whatever the format.
    with conn.cursor() as cur:
        assert steps.call(cur, sql, (None, 10)) == [(None, 10)]


def test_a_forked_child_knows_its_own_pid_and_never_uses_its_parents_connections(pg_url: str) -> None:
    # The pool tells a child from its parent by `process_id()`, an at-fork hook's copy of
    # os.getpid() (a system call saved on every checkout): the child must see its own.
    with ClaimStore(pg_url) as store:
        store.claim(make_intent("parent"), make_spec(1), owner="w")
        parent_conn = store._pool.checkout()
        parent_backend = parent_conn.dbapi.info.backend_pid
        store._pool.release(parent_conn)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                conn = store._pool.checkout()
                mine = conn.dbapi.info.backend_pid
                store._pool.release(conn)
                claimed = store.claim(make_intent("child"), make_spec(1), owner="w").created
                code = 0 if process_id() == os.getpid() and mine != parent_backend and claimed else 2
            finally:
                os.write(write, str(code).encode())
                os._exit(0)
        os.close(write)
        answer = os.read(read, 8)
        os.waitpid(pid, 0)
        assert answer == b"0"
        assert process_id() == os.getpid()
        # The parent's connection is still its own and in step: it claims on.
        assert store.claim(make_intent("parent-again"), make_spec(1), owner="w").created
        assert store.get(make_intent("child").key) is not None
