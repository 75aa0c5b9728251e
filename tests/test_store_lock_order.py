"""G5 on PostgreSQL: a fill and an exit claim in one symbol never deadlock (one lock order).

Found by an adversarial run (16 processes, 4 agents, one symbol): a transition that books a fill
updated its claim's row and then waited for the symbol's ledger lock, while an exit claim of the
same decision (a racing retry) held that lock and its insert waited for the row. PostgreSQL broke
the deadlock by failing one of them: a fill recorded after the POST was lost (UnrecordedOrder) or
an exit failed with StoreError. Every writer now takes the symbol's lock before any claim row.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import psycopg
import pytest

from tradeguard.domain import Side
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.store import ClaimStore, new_owner_token

pytestmark = pytest.mark.postgres


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


_SYMBOL = "LKORD"


def _waiting_on_advisory_lock(admin: psycopg.Connection, pid: int) -> bool:
    row = admin.execute(
        "SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND NOT granted", (pid,)
    ).fetchone()
    return row is not None and row[0] > 0


def test_a_fill_waiting_for_the_symbol_lock_holds_no_claim_row(pg_url: str) -> None:
    store = ClaimStore(pg_url)
    other = psycopg.connect(_libpq(pg_url), autocommit=True)  # another process's exit claim
    admin = psycopg.connect(_libpq(pg_url), autocommit=True)
    try:
        owner = new_owner_token()
        # A symbol no other test trades: the ledger lock was database-wide before migration 0014
        # (keyed per schema since), and this test holds it for seconds, which a test on another
        # xdist worker running older code with a sub-second lock wait would take for a store failure.
        intent = Intent("bot", Kind.EXIT, _SYMBOL, Side.SELL, "11:26 exit")
        claim = store.claim(intent, OrderSpec(qty=Decimal(12)), owner=owner, order_qty=Decimal(12)).claim
        sent = store.transition(claim, ClaimState.SUBMITTED, reason="accepted", broker_order_id="b-1")
        # The other process sizes the same exit decision: it holds the symbol's lock ...
        other.execute("BEGIN")
        lock = f"tradeguard:ledger:{_SYMBOL}"  # as `ledger.lock_symbol` takes it (migration 0014)
        other.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 'tg_claims'::regclass::oid::bigint))",
            (lock,),
        )
        errors: list[BaseException] = []

        def fill() -> None:
            try:
                store.transition(
                    sent, ClaimState.FILLED, reason="filled", filled_qty=Decimal(12),
                    filled_avg_price=Decimal("75.10"),
                )  # fmt: skip
            except BaseException as exc:
                errors.append(exc)

        filler = threading.Thread(target=fill)
        filler.start()
        backends = [
            r[0]
            for r in admin.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> %s AND pid <> %s",
                (admin.info.backend_pid, other.info.backend_pid),
            ).fetchall()
        ]
        deadline = time.monotonic() + 10
        while not any(_waiting_on_advisory_lock(admin, pid) for pid in backends):
            assert time.monotonic() < deadline, "the fill never waited for the symbol's lock"
            time.sleep(0.01)
        # ... and then inserts the claim if absent (it exists): this must not wait for the fill.
        other.execute("SET lock_timeout = '5s'")
        other.execute(
            "INSERT INTO tg_claims (claim_key, client_order_id, agent_id, kind, symbol, side, intent, "
            "payload, payload_hash, state, epoch, owner, lease_expires_at, filled_qty, attempts, reason, "
            "created_at, updated_at) SELECT claim_key, client_order_id, agent_id, kind, symbol, side, "
            "intent, payload, payload_hash, 'PENDING', 1, owner, lease_expires_at, '0', 1, '', created_at, "
            "updated_at FROM tg_claims WHERE claim_key = %s ON CONFLICT DO NOTHING",
            (claim.key,),
        )
        other.execute("COMMIT")
        filler.join(timeout=30)
        assert not filler.is_alive()
        assert errors == []
        final = store.get(claim.key)
        assert final is not None and final.state is ClaimState.FILLED and final.filled_qty == 12
    finally:
        other.close()
        admin.close()
        store.close()
