"""PostgreSQL: a store's advisory locks are its schema's, not the whole database's (migration 0014).

Issue 15: the ledger lock of a symbol and the lock of a caller's client_order_id were keyed by
the symbol or the id alone, and PostgreSQL's advisory locks are one namespace per database. Two
stores in two schemas of one database (tenants, tests) waited for each other, and a store with a
short lock wait failed closed (StoreError, nothing sent) on a lock only the other store held.
Each lock below is held the way the store itself takes it (`ledger.lock_symbol`, `tg_claim`),
in an open transaction of a second session; then a store in another schema must go on at once
(a 300 ms lock wait would fail it otherwise), and a store in the same schema must wait.
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
import sqlalchemy as sa

from tests.conftest import at_head, pg_base_url
from tradeguard.config import Settings
from tradeguard.domain import Side
from tradeguard.domain.claims import ClaimOutcome
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import StoreError
from tradeguard.store import ClaimStore, ledger
from tradeguard.store import statements as sql

pytestmark = pytest.mark.postgres

_SYMBOL = "SCHLK"  # a symbol no other test trades: a pre-0014 store on another worker meets it
_QUICK = Settings(pg_lock_timeout_ms=300)


@pytest.fixture
def other_pg_url(pg_url: str) -> Iterator[str]:
    """A second schema in the same database (the first is `pg_url`'s), dropped afterwards."""
    base = pg_base_url()
    assert base is not None
    schema = f"tg_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield pg_url.rsplit("search_path%3D", 1)[0] + f"search_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _conninfo(url: str) -> str:
    made = sa.engine.make_url(url)
    options = made.query.get("options")
    opts = f" options='{options}'" if isinstance(options, str) else ""
    return f"host={made.host} port={made.port or 5432} user={made.username} dbname={made.database}{opts}"


@contextmanager
def _ledger_lock_held(store: ClaimStore, symbol: str) -> Iterator[None]:
    """Hold `symbol`'s ledger lock as the store takes it, in a transaction of the store's own."""
    with store._pool.write("holding a symbol's lock", durable=True) as tx:
        ledger.lock_symbol(tx, symbol)
        tx.all("SELECT 1")  # sends the queued lock
        yield


@contextmanager
def _coid_lock_held(url: str, coid: str) -> Iterator[None]:
    """An agent of unknown account claims `coid` through tg_claim2, not yet committed."""
    at = datetime.now(UTC)
    key = uuid.uuid4().hex * 2
    params = (
        key, coid, "holder", "entry", _SYMBOL, "buy", f"coid:{coid}", "{}", "h", "w",
        at + timedelta(seconds=30), "1", None, "claimed", at, "claimed", "1", None,
    )  # fmt: skip
    with psycopg.connect(_conninfo(url)) as conn:  # a transaction, open until the block ends
        conn.execute(sql.PG_CLAIM.replace("?", "%s"), params)
        yield
        conn.rollback()


def _advisory_waiters(url: str) -> int:
    with psycopg.connect(_conninfo(url), autocommit=True) as watch:
        row = watch.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()
    return 0 if row is None else int(row[0])


def _trade_round(store: ClaimStore, agent: str, coid: str) -> ClaimState:
    """Buy 5 (the caller's `coid`), fill it, size and claim an exit of it, fill that."""
    entry = store.claim(
        Intent(agent, Kind.ENTRY, _SYMBOL, Side.BUY, f"coid:{coid}"), OrderSpec(qty=Decimal(5)), owner="w",
        client_order_id=coid,
    ).claim  # fmt: skip
    sent = store.transition(entry, ClaimState.SUBMITTED, reason="sent", broker_order_id=f"o-{agent}")
    store.transition(
        sent, ClaimState.FILLED, reason="filled", filled_qty=Decimal(5), filled_avg_price=Decimal(10)
    )
    made, room = store.claim_exit(
        Intent(agent, Kind.EXIT, _SYMBOL, Side.SELL, "exit"), OrderSpec(), owner="w",
        broker_available=Decimal(5), reason="exit",
    )  # fmt: skip
    assert made is not None and room is not None and room.qty == 5
    out = store.transition(made.claim, ClaimState.SUBMITTED, reason="sent", broker_order_id=f"x-{agent}")
    done = store.transition(
        out, ClaimState.FILLED, reason="filled", filled_qty=Decimal(5), filled_avg_price=Decimal(11)
    )
    return done.state


def test_a_store_in_another_schema_trades_a_symbol_and_an_id_whose_locks_this_one_holds(
    pg_url: str, other_pg_url: str
) -> None:
    with ClaimStore(at_head(pg_url)) as mine, ClaimStore(at_head(other_pg_url), settings=_QUICK) as theirs:
        with _ledger_lock_held(mine, _SYMBOL), _coid_lock_held(pg_url, "entry-1"):
            # Another tenant's whole round in that symbol with that caller id, under a 300 ms wait.
            assert _trade_round(theirs, "bot", "entry-1") is ClaimState.FILLED
        assert theirs.position("bot", _SYMBOL).is_flat
        assert [c.client_order_id for c in theirs.list_claims(kind=Kind.ENTRY)] == ["entry-1"]


def _waits_then_goes(url: str, work: Callable[[], object], held: AbstractContextManager[None]) -> object:
    """Run `work` in a thread while `held`; return its result once it waited and `held` ended."""
    results: list[object] = []

    def run() -> None:
        try:
            results.append(work())
        except Exception as exc:  # reported by the caller's assertion
            results.append(exc)

    with held:
        racer = threading.Thread(target=run)
        racer.start()
        while _advisory_waiters(url) == 0:  # it waits: no timing involved
            assert racer.is_alive(), results
            racer.join(0.01)
    racer.join(60)
    assert not racer.is_alive() and len(results) == 1
    return results[0]


def test_a_store_in_the_same_schema_still_waits_for_the_symbols_lock_and_the_ids(pg_url: str) -> None:
    with ClaimStore(at_head(pg_url)) as mine, ClaimStore(pg_url) as same:
        round_trip = functools.partial(_trade_round, same, "bot", "entry-1")
        assert _waits_then_goes(pg_url, round_trip, _ledger_lock_held(mine, _SYMBOL)) is ClaimState.FILLED
        # The id's lock: a claim of an id that another claim of it holds, uncommitted, waits for
        # it (here it rolls back: the id is free then).
        again = functools.partial(
            same.claim, Intent("bot2", Kind.ENTRY, _SYMBOL, Side.BUY, "coid:entry-2"),
            OrderSpec(qty=Decimal(1)), owner="w", client_order_id="entry-2",
        )  # fmt: skip
        outcome = _waits_then_goes(pg_url, again, _coid_lock_held(pg_url, "entry-2"))
        assert isinstance(outcome, ClaimOutcome) and outcome.created
        assert [c.agent_id for c in same.list_claims() if c.client_order_id == "entry-2"] == ["bot2"]


def test_a_store_of_the_version_before_still_serialises_exits_with_this_one(pg_url: str) -> None:
    """A process still running the code before 0014 takes the schema-less key exclusively."""
    with ClaimStore(at_head(pg_url), settings=_QUICK) as store:
        engine = sa.create_engine(pg_url)
        with engine.begin() as conn:
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                {"k": f"tradeguard:ledger:{_SYMBOL}"},
            )
            with pytest.raises(StoreError, match="lock timeout"):  # waited for it, up to its 300 ms
                store.claim_exit(
                    Intent("bot", Kind.EXIT, _SYMBOL, Side.SELL, "exit"), OrderSpec(qty=Decimal(1)),
                    owner="w", broker_available=Decimal(5), reason="exit",
                )  # fmt: skip
        engine.dispose()
        assert store.list_claims() == []
