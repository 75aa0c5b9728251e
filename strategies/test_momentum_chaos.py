"""Example: prove a strategy safe from your own pytest suite with `tradeguard.testing.chaos`.

Copy this next to your strategy, name your strategy instead of ``strategies.momentum``, and keep
the run count small here (a few seconds); run hundreds with ``tradeguard chaos`` before going live.
"""

from __future__ import annotations

from tradeguard.testing import chaos


def test_momentum_survives_faults_and_crashes() -> None:
    """G1-G4 hold in every run, and the bot died at every crash point at least once."""
    result = chaos("strategies.momentum", runs=10, seed=1)
    assert result.ok, [str(v) for run in result.failing for v in run.violations]
    assert result.points_missed == []  # the bot died at every crash point at least once
