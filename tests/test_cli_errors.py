"""The `tradeguard` command as a new user meets it: one line per expected failure, the right status.

Every failure the issue lists (tracebacks, silent empty stores, `| head`, no `--version`) is
run here as a user runs it: through `main([...])` with captured output, or as a real process
where the operating system matters (a closed pipe, the console entry point).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest

from tests.store_workers import subprocess_env
from tradeguard import ClaimStore, OrderGateway, PaperBroker, __version__
from tradeguard.cli import main
from tradeguard.cli.app import COMMANDS, cli
from tradeguard.cli.when import parse_when
from tradeguard.store import AuditQuery

ROOT = Path(__file__).resolve().parents[1]


def one_error_line(argv: list[str], capsys: pytest.CaptureFixture[str], status: int = 2) -> str:
    """Run the command; assert `status` and exactly one line on stderr, no traceback; return it."""
    assert main(argv) == status
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def audited_url(tmp_path: Path) -> str:
    """A store holding one filled entry of agent "bot" (6 TQQQ)."""
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    with ClaimStore(url) as store:
        OrderGateway(PaperBroker(), store, agent_id="bot", reconcile_on_start=False).enter(
            "TQQQ", qty=6, intent="09:42 buy"
        )
    return url


def test_an_unknown_audit_action_is_one_line_naming_the_option(
    audited_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_error_line(["audit", "--store", audited_url, "--action", "bogus"], capsys)
    assert line.startswith("tradeguard: error: ") and "'--action'" in line and "'bogus'" in line


def test_a_csv_in_a_missing_folder_is_one_line_naming_the_path(
    audited_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "nonexistent" / "x.csv"
    line = one_error_line(["audit", "--store", audited_url, "--csv", str(target)], capsys)
    assert f"cannot write {target}" in line
    assert not target.parent.exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_csv_in_a_read_only_folder_is_one_line(
    audited_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        line = one_error_line(["audit", "--store", audited_url, "--csv", str(folder / "x.csv")], capsys)
    finally:
        folder.chmod(0o755)
    assert "Permission denied" in line


def test_a_csv_under_a_file_is_one_line(
    audited_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What a read-only folder does for an unprivileged user, reproducible as root too.
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = one_error_line(["audit", "--store", audited_url, "--csv", str(blocker / "x.csv")], capsys)
    assert f"cannot write {blocker / 'x.csv'}" in line


def test_a_port_out_of_range_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_error_line(["paper-server", "--port", "99999"], capsys)
    assert "'--port'" in line and "99999" in line


def test_an_unknown_command_or_option_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert "No such command 'nosuch'" in one_error_line(["nosuch"], capsys)
    assert "No such option '--bogus'" in one_error_line(["audit", "--bogus"], capsys)


def test_a_bad_time_is_one_line_listing_the_forms(
    audited_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_error_line(["audit", "--store", audited_url, "--since", "last tuesday"], capsys)
    assert "'--since'" in line and "yesterday" in line and "_parse_time" not in line


@pytest.mark.parametrize(
    "since", ["yesterday", "today", "1h", "30m", "2d", "2026-05-21T09:30-04:00", "2026-05-21"]
)
def test_audit_takes_human_times(audited_url: str, since: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--store", audited_url, "--since", since]) == 0
    assert capsys.readouterr().out.startswith("id ")


def test_times_are_aware_and_relative_to_now() -> None:
    now = datetime(2026, 5, 21, 15, 0, tzinfo=UTC)
    assert parse_when("1h", now) == now - timedelta(hours=1)
    assert parse_when("30m", now) == now - timedelta(minutes=30)
    assert parse_when("2d", now) == now - timedelta(days=2)
    assert parse_when("now", now) == now
    assert parse_when("2026-05-21T09:30Z", now) == datetime(2026, 5, 21, 9, 30, tzinfo=UTC)
    today, yesterday = parse_when("today", now), parse_when("yesterday", now)
    assert today.tzinfo is not None and yesterday.tzinfo is not None
    assert today <= now < today + timedelta(days=1)
    assert (
        today.astimezone().replace(tzinfo=None) - yesterday.astimezone().replace(tzinfo=None)
    ) == timedelta(days=1)
    naive = parse_when("2026-05-21T09:30", now)  # no zone: this machine's local time
    assert naive.tzinfo is not None
    assert naive.astimezone().replace(tzinfo=None) == datetime(2026, 5, 21, 9, 30)  # noqa: DTZ001
    with pytest.raises(ValueError, match="not a time"):
        parse_when("soon", now)


def test_audit_prints_a_header_row_then_the_records(
    audited_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "--store", audited_url, "--action", "claim"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "id", "at", "agent", "action", "kind", "symbol", "side", "qty", "state", "client_order_id", "reason",
    ]  # fmt: skip
    assert len(lines) == 2 and "TQQQ" in lines[1] and " claim " in lines[1]


def test_audit_formats_csv_and_json(audited_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--store", audited_url, "--format", "csv", "--symbol", "tqqq"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and {r["symbol"] for r in rows} == {"TQQQ"}
    assert main(["audit", "--store", audited_url, "--format", "json", "--limit", "1"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    assert doc["action"] == "claim" and doc["agent"] == "bot" and isinstance(doc["detail"], dict)


def test_audit_pages_by_id(audited_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--store", audited_url, "--format", "json", "--limit", "2"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (
        main(["audit", "--store", audited_url, "--format", "json", "--after-id", str(first[-1]["id"])]) == 0
    )
    rest = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rest] and min(r["id"] for r in rest) > first[-1]["id"]


@pytest.mark.parametrize(
    "argv",
    [
        ["audit"],
        ["claims", "list"],
        ["claims", "show", "x"],
        ["claims", "resolve", "x", "--as", "filled", "--reason", "r", "--without-broker"],
        ["db", "export"],
        ["db", "check"],
        ["settle", "--agent-id", "a", "--symbol", "TQQQ", "--qty", "0", "--reason", "r"],
        ["reconcile", "--paper-state", "PAPER"],
    ],
)
def test_commands_that_read_a_store_never_create_one(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo.db"
    paper = tmp_path / "paper.json"
    PaperBroker(state_path=paper).set_price("TQQQ", "10")  # writes the account file
    argv = [str(paper) if a == "PAPER" else a for a in argv]
    line = one_error_line([*argv, "--store", f"sqlite:///{missing}"], capsys)
    assert f"no claim store at {missing}" in line
    assert not missing.exists()
    assert not Path(f"{missing}-wal").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["audit"],
        ["claims", "list"],
        ["db", "export", "--what", "claims"],
        ["db", "upgrade"],
        ["settle", "--agent-id", "bot", "--symbol", "TQQQ", "--qty", "6", "--reason", "r"],
    ],
    ids=["audit", "claims list", "db export", "db upgrade", "settle"],
)
def test_store_commands_take_the_settings_variables_too(
    argv: list[str], audited_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Audit 20: the README says every command takes TRADEGUARD_<FIELD> settings, yet the
    # commands that only read or migrate a store opened it with the defaults (a busy timeout
    # set for a crowded store was ignored); a bad one went unnoticed.
    monkeypatch.setenv("TRADEGUARD_SQLITE_BUSY_TIMEOUT_MS", "soon")
    line = one_error_line([*argv, "--store", audited_url], capsys)
    assert line == "tradeguard: error: TRADEGUARD_SQLITE_BUSY_TIMEOUT_MS='soon' is not a valid int"


def test_a_sqlite_file_without_the_schema_is_not_taken_for_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    line = one_error_line(["audit", "--store", f"sqlite:///{other}"], capsys)
    assert "holds no tradeguard claim store" in line and "db upgrade" in line
    with sqlite3.connect(other) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"t"}


def test_no_command_shows_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "Commands:" in capsys.readouterr().err


def test_help_documents_the_exit_statuses_and_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Exit status: 0 ok; 1 found a problem" in out and "2 bad input" in out
    assert all(name in out for name in COMMANDS)


def _commands(group: click.Group, ctx: click.Context) -> list[click.Command]:
    found: list[click.Command] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        found.append(command)
        if isinstance(command, click.Group):
            found += _commands(command, click.Context(command, parent=ctx, info_name=name))
    return found


def test_every_command_and_option_has_help() -> None:
    ctx = click.Context(cli, info_name="tradeguard")
    commands = _commands(cli, ctx)
    assert len(commands) >= len(COMMANDS) + 5  # claims list/show/resolve, db upgrade/check/export
    missing = [
        f"{command.name} {param.name}"
        for command in commands
        for param in command.params
        if isinstance(param, click.Option) and not param.help
    ]
    assert missing == []
    assert all(command.help for command in commands)


def tradeguard(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradeguard.cli", *args],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )


def test_version_prints_the_package_version() -> None:
    done = tradeguard("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"tradeguard {__version__}\n", "")


def test_a_reader_that_goes_away_ends_the_output_quietly(audited_url: str) -> None:
    # `tradeguard audit --limit 5000 | head -1`: the reader closes the pipe after one line.
    with ClaimStore(audited_url) as store:
        gateway = OrderGateway(PaperBroker(), store, agent_id="bot", reconcile_on_start=False)
        for n in range(300):  # enough records that the output outgrows the pipe's buffer
            gateway.enter("QQQ", qty=1, intent=f"bar {n}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradeguard.cli", "audit", "--store", audited_url, "--limit", "5000"],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141
    assert first.startswith(b"id ")
    assert err == ""


class Terminal(io.StringIO):
    """A captured stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_tables_are_rich_on_a_terminal_and_plain_in_a_pipe() -> None:
    from tradeguard.cli.output import emit

    rows = [{"symbol": "TQQQ", "qty": 6}, {"symbol": "SQQQ", "qty": None}]
    pipe, terminal = io.StringIO(), Terminal()
    emit(("symbol", "qty"), rows, "table", out=pipe)
    emit(("symbol", "qty"), rows, "table", out=terminal)
    assert pipe.getvalue() == "symbol  qty\nTQQQ    6\nSQQQ\n"
    drawn = terminal.getvalue()
    assert "┃" in drawn or "│" in drawn  # Rich's box
    assert "TQQQ" in drawn and "symbol" in drawn


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("notaurl", "no scheme"),
        ("ftp://127.0.0.1:8765", "scheme ftp"),
        ("http://", "no host"),
        ("http://exa mple:8765", "a space"),
        ("http://127.0.0.1:99999", "port 99999"),
    ],
)
@pytest.mark.parametrize("command", ["reconcile", "claims resolve", "run"])
def test_a_broker_url_that_cannot_be_a_url_is_bad_input_naming_the_option(
    audited_url: str, capsys: pytest.CaptureFixture[str], url: str, why: str, command: str
) -> None:
    # README: 2 for a broker that cannot be configured. reconcile used to send the read, fail in
    # requests (MissingSchema) and abort with exit 1 as if the broker were down.
    args = {
        "reconcile": ["reconcile", "--store", audited_url, "--paper-url", url, "--dry-run"],
        "claims resolve": [
            "claims", "resolve", "x", "--store", audited_url, "--as", "filled", "--reason", "r",
            "--paper-url", url,
        ],
        "run": ["run", "strategies.momentum", "--mode", "paper", "--url", url, "--store", audited_url],
    }[command]  # fmt: skip
    option = "--url" if command == "run" else "--paper-url"
    line = one_error_line(args, capsys)
    assert line.startswith(f"tradeguard: error: {option} {url!r} is not a broker URL ({why}"), line
    assert line.endswith("expected http(s)://HOST[:PORT], e.g. http://127.0.0.1:8765"), line


SHAPE = "a JSON object: version, cash, positions, orders"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[1, 2]", f"not the shape of tradeguard's paper state ({SHAPE})"),
        ('{"version": 1}', "no 'cash' field"),
        ('{"version": 1, "cash": "abc", "orders": [], "positions": {}}', "a figure that is not a number"),
        ('{"version": 99}', "unsupported state version 99"),
    ],
)
def test_a_paper_state_file_that_is_no_paper_account_is_said_in_words_not_as_a_repr(
    audited_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, words: str
) -> None:
    # Audit 27: it said "not a paper account: AttributeError("'list' object has no attribute 'get'")".
    state = tmp_path / "other.json"
    state.write_text(text)
    args = ["reconcile", "--store", audited_url, "--paper-state", str(state), "--dry-run"]
    line = one_error_line(args, capsys)
    assert line == f"tradeguard: error: paper state {state}: not a paper account: {words}"
    assert state.read_text() == text  # refused, never rewritten as an empty account


@pytest.mark.parametrize("command", ["reconcile", "paper-server"])
def test_a_paper_state_file_that_is_not_json_is_said_in_words_not_as_a_repr(
    audited_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    # It said "not JSON: JSONDecodeError('Expecting property name enclosed in double quotes: ...')".
    state = tmp_path / "bad.json"
    state.write_text("{bad\n")
    args = {
        "reconcile": ["reconcile", "--store", audited_url, "--paper-state", str(state), "--dry-run"],
        "paper-server": ["paper-server", "--port", "0", "--state", str(state)],
    }[command]
    line = one_error_line(args, capsys)
    assert line == (
        f"tradeguard: error: paper state {state}: not JSON: "
        "Expecting property name enclosed in double quotes at column 2"
    )


# -- audit 29: an agent id the store never saw, files written over, an empty run agent -------------


def _settle_args(url: str, agent: str, *extra: str) -> list[str]:
    return [
        "settle", "--store", url, "--agent-id", agent, "--symbol", "TQQQ", "--qty", "5",
        "--reason", "r", *extra,
    ]  # fmt: skip


def test_settle_refuses_an_agent_the_store_never_saw_naming_the_known_ones(
    audited_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # It booked 5 TQQQ to "bott" and exited 0: shares no bot owns, which every other agent on
    # the account then counts as not its own when it sizes an exit (G3).
    line = one_error_line(_settle_args(audited_url, "bott"), capsys)
    path = audited_url.removeprefix("sqlite:///")
    assert line == (
        f"tradeguard: error: --agent-id bott: no such agent in sqlite:///{path} (no claims, ledger, audit "
        "records or registered account; did you mean bot? known agents: bot); pass --new-agent if it is "
        "meant to be a new one"
    )
    with ClaimStore(audited_url) as store:
        assert [p.agent_id for p in store.all_positions()] == ["bot"]
        assert store.audit_count(AuditQuery(agent_id="bott")) == 0


def test_settle_of_an_unknown_agent_in_an_empty_store_says_there_is_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    ClaimStore(url).close()
    line = one_error_line(_settle_args(url, "bot"), capsys)
    assert "(no claims, ledger, audit records or registered account; the store knows no agent yet)" in line


def test_settle_takes_a_new_agent_when_told_and_knows_it_afterwards(
    audited_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_settle_args(audited_url, "manual", "--new-agent", "--actor", "ops")) == 0
    assert capsys.readouterr().out == "manual TQQQ: ledger 0 -> 5 (settled by ops: r)\n"
    # Flat again, its turn closed: the audit log still knows the agent.
    flat = _settle_args(audited_url, "manual")
    flat[flat.index("--qty") + 1] = "0"
    assert main(flat) == 0
    assert main(_settle_args(audited_url, "manual")) == 0
    with ClaimStore(audited_url) as store:
        assert store.position("manual", "TQQQ").qty == 5


def test_settle_knows_an_agent_by_its_registered_account_or_its_ledger_alone(
    audited_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with ClaimStore(audited_url) as store:
        store.register_account("registered", "paper:acct-1")
    assert main(_settle_args(audited_url, "registered")) == 0
    assert main(_settle_args(audited_url, "bot")) == 0  # claims
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "option"),
    [(["db", "export", "-o", "FILE"], "-o"), (["audit", "--csv", "FILE"], "--csv")],
    ids=["db export", "audit --csv"],
)
def test_an_export_keeps_an_existing_file_unless_force(
    audited_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], option: str
) -> None:
    # Both wrote over any file there (a recorded session, a paper state file) without a word;
    # `tradeguard import` refuses the same in these words.
    target = tmp_path / "session.jsonl"
    target.write_text('{"recorded": true}\n')
    args = [str(target) if a == "FILE" else a for a in argv] + ["--store", audited_url]
    line = one_error_line(args, capsys)
    refused = "tradeguard: error: "
    assert line == refused + f"{option} {target} exists: pass --force to replace it, or give another name"
    assert target.read_text() == '{"recorded": true}\n'
    assert main([*args, "--force"]) == 0
    assert f"to {target}" in capsys.readouterr().out
    assert "recorded" not in target.read_text()


def test_audit_csv_over_the_store_itself_is_refused_as_the_store_file_even_with_force(
    audited_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = audited_url.removeprefix("sqlite:///")
    for extra in ([], ["--force"]):
        line = one_error_line(["audit", "--store", audited_url, "--csv", path, *extra], capsys)
        assert line.endswith(f"error: refusing to write {path}: it is a file of the claim store being read")
    with ClaimStore(audited_url) as store:
        assert store.audit_count() > 0


@pytest.mark.parametrize("where", ["flag", "env", "file"])
def test_run_refuses_an_empty_agent_id_as_the_store_commands_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    # It ran under the strategy's name instead, while `settle --agent-id ""` is refused.
    args = ["run", "strategies.momentum", "--print-config"]
    config = tmp_path / "tg.toml"
    if where == "flag":
        args += ["--agent-id", ""]
    elif where == "env":
        monkeypatch.setenv("TRADEGUARD_AGENT_ID", "")
    else:
        config.write_text('[run]\nagent_id = ""\n')
        args += ["--config", str(config)]
    line = one_error_line(args, capsys)
    said = {"flag": "'--agent-id'", "env": "TRADEGUARD_AGENT_ID", "file": f"{config} [run]"}[where]
    assert said in line and "agent_id must be 1-64 characters" in line and "got ''" in line
