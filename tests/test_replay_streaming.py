"""A long session streams: memory does not grow with its length (no list of events is ever built)."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest

from replay import Mode, replay_session
from replay.generate import generate_session
from tradeguard import AttemptEvent, open_session


def peak_bytes(path: Path, modes: list[Mode]) -> tuple[int, int]:
    """Replay `path` under tracemalloc; return (events replayed, peak bytes)."""
    gc.collect()
    tracemalloc.start()
    try:
        events = replay_session(path, modes).events
        return events, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_a_100k_attempt_session_streams_in_the_memory_of_a_10k_one(tmp_path: Path) -> None:
    small, large = tmp_path / "10k.jsonl", tmp_path / "100k.jsonl"
    generate_session(small, 10_000)
    generate_session(large, 100_000)
    with open_session(large) as session:
        assert sum(isinstance(e, AttemptEvent) for _, e in session) == 100_000
    # No modes: the engine reads, validates and pairs every line (its look-ahead included), and
    # holds no account, so what it keeps is what streaming keeps.
    small_events, small_peak = peak_bytes(small, [])
    large_events, large_peak = peak_bytes(large, [])
    assert large_events > 9 * small_events
    assert large_peak < small_peak * 1.25, (small_peak, large_peak)  # 10x the events, not the memory


def test_rows_are_kept_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    generate_session(path, 200)
    seen = []
    result = replay_session(path, [Mode.FULL], on_row=seen.append)
    assert result.rows == [] and len(seen) == 200
    assert len(replay_session(path, [Mode.FULL], collect_rows=True).rows) == 200
