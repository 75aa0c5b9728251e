"""Soak: three agents, two real processes each, one served paper account, one PostgreSQL store.

The harness is `tests/soak_kit.py` (see its docstring); run many seeds with
`python -m tests.soak_kit --seeds 1-30`. Here one seed each way, so the suite keeps it honest:
without closes by hand every guarantee holds exactly; with them, G1, G2, G6 and "never short"
hold, and two known gaps are left to the harness (see the second test). `TRADEGUARD_SOAK_SEED`
picks another seed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.soak_kit import run_soak

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SEED = int(os.environ.get("TRADEGUARD_SOAK_SEED", "15"))


def test_agents_sharing_an_account_keep_every_guarantee_under_faults_and_kills(
    pg_url: str, tmp_path: Path
) -> None:
    report = run_soak(SEED, pg_url, str(tmp_path), secs=10, by_hand=False)

    assert report.calls and report.orders, report.line()
    assert report.violations == [], report.line()


def test_closes_by_hand_never_give_two_orders_a_decision_nor_short_the_account(
    pg_url: str, tmp_path: Path
) -> None:
    """With closes by hand: G1, G2, G6 and "never short" hold exactly. G4 and one G3 finding are
    not asserted here, because a seed's run depends on scheduling: drift after a close by hand
    that the account's order history does not prove whose it is (a close racing another order
    outside the bots, or not yet settled past the positions lag when the run ends; the provable
    case is attributed, `test_shared_account_closed_by_hand.py`), and an agent with a phantom
    ledger selling another agent's shares right after its own sell (seed 37 of audit 25, fixed
    since by the own-sell wait; `python -m tests.soak_kit --seeds 28-37` runs them)."""
    report = run_soak(SEED + 1, pg_url, str(tmp_path), secs=10)

    assert report.calls and report.orders, report.line()
    known_gaps = [
        v
        for v in report.violations
        if v.startswith("G4") or (v.startswith("G3") and "another agent's shares" in v)
    ]
    assert [v for v in report.violations if v not in known_gaps] == [], report.line()
