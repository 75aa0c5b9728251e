"""The README's example, the demo (the main job) and the example bot run as users run them."""

from __future__ import annotations

import re
import shlex
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from strategies.momentum import MomentumBot
from tradeguard import ClaimStore, ManualClock, OrderGateway, PaperBroker, Settings
from tradeguard.cli import main
from tradeguard.demo import STEPS, run_demo

ROOT = Path(__file__).resolve().parents[1]


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


RUN_COMMANDS = [
    line
    for line in re.findall(r"```sh\n(.*?)```", readme_section("Run a strategy"), re.S)[0].splitlines()
    if line.startswith("tradeguard run ")
]


def test_readme_ten_line_example_runs_and_runs_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Run twice in one folder, as a user does: the files it keeps must not break the second run.
    monkeypatch.chdir(tmp_path)
    example = readme_python_blocks()[0]
    printed = []
    for _ in range(2):
        namespace: dict[str, object] = {}
        exec(compile(example, "README.md", "exec"), namespace)
        gateway = namespace["gateway"]
        assert isinstance(gateway, OrderGateway)
        assert len(gateway.broker.orders()) == 2  # type: ignore[attr-defined]  # one buy, one sell
        gateway.store.close()
        printed.append(capsys.readouterr().out.split())
    assert printed[0] == ["6", "submitted", "duplicate", "0"]
    assert printed[1] == ["0", "duplicate", "duplicate", "0"]  # every decision claimed: nothing sent


def test_readme_ten_line_example_after_its_paper_account_is_deleted_sends_nothing_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A user who deletes example.json keeps example.db: its decisions were made on the gone account.
    monkeypatch.chdir(tmp_path)
    example = compile(readme_python_blocks()[0], "README.md", "exec")
    exec(example, {})  # the claims, made on the first paper account
    (tmp_path / "example.json").unlink()
    namespace: dict[str, object] = {}
    exec(example, namespace)  # used to die on its own assert: a duplicate has no order here
    assert capsys.readouterr().out.split()[-4:] == ["0", "duplicate", "duplicate", "0"]
    gateway = namespace["gateway"]
    assert isinstance(gateway, OrderGateway)
    assert gateway.broker.orders() == []  # type: ignore[attr-defined]  # nothing sent to the new account
    retry = namespace["retry"]
    assert "made on another broker account" in retry.reason  # type: ignore[attr-defined]
    gateway.store.close()


def test_readme_drop_in_example_runs_against_the_paper_server_and_runs_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    example = readme_python_blocks()[1]
    assert "GuardedTradingClient as TradingClient" in example
    for _ in range(2):  # in one folder, as a user runs it twice
        exec(compile(example, "README.md", "exec"), {})
        assert capsys.readouterr().out.split() == ["0", "4"]  # flat; buy, sell, 50% close, close-all


def test_demo_places_one_order_per_decision_and_a_second_run_sends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'tradeguard.db'}"
    assert main(["demo", "--store", url]) == 0
    first = capsys.readouterr().out
    decisions = {(s.action, s.symbol, s.intent) for s in STEPS if s.action != "close-outside"}
    assert (
        f"{len(STEPS) - 1} calls: {len(decisions) - 1} placed an order" in first
    )  # the SQQQ exit had nothing to sell
    assert "TQQQ: the guard says 0, the broker holds 0" in first
    assert "SQQQ: the guard says 2, the broker holds 2" in first
    paper = PaperBroker(state_path=tmp_path / "tradeguard.paper.json")
    coids = [o.client_order_id for o in paper.orders() if o.client_order_id]
    assert len(coids) == len(set(coids))
    assert run_demo(store_url=url) == 0
    second = capsys.readouterr().out
    assert f"{len(STEPS) - 1} calls: 0 placed an order" in second


def test_momentum_bot_keeps_one_order_per_decision_and_the_ledger_equal_to_the_broker(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 5, 21, 13, 40, tzinfo=UTC))
    settings = Settings(recent_activity_secs=0)
    paper = PaperBroker(clock=clock)
    store = ClaimStore(f"sqlite:///{tmp_path / 'bot.db'}", settings=settings, clock=clock)
    bot = MomentumBot(OrderGateway(paper, store, agent_id="momentum", settings=settings, clock=clock))
    closes = [530, 531, 532, 533, 534, 533, 532, 531, 530, 529, 530, 530.5, 531, 531.5, 531.4]
    for close in closes:
        bar = clock.now()
        bot.on_bar(bar, Decimal(str(close)))
        bot.on_bar(bar, Decimal(str(close)))  # a replayed bar: the same decisions, nothing new
        clock.advance(timedelta(minutes=1).total_seconds())
    coids = [o.client_order_id for o in paper.orders()]
    assert len(coids) == len(set(coids)) == len(store.list_claims())
    for symbol in ("TQQQ", "SQQQ"):
        pos = paper.get_position(symbol)
        assert store.position("momentum", symbol).qty == (pos.qty if pos else 0)
    store.close()


@pytest.mark.parametrize("command", RUN_COMMANDS)
def test_readme_run_commands_run_as_written(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("TRADEGUARD_CONFIG", raising=False)
    args = shlex.split(command)[1:]
    if "--print-config" not in args:
        args += ["--store", f"sqlite:///{tmp_path / 'claims.db'}"]  # the default: a fresh file in /tmp
    assert main(args) == 0
    out = capsys.readouterr().out
    if "--print-config" in args:
        assert 'strategy = "strategies.momentum"' in out and 'mode = "paper"' in out
        return
    assert "stopped by: end of bars after 390 bar(s)" in out
    assert "DIFFERS" not in out and "UNRESOLVED" not in out
    if "--faults" in args:
        assert "phantom cleared" in out and "faults fired: 7" in out
        assert re.search(r"retries and duplicates blocked: [1-9]", out)


def test_readme_strategy_example_runs_as_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = readme_python_blocks()[2]
    assert "class Breakout(Strategy)" in code
    (tmp_path / "breakout.py").write_text(code)
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    args = ["run", str(tmp_path / "breakout.py"), "--bars", "seed:7", "--store", url, "--view", "plain"]
    assert main(args) == 0
    assert "summary: tradeguard_strategy_breakout:Breakout in sim" in capsys.readouterr().out
    with ClaimStore(url) as store:
        claims = store.list_claims(agent_id="breakout")
    assert claims and {c.symbol for c in claims} == {"TQQQ"}
    again = [a for a in args if a not in ("--store", url)]  # as the README runs it: a fresh store
    assert main(again) == 0, capsys.readouterr().err


def readme_section_commands(title: str) -> list[list[str]]:
    """The `tradeguard ...` lines of the sh blocks in one README section, split as a shell would."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [
        shlex.split(line)[1:]
        for block in blocks
        for line in block.splitlines()
        if line.startswith("tradeguard ")
    ]


def test_readme_replay_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Run where the README's relative paths resolve, writing what they write to a scratch folder.
    for folder in ("sessions", "tests/data"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    commands = readme_section_commands("Replay a session")
    assert [c[0] for c in commands].count("import") == 3 and [c[0] for c in commands].count("replay") == 5
    for command in commands:
        assert main(command) == 0, command
    assert (tmp_path / "may21.html").is_file() and (tmp_path / "orders.jsonl").is_file()
