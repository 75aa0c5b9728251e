"""Importers read what bots of the May 21 kind really write (LOGS.md), quirks included."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from replay import Mode, replay_session
from replay.importers import import_alpaca_orders, import_bot_log, import_claims
from replay.metrics import Totals
from tradeguard import (
    AnswerEvent,
    AttemptEvent,
    ClaimStore,
    ManualClock,
    NoteEvent,
    OrderGateway,
    PaperBroker,
    PositionEvent,
    SessionFormatError,
    open_session,
)
from tradeguard.cli import main

DATA = Path(__file__).resolve().parent / "data"

# LOGS.md §1, verbatim, plus an ENTER/SKIP pair of one decision, an EXIT and a wrapped line.
BOT_LOG = (DATA / "bot.log").read_text()

# LOGS.md §2, verbatim rows (the result column is a dict repr quoted twice), plus a row whose
# reason suffix has spaces and `=`, and one whose key names the other side than its order.
SAFEAGENT_DB = (DATA / "safeagent_db.csv").read_text()

# LOGS.md §3: qty as a number and as a string; the dangerous SKIP read as SUCCESS with no order.
ADD2 = "order:SAMPLE_STRATEGY:SQQQ:buy:12:add2:2026-09-08T09:39:00"
CLAIMS_JSON = [
    {"request_id": ADD2, "symbol": "SQQQ", "side": "buy",
     "qty": 12, "stage": "add2", "claimed_at": "2026-09-08T09:39:02-04:00", "outcome": "PENDING",
     "caller_interpretation": "PENDING", "broker_order_id": None},
    {"request_id": ADD2, "symbol": "SQQQ", "side": "buy",
     "qty": "12", "stage": "add2", "claimed_at": "2026-09-08T09:41:11-04:00", "outcome": "SKIP",
     "caller_interpretation": "SUCCESS", "_comment": "the retry after a timeout"},
]  # fmt: skip


def events_of(path: Path) -> list[object]:
    with open_session(path) as session:
        return [event for _, event in session]


def test_bot_log_reads_the_malformed_offset_the_missing_bracket_and_keeps_every_other_line(
    tmp_path: Path,
) -> None:
    log = tmp_path / "bot.log"
    log.write_text(BOT_LOG)
    report = import_bot_log(log, tmp_path / "s.jsonl")
    events = events_of(tmp_path / "s.jsonl")
    attempts = [e for e in events if isinstance(e, AttemptEvent)]
    assert attempts[0].t.isoformat() == "2026-03-05T10:10:04-04:00"  # -040:00 read as -04:00
    assert [(a.decision, a.attempt, a.kind) for a in attempts] == [
        ("buy DDM qty=6 bar=2026-03-05T10:10:00-04:00", 1, "entry"),  # inferred: not in the log
        ("buy DDM qty=6 bar=2026-03-05T10:10:00-04:00", 2, "entry"),
        ("buy DDM qty=5 bar=2026-03-05T10:20:00-04:00", 1, "entry"),
        ("buy DDM qty=5 bar=2026-03-05T10:20:00-04:00", 2, "entry"),
        ("sell DDM qty=5 bar=2026-03-05T11:20:00-04:00", 1, "exit"),
    ]
    assert attempts[0].reason == "inferred: the first attempt of this decision is not in the log"
    blocked = [e for e in events if isinstance(e, AnswerEvent)]
    assert [(b.attempt, b.result, b.by) for b in blocked] == [(2, "blocked", "safeagent")] * 2
    notes = [e.text for e in events if isinstance(e, NoteEvent)]
    assert notes == [
        "STAY BEAR score=-4 bull=1 bear=5",
        "NO ENTRY: flat/no-trade-zone | score=1 bull_score=3 bear_score=2 bar=2026-03-05T11:15:00-04:00",
        "Traceback (most recent call last): a wrapped line without a time",
        "ENTRY BLOCKED: position held DDM",
        "ACCOUNT EQUITY WARN: 401 Client Error: Unauthorized for url: https://paper-api.alpaca.markets/v2/account",
        "Waiting for market open. Next open: 2026-05-25T09:30:00-04:00",
    ]
    assert report.notes == len(notes) and report.attempts == 5 and report.decisions == 3
    result = replay_session(tmp_path / "s.jsonl", list(Mode))
    assert result.totals[Mode.NONE].duplicate_orders_executed == 2
    assert result.totals[Mode.ENTRY_ONLY].duplicate_attempts_blocked == 2
    assert result.totals[Mode.FULL].duplicate_attempts_blocked == 2


def test_bot_log_order_line_without_a_bar_names_its_line(tmp_path: Path) -> None:
    log = tmp_path / "bot.log"
    log.write_text(BOT_LOG.splitlines()[1].replace(" bar=2026-03-05T10:20:00-04:00", "") + "\n")
    with pytest.raises(SessionFormatError, match=r"bot\.log:1: an order line without bar="):
        import_bot_log(log, tmp_path / "s.jsonl")


def test_safeagent_db_export_reads_the_dict_repr_reason_suffixes_and_side_quirk(tmp_path: Path) -> None:
    export = tmp_path / "guard.csv"
    export.write_text(SAFEAGENT_DB)
    report = import_claims(export, tmp_path / "s.jsonl")
    assert report.extra["shape"] == "SafeAgent database export"
    events = events_of(tmp_path / "s.jsonl")
    attempts = {a.decision: a for a in events if isinstance(a, AttemptEvent)}
    trail = attempts["order:SQQQ:sell:22:2026-03-05T12:39:00-04:00:TRAIL_EXIT_BEAR"]
    assert (trail.symbol, trail.side, trail.qty, trail.reason) == ("SQQQ", "sell", 22, "TRAIL_EXIT_BEAR")
    assert (trail.kind, trail.path) == ("exit", "order")  # an exit through the keyed order path
    flip = next(a for d, a in attempts.items() if d.startswith("order:TQQQ:sell:12"))
    assert flip.reason is not None and flip.reason.startswith("V20_FAST_FLIP pos=BULL opp=BEAR held=12.3")
    assert flip.side == "buy"  # the order's side wins over the key's
    # An exit row left PENDING with no order row after it: the guard's claim, no sell.
    assert "exit:SQQQ:6:2026-03-03T09:30:00.028098-04:00" not in attempts
    tags = sorted(e.tag for e in events if isinstance(e, NoteEvent) and e.tag)
    assert tags == ["pending", "pending", "side_mismatch"]
    answers = [e for e in events if isinstance(e, AnswerEvent)]
    assert {a.client_order_id for a in answers} == {"a2c75370-fbb9-4c44-9b45-36ae1fbd4ea1", "c-11"}


def test_safeagent_db_export_refuses_code_in_the_result_column(tmp_path: Path) -> None:
    export = tmp_path / "guard.csv"
    export.write_text(
        "index,request_id,result,status,created_at\n3,order:TQQQ:buy:1:2026-03-04T12:50:00-04:00,\"__import__('os').system('true')\",filled,x\n"
    )
    with pytest.raises(SessionFormatError, match=r"guard\.csv:2: result is not a Python dict literal"):
        import_claims(export, tmp_path / "s.jsonl")


def test_safeagent_claim_records_turn_a_skip_read_as_success_into_a_phantom(tmp_path: Path) -> None:
    records = tmp_path / "claims.json"
    records.write_text(json.dumps(CLAIMS_JSON, indent=2))
    import_claims(records, tmp_path / "s.jsonl")
    events = events_of(tmp_path / "s.jsonl")
    beliefs = [e.qty for e in events if isinstance(e, PositionEvent)]
    assert beliefs == [12]  # the bot believes it holds 12 SQQQ
    answers = [(a.attempt, a.result, a.placed) for a in events if isinstance(a, AnswerEvent)]
    assert answers == [(1, "timeout", False), (2, "blocked", None)]
    result = replay_session(tmp_path / "s.jsonl", [Mode.ENTRY_ONLY, Mode.FULL])
    # The bot believes in 12 SQQQ it never bought: the broker holds 12 fewer than its view.
    assert result.totals[Mode.ENTRY_ONLY].untracked_shares_at_end == {"SQQQ": Decimal(-12)}
    assert result.totals[Mode.FULL].duplicate_orders_executed == 0


def test_claim_records_name_the_line_of_a_bad_record(tmp_path: Path) -> None:
    records = tmp_path / "claims.json"
    bad = [CLAIMS_JSON[0], {**CLAIMS_JSON[1], "claimed_at": None}]
    records.write_text(json.dumps(bad, indent=2))
    with pytest.raises(SessionFormatError, match=r"claims\.json:13: claim record .* without claimed_at"):
        import_claims(records, tmp_path / "s.jsonl")


def test_tradeguards_own_audit_export_round_trips(tmp_path: Path) -> None:
    clock = ManualClock()
    with ClaimStore(f"sqlite:///{tmp_path / 'c.db'}", clock=clock) as store:
        gateway = OrderGateway(PaperBroker(clock=clock), store, agent_id="bot", clock=clock)
        gateway.enter("TQQQ", qty=6, intent="09:42 buy")
        clock.advance(5)
        gateway.enter("TQQQ", qty=6, intent="09:42 buy")
        gateway.exit("TQQQ", intent="11:26 exit")
        store.export_audit_csv(tmp_path / "audit.csv")
    report = import_claims(tmp_path / "audit.csv", tmp_path / "s.jsonl")
    assert report.extra["shape"] == "tradeguard audit export"
    attempts = [
        (e.decision, e.attempt, e.kind)
        for e in events_of(tmp_path / "s.jsonl")
        if isinstance(e, AttemptEvent)
    ]
    assert attempts == [("09:42 buy", 1, "entry"), ("09:42 buy", 2, "entry"), ("11:26 exit", 1, "exit")]
    result = replay_session(tmp_path / "s.jsonl", [Mode.NONE, Mode.FULL])
    # The bot alone never had the guard's client_order_id (tg-<key>): its retry goes out again and
    # fills (audit 18 #8; replayed under the guard's id, the broker refused it and hid the double).
    none = result.totals[Mode.NONE]
    assert (none.duplicate_orders_sent, none.duplicate_orders_executed) == (1, 1)
    assert none.duplicate_attempts_refused_by_broker == 0
    assert all(
        e.client_order_id is None for e in events_of(tmp_path / "s.jsonl") if isinstance(e, AttemptEvent)
    )
    assert result.totals[Mode.FULL].duplicate_attempts_blocked == 1


def test_audit_export_claims_sharing_an_intent_stay_separate_decisions(tmp_path: Path) -> None:
    # A flip names its exit and its entry on the other symbol alike: two claims, two decisions.
    clock = ManualClock()
    with ClaimStore(f"sqlite:///{tmp_path / 'c.db'}", clock=clock) as store:
        gateway = OrderGateway(PaperBroker(clock=clock), store, agent_id="bot", clock=clock)
        gateway.enter("TQQQ", qty=12, intent="09:42 buy")
        clock.advance(60)
        gateway.exit("TQQQ", intent="09:49 flip")
        clock.advance(2)
        gateway.exit("TQQQ", intent="09:49 flip")  # a retry of the exit, blocked
        clock.advance(2)
        gateway.enter("SQQQ", qty=2, intent="09:49 flip")
        store.export_audit_csv(tmp_path / "audit.csv")
    report = import_claims(tmp_path / "audit.csv", tmp_path / "s.jsonl")
    events = events_of(tmp_path / "s.jsonl")
    attempts = [(e.decision, e.attempt, e.symbol) for e in events if isinstance(e, AttemptEvent)]
    assert attempts == [
        ("09:42 buy", 1, "TQQQ"),
        ("09:49 flip (exit TQQQ)", 1, "TQQQ"),
        ("09:49 flip (exit TQQQ)", 2, "TQQQ"),
        ("09:49 flip (entry SQQQ)", 1, "SQQQ"),
    ]
    answers = [(e.decision, e.attempt, e.result) for e in events if isinstance(e, AnswerEvent)]
    assert ("09:49 flip (entry SQQQ)", 1, "filled") in answers
    assert report.decisions == 3
    result = replay_session(tmp_path / "s.jsonl", list(Mode))
    full = result.totals[Mode.FULL]
    assert (full.duplicate_attempts, full.duplicate_attempts_blocked, full.duplicate_orders_sent) == (1, 1, 0)
    assert result.totals[Mode.NONE].duplicate_attempts == 1  # the exit's retry, not the SQQQ entry


ORDERS = [
    {"id": "o1", "client_order_id": "5b0c7e4e-5c6f-4f1e-9f44-0a4d2b8f1c01", "symbol": "TQQQ", "side": "buy",
     "qty": "6", "filled_qty": "6", "filled_avg_price": "75.33", "status": "filled", "type": "market",
     "time_in_force": "day", "submitted_at": "2026-05-21T13:42:01.123456Z", "position_intent": None,
     "legs": None},
    {"id": "o2", "client_order_id": "9a1f3b2e-7d8c-4e5f-a6b7-c8d9e0f1a2b3", "symbol": "TQQQ", "side": "buy",
     "qty": 6, "filled_qty": 6, "filled_avg_price": 75.33, "status": "filled", "type": "market",
     "time_in_force": "day", "submitted_at": "2026-05-21T13:42:12Z"},
    {"id": "o3", "client_order_id": "bot-2026-05-21T09:47-add1", "symbol": "TQQQ", "side": "buy",
     "qty": "6", "filled_qty": "6", "filled_avg_price": "75.33", "status": "filled", "type": "market",
     "time_in_force": "day", "submitted_at": "2026-05-21T13:47:01Z"},
    {"id": "o4", "client_order_id": "bot-2026-05-21T09:47-add2", "symbol": "TQQQ", "side": "buy",
     "qty": "6", "filled_qty": "6", "filled_avg_price": "75.33", "status": "filled", "type": "market",
     "time_in_force": "day", "submitted_at": "2026-05-21T13:47:20Z"},
]  # fmt: skip


@pytest.mark.parametrize("wrapped", [False, True])
def test_alpaca_order_json_lists_suspected_duplicates(tmp_path: Path, wrapped: bool) -> None:
    history = tmp_path / "orders.json"
    history.write_text(json.dumps({"orders": ORDERS[::-1]} if wrapped else ORDERS[::-1], indent=2))
    report = import_alpaca_orders(history, tmp_path / "s.jsonl")
    doc = report.as_dict()
    assert (doc["orders"], doc["suspected_duplicates"]) == (4, 1)  # o3/o4: bot ids that differ
    (dup,) = doc["duplicates"]
    assert (dup["id"], dup["duplicate_of"], dup["seconds_after"]) == ("o2", "o1", pytest.approx(10.876544))
    result = replay_session(tmp_path / "s.jsonl", [Mode.FULL])
    assert result.totals[Mode.FULL].duplicate_attempts_blocked == 1
    assert result.totals[Mode.FULL].exposure_blocked_usd == Decimal("451.98")


def test_alpaca_orders_group_sizes_by_value_not_spelling(tmp_path: Path) -> None:
    # Audit 18 #12: "6" and "6.0" (a float-formatted export) were two sizes: the pair was missed.
    first, again = dict(ORDERS[0]), dict(ORDERS[1])
    again["qty"] = again["filled_qty"] = "6.0"
    history = tmp_path / "orders.json"
    history.write_text(json.dumps([first, again]))
    report = import_alpaca_orders(history, tmp_path / "s.jsonl")
    assert (report.extra["orders"], report.extra["suspected_duplicates"]) == (2, 1)


def test_alpaca_csv_export_headers_are_case_insensitive(tmp_path: Path) -> None:
    csv = tmp_path / "orders.csv"
    csv.write_text(
        "Order ID,Client Order ID,SYMBOL,Side,Qty,Filled Qty,Avg Fill Price,Status,Order Type,Submitted At\n"
        "o1,,TQQQ,buy,6,6,75.33,filled,market,2026-05-21 09:42:01-04:00\n"
        "o2,,TQQQ,buy,6,6,75.33,filled,market,2026-05-21 09:42:12-04:00\n"
    )
    report = import_alpaca_orders(csv, tmp_path / "s.jsonl")
    assert (report.extra["orders"], report.extra["suspected_duplicates"]) == (2, 1)


def test_an_order_listed_twice_is_one_order_not_a_suspected_duplicate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Pages fetched with an overlap list o2 twice; the later copy saw the fill.
    pending = {**ORDERS[1], "status": "new", "filled_qty": "0", "filled_avg_price": None}
    history = tmp_path / "orders.json"
    history.write_text(json.dumps([*ORDERS[:2], pending, *ORDERS[2:], ORDERS[1]], indent=1))
    report = import_alpaca_orders(history, tmp_path / "s.jsonl")
    doc = report.as_dict()
    assert (doc["orders"], doc["repeated_rows_dropped"], doc["suspected_duplicates"]) == (4, 2, 1)
    assert [(d["id"], d["duplicate_of"]) for d in doc["duplicates"]] == [("o2", "o1")]
    none = replay_session(tmp_path / "s.jsonl", [Mode.NONE]).totals[Mode.NONE]
    assert (none.duplicate_orders_sent, none.duplicate_orders_executed) == (1, 1)  # o2, filled
    csv = tmp_path / "orders.csv"
    row = "o2,,TQQQ,buy,6,6,75.33,filled,market,2026-05-21 09:42:12-04:00\n"
    csv.write_text(
        "id,client_order_id,symbol,side,qty,filled_qty,filled_avg_price,status,type,submitted_at\n"
        "o1,,TQQQ,buy,6,6,75.33,filled,market,2026-05-21 09:42:01-04:00\n" + row + row
    )
    assert main(["import", "alpaca-orders", str(csv), "-o", str(tmp_path / "c.jsonl")]) == 0
    said = capsys.readouterr().out
    assert "2 orders (1 repeated row of the same order id dropped), 1 suspected duplicates" in said


def test_an_order_id_shared_by_two_different_orders_is_refused_naming_the_line(tmp_path: Path) -> None:
    history = tmp_path / "orders.json"
    history.write_text(json.dumps([ORDERS[0], {**ORDERS[0], "qty": "7"}], indent=1))
    with pytest.raises(SessionFormatError) as caught:
        import_alpaca_orders(history, tmp_path / "s.jsonl")
    assert caught.value.line == 17
    assert "order id o1 again, on line 2 for another symbol, side, quantity or time" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ('[\n  {"id": "o1", "symbol": "TQQQ"\n', 3, "not valid JSON"),
        (
            json.dumps([ORDERS[0], {**ORDERS[1], "side": "hold"}], indent=1),
            17,
            "side 'hold' is neither buy nor sell",
        ),
        (json.dumps([ORDERS[0], {**ORDERS[1], "qty": "six"}], indent=1), 17, "qty 'six' is not a number"),
        ('{"order": []}', 1, 'expected a list of orders or {"orders": [...]}, got an object without'),
    ],
)
def test_a_malformed_order_history_names_its_line(
    tmp_path: Path, text: str, line: int, expected: str
) -> None:
    history = tmp_path / "orders.json"
    history.write_text(text)
    with pytest.raises(SessionFormatError) as caught:
        import_alpaca_orders(history, tmp_path / "s.jsonl")
    assert caught.value.line == line, str(caught.value)
    assert expected in str(caught.value)


def test_alpaca_bracket_legs_are_imported_filled_as_exits_unfilled_as_notes(tmp_path: Path) -> None:
    parent = {**ORDERS[0], "qty": "10", "filled_qty": "10", "order_class": "bracket"}
    take_profit = {
        "id": "l1", "client_order_id": "22222222-2222-4222-8222-222222222222", "symbol": "TQQQ",
        "side": "sell", "qty": "10", "filled_qty": "10", "filled_avg_price": "80", "status": "filled",
        "type": "limit", "limit_price": "80", "submitted_at": "2026-05-21T13:42:01Z",
        "filled_at": "2026-05-21T15:00:00Z", "position_intent": "sell_to_close",
    }  # fmt: skip
    stop = {**take_profit, "id": "l2", "client_order_id": "33333333-3333-4333-8333-333333333333",
            "filled_qty": "0", "filled_avg_price": None, "status": "canceled", "type": "stop",
            "limit_price": None, "filled_at": None}  # fmt: skip
    history = tmp_path / "orders.json"
    history.write_text(json.dumps([{**parent, "legs": [take_profit, stop]}]))
    report = import_alpaca_orders(history, tmp_path / "s.jsonl")
    assert (report.extra["orders"], report.extra["legs"]) == (1, 2)
    events = events_of(tmp_path / "s.jsonl")
    attempts = [(e.kind, e.side, e.qty, e.t.isoformat()) for e in events if isinstance(e, AttemptEvent)]
    assert attempts == [
        ("entry", "buy", 10, "2026-05-21T13:42:01.123456+00:00"),
        ("exit", "sell", 10, "2026-05-21T15:00:00+00:00"),  # the take-profit, when it filled
    ]
    (note,) = [e for e in events if isinstance(e, NoteEvent)]
    assert note.tag == "leg" and "l2 (stop sell 10 TQQQ) canceled" in note.text
    result = replay_session(tmp_path / "s.jsonl", [Mode.FULL])
    assert result.simulations[Mode.FULL].broker_qty("TQQQ") == 0  # the leg took the position off


def test_alpaca_csv_avg_fill_price_with_a_dot_is_the_fill_price(tmp_path: Path) -> None:
    csv = tmp_path / "orders.csv"
    csv.write_text(
        "Symbol,Side,Qty,Filled Qty,Avg. Fill Price,Status,Submitted At\n"
        "TQQQ,buy,6,6,75.33,filled,2026-05-21 09:42:01-04:00\n"
    )
    report = import_alpaca_orders(csv, tmp_path / "s.jsonl")
    prices = [e.price for e in events_of(tmp_path / "s.jsonl") if e.type == "price"]
    assert prices == [Decimal("75.33")] and report.extra["unpriced_symbols"] == []


def test_an_import_without_prices_names_the_symbols_a_replay_prices_at_the_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tradeguard.cli import main

    records = tmp_path / "claims.json"
    records.write_text(json.dumps(CLAIMS_JSON))
    assert main(["import", "claims", str(records), "-o", str(tmp_path / "s.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "no price known for SQQQ before its first order" in out and "$100.00" in out


def test_the_demos_audit_export_imports_and_replays_truthfully(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tradeguard.cli import main

    store = f"sqlite:///{tmp_path / 'demo.db'}"
    assert main(["demo", "--store", store]) == 0
    assert main(["audit", "--store", store, "--csv", str(tmp_path / "a.csv")]) == 0
    assert main(["import", "claims", str(tmp_path / "a.csv"), "-o", str(tmp_path / "a.jsonl")]) == 0
    capsys.readouterr()
    assert main(["replay", str(tmp_path / "a.jsonl"), "--compare", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    full = doc["full"]
    assert (
        full["duplicate_orders_sent"] == 0
        and full["duplicate_attempts"] == full["duplicate_attempts_blocked"]
    )
    flip_entry = [e for e in full["events"] if e["text"] == "09:49 flip (entry SQQQ)"]
    assert [(e["result"], e["duplicate"]) for e in flip_entry] == [("placed", False)]
    # The bot alone sends each retry as a new order (the client_order_id was the guard's): the
    # duplicates reach the broker and those Alpaca would take execute.
    none = doc["none"]
    assert none["duplicate_attempts"] == 5 and none["duplicate_orders_sent"] == 5
    assert none["duplicate_orders_executed"] + none["duplicate_attempts_refused_by_broker"] == 5
    assert none["duplicate_orders_executed"] >= 3 and none["duplicate_exposure_executed_usd"] > 0


# The real bot's exit line (its exit-guard patch) carries no bar=: `EXIT {reason} symbol=S qty=N
# price=P held_min=… pnl_pct=…`. The May 21 pair: the same exit written twice, 2 s apart.
ENTER_1120 = (
    "[2026-05-21 11:20:02-040:00 ENTER BULL stage=base symbol=TQQQ qty=12 est_price=75.90 stop=74.00 "
    "target=78.00 score=5 bar=2026-05-21T11:20:00-04:00\n"
)
EXIT_1126 = "EXIT TRAIL_EXIT symbol=TQQQ qty=12 price=75.60 held_min=6.4 pnl_pct=-0.0040"
EXIT_DECISION = "sell TQQQ qty=12 exit TRAIL_EXIT entry=2026-05-21T11:20:02-04:00"


def import_cli(tmp_path: Path, kind: str, name: str, text: str) -> list[object]:
    """Write `text` to `name`, import it through the command line (exit 0), return its events."""
    source = tmp_path / name
    source.write_text(text)
    assert main(["import", kind, str(source), "-o", str(tmp_path / "s.jsonl"), "--force"]) == 0
    return events_of(tmp_path / "s.jsonl")


def test_bot_log_exits_without_a_bar_are_attempts_of_the_exit_of_the_entry_they_close(
    tmp_path: Path,
) -> None:
    text = (
        ENTER_1120
        + f"[2026-05-21 11:26:26-040:00 {EXIT_1126}\n"
        + f"[2026-05-21 11:26:28-040:00 {EXIT_1126}\n"
    )
    events = import_cli(tmp_path, "bot-log", "bot.log", text)
    attempts = [(e.decision, e.attempt, e.kind, e.side, e.qty) for e in events if isinstance(e, AttemptEvent)]
    assert attempts == [
        ("buy TQQQ qty=12 bar=2026-05-21T11:20:00-04:00", 1, "entry", "buy", 12),
        (EXIT_DECISION, 1, "exit", "sell", 12),
        (EXIT_DECISION, 2, "exit", "sell", 12),  # the 11:26:28 line: a retry of the same exit
    ]
    beliefs = [e.qty for e in events if isinstance(e, PositionEvent)]
    assert beliefs == [12, 0]  # one exit, believed once
    result = replay_session(tmp_path / "s.jsonl", list(Mode))
    # The published May 21 exit figures: both sells filled unguarded, a 12-share short.
    for mode in (Mode.NONE, Mode.ENTRY_ONLY):
        assert result.totals[mode].duplicate_orders_executed == 1
        assert result.totals[mode].unintended_short_shares == -12
    full = result.totals[Mode.FULL]
    assert (full.duplicate_attempts_blocked, full.unintended_short_shares) == (1, 0)


def test_bot_log_exit_without_a_bar_or_a_known_entry_is_named_by_its_minute(tmp_path: Path) -> None:
    # A log that starts with the position already held: no ENTER to name the exit by.
    text = (
        f"[2026-05-21 11:26:26-040:00 {EXIT_1126}\n"
        f"[2026-05-21 11:26:28-040:00 {EXIT_1126}\n"
        f"[2026-05-21 11:31:00-040:00 {EXIT_1126.replace('TRAIL_EXIT', 'STOP_EXIT')}\n"
    )
    events = import_cli(tmp_path, "bot-log", "bot.log", text)
    attempts = [(e.decision, e.attempt) for e in events if isinstance(e, AttemptEvent)]
    assert attempts == [
        ("sell TQQQ qty=12 exit TRAIL_EXIT minute=2026-05-21T11:26-04:00", 1),
        ("sell TQQQ qty=12 exit TRAIL_EXIT minute=2026-05-21T11:26-04:00", 2),
        ("sell TQQQ qty=12 exit STOP_EXIT minute=2026-05-21T11:31-04:00", 1),
    ]


def test_bot_log_exit_lines_that_cannot_be_read_are_kept_as_notes(tmp_path: Path) -> None:
    unreadable = [
        "EXIT BLOCKED: invalid price symbol=DDM qty=6 price=0.0 bar=2026-05-21T11:20:00-04:00",
        "EXIT TRAIL_EXIT symbol=TQQQ qty=twelve price=75.60",
        "EXIT TRAIL_EXIT symbol=TQQQ qty=12 price=0.0",
        "EXIT TRAIL_EXIT symbol=TQQQ qty=12 price=75.60 bar=soon",
        "EXIT TRAIL_EXIT qty=12 price=75.60",
    ]
    text = ENTER_1120 + "".join(f"[2026-05-21 11:2{i}:00-040:00 {m}\n" for i, m in enumerate(unreadable, 1))
    events = import_cli(tmp_path, "bot-log", "bot.log", text)
    assert [e.text for e in events if isinstance(e, NoteEvent)] == unreadable
    assert [e.tag for e in events if isinstance(e, NoteEvent)] == ["exit_blocked"] + ["unreadable"] * 4
    assert [e.kind for e in events if isinstance(e, AttemptEvent)] == ["entry"]


@pytest.mark.parametrize(
    "line",
    [
        ENTER_1120.replace(" bar=2026-05-21T11:20:00-04:00", ""),
        "[2026-05-21 11:20:04-040:00 SAFEAGENT SKIP: duplicate order blocked buy TQQQ qty=12 "
        "— returning cached result\n",
        ENTER_1120.replace("qty=12", "qty=twelve"),
    ],
)
def test_bot_log_entry_and_skip_lines_against_the_grammar_are_still_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    log = tmp_path / "bot.log"
    log.write_text(ENTER_1120 + line)
    assert main(["import", "bot-log", str(log), "-o", str(tmp_path / "s.jsonl")]) == 2
    assert f"{log}:2: " in capsys.readouterr().err
    assert not (tmp_path / "s.jsonl").exists()


# The exit guard's own line (later versions): no side, no bar=; the entry it keys and the reason.
EXIT_SKIP = (
    "SAFEAGENT EXIT SKIP: duplicate exit blocked TQQQ qty=12 entry=2026-05-21T11:20:02.028098-04:00 "
    "reason=TRAIL_EXIT — returning cached result"
)


def test_bot_log_blocked_duplicate_exit_without_a_side_is_a_retry_of_that_exit(tmp_path: Path) -> None:
    text = ENTER_1120 + f"[2026-05-21 11:26:28-040:00 {EXIT_SKIP}\n"
    events = import_cli(tmp_path, "bot-log", "bot.log", text)
    attempts = [
        (e.decision, e.attempt, e.kind, e.side, e.path) for e in events if isinstance(e, AttemptEvent)
    ]
    assert attempts == [
        ("buy TQQQ qty=12 bar=2026-05-21T11:20:00-04:00", 1, "entry", "buy", "order"),
        (EXIT_DECISION, 1, "exit", "sell", "exit"),  # inferred: the first exit is not in the log
        (EXIT_DECISION, 2, "exit", "sell", "exit"),
    ]
    answers = [(e.decision, e.attempt, e.result, e.by) for e in events if isinstance(e, AnswerEvent)]
    assert answers == [(EXIT_DECISION, 2, "blocked", "safeagent")]
    assert not [e for e in events if isinstance(e, NoteEvent)]
    result = replay_session(tmp_path / "s.jsonl", list(Mode))
    assert result.totals[Mode.FULL].duplicate_attempts_blocked == 1
    assert result.totals[Mode.FULL].unintended_short_shares == 0
    # The published entry guard did not key exits: unguarded, the retry sells again.
    assert result.totals[Mode.NONE].duplicate_orders_executed == 1
    assert result.totals[Mode.ENTRY_ONLY].unintended_short_shares == -12


def test_bot_log_exit_skip_repeats_the_exit_line_it_blocked(tmp_path: Path) -> None:
    # The SKIP's entry= is the guard's clock, not the log line's: it need not match to the second.
    skip = EXIT_SKIP.replace("11:20:02.028098", "11:20:01.998")
    text = ENTER_1120 + f"[2026-05-21 11:26:26-040:00 {EXIT_1126}\n[2026-05-21 11:26:28-040:00 {skip}\n"
    events = import_cli(tmp_path, "bot-log", "bot.log", text)
    attempts = [(e.decision, e.attempt, e.reason) for e in events if isinstance(e, AttemptEvent)]
    assert attempts[1:] == [(EXIT_DECISION, 1, EXIT_1126), (EXIT_DECISION, 2, skip)]
    result = replay_session(tmp_path / "s.jsonl", list(Mode))
    assert [result.totals[m].duplicate_attempts_blocked for m in Mode] == [0, 0, 1]
    assert result.totals[Mode.FULL].duplicate_orders_sent == 0


# With the exit-guard patch one exit writes two rows: the exit guard's claim, keyed by the entry
# it closes, then the order path's claim of the sell it sends (LOGS.md §2).
DB_HEAD = "index,request_id,result,status,created_at\n"
BUY_22 = (
    "1,order:SQQQ:buy:22:2026-03-05T10:00:00-04:00,\"\"\"{'id': 'aaaaaaaa-ed47-4c4b-ba15-c8af8b7336f0', "
    "'client_order_id': 'bbbbbbbb-fbb9-4c44-9b45-36ae1fbd4ea1', 'symbol': 'SQQQ', 'side': 'buy', "
    "'qty': '22', 'status': 'pending_new', 'submitted_at': '2026-03-05T10:00:00-04:00Z', "
    '\'filled_at\': None}""",filled,2026-03-05 10:00:00\n'
)
EXIT_22 = "exit:SQQQ:22:2026-03-05T10:00:00.028098-04:00"
EXIT_ROW_22 = f"2,{EXIT_22},,PENDING,2026-03-05 12:39:00\n"
SELL_22 = (
    "3,order:SQQQ:sell:22:2026-03-05T12:39:00-04:00:TRAIL_EXIT_BEAR,\"\"\"{'id': 'dc30f204-ed47-4c4b-ba15-"
    "c8af8b7336f0', 'client_order_id': 'a2c75370-fbb9-4c44-9b45-36ae1fbd4ea1', 'symbol': 'SQQQ', 'side': "
    "'sell', 'qty': '22', 'status': 'pending_new', 'submitted_at': '2026-03-05T12:39:00-04:00Z', "
    '\'filled_at\': None}""",filled,2026-03-05 12:39:00\n'
)


def test_safeagent_db_exit_row_and_its_order_row_are_one_exit_not_two_sells(tmp_path: Path) -> None:
    events = import_cli(tmp_path, "claims", "guard.csv", DB_HEAD + BUY_22 + EXIT_ROW_22 + SELL_22)
    attempts = [
        (e.decision, e.attempt, e.kind, e.side, e.qty, e.path, e.t.isoformat())
        for e in events
        if isinstance(e, AttemptEvent)
    ]
    assert attempts == [
        (
            "order:SQQQ:buy:22:2026-03-05T10:00:00-04:00",
            1,
            "entry",
            "buy",
            22,
            "order",
            "2026-03-05T10:00:00-04:00",
        ),
        (EXIT_22, 1, "exit", "sell", 22, "order", "2026-03-05T12:39:00-04:00"),  # when it was sent
    ]
    answers = [(e.decision, e.client_order_id) for e in events if isinstance(e, AnswerEvent)]
    assert answers[1] == (EXIT_22, "a2c75370-fbb9-4c44-9b45-36ae1fbd4ea1")
    (note,) = [e for e in events if isinstance(e, NoteEvent)]
    assert note.tag == "exit_guard" and note.text.startswith(EXIT_22)
    result = replay_session(tmp_path / "s.jsonl", list(Mode))
    for mode in Mode:  # bought 22, sold 22: flat, in every mode
        totals = result.totals[mode]
        assert (totals.orders_placed, totals.duplicate_attempts, totals.unintended_short_shares) == (2, 0, 0)
        assert result.simulations[mode].broker_qty("SQQQ") == 0


def test_safeagent_db_exit_row_left_pending_with_no_order_row_is_a_note_not_a_sell(tmp_path: Path) -> None:
    events = import_cli(tmp_path, "claims", "guard.csv", DB_HEAD + BUY_22 + EXIT_ROW_22)
    assert [e.decision for e in events if isinstance(e, AttemptEvent)] == [
        "order:SQQQ:buy:22:2026-03-05T10:00:00-04:00"
    ]
    (note,) = [e for e in events if isinstance(e, NoteEvent)]
    # At its claim (created_at, on the keys' clock), not at the entry it closes.
    assert (note.tag, note.t.isoformat()) == ("pending", "2026-03-05T12:39:00-04:00")
    result = replay_session(tmp_path / "s.jsonl", [Mode.NONE])
    assert result.totals[Mode.NONE].unintended_short_shares == 0


@pytest.mark.parametrize(
    ("key_side", "order_side", "paired"),
    [("sell", "sell", True), ("buy", "sell", True), ("sell", "buy", False)],
)
def test_safeagent_db_pairs_an_exit_row_by_the_side_of_the_order_sent(
    tmp_path: Path, key_side: str, order_side: str, paired: bool
) -> None:
    # Some reason-suffixed rows carry the other side in their key than the order they guarded.
    sell = SELL_22.replace(":sell:22:", f":{key_side}:22:").replace(
        "'side': 'sell'", f"'side': '{order_side}'"
    )
    events = import_cli(tmp_path, "claims", "guard.csv", DB_HEAD + BUY_22 + EXIT_ROW_22 + sell)
    attempts = [(e.decision, e.side) for e in events if isinstance(e, AttemptEvent)]
    order_key = f"order:SQQQ:{key_side}:22:2026-03-05T12:39:00-04:00:TRAIL_EXIT_BEAR"
    assert attempts[1] == (EXIT_22 if paired else order_key, order_side)
    assert len(attempts) == 2  # never the exit row as a sell of its own


def test_safeagent_db_a_sell_after_a_later_entry_is_that_positions_exit(tmp_path: Path) -> None:
    # Two positions of 22 SQQQ; only the second one's sell is in the export.
    second = (
        EXIT_ROW_22.replace("2,", "4,", 1)
        .replace("T10:00:00.028098", "T11:00:00.5")
        .replace("12:39", "13:10")
    )
    sell = SELL_22.replace("T12:39:00", "T13:10:00")
    events = import_cli(tmp_path, "claims", "guard.csv", DB_HEAD + BUY_22 + EXIT_ROW_22 + second + sell)
    attempts = [(e.decision, e.kind) for e in events if isinstance(e, AttemptEvent)]
    assert attempts[1:] == [("exit:SQQQ:22:2026-03-05T11:00:00.5-04:00", "exit")]
    notes = [(e.tag, e.text.split(": ")[0]) for e in events if isinstance(e, NoteEvent)]
    assert notes == [("pending", EXIT_22), ("exit_guard", "exit:SQQQ:22:2026-03-05T11:00:00.5-04:00")]


# The exit-guard patch settles an exit row as COMMITTED with result=json.dumps("exit:SYM:QTY:REASON").
@pytest.mark.parametrize(
    "cell",
    [
        '"""exit:SQQQ:22:TRAIL_EXIT_BEAR"""',
        "'exit:SQQQ:22:TRAIL_EXIT_BEAR'",
        '"""\'exit:SQQQ:22:TRAIL_EXIT_BEAR\'"""',
    ],
)
def test_safeagent_db_settled_exit_row_with_a_string_result_is_read_with_its_reason(
    tmp_path: Path, cell: str
) -> None:
    settled = f"0,{EXIT_22},{cell},COMMITTED,2026-03-05 12:39:00\n"
    events = import_cli(tmp_path, "claims", "guard.csv", DB_HEAD + settled)
    (attempt,) = [e for e in events if isinstance(e, AttemptEvent)]
    assert (attempt.decision, attempt.kind, attempt.side, attempt.qty, attempt.reason) == (
        EXIT_22,
        "exit",
        "sell",
        22,
        "TRAIL_EXIT_BEAR",
    )
    assert attempt.t.isoformat() == "2026-03-05T12:39:00-04:00"  # when claimed, not at the entry
    assert not [e for e in events if isinstance(e, AnswerEvent)]  # settled, no order details
    # With the entry and the order row the patch wrote, it is one exit: flat, no short.
    events = import_cli(tmp_path, "claims", "guard.csv", DB_HEAD + BUY_22 + settled + SELL_22)
    (note,) = [e for e in events if isinstance(e, NoteEvent)]
    assert note.tag == "exit_guard" and "settled: TRAIL_EXIT_BEAR" in note.text
    assert [e.decision for e in events if isinstance(e, AttemptEvent)][1:] == [EXIT_22]
    result = replay_session(tmp_path / "s.jsonl", list(Mode))
    assert [result.totals[m].unintended_short_shares for m in Mode] == [0, 0, 0]


def test_safeagent_db_order_row_with_a_string_result_is_still_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "guard.csv"
    source.write_text(
        DB_HEAD
        + '3,order:SQQQ:sell:22:2026-03-05T12:39:00-04:00,"""order placed""",filled,2026-03-05 12:39:00\n'
    )
    assert main(["import", "claims", str(source), "-o", str(tmp_path / "s.jsonl")]) == 2
    assert f"{source}:2: result is a str, expected a dict" in capsys.readouterr().err


# The May 21 duplicate sell on a flip (LOGS.md's `<side>` is buy or sell): the entry guard blocked
# the retry of a sell that closed the long the bot held.
ENTER_0942 = (
    "[2026-05-21 09:42:01-040:00 ENTER BULL stage=base symbol=TQQQ qty=12 est_price=75.33 stop=74.00 "
    "target=77.00 score=5 bar=2026-05-21T09:42:00-04:00\n"
)
SKIP_SELL_0949 = (
    "[2026-05-21 09:49:12-040:00 SAFEAGENT SKIP: duplicate order blocked sell TQQQ qty=12 "
    "bar=2026-05-21T09:49:00-04:00 — returning cached result\n"
)
SELL_0949 = "sell TQQQ qty=12 bar=2026-05-21T09:49:00-04:00"


def bot_beliefs(events: list[object]) -> list[tuple[str, Decimal]]:
    return [(e.symbol, e.qty) for e in events if isinstance(e, PositionEvent) and e.view == "bot"]


def test_bot_log_blocked_sell_of_a_held_long_is_the_exit_not_a_short_entry(tmp_path: Path) -> None:
    text = ENTER_0942 + SKIP_SELL_0949 + "[2026-05-21 09:50:00-040:00 ENTRY BLOCKED: position held TQQQ\n"
    events = import_cli(tmp_path, "bot-log", "flip.log", text)
    attempts = [
        (e.decision, e.attempt, e.kind, e.side, e.path) for e in events if isinstance(e, AttemptEvent)
    ]
    assert attempts[1:] == [
        (SELL_0949, 1, "exit", "sell", "order"),  # inferred; on the order path the guard keyed
        (SELL_0949, 2, "exit", "sell", "order"),
    ]
    assert bot_beliefs(events) == [("TQQQ", Decimal(12)), ("TQQQ", Decimal(0))]  # not 12 -> 24
    totals = replay_session(tmp_path / "s.jsonl", list(Mode)).totals
    assert [totals[m].duplicate_attempts_blocked for m in Mode] == [0, 1, 1]
    assert totals[Mode.FULL].duplicate_orders_sent == 0
    assert totals[Mode.FULL].untracked_shares_at_end == {}


def test_bot_log_blocked_retry_of_an_exit_line_is_that_exit_on_the_order_path(tmp_path: Path) -> None:
    exit_line = (
        "[2026-05-21 09:49:01-040:00 EXIT BULL symbol=TQQQ qty=12 price=75.17 reason=FLIP "
        "bar=2026-05-21T09:49:00-04:00\n"
    )
    events = import_cli(tmp_path, "bot-log", "flip2.log", ENTER_0942 + exit_line + SKIP_SELL_0949)
    attempts = [
        (e.decision, e.attempt, e.kind, e.side, e.path) for e in events if isinstance(e, AttemptEvent)
    ]
    # One decision, one kind; the guard's "duplicate order blocked" says its first try was keyed
    # on the order path too (SafeAgent found the key claimed).
    assert attempts[1:] == [(SELL_0949, 1, "exit", "sell", "order"), (SELL_0949, 2, "exit", "sell", "order")]
    assert bot_beliefs(events) == [("TQQQ", Decimal(12)), ("TQQQ", Decimal(0))]
    totals = replay_session(tmp_path / "s.jsonl", list(Mode)).totals
    assert [totals[m].duplicate_orders_executed for m in Mode] == [1, 0, 0]
    assert [totals[m].duplicate_attempts_blocked for m in Mode] == [0, 1, 1]
    assert totals[Mode.NONE].unintended_short_shares == -12  # unguarded, the retry sells again


def test_bot_log_blocked_sell_with_nothing_held_is_still_a_short_entry(tmp_path: Path) -> None:
    events = import_cli(tmp_path, "bot-log", "short.log", SKIP_SELL_0949)
    attempts = [(e.kind, e.side, e.path) for e in events if isinstance(e, AttemptEvent)]
    assert attempts == [("entry", "sell", "order"), ("entry", "sell", "order")]
    assert bot_beliefs(events) == [("TQQQ", Decimal(-12))]  # the bot believes it is short 12


def alpaca_order(
    id_: str, t: str, side: str, qty: int, status: str, filled: int = 0, avg: str | None = None, **kw: object
) -> dict[str, object]:
    """An order as `get_orders(status="all")` serialises it (the fields /tmp/audit10c's orders had)."""
    order: dict[str, object] = {
        "id": id_, "client_order_id": f"00000000-0000-4000-8000-{id_.encode().hex():0>12}",
        "created_at": t, "submitted_at": t, "filled_at": None, "canceled_at": None, "replaced_at": None,
        "replaced_by": None, "replaces": None, "symbol": "TQQQ", "asset_class": "us_equity",
        "notional": None, "qty": str(qty), "filled_qty": str(filled), "filled_avg_price": avg,
        "order_class": "", "order_type": "market", "type": "market", "side": side,
        "position_intent": "buy_to_open" if side == "buy" else "sell_to_close", "time_in_force": "day",
        "limit_price": None, "status": status, "legs": None,
    }  # fmt: skip
    if status != "filled" or "limit_price" in kw:
        order.update(order_type="limit", type="limit", limit_price=kw.pop("limit_price", "75.00"))
    return {**order, **kw}


EXIT_10 = alpaca_order("x", "2026-05-21T14:30:00.1Z", "sell", 10, "filled", 10, "76.00")


def import_and_replay(
    tmp_path: Path, orders: list[dict[str, object]]
) -> tuple[dict[str, object], dict[Mode, Totals]]:
    history = tmp_path / "orders.json"
    history.write_text(json.dumps(orders[::-1], indent=1))  # newest first, as Alpaca lists them
    report = import_alpaca_orders(history, tmp_path / "s.jsonl")
    return report.as_dict(), replay_session(tmp_path / "s.jsonl", list(Mode)).totals


def test_alpaca_canceled_unfilled_order_then_repriced_is_no_fill_and_no_duplicate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A limit buy of 10 canceled with nothing filled, re-sent at a new price 21 s later: one
    # position of 10, closed at 10:30. The account ended flat; nothing was duplicated.
    orders = [
        alpaca_order(
            "a1", "2026-05-21T13:42:00.1Z", "buy", 10, "canceled", canceled_at="2026-05-21T13:42:20Z"
        ),
        alpaca_order("a2", "2026-05-21T13:42:21.1Z", "buy", 10, "filled", 10, "75.05", limit_price="75.05"),
        EXIT_10,
    ]
    doc, totals = import_and_replay(tmp_path, orders)
    assert doc["suspected_duplicates"] == 0 and doc["attempts"] == 2
    events = events_of(tmp_path / "s.jsonl")
    (note,) = [e for e in events if isinstance(e, NoteEvent)]
    assert note.tag == "unfilled" and "a1" in note.text and "canceled" in note.text
    for mode in Mode:
        assert (totals[mode].duplicate_attempts, totals[mode].untracked_shares_at_end) == (0, {}), mode
    assert (
        main(["import", "alpaca-orders", str(tmp_path / "orders.json"), "-o", str(tmp_path / "c.jsonl")]) == 0
    )
    said = capsys.readouterr().out
    assert "3 orders, 0 suspected duplicates; 1 canceled, expired or replaced with nothing filled" in said


def test_alpaca_replaced_order_is_the_decision_of_its_replacement_not_a_duplicate(tmp_path: Path) -> None:
    orders = [
        alpaca_order("b1", "2026-05-21T13:42:00.1Z", "buy", 10, "replaced", replaced_by="b2"),
        alpaca_order(
            "b2",
            "2026-05-21T13:42:10.1Z",
            "buy",
            10,
            "filled",
            10,
            "75.10",
            replaces="b1",
            limit_price="75.10",
        ),
        EXIT_10,
    ]
    doc, totals = import_and_replay(tmp_path, orders)
    assert doc["suspected_duplicates"] == 0
    attempts = [e for e in events_of(tmp_path / "s.jsonl") if isinstance(e, AttemptEvent)]
    b1 = str(orders[0]["client_order_id"])
    assert [(e.decision.endswith(b1), e.qty) for e in attempts] == [
        (True, Decimal(10)),  # b2, named by the order it replaced: one decision
        (False, Decimal(10)),
    ]
    for mode in Mode:
        assert (totals[mode].duplicate_attempts, totals[mode].untracked_shares_at_end) == (0, {}), mode


def test_alpaca_canceled_partial_fill_replays_what_it_filled(tmp_path: Path) -> None:
    orders = [
        alpaca_order("c1", "2026-05-21T13:42:00.1Z", "buy", 10, "canceled", 4, "75.00"),
        alpaca_order("c2", "2026-05-21T14:30:00.1Z", "sell", 4, "filled", 4, "76.00"),
    ]
    _doc, totals = import_and_replay(tmp_path, orders)
    first = next(e for e in events_of(tmp_path / "s.jsonl") if isinstance(e, AttemptEvent))
    assert first.qty == Decimal(4) and "4 of 10" in (first.reason or "")
    for mode in Mode:
        assert totals[mode].untracked_shares_at_end == {}, mode  # not long 6 at the end


def test_alpaca_real_duplicate_still_replays_as_one(tmp_path: Path) -> None:
    orders = [
        alpaca_order("d1", "2026-05-21T13:42:01Z", "buy", 6, "filled", 6, "75.33"),
        alpaca_order("d2", "2026-05-21T13:42:12Z", "buy", 6, "filled", 6, "75.33"),
        alpaca_order("d3", "2026-05-21T14:30:00Z", "sell", 12, "filled", 12, "76.00"),
    ]
    doc, totals = import_and_replay(tmp_path, orders)
    assert doc["suspected_duplicates"] == 1
    assert [totals[m].duplicate_orders_executed for m in Mode] == [1, 0, 0]


def test_alpaca_replacement_of_a_partly_filled_order_fills_the_rest_beside_it(tmp_path: Path) -> None:
    orders = [
        alpaca_order("b1", "2026-05-21T13:42:00.1Z", "buy", 10, "replaced", 4, "75.00", replaced_by="b2"),
        alpaca_order("b2", "2026-05-21T13:42:10.1Z", "buy", 6, "filled", 6, "75.10", replaces="b1"),
        EXIT_10,
    ]
    doc, totals = import_and_replay(tmp_path, orders)
    assert doc["suspected_duplicates"] == 0
    attempts = [(e.qty, e.attempt) for e in events_of(tmp_path / "s.jsonl") if isinstance(e, AttemptEvent)]
    assert attempts == [(Decimal(4), 1), (Decimal(6), 1), (Decimal(10), 1)]  # three decisions
    for mode in Mode:
        assert (totals[mode].duplicate_attempts, totals[mode].untracked_shares_at_end) == (0, {}), mode


def _flip_records() -> list[dict[str, object]]:
    def record(key: str, side: str, at: str, order: str) -> dict[str, object]:
        return {
            "request_id": key, "symbol": "TQQQ", "side": side, "qty": 12, "claimed_at": at,
            "outcome": "COMMITTED", "caller_interpretation": "SUCCESS", "broker_order_id": order,
            "client_order_id": f"c-{order}",
        }  # fmt: skip

    sell = "order:TQQQ:sell:12:2026-09-08T11:26:00-04:00"
    return [
        record("order:TQQQ:buy:12:2026-09-08T09:39:00-04:00", "buy", "2026-09-08T09:39:05-04:00", "b1"),
        record(sell, "sell", "2026-09-08T11:26:26-04:00", "b2"),
        record(sell, "sell", "2026-09-08T11:26:28-04:00", "b3"),  # the duplicate, 2 s later
    ]


def test_claim_records_a_sell_while_long_is_the_bots_exit_and_its_duplicate_shorts(tmp_path: Path) -> None:
    # Audit 18 #1: a flip sell on the order path was imported as a short entry: `full` refused
    # the bot's own sell, and `none` hid the short its duplicate opened.
    records = tmp_path / "claims.json"
    records.write_text(json.dumps(_flip_records(), indent=2))
    import_claims(records, tmp_path / "s.jsonl")
    kinds = [e.kind for e in events_of(tmp_path / "s.jsonl") if isinstance(e, AttemptEvent)]
    assert kinds == ["entry", "exit", "exit"]
    result = replay_session(tmp_path / "s.jsonl", list(Mode))
    assert result.totals[Mode.NONE].unintended_short_shares == -12
    assert result.totals[Mode.FULL].unintended_short_shares == 0
    assert result.totals[Mode.FULL].orders_placed == 2  # the buy and the bot's own sell
    assert result.simulations[Mode.FULL].broker_qty("TQQQ") == 0


def test_claim_records_listed_newest_first_import_as_listed_oldest_first(tmp_path: Path) -> None:
    # Audit 27: the bot's belief and each decision's kind were built in the file's order, then the
    # events sorted by time: newest-first records made the flip's sell a short entry and wrote the
    # belief of the end (-12) at the start.
    in_order, reversed_ = tmp_path / "in_order.json", tmp_path / "reversed.json"
    in_order.write_text(json.dumps(_flip_records(), indent=2))
    reversed_.write_text(json.dumps(_flip_records()[::-1], indent=2))
    import_claims(in_order, tmp_path / "a.jsonl")
    import_claims(reversed_, tmp_path / "b.jsonl")
    events = events_of(tmp_path / "b.jsonl")
    assert [e.kind for e in events if isinstance(e, AttemptEvent)] == ["entry", "exit", "exit"]
    assert [e.qty for e in events if isinstance(e, PositionEvent)] == [12, 0, -12]
    assert [e.model_dump() for e in events] == [e.model_dump() for e in events_of(tmp_path / "a.jsonl")]


def test_safeagent_db_a_flip_sell_with_no_exit_reason_is_an_exit(tmp_path: Path) -> None:
    flip = SELL_22.replace(":TRAIL_EXIT_BEAR", "")
    events = import_cli(tmp_path, "claims", "guard.csv", DB_HEAD + BUY_22 + flip)
    kinds = [(e.side, e.kind) for e in events if isinstance(e, AttemptEvent)]
    assert kinds == [("buy", "entry"), ("sell", "exit")]
    result = replay_session(tmp_path / "s.jsonl", [Mode.FULL])
    assert result.simulations[Mode.FULL].broker_qty("SQQQ") == 0


def test_our_audit_export_as_json_imports_as_the_csv_does_and_a_claims_table_says_what_to_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Audit 18 #9: `db export --what audit` (JSON) and `db export --format csv` (the claims
    # table) were refused with "expected a claim record" / "unknown columns".
    from tradeguard.cli import main

    store = f"sqlite:///{tmp_path / 'c.db'}"
    gateway = OrderGateway(PaperBroker(), store, agent_id="bot")
    gateway.enter("TQQQ", qty=6, intent="09:42 buy")
    gateway.enter("TQQQ", qty=6, intent="09:42 buy")
    gateway.close()
    for args in (["--what", "audit", "-o", "audit.json"], ["--format", "csv", "-o", "claims.csv"]):
        assert main(["db", "export", "--store", store, *args[:-2], "-o", str(tmp_path / args[-1])]) == 0
    assert main(["audit", "--store", store, "--csv", str(tmp_path / "audit.csv")]) == 0
    capsys.readouterr()
    import_claims(tmp_path / "audit.json", tmp_path / "from-json.jsonl")
    import_claims(tmp_path / "audit.csv", tmp_path / "from-csv.jsonl")

    def attempts(path: Path) -> list[tuple[str, int, str]]:
        return [(e.decision, e.attempt, e.kind) for e in events_of(path) if isinstance(e, AttemptEvent)]

    assert attempts(tmp_path / "from-json.jsonl") == attempts(tmp_path / "from-csv.jsonl") == [
        ("09:42 buy", 1, "entry"), ("09:42 buy", 2, "entry"),
    ]  # fmt: skip
    with pytest.raises(SessionFormatError, match=r"claims\.csv:1: the claims table as CSV .* --what claims"):
        import_claims(tmp_path / "claims.csv", tmp_path / "x.jsonl")
