"""Replay figures and words an acceptance audit found wrong: notional exposure, lost answers, wide columns."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from replay import Mode, replay_session
from replay.table import totals_table

HEADER = '{"type": "session", "version": 1, "start": "2026-05-21T09:30:00-04:00"}\n'
PRICE = '{"type": "price", "t": "2026-05-21T09:30:00-04:00", "symbol": "TQQQ", "price": "75.33"}\n'


def attempt(t: str, n: int, **size: str) -> str:
    fields = {"type": "attempt", "t": f"2026-05-21T{t}-04:00", "decision": "d1", "attempt": n,
              "kind": "entry", "symbol": "TQQQ", "side": "buy", **size}  # fmt: skip
    return json.dumps(fields) + "\n"


def answer(t: str, n: int, result: str, **extra: object) -> str:
    fields = {
        "type": "answer",
        "t": f"2026-05-21T{t}-04:00",
        "decision": "d1",
        "attempt": n,
        "result": result,
    }
    return json.dumps({**fields, **extra}) + "\n"


def test_a_blocked_notional_retry_counts_its_notional_as_exposure(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(
        HEADER + PRICE
        + attempt("09:42:00", 1, notional="500") + answer("09:42:10", 1, "timeout", placed=True)
        + attempt("09:42:12", 2, notional="500")
    )  # fmt: skip
    result = replay_session(path, [Mode.FULL])
    full = result.totals[Mode.FULL]
    assert full.duplicate_attempts_blocked == 1
    assert full.exposure_blocked_usd == Decimal("500.0000")


def test_a_lost_answer_that_placed_nothing_is_not_refused_by_the_broker(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(
        HEADER + PRICE + attempt("09:42:00", 1, qty="6") + answer("09:42:10", 1, "dropped", placed=False)
    )
    result = replay_session(path, list(Mode), collect_rows=True)
    (row,) = result.rows
    assert {mode.value: o.label for mode, o in row.outcomes.items()} == {  # type: ignore[union-attr]
        "none": "not placed (lost)",
        "entry-only": "not placed (lost)",
        "full": "not placed (lost)",
    }


def test_wide_figures_never_run_together(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(HEADER + PRICE + attempt("09:42:00", 1, qty="6.123456789123"))
    totals = replay_session(path, list(Mode)).totals
    for mode in totals:
        totals[mode].untracked_shares_at_end = {"SQQQ": Decimal(-28), "TQQQ": Decimal("21.123456789")}
    last = totals_table(totals)[-1]
    assert last.count("SQQQ -28, TQQQ +21.123456789") == 3
    assert "TQQQ +21.123456789  SQQQ -28" in last  # two spaces between columns, however wide
