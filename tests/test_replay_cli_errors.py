"""`tradeguard replay` and `tradeguard import` on bad input: one line on stderr, exit status 2, no traceback.

Each case is one an acceptance audit found ending in a traceback (exit 1), a file left behind or
a file silently replaced. Run in-process (`main`), as the command line runs them.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import tradeguard
from tradeguard.cli import main

ROOT = Path(tradeguard.__file__).resolve().parent.parent

HEADER = '{"type": "session", "version": 1, "start": "2026-05-21T09:30:00-04:00"}\n'
ATTEMPT = (
    '{"type": "attempt", "t": "2026-05-21T09:42:00-04:00", "decision": "d1", "attempt": 1, '
    '"kind": "entry", "symbol": "TQQQ", "side": "buy", "qty": QTY}\n'
)
NOTE = '{"type": "note", "t": "2026-05-21T09:43:00-04:00", "text": "caf\xe9 au lait"}\n'
LOG = (
    "[2026-03-05 10:20:19-040:00 ENTER BEAR stage=base symbol=DDM qty=5 est_price=42.10 stop=41.00 "
    "target=44.00 score=-6 bar=2026-03-05T10:20:00-04:00\n"
    "[2026-03-05 11:00:00-040:00 STAY BEAR score=-4 bull=1 bear=5\n"
)
ORDER = {"id": "o1", "symbol": "TQQQ", "side": "buy", "qty": "6", "filled_qty": "6",
         "filled_avg_price": "75.33", "status": "filled", "submitted_at": "2026-05-21T13:42:01Z"}  # fmt: skip


def one_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """Run the command; assert exit 2 with exactly one line on stderr; return that line."""
    status = main(args)
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tradeguard: error: "), err
    return lines[0].removeprefix("tradeguard: error: ")


def session(tmp_path: Path, *lines: str, name: str = "s.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(lines))
    return path


# -- replay ---------------------------------------------------------------------------------------


def test_replay_names_the_line_and_byte_of_a_file_that_is_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes((HEADER + ATTEMPT.replace("QTY", '"6"') + NOTE).encode("latin-1"))
    line = one_error(capsys, ["replay", str(path), "--compare"])
    assert line.startswith(f"{path}:3: not UTF-8 text: byte 0xe9 at column ")


def test_replay_of_a_gzip_file_says_to_decompress_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.jsonl.gz"
    path.write_bytes(gzip.compress((HEADER + ATTEMPT.replace("QTY", '"6"')).encode()))
    assert (
        one_error(capsys, ["replay", str(path)])
        == f"{path}:1: a gzip-compressed file, not text: decompress it first (gunzip)"
    )


@pytest.mark.parametrize("qty", ['"1e30"', "99999999999999999999999999999", '"-5"'])
def test_replay_refuses_an_absurd_quantity_naming_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], qty: str
) -> None:
    path = session(tmp_path, ATTEMPT.replace("QTY", qty))
    line = one_error(capsys, ["replay", str(path), "--compare"])
    assert line.startswith(f"{path}:2: invalid attempt event: qty: Input should be ")


def test_replay_refuses_an_integer_too_long_for_python_naming_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Audit 18 #2: a 5,000-digit integer raised a bare ValueError (a traceback, exit 1).
    price = (
        '{"type": "price", "t": "2026-05-21T09:31:00-04:00", "symbol": "TQQQ", "price": ' + "9" * 5000 + "}\n"
    )
    path = session(tmp_path, price)
    assert one_error(capsys, ["replay", str(path)]) == (
        f"{path}:2: a number too long to be a figure: Exceeds the limit (4300 digits) for integer "
        "string conversion: value has 5000 digits"
    )


def test_replay_refuses_a_lone_surrogate_naming_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Audit 18 #3: valid JSON, accepted, then the table printer crashed (UnicodeEncodeError).
    lone = '{"type": "note", "t": "2026-05-21T09:43:00-04:00", "text": "x \\ud800 y"}\n'
    paired = '{"type": "note", "t": "2026-05-21T09:44:00-04:00", "text": "\\ud83d\\ude00"}\n'
    ok = main(["replay", str(session(tmp_path, paired, name="emoji.jsonl"))])
    assert ok == 0  # a surrogate pair is a character (here an emoji)
    capsys.readouterr()
    path = session(tmp_path, paired, lone)
    assert one_error(capsys, ["replay", str(path)]) == (
        f"{path}:3: a lone UTF-16 surrogate escape (\\ud800-\\udfff) in a string: not text"
    )


def test_replay_refuses_a_line_longer_than_a_mebibyte_without_reading_it_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Audit 18 #4: a file with no line break was read into memory whole (MemoryError, or all RAM).
    path = tmp_path / "one-line.jsonl"
    with path.open("w") as fh:
        fh.write(HEADER)
        fh.write("x" * (3 << 20))
    assert one_error(capsys, ["replay", str(path)]) == (
        f"{path}:2: a line longer than 1,048,576 characters: not a session event"
    )


@pytest.mark.parametrize(("first", "line"), [(False, 2), (True, 1)])
def test_replay_of_json_nested_too_deeply_names_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], first: bool, line: int
) -> None:
    # Python's JSON parser recurses per level: this used to end in a RecursionError traceback.
    deep = (
        '{"type": "note", "t": "2026-05-21T09:43:00-04:00", "text": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
    )
    path = tmp_path / "deep.jsonl"
    path.write_text(deep if first else HEADER + deep)
    assert one_error(capsys, ["replay", str(path)]) == (
        f"{path}:{line}: JSON nested too deeply to be an event (arrays or objects inside each other)"
    )


def test_a_deep_line_is_refused_where_the_recursion_limit_was_raised(tmp_path: Path) -> None:
    # py_ecc (under eth-account, SafeAgent's payment extra) raises the limit to 100,000 on import;
    # Python's JSON parser then recursed until the C stack ran out: a segmentation fault.
    path = tmp_path / "deep.jsonl"
    path.write_text(
        HEADER + '{"type": "note", "t": "2026-05-21T09:43:00-04:00", "text": ' + "[" * 200_000 + "}\n"
    )
    program = (
        "import sys; sys.setrecursionlimit(100_000); "
        "from tradeguard.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", program, "replay", str(path)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    problem = "JSON nested too deeply to be an event (arrays or objects inside each other)"
    assert (done.returncode, done.stderr) == (2, f"tradeguard: error: {path}:2: {problem}\n")


def test_an_event_after_the_end_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = session(
        tmp_path,
        ATTEMPT.replace("QTY", '"6"'),
        '{"type": "end", "t": "2026-05-21T10:00:00-04:00"}\n',
        ATTEMPT.replace("QTY", '"6"').replace("09:42", "10:01").replace('"d1"', '"d2"'),
    )
    assert one_error(capsys, ["replay", str(path)]) == f"{path}:4: an event after the end event"


@pytest.mark.parametrize("option", ["--plot", "--report"])
def test_an_output_in_a_missing_folder_is_refused_before_the_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    if option == "--plot":
        pytest.importorskip("matplotlib")
    path = session(tmp_path, ATTEMPT.replace("QTY", '"6"'))
    target = tmp_path / "missing" / "out"
    status = main(["replay", str(path), option, str(target)])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""  # refused before anything was replayed
    assert captured.err == f"tradeguard: error: {option} {target}: folder {target.parent} does not exist\n"


def test_a_directory_as_session_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "is a directory" in one_error(capsys, ["replay", str(tmp_path)])


def test_compare_and_guard_together_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = session(tmp_path, ATTEMPT.replace("QTY", '"6"'))
    line = one_error(capsys, ["replay", str(path), "--compare", "--guard", "none"])
    assert line == "--compare runs all three modes and --guard names one: give one or the other"


@pytest.mark.parametrize("option", ["--plot", "--report"])
def test_an_output_onto_the_session_itself_is_refused_and_the_session_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    if option == "--plot":
        pytest.importorskip("matplotlib")
    path = session(tmp_path, ATTEMPT.replace("QTY", '"6"'))
    recorded = path.read_bytes()
    line = one_error(capsys, ["replay", str(path), option, str(path)])
    assert line == f"{option} {path} is the session being replayed: give another name"
    assert path.read_bytes() == recorded  # what was recorded is not lost under a chart or a page


def test_plot_and_report_onto_one_file_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    path = session(tmp_path, ATTEMPT.replace("QTY", '"6"'))
    target = tmp_path / "out.html"
    line = one_error(capsys, ["replay", str(path), "--plot", str(target), "--report", str(target)])
    assert line == f"--plot and --report both name {target}: give each its own file"
    assert not target.exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("option", ["--plot", "--report"])
def test_an_output_that_fails_to_write_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    if option == "--plot":
        pytest.importorskip("matplotlib")
    path = session(tmp_path, ATTEMPT.replace("QTY", '"6"'))
    status = main(["replay", str(path), option, "/dev/full"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err == f"tradeguard: error: {option} /dev/full: cannot write: No space left on device\n"


# -- import ---------------------------------------------------------------------------------------


def test_import_bot_log_names_the_line_and_byte_that_is_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "bot.log"
    log.write_bytes((LOG + "[2026-03-05 11:01:00-040:00 NOTE caf\xe9\n").encode("latin-1"))
    out = tmp_path / "s.jsonl"
    line = one_error(capsys, ["import", "bot-log", str(log), "-o", str(out)])
    assert line.startswith(f"{log}:3: not UTF-8 text: byte 0xe9 at column 37")
    assert not out.exists()


def test_import_bot_log_of_a_gzip_file_says_to_decompress_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "bot.log.gz"
    log.write_bytes(gzip.compress(LOG.encode()))
    line = one_error(capsys, ["import", "bot-log", str(log), "-o", str(tmp_path / "s.jsonl")])
    assert line == f"{log}:1: a gzip-compressed file, not text: decompress it first (gunzip)"


CSV_HEAD = "symbol,side,qty,submitted_at\n"
HUGE = 99999999999999999999999999999


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "orders.csv",
            f"{CSV_HEAD}TQQQ,buy,1e30,2026-05-21T13:42:01Z\n",
            ":2: qty '1e30' is beyond any real",
        ),
        ("orders.json", json.dumps([{**ORDER, "qty": HUGE}]), f":1: qty {HUGE} is beyond any real order"),
        ("orders.csv", "", ":1: empty file: expected a header line"),
        (
            "orders.csv",
            f"{CSV_HEAD}TQQQ,buy,0,2026-05-21T13:42:01Z\n",
            ":2: cannot make an attempt event: qty: Input should be greater than 0",
        ),
    ],
)
def test_import_alpaca_orders_refuses_bad_figures_and_empty_files_leaving_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, expected: str
) -> None:
    source = tmp_path / name
    source.write_text(text)
    out = tmp_path / "s.jsonl"
    line = one_error(capsys, ["import", "alpaca-orders", str(source), "-o", str(out)])
    assert line.startswith(f"{source}{expected}"), line
    assert list(tmp_path.iterdir()) == [source]  # no session, no temporary file left behind


def test_import_alpaca_orders_reads_json_with_a_byte_order_mark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "orders.json"
    source.write_bytes(b"\xef\xbb\xbf" + json.dumps([ORDER]).encode())
    assert main(["import", "alpaca-orders", str(source), "-o", str(tmp_path / "s.jsonl")]) == 0
    assert "1 orders, 0 suspected duplicates" in capsys.readouterr().out


@pytest.mark.parametrize("doc", [{"not": "claims"}, "claims", 42])
def test_import_claims_of_json_that_is_not_a_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: object
) -> None:
    source = tmp_path / "claims.json"
    source.write_text(json.dumps(doc))
    line = one_error(capsys, ["import", "claims", str(source), "-o", str(tmp_path / "s.jsonl")])
    assert line.startswith(f"{source}:1: ")


@pytest.mark.parametrize("where", ["missing folder", "directory"])
def test_import_to_an_output_that_cannot_be_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    log = tmp_path / "bot.log"
    log.write_text(LOG)
    out = tmp_path / "missing" / "s.jsonl" if where == "missing folder" else tmp_path
    line = one_error(capsys, ["import", "bot-log", str(log), "-o", str(out)])
    assert line.startswith(f"-o {out}")


def test_import_never_replaces_its_input_nor_an_existing_file_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "bot.log"
    log.write_text(LOG)
    line = one_error(capsys, ["import", "bot-log", str(log), "-o", str(log)])
    assert line == f"-o {log} is the file being imported: give another name for the session"
    assert log.read_text() == LOG
    out = tmp_path / "s.jsonl"
    out.write_text("mine\n")
    line = one_error(capsys, ["import", "bot-log", str(log), "-o", str(out)])
    assert line == f"-o {out} exists: pass --force to replace it, or give another name"
    assert out.read_text() == "mine\n"
    assert main(["import", "bot-log", str(log), "-o", str(out), "--force"]) == 0
    assert out.read_text().startswith('{"type":"session"')


def test_import_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "bot.log"
    log.write_text(LOG)
    assert main(["import", "bot-log", str(log), "-o", "-"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert json.loads(lines[0])["type"] == "session" and json.loads(lines[-1])["type"] == "end"
    assert captured.err.startswith("wrote the session to stdout: ")
    assert list(tmp_path.iterdir()) == [log]


LATE_ANSWER = (
    '{"type": "answer", "t": "2026-05-21T09:55:00-04:00", "decision": "d1", "attempt": 1, '
    '"result": "filled"}\n'
)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (  # an answer 13 minutes after its attempt: past the 600 s horizon
            [ATTEMPT.replace("QTY", '"6"'), LATE_ANSWER],
            ":3: answer to decision 'd1' attempt 1 has no attempt to answer: expected it after its attempt",
        ),
        (  # attempt 1 of d1 twice
            [ATTEMPT.replace("QTY", '"6"'), ATTEMPT.replace("QTY", '"6"').replace("09:42:00", "09:42:05")],
            ":3: attempt 1 of decision 'd1' comes again: expected attempt 2 or later",
        ),
    ],
)  # fmt: skip
def test_replay_refuses_late_answers_and_repeated_attempts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str], expected: str
) -> None:
    path = session(tmp_path, *lines)
    assert one_error(capsys, ["replay", str(path), "--compare"]).startswith(f"{path}{expected}")


def retry(n: int, **fields: str) -> str:
    """Attempt `n` of decision d1 (a buy of 6 TQQQ, an entry), 5 s apart, with `fields` changed."""
    event = {"type": "attempt", "t": f"2026-05-21T09:42:{5 * n:02d}-04:00", "decision": "d1", "attempt": n,
             "kind": "entry", "symbol": "TQQQ", "side": "buy", "qty": "6", **fields}  # fmt: skip
    return json.dumps(event) + "\n"


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        (  # /tmp/audit10c/imp/mixed.jsonl: a buy of 6 TQQQ "retried" as an exit selling 600 SQQQ
            {"kind": "exit", "symbol": "SQQQ", "side": "sell", "qty": "600"},
            "attempt 2 of decision 'd1' differs from its attempt 1 in kind (exit, not entry) and "
            "symbol (SQQQ, not TQQQ)",
        ),
        ({"side": "sell"}, "attempt 2 of decision 'd1' differs from its attempt 1 in side (sell, not buy)"),
        (
            {"symbol": "SQQQ"},
            "attempt 2 of decision 'd1' differs from its attempt 1 in symbol (SQQQ, not TQQQ)",
        ),
    ],
)  # fmt: skip
def test_replay_refuses_a_retry_of_another_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changed: dict[str, str], expected: str
) -> None:
    path = session(tmp_path, retry(1), retry(2, **changed))
    assert (
        one_error(capsys, ["replay", str(path), "--compare"])
        == f"{path}:3: {expected}: a decision's attempts are tries of one order (another order is "
        "another decision)"
    )


def test_a_retry_may_change_an_exits_side_and_any_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What tradeguard itself records: an exit is sided from the position at each try (a cover
    # retried once flat is a sell), and a bot's retry with another quantity (IntentMismatch).
    exit_ = {"kind": "exit", "symbol": "SQQQ"}
    exits = [retry(1, **exit_, side="buy"), retry(2, **exit_, side="sell", qty="4")]
    entries = [retry(3, decision="d2"), retry(4, decision="d2", qty="7")]
    path = session(tmp_path, *exits, *entries)
    assert main(["replay", str(path), "--compare"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (HEADER.replace('"version": 1', '"version": "1"'), "session format version '1' (a string) is not"),
        (HEADER.replace('"start"', '"timezone": "Mars/Olympus", "start"'), "timezone 'Mars/Olympus' is not"),
    ],
)  # fmt: skip
def test_replay_names_a_header_it_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], header: str, expected: str
) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(header + ATTEMPT.replace("QTY", '"6"'))
    assert one_error(capsys, ["replay", str(path)]).startswith(f"{path}:1: {expected}")


def test_a_report_without_matplotlib_says_the_chart_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import replay.plot
    from tradeguard import ConfigError

    def no_pyplot() -> None:
        raise ConfigError("plots need matplotlib, which is not installed: pip install 'tradeguard[plot]'")

    monkeypatch.setattr(replay.plot, "_pyplot", no_pyplot)
    path = session(tmp_path, ATTEMPT.replace("QTY", '"6"'))
    page = tmp_path / "r.html"
    assert main(["replay", str(path), "--report", str(page)]) == 0
    err = capsys.readouterr().err
    assert f"wrote {page} without the chart: plots need matplotlib" in err
    assert "No chart: plots need matplotlib" in page.read_text()


@pytest.mark.parametrize("what", ["fifo", "symlink", "dangling symlink", "device"])
def test_import_with_force_replaces_only_a_regular_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str
) -> None:
    log = tmp_path / "bot.log"
    log.write_text(LOG)
    mine = tmp_path / "mine.jsonl"
    mine.write_text("mine\n")
    out = tmp_path / "s.jsonl"
    if what == "fifo":
        os.mkfifo(out)
        kind = "a FIFO (named pipe)"
    elif what == "device":  # a node of its own (never a system one: the bug would replace it)
        try:
            os.mknod(out, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node needs root (CAP_MKNOD)")
        kind = "a device"
    else:
        out.symlink_to(mine if what == "symlink" else tmp_path / "nowhere.jsonl")
        kind = "a symbolic link"
    line = one_error(capsys, ["import", "bot-log", str(log), "-o", str(out), "--force"])
    assert line == f"-o {out} is {kind}, not a regular file: give a file name for the session"
    assert mine.read_text() == "mine\n"
    assert out.is_symlink() if "symlink" in what else not out.is_file()


def test_a_session_file_with_a_byte_order_mark_replays_as_without(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Audit 18: the importers dropped a leading BOM (an editor's), the reader refused it.
    plain = session(tmp_path, ATTEMPT.replace("QTY", '"6"'))
    marked = tmp_path / "bom.jsonl"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert main(["replay", str(plain), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert main(["replay", str(marked), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == expected
