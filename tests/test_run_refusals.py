"""What `tradeguard run` refuses: one clear line on stderr, exit status 2, and no order sent.

Paper-mode refusals run against a real paper server, whose account shows that nothing reached
it; sim refusals leave no claim store behind (nothing was even claimed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from requests_mock import Mocker

from tradeguard import PaperBroker
from tradeguard.cli import main
from tradeguard.errors import ConfigError
from tradeguard.run.barfile import shipped_day_path
from tradeguard.run.command import prepare
from tradeguard.run.safety import confirm_live_account
from tradeguard.run.settings import Mode, RunSettings
from tradeguard.testing import PaperServer, paper_server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "TRADEGUARD_CONFIG", "TRADEGUARD_MODE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[PaperServer]:
    with paper_server() as running:
        yield running


def refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command; assert exit 2 and exactly one line on stderr; return that line."""
    assert main(["run", *args]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("tradeguard: error: ")
    return lines[0]


def bar_file(tmp_path: Path, drop: tuple[int, ...] = (), edit: tuple[int, str, str] | None = None) -> Path:
    """The shipped day, with the lines `drop` removed or one cell of line `edit[0]` replaced."""
    lines = shipped_day_path().read_text().splitlines()
    if edit is not None:
        number, old, new = edit
        assert old in lines[number - 1]
        lines[number - 1] = lines[number - 1].replace(old, new, 1)
    for number in sorted(drop, reverse=True):
        del lines[number - 1]
    path = tmp_path / "bars.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_paper_mode_without_keys_or_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "claims.db"
    line = refused(["strategies.momentum", "--mode", "paper", "--store", f"sqlite:///{store}"], capsys)
    assert "APCA_API_KEY_ID and APCA_API_SECRET_KEY" in line
    assert not store.exists()


def test_live_mode_without_the_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", "AKLIVEKEY")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "secret")
    assert "--i-understand-this-is-live" in refused(["strategies.momentum", "--mode", "live"], capsys)


def test_live_mode_with_paper_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", "PKPAPERKEY")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "secret")
    line = refused(["strategies.momentum", "--mode", "live", "--i-understand-this-is-live"], capsys)
    assert "refuses paper keys" in line


def test_live_mode_with_a_paper_url(
    server: PaperServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", "AKLIVEKEY")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "secret")
    args = ["strategies.momentum", "--mode", "live", "--i-understand-this-is-live", "--url", server.url]
    assert "refuses --url" in refused(args, capsys)
    assert server.broker.orders() == []


def test_live_account_number_must_be_typed_back() -> None:
    account = SimpleNamespace(account_number="PA3ABC123", equity="1000")
    broker: Any = SimpleNamespace(client=SimpleNamespace(get_account=lambda: account))
    assert confirm_live_account(broker, lambda prompt: "PA3ABC123\n") == "PA3ABC123"
    with pytest.raises(ConfigError, match="does not match"):
        confirm_live_account(broker, lambda prompt: "PA3ABC12")

    def no_input(prompt: str) -> str:
        raise EOFError

    with pytest.raises(ConfigError, match="typed at a prompt"):
        confirm_live_account(broker, no_input)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"drop": (98, 99, 100)}, "bars.csv:98: gap: no bars from 10:02 to 10:02 ET on 2026-05-21"),
        ({"drop": (100,)}, "bars.csv:98: gap: no TQQQ bar for 2026-05-21 10:02 ET"),
        (
            {"edit": (49, ",74.97,", ",74.80,")},
            "bars.csv:49: TQQQ high/low 74.80/74.74 do not contain open/close",
        ),
        ({"edit": (7, "-04:00", "")}, "bars.csv:7: timestamp '2026-05-21T09:31:00' has no timezone"),
        ({"edit": (9, ",21.36,", ",x21.36,")}, "bars.csv:9: open 'x21.36' is not a number"),
        ({"edit": (12, "09:33", "09:31")}, "bars.csv:12: rows out of time order"),
    ],
    ids=["missing minute", "missing symbol", "high below open", "naive time", "not a number", "out of order"],
)
def test_a_bar_file_with_gaps_or_bad_rows_is_refused_before_any_order(
    change: dict[str, Any],
    expected: str,
    tmp_path: Path,
    server: PaperServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bars = bar_file(tmp_path, **change)
    args = ["strategies.momentum", "--mode", "paper", "--url", server.url, "--bars", str(bars)]
    assert expected in refused([*args, "--store", f"sqlite:///{tmp_path / 'claims.db'}"], capsys)
    assert server.broker.orders() == []
    assert not (tmp_path / "claims.db").exists()


def test_a_strategy_that_does_not_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bot = tmp_path / "broken_bot.py"
    bot.write_text("import tradeguard\nimport numpy_but_misspelled\n")
    line = refused([str(bot), "--store", f"sqlite:///{tmp_path / 'claims.db'}"], capsys)
    assert "does not import: ModuleNotFoundError: No module named 'numpy_but_misspelled'" in line
    assert not (tmp_path / "claims.db").exists()


def test_a_strategy_file_with_a_syntax_error_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bot = tmp_path / "typo.py"
    bot.write_text("def on_bar(:\n    pass\n")
    assert "does not import: SyntaxError" in refused([str(bot)], capsys)


def test_a_module_path_that_does_not_exist(capsys: pytest.CaptureFixture[str]) -> None:
    assert "strategy strategies.nope does not import" in refused(["strategies.nope"], capsys)


def test_a_recorded_run_is_a_session_tradeguard_replay_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = tmp_path / "day.jsonl"
    args = ["run", "strategies.momentum", "--record", str(session), "--view", "plain"]
    assert main([*args, "--store", f"sqlite:///{tmp_path / 'claims.db'}"]) == 0
    capsys.readouterr()
    attempts = [line for line in session.read_text().splitlines() if '"attempt"' in line]
    assert attempts, "the run recorded no order attempt"
    assert main(["replay", str(session), "--compare", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    # The momentum bot retried nothing that reached the broker twice: no mode finds a duplicate.
    assert {mode: f["duplicate_orders_executed"] for mode, f in figures.items()} == {
        "none": 0,
        "entry-only": 0,
        "full": 0,
    }


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("folder", "is a folder; name a file in it"),
        ("missing/day.jsonl", "does not exist"),
        ("a-file/day.jsonl", "does not exist"),
    ],
)
def test_a_recording_that_cannot_be_written_is_refused_before_any_order(
    where: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, the run went on unrecorded and ended 0: the session asked for was never written."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "a-file").write_text("")
    record = str(tmp_path / where)
    args = ["strategies.momentum", "--record", record, "--view", "plain"]
    line = refused([*args, "--store", f"sqlite:///{tmp_path / 'claims.db'}"], capsys)
    assert f"--record {record}: " in line and expected in line
    assert not (tmp_path / "claims.db").exists()  # checked before the store is opened


def test_recording_to_a_dash_is_refused_not_written_to_a_file_named_dash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-` reads as standard output (as `import -o -`), which the run's own view fills: say so."""
    args = ["strategies.momentum", "--record", "-", "--view", "plain"]
    line = refused([*args, "--store", f"sqlite:///{tmp_path / 'claims.db'}"], capsys)
    assert line.startswith("tradeguard: error: --record -: a run records to a file")
    assert not (ROOT / "-").exists() and not (tmp_path / "claims.db").exists()


def test_a_recording_that_fails_to_start_is_refused_even_past_the_path_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway's recorder failing to open (whatever the reason) refuses the run too."""
    monkeypatch.setattr("tradeguard.run.assemble.check_record", lambda path: None)
    line = refused(["strategies.momentum", "--record", str(tmp_path), "--view", "plain"], capsys)
    assert f"--record {tmp_path}: cannot write it: IsADirectoryError" in line


def test_faults_in_live_mode_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", "AKLIVEKEY")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "secret")
    args = ["strategies.momentum", "--mode", "live", "--i-understand-this-is-live", "--faults", "plan.yaml"]
    assert "refuses --faults" in refused(args, capsys)


def test_a_sim_never_reconciles_against_a_store_where_the_agent_holds_positions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tradeguard import ClaimStore, OrderGateway, PaperBroker

    url = f"sqlite:///{tmp_path / 'real.db'}"
    with ClaimStore(url) as store:
        OrderGateway(PaperBroker(), store, agent_id="momentum", reconcile_on_start=False).enter(
            "TQQQ", qty=6, intent="a real position"
        )
    line = refused(["strategies.momentum", "--store", url], capsys)
    assert "sim needs a store of its own: agent momentum holds 6 TQQQ" in line
    with ClaimStore(url) as store:
        assert store.position("momentum", "TQQQ").qty == 6  # untouched


def test_live_mode_reads_the_account_and_needs_its_number_typed_back(
    tmp_path: Path, requests_mock: Mocker
) -> None:
    account = PaperBroker().account()
    number = account["account_number"]
    requests_mock.get("https://api.alpaca.markets/v2/account", json=account)
    settings = RunSettings(
        strategy="strategies.momentum",
        mode=Mode.LIVE,
        live_confirmed=True,
        store_url=f"sqlite:///{tmp_path / 'claims.db'}",
    )
    keys = {"APCA_API_KEY_ID": "AKLIVEKEY", "APCA_API_SECRET_KEY": "secret"}
    prompts: list[str] = []

    def typo(prompt: str) -> str:
        prompts.append(prompt)
        return number + "X"

    with pytest.raises(ConfigError, match="does not match; nothing was sent"):
        prepare(settings, environ=keys, ask=typo)
    assert f"LIVE account {number}" in prompts[0]
    assert not (tmp_path / "claims.db").exists()
    prepared = prepare(settings, environ=keys, ask=lambda prompt: number)
    assert prepared.venue.label == f"Alpaca LIVE account {number}"
    prepared.close()
    assert {r.method for r in requests_mock.request_history} == {"GET"}  # nothing was ever sent


def test_speed_without_a_bar_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", "PKPAPERKEY")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "secret")
    assert "--speed replays a bar file" in refused(
        ["strategies.momentum", "--mode", "paper", "--speed", "5"], capsys
    )


@pytest.mark.parametrize(
    ("drill", "expected"),
    [
        ("SQQ@11:40", "--close-outside SQQ@11:40: bars.csv has no SQQ bars (it has QQQ, SQQQ, TQQQ)"),
        ("SQQQ@03:00", "--close-outside SQQQ@03:00: bars.csv has no bar at 03:00 ET (its bars run 09:30-"),
    ],
    ids=["symbol without bars", "minute without a bar"],
)
def test_a_sim_drill_that_could_never_fire_is_refused_before_any_order(
    drill: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, the run went the whole day without the close and ended 0, as if it had been drilled."""
    bars = bar_file(tmp_path)
    args = ["strategies.momentum", "--bars", str(bars), "--close-outside", drill, "--view", "plain"]
    assert expected in refused([*args, "--store", f"sqlite:///{tmp_path / 'claims.db'}"], capsys)
    assert not (tmp_path / "claims.db").exists()
