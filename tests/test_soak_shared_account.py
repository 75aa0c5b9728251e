"""Soak: three agents, two real processes each, one served paper account, one PostgreSQL store.

The harness is `tests/soak_kit.py` (see its docstring); run many seeds with
`python -m tests.soak_kit --seeds 1-30`. Here one seed each way, so the suite keeps it honest:
without closes by hand every guarantee holds exactly; with them, G1, G2, G3 and G6 hold, and the
ledgers' drift that several agents holding a symbol closed by hand leave (reported, not
attributed: `test_drift_after_a_close_by_hand_of_a_shared_symbol_is_attributed`) is the one
known gap. `TRADEGUARD_SOAK_SEED` picks another seed.
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


def test_closes_by_hand_never_make_an_agent_sell_another_agents_shares(pg_url: str, tmp_path: Path) -> None:
    report = run_soak(SEED + 1, pg_url, str(tmp_path), secs=10)

    assert report.calls and report.orders, report.line()
    assert [v for v in report.violations if not v.startswith("G4")] == [], report.line()
