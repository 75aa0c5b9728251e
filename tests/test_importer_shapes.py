"""`tradeguard import` and `replay` of source shapes real tools write that were refused.

Each was refused with exit 2 although the record in it is whole (audit 51's open items): a
session header whose version a float-keeping writer wrote `1.0`; an order history of one order
saved as the object alone (`json.dumps(order.model_dump(mode="json"))`); a claim-records file
with a `{"_comment": ...}` element for its readers. And the guard's database export's own fill
price (`filled_avg_price` in the `result` column) was not used: the replay priced the symbol at
its default $100 and misstated the duplicate exposure.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tradeguard import open_session
from tradeguard.cli import main

HEADER = {"type": "session", "version": 1, "start": "2026-05-21T09:30:00-04:00"}


def test_a_session_header_with_version_one_point_zero_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        {**HEADER, "version": 1.0},
        {"type": "price", "t": "2026-05-21T09:41:00-04:00", "symbol": "TQQQ", "price": "75.33"},
        {"type": "attempt", "t": "2026-05-21T09:42:01-04:00", "decision": "d1", "attempt": 1,
         "kind": "entry", "symbol": "TQQQ", "side": "buy", "qty": "6", "bar": "2026-05-21T09:42:00-04:00"},
        {"type": "answer", "t": "2026-05-21T09:42:11-04:00", "decision": "d1", "attempt": 1,
         "result": "timeout", "after_secs": 10, "placed": True},
        {"type": "attempt", "t": "2026-05-21T09:42:12-04:00", "decision": "d1", "attempt": 2,
         "kind": "entry", "symbol": "TQQQ", "side": "buy", "qty": "6", "bar": "2026-05-21T09:42:00-04:00"},
    ]  # fmt: skip
    session = tmp_path / "s.jsonl"
    session.write_text("".join(json.dumps(line) + "\n" for line in lines))

    assert main(["replay", str(session), "--compare", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["none"]["duplicate_orders_sent"] == 1
    assert figures["full"]["duplicate_attempts_blocked"] == 1


@pytest.mark.parametrize("version", [1.5, "1", True])
def test_a_version_that_is_not_a_whole_number_is_still_refused_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], version: object
) -> None:
    session = tmp_path / "s.jsonl"
    session.write_text(json.dumps({**HEADER, "version": version}) + "\n")
    assert main(["replay", str(session)]) == 2
    err = capsys.readouterr().err
    assert f"{session}:1" in err and "not supported" in err


def _order() -> dict[str, object]:
    at = "2026-05-21T13:42:00.5Z"
    return {
        "id": "00000000-0000-4000-8000-000000000001", "client_order_id": "5f0c1e2a-0000-4000-8000-1",
        "created_at": at, "updated_at": at, "submitted_at": at, "filled_at": at, "symbol": "TQQQ",
        "asset_class": "us_equity", "qty": "6", "filled_qty": "6", "filled_avg_price": "75.31",
        "order_class": "", "order_type": "market", "type": "market", "side": "buy", "time_in_force": "day",
        "status": "filled", "extended_hours": False, "legs": None, "position_intent": None,
    }  # fmt: skip


@pytest.mark.parametrize("indent", [None, 2])
def test_an_order_history_of_one_order_saved_as_the_object_alone_imports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], indent: int | None
) -> None:
    source, session = tmp_path / "order.json", tmp_path / "s.jsonl"
    source.write_text(json.dumps(_order(), indent=indent) + "\n")

    assert main(["import", "alpaca-orders", str(source), "-o", str(session), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["orders"] == 1
    with open_session(session) as events:
        attempts = [e for _, e in events if e.type == "attempt"]
    assert [(a.symbol, a.side, a.qty) for a in attempts] == [("TQQQ", "buy", Decimal(6))]


def test_an_object_that_is_no_order_is_still_refused_as_the_wrong_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "orders.json"
    source.write_text(json.dumps({"next_page_token": None}))
    assert main(["import", "alpaca-orders", str(source), "-o", str(tmp_path / "s.jsonl")]) == 2
    assert 'expected a list of orders or {"orders": [...]}' in capsys.readouterr().err


def test_claim_records_with_a_comment_element_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = {
        "request_id": "order:SAMPLE_STRATEGY:SQQQ:buy:12:add2:2026-09-08T09:39:00", "symbol": "SQQQ",
        "side": "buy", "qty": 12, "stage": "add2", "claimed_at": "2026-09-08T09:41:11-04:00",
        "outcome": "COMMITTED", "caller_interpretation": "SUCCESS", "broker_order_id": "b-1",
    }  # fmt: skip
    source, session = tmp_path / "claims.json", tmp_path / "s.jsonl"
    source.write_text(json.dumps([{"_comment": "exported 2026-09-08 after the close"}, record]))

    assert main(["import", "claims", str(source), "-o", str(session), "--json"]) == 0
    capsys.readouterr()
    with open_session(session) as events:
        attempts = [e for _, e in events if e.type == "attempt"]
    assert [(a.symbol, a.qty) for a in attempts] == [("SQQQ", Decimal(12))]


def test_a_claim_record_without_a_request_id_is_still_refused_naming_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "claims.json"
    source.write_text('[\n{"_comment": "fine"},\n{"symbol": "SQQQ", "_comment": "no key"}\n]')
    assert main(["import", "claims", str(source), "-o", str(tmp_path / "s.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"{source}:3" in err and "request_id" in err


def test_the_guard_exports_fill_price_prices_the_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = (
        "{'id': 'dc30f204-ed47-4c4b-ba15-c8af8b7336f0', 'client_order_id': 'a2c7', 'symbol': 'TQQQ', "
        "'side': 'buy', 'qty': '6', 'status': 'filled', 'filled_avg_price': '75.33'}"
    )
    export = tmp_path / "guard.csv"
    export.write_text(
        "index,request_id,result,status,created_at\n"
        f'1,order:TQQQ:buy:6:2026-05-21T09:42:00-04:00,"""{result}""",filled,2026-05-21 09:42:00\n'
    )
    session = tmp_path / "s.jsonl"
    assert main(["import", "claims", str(export), "-o", str(session), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unpriced_symbols"] == []
    with open_session(session) as events:
        prices = [(e.symbol, e.price) for _, e in events if e.type == "price"]
    assert prices == [("TQQQ", Decimal("75.33"))]
