"""Different decisions racing in one symbol, and several agents on one account, in real processes.

Each round starts four long-lived bot processes (`tests/decision_race_worker.py`: the real alpaca-py
TradingClient inside AlpacaBroker, the real OrderGateway, or the drop-in GuardedTradingClient) on
one served paper account and one store (a SQLite file, PostgreSQL); they fire their decisions at
the same instant. A round may SIGKILL one process at a crash point (it is restarted and retries
its decisions) and may run a reconcile pass in another. `tests/decision_race_kit.py` then checks what
the account took and what the store holds: at most one order (one POST) per decision, nobody
sold more than its own fills, the account never short, every claim definite after reconcile
passes, each ledger equal to its agent's fills and the ledgers summing to the broker's position.
Many random rounds: `python -m tests.decision_race_kit --store pg --rounds 200 --faults`.
"""

from __future__ import annotations

import random

import pytest

from tests.decision_race_kit import SYMBOLS, race_bench, run_round

pytestmark = pytest.mark.slow

# (scenario, crash one process, a reconcile pass racing): the rounds each store runs.
ONE_AGENT = [
    ("entries", False, True),
    ("exit_vs_entries", True, False),
    ("partial_exits", False, False),
    ("partial_exits", True, True),
    ("same_name", False, True),
    ("same_intent", True, False),
    ("same_coid", False, False),
    ("same_coid_client", True, False),
    ("same_content", False, False),
    ("limit_exits", False, True),
]
AGENTS = [
    ("agents_exits", False, False),
    ("agents_exits", True, True),
    ("agents_mixed", False, True),
    ("agents_mixed", True, False),
    ("agents_same_name", False, False),
    ("client_close", True, False),
]


@pytest.mark.parametrize("rounds", [ONE_AGENT, AGENTS], ids=["one-agent", "agents-on-one-account"])
def test_decisions_racing_in_one_symbol_keep_every_guarantee(
    store_url: str, rounds: list[tuple[str, bool, bool]]
) -> None:
    rng = random.Random(31)
    failed = []
    with race_bench(store_url, 4) as (paper, url, workers):
        for n, (scenario, crash, reconcile) in enumerate(rounds):
            report = run_round(
                rng, store_url, paper, url, workers, scenario, SYMBOLS[n], f"t{n}",
                crash=crash, reconcile_racer=reconcile,
            )  # fmt: skip
            if report.violations:
                failed.append((report.name, report.violations, report.results))
    assert failed == []
