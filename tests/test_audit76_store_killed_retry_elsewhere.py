"""Audit 76: the store's PostgreSQL sessions killed after the POST, the decision retried elsewhere (G1, G2).

Agent A's process stops right after its entry's POST was answered (the order filled at the
broker, its claim PENDING); another session ends every PostgreSQL connection of A's store with
`pg_terminate_backend`. Then A's process is either SIGKILLed (the store died with it) or resumed
(it must find its connection gone). The same decision is retried from another process with a
connection of its own (another host), while the order listing and the positions read trail the
fill and a reconcile pass runs in a third process. The order must reach the broker once (G1), be
booked once into A's ledger (G2), and no pass may clear A's position or book it twice (G4).
Real processes, the real PostgreSQL server (an `audit76_` schema, the kills from another
session), the paper server over HTTP with the real alpaca-py client.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.audit76_checks import Bot, gateway, settings, settle_and_check
from tests.audit76_kit import LateAccount
from tests.conftest import pg_base_url
from tradeguard.store import ClaimStore
from tradeguard.testing import paper_server

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LAG = 0.8
VICTIM = "audit76_victim"
RETRYABLE = ("ClaimInProgress", "LeaseLost", "OutcomeUnknown", "UnrecordedOrder")


@pytest.fixture
def schema_url() -> Iterator[tuple[str, str]]:
    """(other host's URL, A's URL): a fresh `audit76_` schema; A's sessions carry VICTIM's name."""
    base = pg_base_url()
    if base is None:
        pytest.skip("PostgreSQL tests need TRADEGUARD_TEST_PG_URL")
    schema = f"audit76_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    other = f"{base}{sep}options=-csearch_path%3D{schema}"
    yield other, f"{other}&application_name={VICTIM}_{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _kill_sessions(admin_url: str, name: str) -> int:
    engine = sa.create_engine(admin_url)
    try:
        with engine.begin() as conn:
            pids = [
                int(r[0])
                for r in conn.execute(
                    sa.text(
                        "SELECT pid FROM pg_stat_activity"
                        " WHERE application_name = :n AND pid <> pg_backend_pid()"
                    ),
                    {"n": name},
                )
            ]
            for pid in pids:
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        return len(pids)
    finally:
        engine.dispose()


def _retry_elsewhere(url: str, paper_url: str, op: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for n in range(12):
        passes = Bot(url, paper_url, "r", [{"op": "reconcile"}], folder, f"pass{n}")
        bot = Bot(url, paper_url, "a", [op], folder, f"retry{n}", reconcile_on_start=True)
        [answer] = bot.result()
        assert all("raised" not in p for p in passes.result())
        runs.append(answer)
        unresolved = answer.get("state") in ("PENDING", "UNKNOWN")
        if answer.get("raised") in RETRYABLE or answer.get("outcome") == "unknown" or unresolved:
            time.sleep(0.5)
            continue
        assert "raised" not in answer, runs
        return runs
    pytest.fail(f"no definite answer: {runs}")


@pytest.mark.parametrize("sender", ["killed", "resumed"])
def test_an_entry_whose_store_died_after_the_post_is_placed_and_booked_once_from_another_host(
    schema_url: tuple[str, str], tmp_path: Path, sender: str
) -> None:
    other_url, a_url = schema_url
    name = a_url.rsplit("application_name=", 1)[1]
    with paper_server(LateAccount(LAG, listing_lag_secs=LAG)) as server:
        account = server.broker
        assert isinstance(account, LateAccount)
        with ClaimStore(other_url, settings=settings()) as store:
            assert (
                gateway(store, server.url, "b").enter("SPY", qty=3, intent="b-in").outcome.value
                == "submitted"
            )
        entry = {"op": "enter", "symbol": "SPY", "qty": 10, "intent": "a-in"}
        first = Bot(a_url, server.url, "a", [entry], tmp_path, "first", freeze="after_post")
        assert _kill_sessions(other_url, name) >= 1, "A's store held no session to kill"
        assert account.true_qty("SPY") == 13  # A's order filled
        if sender == "killed":
            first.kill()
            runs = _retry_elsewhere(other_url, server.url, entry, tmp_path)
        else:
            retry = Bot(other_url, server.url, "a", [entry], tmp_path, "early")  # inside A's lease
            first.resume()
            [early] = retry.result()
            [late] = first.result()
            runs = [early, late, *_retry_elsewhere(other_url, server.url, entry, tmp_path)]
            assert early.get("outcome") in ("duplicate", "submitted") or early.get("raised") in RETRYABLE, (
                runs
            )
            assert late.get("outcome") in ("submitted", "duplicate") or late.get("raised") in RETRYABLE, runs
        assert runs[-1].get("outcome") in ("submitted", "duplicate"), runs
        assert len({o.client_order_id for o in account.orders() if o.side.value == "buy"}) == 2  # A's and B's
        with ClaimStore(other_url, settings=settings()) as store:
            assert store.position("a", "SPY").qty == 10, runs
        settle_and_check(other_url, account, server.url, "SPY", ["a", "b"])
        assert account.true_qty("SPY") == 13
