"""`tradeguard import` of a JSON source saved one record per line (JSON Lines).

A script that saves each order as it pages through `get_orders` (or each claim record as its bot
makes it) writes `json.dumps(record)` and a line break per record, not one list. Such a file was
refused at its second line as "not valid JSON: Extra data at column 1", which says nothing a new
user can act on. It is read as the list it stands for; a line that is not one JSON object is
refused naming that line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from alpaca.trading.models import Order

from tradeguard.cli import main


def _order(n: int, at: str, side: str = "buy") -> dict[str, Any]:
    return {
        "id": f"00000000-0000-4000-8000-{n:012d}", "client_order_id": f"5f0c1e2a-0000-4000-8000-{n:012d}",
        "created_at": at, "updated_at": at, "submitted_at": at, "filled_at": at, "symbol": "TQQQ",
        "asset_class": "us_equity", "qty": "6", "filled_qty": "6", "filled_avg_price": "75.31",
        "order_class": "", "order_type": "market", "type": "market", "side": side, "time_in_force": "day",
        "status": "filled", "extended_hours": False, "legs": None, "position_intent": None,
    }  # fmt: skip


def test_an_order_history_saved_one_order_per_line_imports_and_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = [_order(1, "2026-05-21T13:42:00.5Z"), _order(2, "2026-05-21T13:42:03.25Z")]
    source, session = tmp_path / "orders.json", tmp_path / "orders.jsonl"
    # As `for o in client.get_orders(...): f.write(json.dumps(o.model_dump(mode="json")) + "\n")`.
    source.write_text("".join(json.dumps(Order(**o).model_dump(mode="json")) + "\n" for o in history))

    assert main(["import", "alpaca-orders", str(source), "-o", str(session), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["orders"], report["suspected_duplicates"]) == (2, 1)
    assert report["duplicates"][0]["id"] == history[1]["id"]
    assert main(["replay", str(session), "--compare", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["none"]["duplicate_orders_sent"] == 1
    assert figures["full"]["duplicate_attempts_blocked"] == 1


def test_claim_records_one_per_line_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = {
        "request_id": "order:SAMPLE_STRATEGY:SQQQ:buy:12:add2:2026-09-08T09:39:00", "symbol": "SQQQ",
        "side": "buy", "qty": 12, "stage": "add2", "claimed_at": "2026-09-08T09:41:11-04:00",
        "outcome": "COMMITTED", "caller_interpretation": "SUCCESS", "broker_order_id": "b-1",
    }  # fmt: skip
    retry = {**record, "claimed_at": "2026-09-08T09:41:13-04:00", "outcome": "SKIP", "broker_order_id": None}
    source, session = tmp_path / "claims.json", tmp_path / "claims.jsonl"
    source.write_text(json.dumps(record) + "\n\n" + json.dumps(retry) + "\n")

    assert main(["import", "claims", str(source), "-o", str(session), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["attempts"], report["decisions"]) == (2, 1)


def test_a_bad_line_among_them_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, session = tmp_path / "orders.json", tmp_path / "orders.jsonl"
    source.write_text(json.dumps(_order(1, "2026-05-21T13:42:00Z")) + "\n" + '{"id": "cut short\n')

    assert main(["import", "alpaca-orders", str(source), "-o", str(session)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"tradeguard: error: {source}:2: not valid JSON")
    assert not session.exists()


def test_two_lists_one_after_the_other_are_still_refused_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, session = tmp_path / "orders.json", tmp_path / "orders.jsonl"
    source.write_text(json.dumps([_order(1, "2026-05-21T13:42:00Z")]) + "\n" + json.dumps([]) + "\n")

    assert main(["import", "alpaca-orders", str(source), "-o", str(session)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"{source}:2: not valid JSON: Extra data" in err[0]
