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


def test_a_retry_refused_for_its_reused_client_order_id_is_refused_not_executed(tmp_path: Path) -> None:
    # The bot retried a lost answer under its own client_order_id; Alpaca answered 422 "client_order_id
    # must be unique": the retry reached the broker and placed nothing (the broker holds one order).
    coid = {"client_order_id": "bot-0942-breakout"}
    path = tmp_path / "s.jsonl"
    path.write_text(
        HEADER + PRICE
        + attempt("09:42:01", 1, qty="6", **coid) + answer("09:42:01", 1, "timeout", placed=True)
        + attempt("09:42:12", 2, qty="6", **coid)
        + answer("09:42:12", 2, "rejected", status=422, body="client_order_id must be unique")
    )  # fmt: skip
    result = replay_session(path, [Mode.NONE], collect_rows=True)
    none = result.totals[Mode.NONE]
    assert (none.duplicate_orders_sent, none.duplicate_orders_executed) == (1, 0)
    assert none.duplicate_attempts_refused_by_broker == 1
    assert none.duplicate_exposure_executed_usd == 0 and none.orders_placed == 1
    assert none.untracked_shares_at_end == {"TQQQ": Decimal(6)}  # one order of 6, not two
    retry = result.rows[-1].outcomes[Mode.NONE]  # type: ignore[union-attr]
    assert retry.label == "refused by broker"
    assert "client_order_id must be unique" in retry.detail


def test_a_lost_answer_under_a_reused_client_order_id_is_not_the_earlier_order(tmp_path: Path) -> None:
    # The retry's answer was lost and the broker placed nothing for it: looking its client id up
    # finds the first attempt's order, which is not a second order.
    coid = {"client_order_id": "bot-0942-breakout"}
    path = tmp_path / "s.jsonl"
    path.write_text(
        HEADER + PRICE
        + attempt("09:42:01", 1, qty="6", **coid) + answer("09:42:01", 1, "filled")
        + attempt("09:42:12", 2, qty="6", **coid) + answer("09:42:12", 2, "dropped", placed=False)
    )  # fmt: skip
    none = replay_session(path, [Mode.NONE]).totals[Mode.NONE]
    assert (none.orders_placed, none.duplicate_orders_executed) == (1, 0)
    assert none.duplicate_exposure_executed_usd == 0
