"""`tradeguard import alpaca-orders` of a history holding a multi-leg (mleg) options order.

alpaca-py documents (`alpaca.trading.models.Order`) that an `mleg` order leaves `symbol`, `side`,
`type` and `asset_class` out of its top level (Alpaca sends `""`, the model holds None): each leg
names its own. A history holding one such order was refused whole ("order without symbol,
side", exit 2), so an account that ever traded a spread could not see what a guard would have
blocked on its stock orders. tradeguard does not guard multi-leg orders (`GuardedTradingClient`
passes them by): the order and its legs are kept as one note, and the rest is imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from alpaca.trading.models import Order

from tradeguard.cli import main


def _order(n: int, at: str, **fields: Any) -> dict[str, Any]:
    """One order as Alpaca's REST API sends it (`raw_data=True`): every field, nulls included."""
    order: dict[str, Any] = {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "client_order_id": f"5f0c1e2a-0000-4000-8000-{n:012d}",
        "created_at": at, "updated_at": at, "submitted_at": at, "filled_at": at,
        "expired_at": None, "canceled_at": None, "failed_at": None, "replaced_at": None,
        "replaced_by": None, "replaces": None, "asset_id": "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415",
        "symbol": "TQQQ", "asset_class": "us_equity", "notional": None, "qty": "6", "filled_qty": "6",
        "filled_avg_price": "75.31", "order_class": "", "order_type": "market", "type": "market",
        "side": "buy", "time_in_force": "day", "limit_price": None, "stop_price": None,
        "status": "filled", "extended_hours": False, "legs": None, "trail_percent": None,
        "trail_price": None, "hwm": None, "position_intent": "buy_to_open", "subtag": None, "source": None,
    }  # fmt: skip
    order.update(fields)
    return order


def _spread(n: int, at: str) -> dict[str, Any]:
    """A filled call spread as Alpaca sends it: its top level names no symbol, side or type."""
    legs = [
        _order(n + 1, at, symbol="QQQ260618C00500000", asset_class="us_option", qty="1", filled_qty="1",
               filled_avg_price="12.40", side="buy", position_intent="buy_to_open", ratio_qty="1"),
        _order(n + 2, at, symbol="QQQ260618C00510000", asset_class="us_option", qty="1", filled_qty="1",
               filled_avg_price="8.10", side="sell", position_intent="sell_to_open", ratio_qty="1"),
    ]  # fmt: skip
    return _order(
        n, at, symbol="", side="", type="", order_type="", asset_id="", asset_class="", position_intent="",
        order_class="mleg", qty="1", filled_qty="1", filled_avg_price="4.30", limit_price="4.35", legs=legs,
    )  # fmt: skip


def _history() -> list[dict[str, Any]]:
    return [
        _order(1, "2026-05-21T13:42:00.123456789Z"),
        _order(2, "2026-05-21T13:42:03.5Z"),  # the same buy 3 s later under a fresh random id
        _spread(10, "2026-05-21T14:05:00.000000001Z"),
        _order(3, "2026-05-21T15:26:26Z", side="sell", position_intent="sell_to_close"),
    ]


@pytest.mark.parametrize("shape", ["raw_data", "model_dump"])
def test_a_history_with_a_spread_imports_its_stock_orders_and_keeps_the_spread_as_a_note(
    shape: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = _history()
    if shape == "model_dump":  # what `[o.model_dump(mode="json") for o in client.get_orders(...)]` writes
        history = [Order(**order).model_dump(mode="json") for order in history]
        assert history[2]["symbol"] is None and history[2]["side"] is None  # alpaca-py's own shape
    source, session = tmp_path / "orders.json", tmp_path / "orders.jsonl"
    source.write_text(json.dumps({"orders": history}, indent=2))

    assert main(["import", "alpaca-orders", str(source), "-o", str(session), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["suspected_duplicates"] == 1
    assert [d["id"] for d in report["duplicates"]] == [history[1]["id"]]
    events = [json.loads(line) for line in session.read_text().splitlines()]
    attempts = [e for e in events if e["type"] == "attempt"]
    assert [e["symbol"] for e in attempts] == ["TQQQ", "TQQQ", "TQQQ"]  # no leg replayed as an order
    notes = [e for e in events if e["type"] == "note" and e.get("tag") == "multi_leg"]
    assert len(notes) == 1
    assert history[2]["id"] in notes[0]["text"]
    assert "QQQ260618C00500000" in notes[0]["text"] and "QQQ260618C00510000" in notes[0]["text"]

    assert main(["replay", str(session), "--compare", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["none"]["duplicate_orders_sent"] == 1
    assert figures["full"]["duplicate_orders_sent"] == 0
    assert figures["full"]["duplicate_attempts_blocked"] == 1


def test_the_same_spread_listed_twice_is_one_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spread = _spread(10, "2026-05-21T14:05:00Z")
    source, session = tmp_path / "orders.json", tmp_path / "orders.jsonl"
    source.write_text(json.dumps([_order(1, "2026-05-21T13:42:00Z"), spread, spread]))

    assert main(["import", "alpaca-orders", str(source), "-o", str(session), "--json", "--force"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["repeated_rows_dropped"] == 1
    assert report["multi_leg_orders"] == 1
    assert main(["import", "alpaca-orders", str(source), "-o", str(session), "--force"]) == 0
    said = capsys.readouterr().out
    assert "1 orders (1 repeated row of the same order id dropped), 0 suspected duplicates" in said
    assert "1 multi-leg options order (kept as notes: not guarded)" in said
    events = [json.loads(line) for line in session.read_text().splitlines()]
    assert sum(1 for e in events if e.get("tag") == "multi_leg") == 1
