"""`python -m tradeguard` runs the command line, as the console script does.

Without a `tradeguard/__main__.py` it failed with "No module named tradeguard.__main__; 'tradeguard'
is a package and cannot be directly executed" (status 1): only `python -m tradeguard.cli` worked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_python_m_tradeguard_prints_the_version_and_follows_the_exit_statuses(tmp_path: Path) -> None:
    version = subprocess.run(
        [sys.executable, "-m", "tradeguard", "--version"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("tradeguard ")

    missing = subprocess.run(
        [sys.executable, "-m", "tradeguard", "replay", str(tmp_path / "nope.jsonl")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        f"tradeguard: error: session file {tmp_path / 'nope.jsonl'} does not exist "
        "(shipped sessions: 2026-05-21-tqqq-sqqq.jsonl)"
    ]
