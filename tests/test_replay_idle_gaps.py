"""G4 in the replay: reconcile passes over a session's idle gaps, and what skipping them may not change.

`--guard full` runs a reconcile pass every `reconcile_every_secs` of session time, as a live
gateway does. A session's gaps (nights, weekends, a bot log spread over weeks) were walked one pass
at a time: about 1,400 passes a day, 118,000 for a bot log of a few lines (LOGS.md's spans March
to May). A pass that finds everything settled (no order open, no claim in motion or still probed,
the ledger equal to the broker's position) is followed, until the next event, only by passes that
find the same; those are skipped. The May 21 session's figures come out the same with two months
added after its end; a phantom at the start of a gap is still cleared within one interval; an
order answered late by a lost answer is still resolved before the gap is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from replay import Mode, replay_session
from replay.metrics import AttemptOutcome
from tradeguard.gateway import OrderGateway

ROOT = Path(__file__).resolve().parents[1]
MAY21 = ROOT / "sessions" / "2026-05-21-tqqq-sqqq.jsonl"
INTERVAL_SECS = 60  # the May 21 header's reconcile interval


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the reconcile passes the replay's gateway runs (the count is the figure under test)."""
    count = [0]
    run = OrderGateway.reconcile

    def counted(self: OrderGateway, *args: object, **kwargs: object) -> object:
        count[0] += 1
        return run(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(OrderGateway, "reconcile", counted)
    return count


def with_lines_after_the_end(path: Path, *lines: dict[str, object]) -> list[str]:
    """The May 21 session with its `end` event replaced by `lines` (the last one an `end`)."""
    kept = [line for line in MAY21.read_text().splitlines() if '"type": "end"' not in line]
    path.write_text("\n".join([*kept, *(json.dumps(line) for line in lines)]) + "\n")
    return kept


def test_two_idle_months_after_may21_change_no_figure_and_cost_a_handful_of_passes(
    tmp_path: Path, passes: list[int]
) -> None:
    day = replay_session(MAY21, [Mode.FULL]).totals[Mode.FULL]
    passes_in_the_day = passes[0]
    longer = tmp_path / "may21-then-two-months.jsonl"
    with_lines_after_the_end(
        longer,
        {"type": "price", "t": "2026-07-21T09:30:00-04:00", "symbol": "TQQQ", "price": "80.00"},
        {"type": "end", "t": "2026-07-21T16:00:00-04:00"},
    )
    passes[0] = 0
    months = replay_session(longer, [Mode.FULL]).totals[Mode.FULL]
    assert months.duplicate_orders_executed == day.duplicate_orders_executed
    assert months.duplicate_attempts_blocked == day.duplicate_attempts_blocked
    assert months.unintended_short_shares == day.unintended_short_shares == 0
    assert months.phantom_entry_block_secs == day.phantom_entry_block_secs <= INTERVAL_SECS  # G4
    # Walked pass by pass, 61 days more would be ~88,000 passes more; the day's own stay as they are.
    assert passes[0] <= passes_in_the_day + 10, (passes[0], passes_in_the_day)


def test_an_entry_after_a_long_gap_is_decided_on_a_reconciled_view(tmp_path: Path) -> None:
    """The schedule goes on after the gap: the SQQQ phantom of May 21 does not block a later entry."""
    session = tmp_path / "may21-then-an-entry.jsonl"
    with_lines_after_the_end(
        session,
        {"type": "price", "t": "2026-06-22T09:42:00-04:00", "symbol": "SQQQ", "price": "20.00"},
        {"type": "attempt", "t": "2026-06-22T09:42:01-04:00", "decision": "2026-06-22T09:42 ENTER BEAR",
         "attempt": 1, "kind": "entry", "symbol": "SQQQ", "side": "buy", "qty": "5"},
        {"type": "end", "t": "2026-06-22T16:00:00-04:00"},
    )  # fmt: skip
    result = replay_session(session, [Mode.FULL], collect_rows=True)
    [row] = [r for r in result.rows if r.kind == "attempt" and r.t.date().isoformat() == "2026-06-22"]
    outcome = row.outcomes[Mode.FULL]
    assert isinstance(outcome, AttemptOutcome) and outcome.placed, row


def test_an_order_whose_answer_was_lost_before_a_gap_is_resolved_in_it(
    tmp_path: Path, passes: list[int]
) -> None:
    """A claim in motion is no settled state: the passes that resolve it run before any is skipped."""
    session = tmp_path / "lost-answer-then-a-gap.jsonl"
    header = {
        "type": "session",
        "version": 1,
        "start": "2026-05-21T09:30:00-04:00",
        "reconcile_interval_secs": 60,
    }
    lines = [
        header,
        {"type": "price", "t": "2026-05-21T09:30:00-04:00", "symbol": "TQQQ", "price": "75.00"},
        {"type": "attempt", "t": "2026-05-21T09:42:01-04:00", "decision": "d1", "attempt": 1,
         "kind": "entry", "symbol": "TQQQ", "side": "buy", "qty": "6"},
        {"type": "answer", "t": "2026-05-21T09:42:11-04:00", "decision": "d1", "attempt": 1,
         "result": "timeout", "placed": True},
        {"type": "price", "t": "2026-06-21T09:30:00-04:00", "symbol": "TQQQ", "price": "76.00"},
        {"type": "end", "t": "2026-06-21T16:00:00-04:00"},
    ]  # fmt: skip
    session.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = replay_session(session, [Mode.FULL])
    full = result.totals[Mode.FULL]
    assert full.untracked_shares_at_end == {}  # the guard's ledger holds the 6 the broker holds
    assert full.phantom_entry_block_secs == 0
    assert passes[0] < 100, passes[0]  # a month walked pass by pass would be ~44,000
