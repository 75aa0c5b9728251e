"""Audit 76: a bot SIGKILLed at each step of an entry or an exit, restarted while positions trail (G1-G4).

Two agents share one account. Agent A's process is killed (SIGKILL) at one crash point of its
entry or its exit; a new process of A starts at once, while Alpaca's positions endpoint still
trails the fill (and the order listing trails too), runs its start-up reconcile pass and retries
the decision until it has a definite answer. The start-up pass must not clear a position the
broker holds, nor book the other agent's shares: a lagging read is never "flat" (G4). The
decision reaches the broker at most once (G1), the account never goes short (G3), every fill is
booked (G2), everything audited (G6). Real processes, the paper server over HTTP with the real
alpaca-py client, SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.audit76_checks import Bot, gateway, settings, settle_and_check
from tests.audit76_kit import LateAccount
from tradeguard.store import ClaimStore
from tradeguard.testing import paper_server

pytestmark = [pytest.mark.slow]

LAG = 0.8
RETRYABLE = ("ClaimInProgress", "LeaseLost", "OutcomeUnknown", "UnrecordedOrder")


def _retry_until_definite(url: str, paper_url: str, op: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """Restart A (start-up reconcile on) and retry `op` until it has a definite outcome; return each run."""
    runs: list[dict[str, Any]] = []
    for n in range(12):
        bot = Bot(url, paper_url, "a", [{"op": "position", "symbol": "SPY"}, op], folder, f"restart{n}",
                  reconcile_on_start=True)  # fmt: skip
        seen, answer = bot.result()
        assert "raised" not in seen, seen  # the start-up pass and the position read work
        runs.append({"position": seen["qty"], **answer})
        unresolved = answer.get("state") in ("PENDING", "UNKNOWN")
        if answer.get("raised") in RETRYABLE or answer.get("outcome") == "unknown" or unresolved:
            time.sleep(0.5)
            continue
        assert "raised" not in answer, runs
        return runs
    pytest.fail(f"no definite answer: {runs}")


@pytest.mark.parametrize("point", ["after_claim", "before_post", "after_post"])
def test_an_entry_killed_and_restarted_while_positions_trail_is_placed_once_and_booked(
    store_url: str, tmp_path: Path, point: str
) -> None:
    with paper_server(LateAccount(LAG, listing_lag_secs=LAG)) as server:
        account = server.broker
        assert isinstance(account, LateAccount)
        with ClaimStore(store_url, settings=settings()) as store:
            assert (
                gateway(store, server.url, "b").enter("SPY", qty=5, intent="b-in").outcome.value
                == "submitted"
            )
        entry = {"op": "enter", "symbol": "SPY", "qty": 10, "intent": "a-in"}
        Bot(store_url, server.url, "a", [entry], tmp_path, "first", freeze=point).kill()
        runs = _retry_until_definite(store_url, server.url, entry, tmp_path)
        assert runs[-1]["outcome"] in ("submitted", "duplicate"), runs
        with ClaimStore(store_url, settings=settings()) as store:
            assert store.position("a", "SPY").qty == 10, runs
            assert store.position("b", "SPY").qty == 5, runs
        settle_and_check(store_url, account, server.url, "SPY", ["a", "b"])
        assert account.true_qty("SPY") == 15


@pytest.mark.parametrize("point", ["exit_before_claim", "after_claim", "before_post", "after_post"])
def test_an_exit_killed_and_restarted_while_positions_trail_sells_once_and_never_more(
    store_url: str, tmp_path: Path, point: str
) -> None:
    with paper_server(LateAccount(LAG, listing_lag_secs=LAG)) as server:
        account = server.broker
        assert isinstance(account, LateAccount)
        with ClaimStore(store_url, settings=settings()) as store:
            assert (
                gateway(store, server.url, "b").enter("SPY", qty=5, intent="b-in").outcome.value
                == "submitted"
            )
            assert (
                gateway(store, server.url, "a").enter("SPY", qty=10, intent="a-in").outcome.value
                == "submitted"
            )
        time.sleep(settings().position_settle_secs)
        out = {"op": "exit", "symbol": "SPY", "intent": "a-out"}
        Bot(store_url, server.url, "a", [out], tmp_path, "first", freeze=point).kill()
        runs = _retry_until_definite(store_url, server.url, out, tmp_path)
        assert runs[-1]["outcome"] in ("submitted", "duplicate"), runs
        with ClaimStore(store_url, settings=settings()) as store:
            assert store.position("a", "SPY").qty == 0, runs
            assert store.position("b", "SPY").qty == 5, runs
        settle_and_check(store_url, account, server.url, "SPY", ["a", "b"])
        assert account.true_qty("SPY") == 5
