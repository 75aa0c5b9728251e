"""`tradeguard import` on input that is well-formed but wrong: out of order, empty, nested too deeply.

Each case is one an adversarial audit found imported silently or ending in a traceback. Run
in-process (`main`), as the command line runs them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.test_replay_cli_errors import LOG, ORDER, one_error
from tradeguard import ClaimStore, OrderGateway, PaperBroker
from tradeguard.cli import main


def test_import_bot_log_refuses_lines_out_of_time_order_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A bot writes its log in time order: a reversed or merged log is refused, as a session is.
    log = tmp_path / "bot.log"
    log.write_text("".join(reversed(LOG.splitlines(keepends=True))))
    out = tmp_path / "s.jsonl"
    line = one_error(capsys, ["import", "bot-log", str(log), "-o", str(out)])
    assert line == (
        f"{log}:2: time 2026-03-05T10:20:19-04:00 is before line 1's 2026-03-05T11:00:00-04:00: "
        "a bot log is written in time order (a merged or reordered log?)"
    )
    assert not out.exists()


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_import_bot_log_of_an_empty_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    log = tmp_path / "bot.log"
    log.write_text(text)
    line = one_error(capsys, ["import", "bot-log", str(log), "-o", str(tmp_path / "s.jsonl")])
    assert line == f"{log}:1: empty file: expected lines starting [YYYY-MM-DD HH:MM:SS±HH:MM"


@pytest.mark.parametrize(
    ("kind", "name", "text"),
    [
        ("alpaca-orders", "orders.json", "[]"),
        ("alpaca-orders", "orders.json", '{"orders": []}'),
        ("bot-log", "bot.log", LOG.splitlines(keepends=True)[1]),  # a STAY line: notes only
    ],
)
def test_an_import_with_no_attempts_is_written_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, name: str, text: str
) -> None:
    source = tmp_path / name
    source.write_text(text)
    out = tmp_path / "s.jsonl"
    assert main(["import", kind, str(source), "-o", str(out)]) == 0  # a quiet day is a session
    said = capsys.readouterr()
    assert said.err == (
        f"tradeguard: warning: {source} has no order attempts: the session replays to nothing "
        "(is it the right file?)\n"
    )
    assert "tradeguard replay" not in said.out
    assert out.exists()


@pytest.mark.parametrize("kind", ["alpaca-orders", "claims"])
def test_import_of_json_nested_too_deeply_names_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    # This used to end in a RecursionError traceback (or, under a raised limit, a crash).
    source = tmp_path / "in.json"
    source.write_text("[\n  " + json.dumps(ORDER) + ",\n  " + "[" * 50_000 + "]" * 50_000 + "\n]\n")
    line = one_error(capsys, ["import", kind, str(source), "-o", str(tmp_path / "s.jsonl")])
    assert line == f"{source}:3: JSON nested too deeply (arrays or objects inside each other) to be a record"


def test_import_claims_of_an_audit_export_with_a_deep_detail_names_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ClaimStore(f"sqlite:///{tmp_path / 'c.db'}") as store:
        OrderGateway(PaperBroker(), store, agent_id="bot").enter("TQQQ", qty=6, intent="09:42 buy")
        store.export_audit_csv(tmp_path / "audit.csv")
    with (tmp_path / "audit.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    claim = next(i for i, row in enumerate(rows) if row["action"] == "claim")
    rows[claim]["detail"] = "[" * 50_000 + "]" * 50_000
    with (tmp_path / "deep.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    source = tmp_path / "deep.csv"
    line = one_error(capsys, ["import", "claims", str(source), "-o", str(tmp_path / "s.jsonl")])
    assert line.startswith(f"{source}:{claim + 2}: JSON nested too deeply"), line


SAFEAGENT_HEAD = (
    "index,request_id,result,status,created_at\n"
    "2,order:TQQQ:buy:9:2026-03-04T12:50:00-04:00,,PENDING,2026-03-04 09:30:00\n"
    "17,exit:SQQQ:6:2026-03-03T09:30:00.028098-04:00,,PENDING,2026-03-03 09:30:00\n"
)


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        # Cut inside the key: pandas padded the row with empty cells and it was written as an
        # attempt with no result, status or time.
        (
            "9,order:SQQQ:sell:22:2026-03-05T12:39:00-04:00:TRAIL_EXIT_BE\n",
            "a row of 2 fields under a header of 5: the row is cut short or misses cells",
        ),
        (
            "9,order:SQQQ:sell:22:2026-03-05T12:39:00-04:00,,filled\n",
            "a row of 4 fields under a header of 5: the row is cut short or misses cells",
        ),
        # Cut inside a quoted field: pandas said "at row 3", which is no line of the file.
        (
            "9,order:SQQQ:sell:22:2026-03-05T12:39:00-04:00:TRAIL_EXIT_BEAR,\"\"\"{'id': 'dc30', 'side': 's",
            "a quoted field opened on this line never closes: the file is cut short",
        ),
        ("9,order:SQQQ:sell:22:2026-03-05T12:39:00-04:00,,fil,2026-03-05 09:30:00\n", None),
        (
            "9,order:SQQQ:sell:22:2026-03-05T12:39:00-04:00,,filled,notadate\n",
            "created_at 'notadate' is not a time",
        ),
        (
            "9,order:SQQQ:sell:22:2026-03-05T12:39:00-04:00,,filled,2026-03-05 09:30:00,extra\n",
            "a row of 6 fields under a header of 5: more cells than columns",
        ),
    ],
)
def test_import_claims_refuses_a_truncated_or_malformed_safeagent_row_naming_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], last: str, expected: str | None
) -> None:
    source = tmp_path / "claims.csv"
    source.write_text(SAFEAGENT_HEAD + last)
    out = tmp_path / "s.jsonl"
    line = one_error(capsys, ["import", "claims", str(source), "-o", str(out)])
    expected = expected or "status 'fil' is neither filled, COMMITTED nor PENDING"
    assert line == f"{source}:4: {expected}"
    assert not out.exists()


def test_a_csv_row_with_a_line_break_inside_a_quoted_cell_is_named_by_its_first_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Lines, not rows: a cell holding a line break shifts every later row's line by one.
    source = tmp_path / "claims.csv"
    source.write_text(
        "index,request_id,result,status,created_at\n"
        "2,order:TQQQ:buy:9:2026-03-04T12:50:00-04:00,"
        "\"{'id': 'a',\n 'side': 'buy'}\",filled,2026-03-04 09:30:00\n"
        "\n"
        "3,order:TQQQ:buy:9:2026-03-04T12:51:00-04:00,,bogus,2026-03-04 09:30:00\n"
    )
    line = one_error(capsys, ["import", "claims", str(source), "-o", str(tmp_path / "s.jsonl")])
    assert line == f"{source}:5: status 'bogus' is neither filled, COMMITTED nor PENDING"


def test_a_short_row_of_an_alpaca_csv_export_is_refused_naming_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "orders.csv"
    source.write_text(
        "Order ID,Symbol,Side,Qty,Status,Submitted At\n"
        "a1,TQQQ,buy,6,filled,2026-05-21T13:42:01Z\n"
        "a2,TQQQ,buy\n"
    )
    line = one_error(capsys, ["import", "alpaca-orders", str(source), "-o", str(tmp_path / "s.jsonl")])
    assert line == f"{source}:3: a row of 3 fields under a header of 6: the row is cut short or misses cells"


@pytest.mark.parametrize(
    ("text", "got"), [("42\n", "a number"), ('"orders"', "a string"), ("null", "null"), ("true", "a boolean")]
)
@pytest.mark.parametrize(("kind", "key"), [("alpaca-orders", "orders"), ("claims", "claims")])
def test_import_of_a_json_scalar_is_refused_not_read_as_an_empty_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, got: str, kind: str, key: str
) -> None:
    # `42` used to be read as a CSV header with no rows: an empty session and exit 0.
    source = tmp_path / "x.json"
    source.write_text(text)
    out = tmp_path / "s.jsonl"
    line = one_error(capsys, ["import", kind, str(source), "-o", str(out)])
    assert line == f'{source}:1: expected a list of {key} or {{"{key}": [...]}}, got {got}'
    assert not out.exists()


@pytest.mark.parametrize(("kind", "key"), [("alpaca-orders", "orders"), ("claims", "claims")])
@pytest.mark.parametrize("text", ["", " \n\n"])
def test_import_of_an_empty_json_file_says_it_is_empty_in_json_terms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, key: str, text: str
) -> None:
    source = tmp_path / "x.json"
    source.write_text(text)
    line = one_error(capsys, ["import", kind, str(source), "-o", str(tmp_path / "s.jsonl")])
    assert line == f'{source}:1: empty file: expected a list of {key} or {{"{key}": [...]}}'


def test_import_of_cut_json_says_where_the_string_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It said "not valid JSON: Unterminated string starting at" and stopped there.
    source = tmp_path / "claims.json"
    source.write_text('[{"request_id": "abc')
    line = one_error(capsys, ["import", "claims", str(source), "-o", str(tmp_path / "s.jsonl")])
    assert line == f"{source}:1: not valid JSON: Unterminated string starting at column 17"


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ('"{""intent"": x}"', "detail is not valid JSON: Expecting value at column 12"),
        ('"[1, 2]"', "detail is a list, expected a JSON object"),
    ],
)
def test_import_of_an_audit_export_with_a_bad_detail_names_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], detail: str, expected: str
) -> None:
    # A detail that was not a JSON object ended in a JSONDecodeError (or AttributeError) traceback.
    source = tmp_path / "audit.csv"
    source.write_text(
        "id,at,action,claim_key,agent_id,kind,symbol,side,qty,client_order_id,state,prev_state,reason,detail\n"
        f"1,2026-05-21T13:42:00+00:00,claim,k1,bot,entry,TQQQ,buy,6,c1,PENDING,,r,{detail}\n"
    )
    line = one_error(capsys, ["import", "claims", str(source), "-o", str(tmp_path / "s.jsonl")])
    assert line == f"{source}:2: {expected}"


ALPACA_EXPECTED = (
    "expected Alpaca's order export (a header with symbol, side, qty or notional, submitted_at, ...; "
    "comma-separated)"
)


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        # Another separator: one column named after the whole header.
        ("id;symbol;side;qty;submitted_at\no1;TQQQ;buy;6;2026-05-21T13:42:01Z\n",
         "symbol, side, qty or notional, submitted_at"),
        ("id,side,qty,submitted_at\no1,buy,6,2026-05-21T13:42:01Z\n", "symbol"),
        ("id,symbol,side,submitted_at\no1,TQQQ,buy,2026-05-21T13:42:01Z\n", "qty or notional"),
    ],
)  # fmt: skip
def test_import_of_an_order_csv_without_a_needed_column_names_the_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, missing: str
) -> None:
    # Audit 27: said as the first row's missing value ("orders.csv:2: order without symbol"), or
    # for a missing qty column "order without qty or notional", as if a cell were empty.
    source = tmp_path / "orders.csv"
    source.write_text(text)
    line = one_error(capsys, ["import", "alpaca-orders", str(source), "-o", str(tmp_path / "s.jsonl")])
    assert line == f"{source}:1: missing column(s) {missing}: {ALPACA_EXPECTED}"


@pytest.mark.parametrize(
    ("header", "missing", "shape"),
    [
        ("index,request_id,status,created_at", "result", "SafeAgent's"),
        ("index,request_id,result,created_at", "status", "SafeAgent's"),
        ("id,at,action,agent_id,symbol", "claim_key", "tradeguard's audit"),
    ],
)
def test_import_of_a_claims_csv_without_a_needed_column_says_which(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], header: str, missing: str, shape: str
) -> None:
    # Audit 27: "unknown columns ['created_at', 'index', 'request_id', 'status']": SafeAgent's own
    # columns called unknown, and the one missing never named.
    source = tmp_path / "claims.csv"
    source.write_text(header + "\n" + ",".join("x" for _ in header.split(",")) + "\n")
    line = one_error(capsys, ["import", "claims", str(source), "-o", str(tmp_path / "s.jsonl")])
    assert line == (
        f"{source}:1: missing column(s) {missing} of {shape} export: expected tradeguard's audit export "
        "or SafeAgent's (index,request_id,result,status,created_at)"
    )


def test_import_bot_log_reads_a_lower_case_symbol_as_the_guard_keys_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `symbol=ddm` was refused with pydantic's "String should match pattern '^[A-Z0-9]...'",
    # while every command and the gateway read a lower-case ticker as upper case.
    log = tmp_path / "bot.log"
    log.write_text(
        LOG.replace("symbol=DDM", "symbol=ddm")
        + "[2026-03-05 11:00:02-040:00 SAFEAGENT SKIP: duplicate order blocked buy ddm qty=5 stage=base "
        "bar=2026-03-05T10:20:00-04:00\n"
        "[2026-03-05 11:30:00-040:00 EXIT TRAIL symbol=ddm qty=5 price=43.00 held_min=70 pnl_pct=2\n"
        "[2026-03-05 11:31:00-040:00 STAY BEAR symbol=ddm score=-4\n"
    )
    out = tmp_path / "s.jsonl"
    assert main(["import", "bot-log", str(log), "-o", str(out)]) == 0, capsys.readouterr().err
    events = [json.loads(line) for line in out.read_text().splitlines()[1:]]
    assert {e["symbol"] for e in events if e.get("symbol")} == {"DDM"}
    attempts = [e for e in events if e["type"] == "attempt"]
    assert [(a["side"], a["kind"]) for a in attempts] == [("buy", "entry")] * 2 + [("sell", "exit")]
    assert len({a["decision"] for a in attempts[:2]}) == 1  # the SKIP is a retry of the ENTER


def test_import_bot_log_refuses_a_symbol_no_order_could_carry_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "bot.log"
    log.write_text(LOG.replace("symbol=DDM", "symbol=dd$m"))
    line = one_error(capsys, ["import", "bot-log", str(log), "-o", str(tmp_path / "s.jsonl")])
    assert line == (
        f"{log}:1: symbol 'dd$m' is not a ticker: expected 1-32 letters, digits or ./:- (any case), "
        "e.g. symbol=DDM"
    )


def test_the_bot_logs_symbol_form_is_the_session_files() -> None:
    from replay.importers import bot_log
    from tradeguard.sessions import model

    assert f"^{bot_log._SYMBOL.pattern}$" == model._SYMBOL
