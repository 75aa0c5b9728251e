"""Imports replay what each order did: its time in force, its fills, nothing for what never executed.

Audit 12b: crypto orders refused in the replay for a `day` time in force the history never had,
rejected and still-open orders replayed as filled, claim records that `tradeguard replay` then
refused. Each test imports with the real importer, replays through the real paper brokers of
every mode, and checks the figures.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from replay import Mode, replay_session
from replay.importers import import_alpaca_orders, import_claims
from replay.metrics import Totals
from tradeguard import AttemptEvent, NoteEvent, PriceEvent, SessionFormatError, open_session
from tradeguard.cli import main

_ids = iter(range(1, 10_000))


def order(
    sec: int,
    symbol: str,
    side: str,
    qty: str | None,
    status: str = "filled",
    filled: str | None = None,
    price: str | None = None,
    **kw: object,
) -> dict[str, object]:
    """An order as alpaca-py's `Order.model_dump(mode="json")` writes it (random client ids)."""
    t = f"2026-06-01T13:{30 + sec // 60:02d}:{sec % 60:02d}Z"
    filled = filled if filled is not None else (qty if status == "filled" else "0")
    crypto = "/" in symbol or symbol.endswith("USD")
    fields: dict[str, object] = {
        "id": str(uuid.UUID(int=next(_ids))), "client_order_id": str(uuid.uuid4()),
        "created_at": t, "submitted_at": t, "filled_at": t if filled != "0" else None,
        "replaced_by": None, "replaces": None, "symbol": symbol,
        "asset_class": "crypto" if crypto else "us_equity", "notional": None, "qty": qty,
        "filled_qty": filled, "filled_avg_price": price if filled != "0" else None,
        "order_class": "simple", "order_type": "market", "type": "market", "side": side,
        "time_in_force": "gtc" if crypto else "day", "limit_price": None, "stop_price": None,
        "status": status, "legs": None, "position_intent": None,
    }  # fmt: skip
    if "limit_price" in kw:
        fields.update(order_type="limit", type="limit")
    return {**fields, **kw}


def replay_orders(
    tmp_path: Path, orders: list[dict[str, object]]
) -> tuple[dict[str, object], dict[Mode, Totals]]:
    history = tmp_path / "orders.json"
    history.write_text(json.dumps(orders[::-1], indent=1))  # newest first, as get_orders lists them
    report = import_alpaca_orders(history, tmp_path / "s.jsonl")
    return report.as_dict(), replay_session(tmp_path / "s.jsonl", list(Mode)).totals


def events_of(path: Path) -> list[object]:
    with open_session(path) as session:
        return [event for _, event in session]


def attempts_of(path: Path) -> list[AttemptEvent]:
    return [e for e in events_of(path) if isinstance(e, AttemptEvent)]


# D1: a crypto order keeps its time in force; a source that names none gives a pair gtc.


def test_two_identical_filled_crypto_buys_replay_as_one_duplicate_executed(tmp_path: Path) -> None:
    orders = [
        order(0, "BTC/USD", "buy", "0.01", price="100000"),
        order(3, "BTC/USD", "buy", "0.01", price="100000"),
    ]
    doc, totals = replay_orders(tmp_path, orders)
    assert doc["suspected_duplicates"] == 1
    assert [a.time_in_force for a in attempts_of(tmp_path / "s.jsonl")] == ["gtc", "gtc"]
    assert [totals[m].orders_placed for m in Mode] == [2, 1, 1]  # not 422 "invalid crypto time_in_force"
    assert [totals[m].duplicate_orders_executed for m in Mode] == [1, 0, 0]


def test_a_notional_crypto_buy_then_its_sell_replay_placed(tmp_path: Path) -> None:
    orders = [
        order(0, "BTC/USD", "buy", None, filled="0.005", price="100000", notional="500"),
        order(300, "BTC/USD", "sell", "0.005", price="100100"),
    ]
    _doc, totals = replay_orders(tmp_path, orders)
    for mode in Mode:
        assert (totals[mode].orders_placed, totals[mode].untracked_shares_at_end) == (2, {}), mode


def test_a_csv_export_without_time_in_force_gives_a_pair_gtc_and_a_stock_day(tmp_path: Path) -> None:
    history = tmp_path / "orders.csv"
    history.write_text(
        "Symbol,Side,Qty,Filled Qty,Avg Fill Price,Status,Submitted At\n"
        "BTC/USD,buy,0.01,0.01,100000,filled,2026-06-01T13:30:00Z\n"
        "AAPL,buy,10,10,200,filled,2026-06-01T13:30:01Z\n"
    )
    import_alpaca_orders(history, tmp_path / "s.jsonl")
    assert [(a.symbol, a.time_in_force) for a in attempts_of(tmp_path / "s.jsonl")] == [
        ("BTC/USD", "gtc"),
        ("AAPL", "day"),
    ]
    totals = replay_session(tmp_path / "s.jsonl", [Mode.NONE]).totals
    assert totals[Mode.NONE].orders_placed == 2


def test_claim_records_of_a_pair_replay_as_gtc_orders(tmp_path: Path) -> None:
    records = [
        {"request_id": "order:BTC/USD:buy:1:2026-05-21T09:49:00-04:00", "symbol": "BTC/USD", "side": "buy",
         "qty": 1, "claimed_at": "2026-05-21T09:49:01-04:00", "outcome": "COMMITTED",
         "caller_interpretation": "SUCCESS", "broker_order_id": "o1"},
    ]  # fmt: skip
    (tmp_path / "rec.json").write_text(json.dumps(records))
    import_claims(tmp_path / "rec.json", tmp_path / "s.jsonl")
    assert [a.time_in_force for a in attempts_of(tmp_path / "s.jsonl")] == ["gtc"]
    totals = replay_session(tmp_path / "s.jsonl", list(Mode)).totals
    assert [totals[m].orders_placed for m in Mode] == [1, 1, 1]


# D2: a rejected order placed nothing: a note, never a duplicate nor what one repeats.


def test_a_rejected_buy_then_the_same_buy_filled_is_one_order_and_no_duplicate(tmp_path: Path) -> None:
    orders = [
        order(0, "AAPL", "buy", "10", status="rejected"),
        order(5, "AAPL", "buy", "10", price="200"),
    ]
    doc, totals = replay_orders(tmp_path, orders)
    assert (doc["suspected_duplicates"], doc["rejected_orders"], doc["attempts"]) == (0, 1, 1)
    (note,) = [e for e in events_of(tmp_path / "s.jsonl") if isinstance(e, NoteEvent)]
    assert note.tag == "rejected" and "placed nothing" in note.text
    for mode in Mode:
        assert (totals[mode].orders_placed, totals[mode].duplicate_attempts) == (1, 0), mode
    assert totals[Mode.NONE].untracked_shares_at_end == {"AAPL": Decimal(10)}  # the bot's 10, not 20


def test_a_rejected_order_is_not_replayed_as_placed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orders = [
        order(0, "AAPL", "buy", "1000", status="rejected"),
        order(5, "AAPL", "buy", "10", price="200"),
    ]
    _doc, totals = replay_orders(tmp_path, orders)
    assert [a.qty for a in attempts_of(tmp_path / "s.jsonl")] == [Decimal(10)]
    assert totals[Mode.NONE].untracked_shares_at_end == {"AAPL": Decimal(10)}  # not 1,010
    assert (
        main(["import", "alpaca-orders", str(tmp_path / "orders.json"), "-o", str(tmp_path / "c.jsonl")]) == 0
    )
    assert "2 orders, 0 suspected duplicates; 1 rejected (kept as notes)" in capsys.readouterr().out


# D3: an order replays what it filled; an open one with no fill is a note; no price from a limit.


def test_an_open_limit_buy_with_nothing_filled_replays_nothing_and_makes_no_price(tmp_path: Path) -> None:
    orders = [
        order(0, "MSFT", "buy", "1", price="400"),
        order(30, "AAPL", "buy", "10", status="new", limit_price="150"),
    ]
    doc, totals = replay_orders(tmp_path, orders)
    assert (doc["open_orders"], doc["attempts"]) == (1, 1)
    events = events_of(tmp_path / "s.jsonl")
    (note,) = [e for e in events if isinstance(e, NoteEvent)]
    assert note.tag == "open" and "still new with nothing filled" in note.text
    assert [(e.symbol, e.price) for e in events if isinstance(e, PriceEvent)] == [("MSFT", Decimal(400))]
    for mode in Mode:
        assert "AAPL" not in totals[mode].untracked_shares_at_end, mode  # the account holds none


def test_a_still_open_limit_after_a_filled_market_buy_is_no_duplicate(tmp_path: Path) -> None:
    orders = [
        order(0, "AAPL", "buy", "10", price="200"),
        order(60, "AAPL", "buy", "10", status="new", limit_price="190"),
    ]
    doc, totals = replay_orders(tmp_path, orders)
    assert doc["suspected_duplicates"] == 0
    assert [totals[m].duplicate_orders_executed for m in Mode] == [0, 0, 0]
    assert totals[Mode.NONE].untracked_shares_at_end == {"AAPL": Decimal(10)}  # not 20


def test_suspects_are_grouped_by_order_type_and_prices_too(tmp_path: Path) -> None:
    # Both filled: a market buy, then a limit buy of the same size (another order, not a retry).
    orders = [
        order(0, "AAPL", "buy", "10", price="200"),
        order(30, "AAPL", "buy", "10", price="189.90", limit_price="190"),
        order(40, "AAPL", "buy", "10", price="189.90", limit_price="190"),  # this one repeats it
    ]
    doc, totals = replay_orders(tmp_path, orders)
    (suspect,) = doc["duplicates"]
    assert (suspect["id"], suspect["duplicate_of"]) == (orders[2]["id"], orders[1]["id"])
    assert [totals[m].duplicate_orders_executed for m in Mode] == [1, 0, 0]


def test_a_partially_filled_open_order_replays_what_it_filled(tmp_path: Path) -> None:
    orders = [
        order(
            0, "AAPL", "buy", "100", status="partially_filled", filled="40", price="200", limit_price="200"
        ),
        order(100, "MSFT", "buy", "10", status="done_for_day", filled="3", price="400", limit_price="400"),
    ]
    _doc, totals = replay_orders(tmp_path, orders)
    attempts = attempts_of(tmp_path / "s.jsonl")
    assert [(a.symbol, a.qty) for a in attempts] == [("AAPL", Decimal(40)), ("MSFT", Decimal(3))]
    assert "still partially_filled with 40 of 100 filled" in (attempts[0].reason or "")
    assert totals[Mode.NONE].untracked_shares_at_end == {"AAPL": Decimal(40), "MSFT": Decimal(3)}


# D5: a replacement that never executed is nothing a later order repeats.


def test_an_order_after_a_canceled_replacement_repeats_nothing(tmp_path: Path) -> None:
    a, b = str(uuid.UUID(int=next(_ids))), str(uuid.UUID(int=next(_ids)))
    orders = [
        order(0, "AAPL", "buy", "10", status="replaced", limit_price="199", id=a, replaced_by=b),
        order(10, "AAPL", "buy", "10", status="canceled", limit_price="200", id=b, replaces=a),
        order(30, "AAPL", "buy", "10", price="199.90", limit_price="200"),  # the same order as b, sent anew
    ]
    doc, totals = replay_orders(tmp_path, orders)
    assert (doc["suspected_duplicates"], doc["duplicates"]) == (0, [])
    for mode in Mode:
        assert (totals[mode].duplicate_attempts, totals[mode].orders_placed) == (0, 1), mode


# D4: what `tradeguard import claims` writes, `tradeguard replay` replays.

FLIP = "order:TQQQ:sell:12:2026-05-21T09:49:00-04:00:V20_FAST_FLIP pos=BULL opp=BEAR_BULL_TO_BEAR"
SIDE_QUIRK = [  # two records of one request_id; the SKIP carries the other side (LOGS.md's quirk)
    {"request_id": FLIP, "symbol": "TQQQ", "side": "sell", "qty": 12, "stage": "base",
     "claimed_at": "2026-05-21T09:49:01-04:00", "outcome": "COMMITTED", "caller_interpretation": "SUCCESS",
     "broker_order_id": "o1"},
    {"request_id": FLIP, "symbol": "TQQQ", "side": "buy", "qty": 12, "stage": "base",
     "claimed_at": "2026-05-21T09:49:12-04:00", "outcome": "SKIP", "caller_interpretation": "SKIPPED"},
]  # fmt: skip
PAIR = "order:BTCUSD:buy:1:2026-05-21T09:49:00-04:00"
TWO_SPELLINGS = [
    {"request_id": PAIR, "symbol": "BTC/USD", "side": "buy", "qty": 1,
     "claimed_at": "2026-05-21T09:49:01-04:00", "outcome": "COMMITTED", "caller_interpretation": "SUCCESS",
     "broker_order_id": "o1"},
    {"request_id": PAIR, "symbol": "BTCUSD", "side": "buy", "qty": 1,
     "claimed_at": "2026-05-21T09:49:12-04:00", "outcome": "SKIP", "caller_interpretation": "SKIPPED"},
]  # fmt: skip


def import_and_replay_claims(tmp_path: Path, records: list[dict[str, object]]) -> list[object]:
    (tmp_path / "rec.json").write_text(json.dumps(records))
    assert main(["import", "claims", str(tmp_path / "rec.json"), "-o", str(tmp_path / "s.jsonl")]) == 0
    assert main(["replay", str(tmp_path / "s.jsonl"), "--compare", "--json"]) == 0  # was exit 2
    return events_of(tmp_path / "s.jsonl")


def test_claim_records_whose_skip_carries_the_other_side_replay_as_one_order(tmp_path: Path) -> None:
    events = import_and_replay_claims(tmp_path, SIDE_QUIRK)
    attempts = [(e.attempt, e.side) for e in events if isinstance(e, AttemptEvent)]
    assert attempts == [(1, "sell"), (2, "sell")]  # the side of the record that sent the order
    (note,) = [e for e in events if isinstance(e, NoteEvent)]
    assert note.tag == "side_mismatch" and "says buy" in note.text


def test_claim_records_of_one_pair_under_two_spellings_replay_as_one_order(tmp_path: Path) -> None:
    events = import_and_replay_claims(tmp_path, TWO_SPELLINGS)
    assert [e.symbol for e in events if isinstance(e, AttemptEvent)] == ["BTC/USD", "BTC/USD"]
    totals = replay_session(tmp_path / "s.jsonl", list(Mode)).totals
    assert [totals[m].orders_placed for m in Mode] == [2, 1, 1]  # unguarded, the blocked retry goes out
    assert [totals[m].duplicate_orders_executed for m in Mode] == [1, 0, 0]


def test_a_replay_takes_a_retry_under_the_pairs_other_spelling_and_still_refuses_another_symbol(
    tmp_path: Path,
) -> None:
    def session(second: str) -> Path:
        lines = [
            {"type": "session", "version": 2, "start": "2026-05-21T09:49:00-04:00"},
            {"type": "attempt", "t": "2026-05-21T09:49:01-04:00", "decision": "d", "attempt": 1,
             "kind": "entry", "symbol": "BTC/USD", "side": "buy", "qty": "1", "time_in_force": "gtc"},
            {"type": "attempt", "t": "2026-05-21T09:49:12-04:00", "decision": "d", "attempt": 2,
             "kind": "entry", "symbol": second, "side": "buy", "qty": "1", "time_in_force": "gtc"},
        ]  # fmt: skip
        path = tmp_path / f"{second.replace('/', '_')}.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        return path

    totals = replay_session(session("BTCUSD"), list(Mode)).totals
    assert [totals[m].duplicate_attempts for m in Mode] == [1, 1, 1]
    with pytest.raises(
        SessionFormatError, match=r"differs from its attempt 1 in symbol \(ETH/USD, not BTC/USD\)"
    ):
        replay_session(session("ETH/USD"), [Mode.NONE])


def test_orders_of_one_pair_under_both_spellings_are_one_symbol(tmp_path: Path) -> None:
    orders = [
        order(0, "BTC/USD", "buy", "0.01", price="100000"),
        order(3, "BTCUSD", "buy", "0.01", price="100000"),  # the same buy, sent again
        order(300, "BTCUSD", "sell", "0.02", price="100100"),
    ]
    doc, totals = replay_orders(tmp_path, orders)
    assert doc["suspected_duplicates"] == 1
    assert {a.symbol for a in attempts_of(tmp_path / "s.jsonl")} == {"BTC/USD"}
    assert [totals[m].duplicate_orders_executed for m in Mode] == [1, 0, 0]
