"""Races for one client_order_id: at most one claim per account scope, "" alone (SQLite, PostgreSQL).

PostgreSQL: an agent's own derived id and an unknown account's claim of that id never both land.

An agent of unknown account (scope "") may send any client_order_id, a derived one of another
agent's included (derived ids are public functions of an intent). Its claim conflicts with the
id in every scope; `tg_claim` serialises the two on an advisory lock on the id. A claim of the
agent's own derived id took no lock (no other claim carries it, it was thought), so with the
"" claim in flight (past its check, not committed) it inserted beside it: two claims of one id,
one of them anyone's on any account (G1/G2). The "" claim is held open here by a second real
connection doing what `tg_claim` does up to its commit, so the order of events is fixed.
"""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from tradeguard.domain import Side
from tradeguard.domain.intents import Intent, Kind, OrderSpec, derive_client_order_id
from tradeguard.errors import StoreError
from tradeguard.ports import account_key_from_id
from tradeguard.store import ClaimStore


def _psycopg_conninfo(url: str) -> str:
    made = sa.engine.make_url(url)
    options = made.query.get("options")
    opts = f" options='{options}'" if isinstance(options, str) else ""
    return f"host={made.host} port={made.port or 5432} user={made.username} dbname={made.database}{opts}"


@pytest.mark.postgres
def test_a_derived_id_waits_for_an_unknown_accounts_claim_of_it_in_flight(pg_url: str) -> None:
    mine = Intent("a", Kind.ENTRY, "SPY", Side.BUY, "bar-1")
    derived = derive_client_order_id(mine.key)
    with ClaimStore(pg_url) as store:
        store.register_account("a", account_key_from_id("account-x"))
        store.register_account("u", "")
        at = datetime.now(UTC)
        with psycopg.connect(_psycopg_conninfo(pg_url)) as other:
            # u's claim of a's derived id, as tg_claim makes it: the exclusive lock on the id, the
            # check (nothing there yet), the row of scope ""; not committed yet.
            other.execute(  # the id's key in this schema (migration 0014)
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 'tg_claims'::regclass::oid::bigint))",
                (f"tradeguard:coid:{derived}",),
            )
            other.execute(
                "INSERT INTO tg_claims (claim_key, client_order_id, agent_id, kind, symbol, side, intent,"
                " payload, payload_hash, state, epoch, owner, lease_expires_at, order_qty, attempts,"
                " reason, created_at, updated_at, coid_scope) VALUES (%s, %s, 'u', 'entry', 'SPY', 'buy',"
                " %s, '{}', 'h', 'PENDING', 1, 'w', %s, '1', 1, 'claimed', %s, %s, '')",
                ("f" * 64, derived, f"coid:{derived}", at + timedelta(seconds=30), at, at),
            )
            outcome: list[object] = []

            def claim_own() -> None:
                try:
                    outcome.append(
                        store.claim(mine, OrderSpec(qty=Decimal(1)), owner="w").claim.client_order_id
                    )
                except StoreError as exc:
                    outcome.append(exc)

            racer = threading.Thread(target=claim_own)
            racer.start()
            with psycopg.connect(_psycopg_conninfo(pg_url), autocommit=True) as watch:
                # Until a's claim is either done or waiting on the id's lock (no timing involved).
                while racer.is_alive():
                    waiting = watch.execute(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    ).fetchone()
                    if waiting is not None and waiting[0]:
                        break
                    racer.join(0.01)
            other.commit()
            racer.join()
        holders = [c.agent_id for c in store.list_claims() if c.client_order_id == derived]
        assert len(holders) == 1, holders
        assert holders == ["u"] and isinstance(outcome[0], StoreError)


# -- real processes racing for one caller id ---------------------------------------------------

_AGENTS = {"a1": "account-x", "a2": "account-x", "b1": "account-y", "b2": "account-y", "u": ""}


def claim_worker(url: str, agent: str, rounds: int, barrier: Any, results: Any) -> None:
    """Claim caller id `race-{r}` as `agent` each round, all workers released together."""
    try:
        with ClaimStore(url) as store:
            for r in range(rounds):
                barrier.wait(timeout=120)
                intent = Intent(agent, Kind.ENTRY, "SPY", Side.BUY, f"coid:race-{r}")
                try:
                    store.claim(intent, OrderSpec(qty=Decimal(1)), owner=agent, client_order_id=f"race-{r}")
                    results.put(("won", r, agent))
                except StoreError:
                    results.put(("lost", r, agent))
    except BaseException as exc:
        barrier.abort()
        results.put(("error", agent, repr(exc)))


def test_processes_racing_for_one_caller_id_leave_one_claim_per_account_scope(store_url: str) -> None:
    rounds = 15
    with ClaimStore(store_url) as store:
        for agent, account in _AGENTS.items():
            store.register_account(agent, account_key_from_id(account) if account else "")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(_AGENTS)), ctx.Queue()
    workers = [
        ctx.Process(target=claim_worker, args=(store_url, agent, rounds, barrier, results))
        for agent in _AGENTS
    ]
    try:
        for worker in workers:
            worker.start()
        answers = [results.get(timeout=300) for _ in range(rounds * len(_AGENTS))]
    finally:
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.kill()
    assert not [a for a in answers if a[0] == "error"], answers
    with ClaimStore(store_url) as store:
        claims = store.list_claims()
    for r in range(rounds):
        won = sorted(a[2] for a in answers if a[0] == "won" and a[1] == r)
        held = sorted(c.agent_id for c in claims if c.client_order_id == f"race-{r}")
        assert won == held
        # The unknown account's claim alone, or at most one per account (x, y), never both kinds.
        assert won == ["u"] or (
            "u" not in won
            and len([w for w in won if w.startswith("a")]) <= 1
            and len([w for w in won if w.startswith("b")]) <= 1
            and won
        ), (r, won)
