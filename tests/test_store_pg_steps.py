"""PostgreSQL: a claim, a move and a fill are each one statement that is its own transaction (migration 0009).

Each step sets its transaction's `synchronous_commit` inside the statement, so these tests read
the setting where it counts: at commit, from a deferred constraint trigger on the audit log (every
step writes a record; a deferred trigger fires as the transaction commits, after the statement,
with the transaction's own settings). A claim and a move into PENDING or out of NOT_SENT must
commit with `on` even on a session set to `off`; other moves commit with `off`. They also check
that a step is one round trip that the server has prepared, that a fill's one statement is all
or nothing, and what a step whose answer was lost on the wire does: a move is not run twice
(StoreError: it may have committed), a fill run again finds its own compare-and-set spent.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa

from tests.mothers import make_intent, make_spec
from tests.test_store_lost_commit_answer import CuttingProxy
from tests.test_store_pg_fast_fill import Trips, fill, sent
from tradeguard.config import Settings
from tradeguard.domain import Claim, Side
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import LeaseLost, StoreError
from tradeguard.store import AuditQuery, ClaimStore
from tradeguard.store.engine import parse_url

pytestmark = pytest.mark.postgres

_NOTE_COMMITS = [
    "CREATE TABLE commit_sync (id bigserial PRIMARY KEY, setting text NOT NULL)",
    """CREATE FUNCTION note_commit_sync() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO commit_sync (setting) VALUES (current_setting('synchronous_commit'));
        RETURN NULL;
    END $$""",
    "CREATE CONSTRAINT TRIGGER note_commit_sync AFTER INSERT ON tg_audit"
    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION note_commit_sync()",
]


class Commits:
    """Reads the `synchronous_commit` each audited transaction committed with, since the last read."""

    def __init__(self, url: str) -> None:
        self._engine = sa.create_engine(parse_url(url))
        with self._engine.begin() as conn:
            for statement in _NOTE_COMMITS:
                conn.execute(sa.text(statement))
        self._seen = 0

    def since(self) -> set[str]:
        with self._engine.begin() as conn:
            rows = conn.execute(
                sa.text("SELECT id, setting FROM commit_sync WHERE id > :n ORDER BY id"), {"n": self._seen}
            ).all()
        if rows:
            self._seen = rows[-1][0]
        return {setting for _id, setting in rows}

    def close(self) -> None:
        self._engine.dispose()


@pytest.fixture
def commits(pg_url: str) -> Iterator[Commits]:
    ClaimStore(pg_url).close()  # the schema first
    noted = Commits(pg_url)
    yield noted
    noted.close()


def _session_says_off(store: ClaimStore) -> None:
    # As another client of a pooler in transaction mode might leave the session.
    pool = store._pool
    conn = pool.checkout()
    conn.cursor.execute("SET synchronous_commit = off")
    pool.release(conn)


def test_each_step_commits_with_its_own_durability_whatever_the_session_says(
    pg_url: str, commits: Commits
) -> None:
    with ClaimStore(pg_url) as store:
        _session_says_off(store)
        claim = store.claim(make_intent("e1"), make_spec(5), owner="w").claim
        assert commits.since() == {"on"}  # a claim precedes a send (G5)
        submitted = store.transition(claim, ClaimState.SUBMITTED, reason="accepted", broker_order_id="b-1")
        assert commits.since() == {"off"}
        fill(store, submitted, 5)  # learns the open turn (the two-round-trip path)
        assert commits.since() == {"off"}
        out = sent(store, "x1", Side.SELL, 5)
        assert commits.since() == {"on", "off"}  # the exit's claim, then its SUBMITTED
        fill(store, out, 5)  # one statement: tg_fill_step2
        assert commits.since() == {"off"}
        fresh = store.claim(make_intent("e2"), make_spec(1), owner="w").claim
        lost = store.transition(fresh, ClaimState.NOT_SENT, reason="probed")
        commits.since()
        again = store.transition(lost, ClaimState.PENDING, reason="tried again", owner="w")
        assert commits.since() == {"on"}  # into PENDING and out of NOT_SENT: durable
        store.transition(again, ClaimState.SUBMITTED, reason="accepted", broker_order_id="b-2")
        assert commits.since() == {"off"}


def test_a_store_that_fsyncs_every_commit_makes_every_step_durable(pg_url: str, commits: Commits) -> None:
    with ClaimStore(pg_url, fsync_every_commit=True) as store:
        _session_says_off(store)
        first = fill(store, sent(store, "e1", Side.BUY, 2), 2)
        fill(store, sent(store, "x1", Side.SELL, 2), 2)  # the fill in one statement
        assert first.state is ClaimState.FILLED
        assert commits.since() == {"on"}


def test_a_step_is_one_round_trip_that_the_server_has_prepared(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ClaimStore(pg_url) as store:
        fill(store, sent(store, "warm-0", Side.BUY, 1), 1)
        for i in range(6):  # past psycopg's prepare_threshold (5) on the one pooled connection
            fill(store, sent(store, f"warm-x{i}", Side.SELL, 1), 1)
            fill(store, sent(store, f"warm-e{i}", Side.BUY, 1), 1)
        trips = Trips(monkeypatch)
        claim = store.claim(make_intent("timed", side=Side.SELL), make_spec(1), owner="w").claim
        submitted = store.transition(claim, ClaimState.SUBMITTED, reason="accepted", broker_order_id="b")
        fill(store, submitted, 1)
        assert trips.count == 3
        pool = store._pool
        conn = pool.checkout()
        try:
            conn.cursor.execute("SELECT statement FROM pg_prepared_statements")
            prepared = " ".join(str(statement) for (statement,) in conn.cursor.fetchall())
        finally:
            pool.release(conn)
        for function in ("tg_claim2(", "tg_move_step2(", "tg_fill_step2("):
            assert function in prepared


def test_a_fill_statement_that_fails_after_its_compare_and_set_writes_nothing(pg_url: str) -> None:
    with ClaimStore(pg_url) as store:
        first = fill(store, sent(store, "e1", Side.BUY, 3), 3)
        closed = fill(store, sent(store, "x1", Side.SELL, 3), 3)
        assert first.turn_id is not None and closed.state is ClaimState.FILLED
        claim = sent(store, "e2", Side.BUY, 2)
        before = list(store.audit_records(AuditQuery()))
        # The turn id drawn ahead collides with an existing turn: the statement fails at its
        # ledger insert, after the guess checked out and the compare-and-set passed.
        store._guesses._ids[:] = [first.turn_id]
        with pytest.raises(StoreError):
            fill(store, claim, 2)
        assert store.get(claim.key) == claim  # still SUBMITTED, unfilled
        assert store.position("bot", "QQQ").is_flat
        assert list(store.audit_records(AuditQuery())) == before
        assert fill(store, claim, 2).state is ClaimState.FILLED  # nothing half-done blocks it
        assert store.position("bot", "QQQ").qty == 2


@pytest.fixture
def proxy_for(pg_url: str) -> Iterator[list[CuttingProxy]]:
    made: list[CuttingProxy] = []
    yield made
    for proxy in made:
        proxy.close()


def _through(pg_url: str, trigger: bytes, made: list[CuttingProxy]) -> tuple[str, CuttingProxy]:
    parts = urlsplit(pg_url)
    proxy = CuttingProxy(parts.hostname or "127.0.0.1", parts.port or 5432, trigger)
    made.append(proxy)
    netloc = parts.netloc.replace(f":{parts.port}", f":{proxy.port}") if parts.port else parts.netloc
    return urlunsplit(parts._replace(netloc=netloc)), proxy


def _records(store: ClaimStore, claim: Claim, state: str) -> int:
    records = store.audit_records(AuditQuery(client_order_id=claim.client_order_id))
    return [r.state for r in records].count(state)


def test_a_move_whose_answer_was_lost_is_not_run_again(pg_url: str, proxy_for: list[CuttingProxy]) -> None:
    url, proxy = _through(pg_url, b"tg_move_step2(", proxy_for)
    with ClaimStore(url) as store:
        claim = store.claim(make_intent("e1"), make_spec(1), owner="w").claim
        proxy.armed = True
        with pytest.raises(StoreError):
            store.transition(claim, ClaimState.SUBMITTED, reason="accepted", broker_order_id="b-1")
        assert proxy.fired
        # The server committed it once; the store did not send it again on a fresh connection.
        assert store.get(claim.key).state is ClaimState.SUBMITTED
        assert _records(store, claim, "SUBMITTED") == 1


def test_a_fill_whose_answer_was_lost_is_booked_once(pg_url: str, proxy_for: list[CuttingProxy]) -> None:
    url, proxy = _through(pg_url, b"tg_fill_step2(", proxy_for)
    with ClaimStore(url) as store:
        fill(store, sent(store, "e1", Side.BUY, 4), 4)  # learns the turn: the next fill is one statement
        claim = sent(store, "x1", Side.SELL, 4)
        proxy.armed = True
        with pytest.raises(LeaseLost):
            # Run again on a fresh connection, the statement finds its own compare-and-set spent
            # (TGC01); the two-round-trip path then reports the claim moved.
            fill(store, claim, 4)
        assert proxy.fired
        assert store.get(claim.key).state is ClaimState.FILLED
        assert store.position("bot", "QQQ").is_flat  # 4 - 4, booked once
        assert _records(store, claim, "FILLED") == 1
        assert store.position("bot", "QQQ").qty == Decimal(0)


def test_a_store_told_not_to_prepare_runs_every_step_unprepared(pg_url: str) -> None:
    # For a pooler in transaction mode that cannot route prepared statements.
    settings = Settings.from_env({"TRADEGUARD_PG_PREPARE_AFTER": "0"})
    with ClaimStore(pg_url, settings=settings) as store:
        fill(store, sent(store, "e0", Side.BUY, 1), 1)
        for i in range(7):
            fill(store, sent(store, f"x{i}", Side.SELL, 1), 1)
            fill(store, sent(store, f"in-{i}", Side.BUY, 1), 1)
        assert store.position("bot", "QQQ").qty == 1
        pool = store._pool
        conn = pool.checkout()
        try:
            conn.cursor.execute("SELECT count(*) FROM pg_prepared_statements")
            assert conn.cursor.fetchall() == [(0,)]
        finally:
            pool.release(conn)


def test_a_turn_id_used_by_a_fill_whose_answer_was_lost_is_not_used_again(
    pg_url: str, proxy_for: list[CuttingProxy]
) -> None:
    url, proxy = _through(pg_url, b"tg_fill_step2(", proxy_for)
    with ClaimStore(url) as store:
        fill(store, sent(store, "e1", Side.BUY, 4), 4)
        fill(store, sent(store, "x1", Side.SELL, 4), 4)  # flat; the store knows it
        claim = sent(store, "e2", Side.BUY, 3)
        spare = store._guesses._ids[-1]  # the id drawn ahead that the next opening fill takes
        proxy.armed = True
        with pytest.raises(LeaseLost):
            fill(store, claim, 3)  # opens a turn with the id drawn ahead; committed, answer lost
        assert proxy.fired and store.position("bot", "QQQ").qty == 3
        assert store.position("bot", "QQQ").turn_id == spare
        assert spare not in store._guesses._ids  # used by the commit whose answer was lost
        fill(store, sent(store, "x2", Side.SELL, 3), 3)
        reopened = fill(store, sent(store, "e3", Side.BUY, 2), 2)  # opens a turn: a fresh id
        assert store.position("bot", "QQQ").qty == 2
        assert reopened.turn_id == store.position("bot", "QQQ").turn_id
