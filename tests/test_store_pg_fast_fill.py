"""PostgreSQL: a fill in one round trip, from the open turn the store's last fill left (migration 0007).

The fast path writes the ledger from a guess; these tests make the guess wrong in every way
another process can (a fill of the same agent and symbol through another store, a claim moved by
another worker, a child process after fork) and check that the ledger, the claim and the audit
log end exactly as the two-round-trip path leaves them, on the real server. The same random
sequences of fills are run on a SQLite file (which never guesses) and compared record for record.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.conftest import pg_base_url
from tests.mothers import make_intent, make_spec
from tradeguard.domain import Claim, Side
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import LeaseLost
from tradeguard.store import AuditQuery, ClaimStore, connections

pytestmark = pytest.mark.postgres


class Trips:
    """Counts the statement batches (round trips) the store sends, while installed.

    A batch goes through a psycopg cursor, or (a step: claim, move, fill) to libpq directly
    (`connections._pg_step`, which counts once however it is sent).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = psycopg.Cursor.execute
        original_step = connections._pg_step

        def counted(cur: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(cur, *args, **kwargs)

        def counted_step(*args: Any) -> Any:
            before = self.count
            try:
                return original_step(*args)
            finally:
                self.count = before + 1  # a step that fell back to the cursor is still one trip

        monkeypatch.setattr(psycopg.Cursor, "execute", counted)
        monkeypatch.setattr(connections, "_pg_step", counted_step)


@pytest.fixture
def stores(pg_url: str) -> Iterator[tuple[ClaimStore, ClaimStore]]:
    """Two stores on one PostgreSQL schema: two processes of one agent, each with its own guesses."""
    with ClaimStore(pg_url) as one, ClaimStore(pg_url) as two:
        yield one, two


def sent(store: ClaimStore, name: str, side: Side, qty: int, *, symbol: str = "QQQ") -> Claim:
    kind = Kind.ENTRY if side is Side.BUY else Kind.EXIT
    claim = store.claim(
        make_intent(name, kind=kind, side=side, symbol=symbol), make_spec(qty), owner="w"
    ).claim
    return store.transition(claim, ClaimState.SUBMITTED, reason="accepted", broker_order_id=f"b-{name}")


def fill(store: ClaimStore, claim: Claim, qty: int) -> Claim:
    return store.transition(claim, ClaimState.FILLED, reason="filled", filled_qty=Decimal(qty))


def ledger_notes(store: ClaimStore) -> list[str]:
    return [r.reason for r in store.audit_records(AuditQuery(actions=("ledger",)))]


def test_a_fill_whose_turn_the_store_knows_takes_one_round_trip(
    stores: tuple[ClaimStore, ClaimStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = stores
    first = fill(store, sent(store, "in-1", Side.BUY, 5), 5)  # learns the turn (two round trips)
    claim = sent(store, "out-1", Side.SELL, 5)
    trips = Trips(monkeypatch)
    closed = fill(store, claim, 5)
    assert trips.count == 1
    reopened = fill(store, sent(store, "in-2", Side.BUY, 3), 3)  # a turn opened from a kept id
    assert store.position("bot", "QQQ").qty == 3 and reopened.turn_id == store.position("bot", "QQQ").turn_id
    assert closed.state is ClaimState.FILLED and reopened.turn_id not in (None, first.turn_id)


def test_a_turn_moved_by_another_process_costs_a_round_trip_not_a_wrong_ledger(
    stores: tuple[ClaimStore, ClaimStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = stores
    fill(one, sent(one, "in-1", Side.BUY, 5), 5)  # `one` guesses: open turn at 5
    fill(two, sent(two, "in-2", Side.BUY, 4), 4)  # the turn is at 9 now; `one` does not know
    claim = sent(one, "out-1", Side.SELL, 9)
    trips = Trips(monkeypatch)
    fill(one, claim, 9)
    assert trips.count == 3  # the guessed batch, aborted; then the two-round-trip path
    assert one.position("bot", "QQQ").is_flat  # 5 + 4 - 9, not 5 - 9
    turn = one.latest_turn_id("bot", "QQQ")
    assert ledger_notes(one) == [
        f"turn {turn} opened: entry {claim_coid(one, 'in-1')}",
        f"turn {turn} closed: flat after exit {claim.client_order_id}",
    ]
    again = sent(one, "in-3", Side.BUY, 2)
    trips.count = 0
    fill(one, again, 2)  # learned again from the slow path
    assert trips.count == 1 and one.position("bot", "QQQ").qty == 2


def claim_coid(store: ClaimStore, name: str) -> str:
    [claim] = [c for c in store.list_claims(agent_id="bot") if c.intent == name]
    return claim.client_order_id


def test_a_claim_moved_by_another_worker_is_lease_lost_and_books_nothing(
    stores: tuple[ClaimStore, ClaimStore],
) -> None:
    one, two = stores
    fill(one, sent(one, "in-1", Side.BUY, 5), 5)
    claim = sent(one, "out-1", Side.SELL, 5)
    fill(two, claim, 5)  # another worker adopted the fill first (the turn is closed, flat)
    with pytest.raises(LeaseLost):
        fill(one, claim, 5)  # `one` still guesses the turn at 5 and the claim SUBMITTED
    assert one.position("bot", "QQQ").is_flat  # booked once
    assert [r.state for r in one.audit_records(AuditQuery(client_order_id=claim.client_order_id))].count(
        "FILLED"
    ) == 1


def test_a_fill_crossing_zero_in_one_round_trip_closes_and_opens_the_remainder(
    stores: tuple[ClaimStore, ClaimStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = stores
    long = fill(store, sent(store, "in-1", Side.BUY, 5), 5)
    claim = sent(store, "flip", Side.SELL, 8)
    trips = Trips(monkeypatch)
    flipped = fill(store, claim, 8)
    assert trips.count == 1
    held = store.position("bot", "QQQ")
    assert held.qty == -3 and held.turn_id == flipped.turn_id and held.turn_id != long.turn_id
    assert [n.split(":")[0] for n in ledger_notes(store)] == [
        f"turn {long.turn_id} opened", f"turn {long.turn_id} closed", f"turn {held.turn_id} opened",
    ]  # fmt: skip


def test_a_child_process_never_uses_the_turn_ids_its_parent_drew(pg_url: str) -> None:
    with ClaimStore(pg_url) as store:
        fill(store, sent(store, "in-1", Side.BUY, 5), 5)
        fill(store, sent(store, "out-1", Side.SELL, 5), 5)  # draws an id ahead
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: a fill that opens a turn, from its own ids
            try:
                opened = fill(store, sent(store, "child-in", Side.BUY, 1), 1)
                os.write(write, str(opened.turn_id).encode())
            finally:
                os._exit(0)
        os.close(write)
        child_turn = int(os.read(read, 64) or b"0")
        os.waitpid(pid, 0)
        child = store.position("bot", "QQQ")
        assert child_turn and child.turn_id == child_turn and child.qty == 1
        # The parent still guesses flat: the check fails and the fill adds to the child's turn.
        parent = fill(store, sent(store, "parent-in", Side.BUY, 2), 2)
        assert parent.turn_id == child_turn
        assert store.position("bot", "QQQ").qty == 3


FILLS = st.lists(
    st.tuples(st.sampled_from([0, 1]), st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 7)),
    min_size=1,
    max_size=12,
)


@pytest.mark.skipif(pg_base_url() is None, reason="PostgreSQL tests need TRADEGUARD_TEST_PG_URL")
@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fills=FILLS)
def test_fills_through_two_processes_book_what_the_two_round_trip_path_books(
    fills: list[tuple[int, Side, int]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Any interleaving of fills through two stores of one agent ends with the ledger and its
    # audit notes of a SQLite store (no guesses) given the same fills, turn ids aside.
    import sqlalchemy as sa

    base = pg_base_url()
    assert base is not None
    schema = f"tg_test_ff_{os.getpid()}_{abs(hash(tuple(fills))) % 10**8}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE; CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options=-csearch_path%3D{schema}"
    sqlite = f"sqlite:///{tmp_path_factory.mktemp('ff') / 'claims.db'}"
    try:
        with ClaimStore(url) as one, ClaimStore(url) as two, ClaimStore(sqlite) as plain:
            for i, (which, side, qty) in enumerate(fills):
                fill((one, two)[which], sent((one, two)[which], f"f{i}", side, qty), qty)
                fill(plain, sent(plain, f"f{i}", side, qty), qty)
            assert one.position("bot", "QQQ").qty == plain.position("bot", "QQQ").qty
            assert strip_ids(ledger_notes(one)) == strip_ids(ledger_notes(plain))
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def strip_ids(notes: list[str]) -> list[str]:
    return [" ".join(w if not w.isdigit() else "#" for w in n.split(" ")) for n in notes]
