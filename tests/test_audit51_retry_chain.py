"""`tradeguard import alpaca-orders`: a retry loop's third order is a suspected duplicate too.

README: the orders that look like duplicates are those with the same symbol, side and quantity
within 60 s (with random client ids). A bot whose submit times out every 30 s sends one decision
at 0 s, 35 s and 70 s. The third was compared with the first only (70 s: not a duplicate), so it
was replayed as a decision of its own: the guard was shown placing it, and the figures missed a
duplicate that reached the broker. It is within 60 s of the order before it, which repeats the
same decision: the whole chain is one decision.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tradeguard.cli import main


def _order(n: int, second: int) -> dict[str, Any]:
    at = f"2026-05-21T13:42:{second:02d}Z" if second < 60 else f"2026-05-21T13:43:{second - 60:02d}Z"
    return {
        "id": f"00000000-0000-4000-8000-{n:012d}", "client_order_id": f"5f0c1e2a-0000-4000-8000-{n:012d}",
        "submitted_at": at, "created_at": at, "filled_at": at, "symbol": "TQQQ", "qty": "6",
        "filled_qty": "6", "filled_avg_price": "75.31", "type": "market", "side": "buy",
        "time_in_force": "day", "status": "filled", "order_class": "", "legs": None,
    }  # fmt: skip


def test_each_order_of_a_retry_chain_within_the_window_of_the_one_before_is_a_duplicate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = [_order(1, 0), _order(2, 35), _order(3, 70)]
    source, session = tmp_path / "orders.json", tmp_path / "orders.jsonl"
    source.write_text(json.dumps(history))

    assert main(["import", "alpaca-orders", str(source), "-o", str(session), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["suspected_duplicates"] == 2
    assert [(d["id"], d["duplicate_of"]) for d in report["duplicates"]] == [
        (history[1]["id"], history[0]["id"]),
        (history[2]["id"], history[1]["id"]),  # the order that puts it within the window
    ]
    assert [d["seconds_after"] for d in report["duplicates"]] == [35.0, 35.0]
    assert report["decisions"] == 1

    assert main(["replay", str(session), "--compare", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["none"]["duplicate_orders_sent"] == 2
    assert figures["full"]["duplicate_attempts_blocked"] == 2
    assert figures["full"]["orders_placed"] == 1


def test_the_same_order_again_after_the_window_is_a_new_decision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = [_order(1, 0), _order(2, 35), _order(3, 100)]  # 65 s after the one before it
    source, session = tmp_path / "orders.json", tmp_path / "orders.jsonl"
    source.write_text(json.dumps(history))

    assert main(["import", "alpaca-orders", str(source), "-o", str(session), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [d["id"] for d in report["duplicates"]] == [history[1]["id"]]
    assert report["decisions"] == 2
