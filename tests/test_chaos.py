"""`tradeguard chaos`: the guard holds G1-G4 under faults and crashes; the checker can fail."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections import Counter
from pathlib import Path

import pytest

from strategies import test_momentum_chaos as example
from strategies.momentum import MomentumStrategy
from strategies.plain_alpaca import CrossoverStrategy
from tests.chaos_kit import ExitsIgnoreExitsInFlight, ResendsUnderANewId
from tradeguard import crashpoints
from tradeguard.chaos.campaign import ChaosResult, chaos
from tradeguard.cli import main
from tradeguard.run.barfile import load_bars
from tradeguard.run.bars import BarSeries
from tradeguard.sessions import SessionReader

RUNS = 10  # each point is the crash point of two runs; `bench/chaos.py` runs hundreds


def kinds(result: ChaosResult) -> Counter[str]:
    return Counter(v.guarantee.name for run in result.runs for v in run.violations)


def test_guarded_momentum_holds_g1_to_g4_and_dies_at_every_crash_point() -> None:
    result = chaos(MomentumStrategy, runs=RUNS, seed=1)
    assert result.ok, [str(v) for run in result.failing for v in run.violations]
    assert result.points_missed == []
    assert sum(r.faults_fired for r in result.runs) > 0
    assert all(sum(r.points_hit.values()) > 0 for r in result.runs)


def test_every_crash_point_is_documented_and_reached_by_the_default_run() -> None:
    doc = crashpoints.__doc__ or ""
    assert all(f"``{point}``" in doc for point in crashpoints.POINTS)


def test_unguarded_on_the_same_seeds_shows_duplicates_and_shorts() -> None:
    result = chaos(MomentumStrategy, runs=RUNS, seed=1, unguarded=True)
    assert not result.ok
    found = kinds(result)
    assert found["G1"] > 0 and found["G3"] > 0, found


def test_a_seed_replays_its_run_exactly() -> None:
    first = chaos(MomentumStrategy, runs=RUNS, seed=1, unguarded=True).failing[0]
    again = chaos(MomentumStrategy, only_seed=first.plan.seed, unguarded=True).runs[0]
    assert [str(v) for v in again.violations] == [str(v) for v in first.violations]
    assert again.crashes == first.crashes and again.orders == first.orders


def test_a_gateway_that_resends_under_a_new_id_after_a_timeout_is_caught(tmp_path: Path) -> None:
    result = chaos(
        MomentumStrategy, runs=RUNS, seed=1, gateway_factory=ResendsUnderANewId, save_to=str(tmp_path)
    )
    assert kinds(result)["G1"] > 0, kinds(result)
    saved = result.sessions[result.failing[0].plan.seed]
    with SessionReader(saved) as reader:  # the failing run, saved for `tradeguard replay`
        assert sum(1 for _ in reader) > 0


def test_an_exit_sized_without_the_exits_in_flight_is_caught() -> None:
    result = chaos(MomentumStrategy, runs=RUNS, seed=1, gateway_factory=ExitsIgnoreExitsInFlight)
    assert kinds(result)["G3"] > 0, kinds(result)


def test_the_example_test_in_strategies_passes() -> None:
    example.test_momentum_survives_faults_and_crashes()


def test_cli_passes_with_json_and_fails_unguarded(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert (
        main(["chaos", "strategies.momentum", "--runs", "5", "--seed", "1", "--json", "--kill-every", "0"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["runs"] == 5
    status = main(
        [
            "chaos",
            "strategies.momentum",
            "--runs",
            "5",
            "--unguarded",
            "--save",
            str(tmp_path),
            "--kill-every",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert status == 1
    assert "--replay-seed" in out and "G1" in out


def test_a_campaign_saved_into_a_kept_folder_names_the_session_it_wrote_not_the_old_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Audit 27: the recorder keeps an earlier campaign's `chaos-<seed>.jsonl` and writes
    `chaos-<seed>.1.jsonl` beside it, but the report and `--json` named the old file."""
    args = ["chaos", "strategies.momentum", "--runs", "2", "--seed", "1", "--minutes", "60",
            "--kill-every", "0", "--unguarded", "--save", str(tmp_path), "--json"]  # fmt: skip
    assert main(args) == 1
    first = json.loads(capsys.readouterr().out)["sessions"]
    assert first
    kept = {seed: Path(path).read_bytes() for seed, path in first.items()}
    assert main(args) == 1
    second = json.loads(capsys.readouterr().out)["sessions"]
    assert second.keys() == first.keys()
    for seed, path in second.items():
        assert path == str(tmp_path / f"chaos-{seed}.1.jsonl")  # the run just saved
        assert Path(first[seed]).read_bytes() == kept[seed]  # the earlier one kept as it was
        with SessionReader(path) as reader:
            assert any(e.type == "attempt" for _, e in reader)


@pytest.mark.postgres
@pytest.mark.slow
def test_real_sigkills_with_the_claims_on_postgresql(pg_url: str) -> None:
    day = load_bars(None)
    morning = BarSeries(day.source, day.minutes[:45], day.symbols)
    points = ("after_claim", "after_post", "exit_before_claim")
    result = chaos(
        MomentumStrategy, runs=3, seed=2, bars=morning, kill_every=1, crash_points=points, store_url=pg_url
    )
    assert len(result.killed) == 3
    assert result.ok, [str(v) for run in result.failing for v in run.violations]
    assert sum(len(r.crashes) for r in result.runs) >= 3


def test_cli_wants_a_shared_store_for_several_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chaos", "strategies.momentum", "--workers", "4"]) == 2
    assert "give its URL" in capsys.readouterr().err


@pytest.mark.postgres
@pytest.mark.slow
def test_four_hosts_on_postgresql_and_one_served_account_keep_g1_to_g4(pg_url: str) -> None:
    """Four processes of one bot, one store, one account, killed at random: one order per decision."""
    day = load_bars(None)
    morning = BarSeries(day.source, day.minutes[:45], day.symbols)
    result = chaos(MomentumStrategy, runs=2, seed=1, bars=morning, hosts=4, store_url=pg_url)
    assert result.ok, [str(v) for run in result.failing for v in run.violations]
    assert sum(r.orders for r in result.runs) > 0
    assert sum(len(r.crashes) for r in result.runs) > 0


@pytest.mark.slow
def test_real_sigkills_at_every_crash_point_keep_g1_to_g4() -> None:
    """Bot processes really SIGKILLed at each point and restarted on the same SQLite file and account."""
    day = load_bars(None)
    morning = BarSeries(day.source, day.minutes[:60], day.symbols)  # an hour: a few orders, fast
    result = chaos(MomentumStrategy, runs=len(crashpoints.POINTS), seed=1, bars=morning, kill_every=1)
    assert sorted(result.killed) == sorted(r.plan.seed for r in result.runs)
    assert result.ok, [str(v) for run in result.failing for v in run.violations]
    assert result.points_missed == []
    assert sum(r.orders for r in result.runs) > 0


def test_a_passing_real_process_run_leaves_no_folder_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each real-process run kept its store, account and journals in a temporary folder that
    nothing named: a campaign of a few hundred runs left as many folders behind. A passing run's
    folder is removed; a failing one's is kept and named in the report."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    day = load_bars(None)
    morning = BarSeries(day.source, day.minutes[:30], day.symbols)
    result = chaos(MomentumStrategy, runs=1, seed=1, bars=morning, kill_every=1)
    assert result.killed and result.ok
    assert result.folder is None
    assert list(tmp_path.glob("tradeguard-chaos-*")) == []


def test_ctrl_c_reports_the_runs_done_so_far_then_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Audit 20: a Ctrl-C after minutes of runs dropped every result, violations included."""
    from tradeguard.chaos import campaign

    real, calls = campaign.run_once, []

    def interrupted_on_the_third(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(campaign, "run_once", interrupted_on_the_third)
    args = [
        "chaos",
        "strategies.momentum",
        "--runs",
        "5",
        "--seed",
        "1",
        "--minutes",
        "30",
        "--kill-every",
        "0",
    ]
    assert main(args) == 130
    captured = capsys.readouterr()
    assert captured.out.startswith("chaos: interrupted after 2 of 5 run(s); the runs so far:\n")
    assert "chaos: 2 run(s), guarded" in captured.out and "G1-G4 held in every run" in captured.out
    assert captured.err.endswith("tradeguard: interrupted\n")


def test_a_result_passed_in_holds_the_runs_done_when_the_campaign_is_interrupted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tradeguard.chaos import campaign

    def stop(number: int, _outcome: object) -> None:
        if number == 2:
            raise KeyboardInterrupt

    day = load_bars(None)
    morning = BarSeries(day.source, day.minutes[:30], day.symbols)
    partial = ChaosResult()
    with pytest.raises(KeyboardInterrupt):
        campaign.chaos(MomentumStrategy, runs=5, seed=1, bars=morning, progress=stop, into=partial)
    assert len(partial.runs) == 2 and partial.ok


def readme_chaos_commands() -> list[str]:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("\n## Prove your bot: tradeguard chaos\n")
    section = text[start : text.index("\n## ", start + 1)]
    block = re.findall(r"```sh\n(.*?)```", section, re.S)[0]
    return [line for line in block.splitlines() if line.startswith("tradeguard chaos ")]


@pytest.mark.parametrize("command", readme_chaos_commands())
def test_readme_chaos_commands_run(command: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The README's commands as written, with fewer runs and no subprocesses (kept fast)."""
    args = [a if a != "200" else "10" for a in shlex.split(command)[1:]]
    status = main([*args, "--kill-every", "0", "--save", str(tmp_path)])
    out = capsys.readouterr().out
    if "--unguarded" in args:
        assert status == 1 and "G1" in out
    else:
        assert status == 0 and "G1-G4 held in every run" in out


# ---- a strategy written against alpaca-py (ctx.trading_client()), as `tradeguard run` runs it ---


def test_a_drop_in_alpaca_py_strategy_runs_guarded_and_holds_g1_to_g4() -> None:
    result = chaos(CrossoverStrategy, runs=RUNS, seed=1, kill_every=0)
    assert result.ok, [str(v) for run in result.failing for v in run.violations]
    assert sum(r.orders for r in result.runs) > 0
    assert sum(r.faults_fired for r in result.runs) > 0 and sum(len(r.crashes) for r in result.runs) > 0


def test_a_guard_that_resends_a_drop_in_order_under_a_new_id_is_caught() -> None:
    # The checker sees the bot's decisions through the drop-in too: one client_order_id, two orders.
    result = chaos(CrossoverStrategy, runs=RUNS, seed=1, kill_every=0, gateway_factory=ResendsUnderANewId)
    assert kinds(result)["G1"] > 0, kinds(result)


def test_cli_chaos_runs_a_drop_in_strategy_and_refuses_it_unguarded_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["chaos", "strategies.plain_alpaca", "--runs", "3", "--kill-every", "0", "--save", str(tmp_path)]
    assert main(args) == 0
    assert "G1-G4 held in every run" in capsys.readouterr().out
    assert main([*args, "--unguarded"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trading_client()" in err and "Traceback" not in err, err


@pytest.mark.slow
def test_real_sigkills_of_a_drop_in_strategy_keep_g1_to_g4() -> None:
    day = load_bars(None)
    morning = BarSeries(day.source, day.minutes[:90], day.symbols)
    result = chaos(CrossoverStrategy, runs=2, seed=1, bars=morning, kill_every=1)
    assert sorted(result.killed) == sorted(r.plan.seed for r in result.runs)
    assert result.ok, [str(v) for run in result.failing for v in run.violations]
    assert sum(r.orders for r in result.runs) > 0


def test_cli_unguarded_saves_each_failing_run_and_prints_the_command_that_replays_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """README: "the failing run is saved as a session". Unguarded, no folder was written, and the
    hint was the template `tradeguard chaos STRATEGY --replay-seed SEED`."""
    saved = tmp_path / "sessions"
    args = ["chaos", "strategies.momentum", "--runs", "3", "--seed", "1", "--minutes", "120",
            "--kill-every", "0", "--unguarded", "--save", str(saved)]  # fmt: skip
    assert main(args) == 1
    out = capsys.readouterr().out
    failing = [int(s) for s in re.findall(r"^  seed (\d+) ", out, re.M)]
    assert failing
    for seed in failing:
        session = saved / f"chaos-{seed}.jsonl"
        assert f"    session: {session}" in out
        with SessionReader(session) as reader:  # the plain bot's attempts, for `tradeguard replay`
            attempts = [e for _, e in reader if e.type == "attempt"]
        assert attempts and all(a.client_order_id.startswith("plain-") for a in attempts)
    (hint,) = [line for line in out.splitlines() if line.startswith("replay one: ")]
    command = hint.removeprefix("replay one: ")
    assert command == (
        f"tradeguard chaos strategies.momentum --replay-seed {failing[0]} "
        "--minutes 120 --kill-every 0 --unguarded"
    )
    # The printed command replays that run: the same first violation.
    assert main([*shlex.split(command)[1:], "--save", str(tmp_path / "again")]) == 1
    again = capsys.readouterr().out
    first = re.search(rf"^  seed {failing[0]} .*$", out, re.M)
    assert first is not None and first.group() in again.splitlines()
    # A saved session replays: the guard would have blocked what the plain bot sent twice.
    assert main(["replay", str(saved / f"chaos-{failing[0]}.jsonl"), "--compare"]) in (0, 1)
    assert "blocked" in capsys.readouterr().out


@pytest.mark.postgres
@pytest.mark.slow
def test_a_strategy_file_runs_on_several_hosts_and_their_faults_are_counted(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tradeguard chaos bots/x.py --workers N`, the README's way of naming one's own bot, ended in
    a traceback (exit 1, which reads as a broken guarantee): the hosts were told to import the
    file's module by the name it was loaded under, which no other process can import. And the
    hosts' faults fired unseen: every such campaign said "0 faults fired"."""
    bot = tmp_path / "bots" / "mybot.py"
    bot.parent.mkdir()
    bot.write_text((Path(__file__).parent.parent / "strategies" / "momentum.py").read_text())
    monkeypatch.chdir(tmp_path)  # the file named relative to where the user stands
    code = main(
        ["chaos", "bots/mybot.py", "--runs", "2", "--seed", "3", "--workers", "2", "--store", pg_url,
         "--minutes", "45", "--json"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    report = json.loads(out.out)
    assert report["ok"] and report["orders"] > 0 and report["faults_fired"] > 0, report


def test_a_class_from_a_strategy_file_is_named_by_its_path_for_other_processes(tmp_path: Path) -> None:
    from tradeguard.run.strategy import load_strategy, strategy_spec

    bot = tmp_path / "mybot.py"
    bot.write_text((Path(__file__).parent.parent / "strategies" / "momentum.py").read_text())
    cls = load_strategy(str(bot))
    assert strategy_spec(cls) == f"{bot}:{cls.__qualname__}"
    assert load_strategy(strategy_spec(cls)) is not None
    assert strategy_spec(MomentumStrategy) == "strategies.momentum:MomentumStrategy"


def test_a_bot_process_that_dies_of_its_own_error_stops_the_campaign_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real-process run whose worker exited for no kill and no strategy error ended the command
    in a traceback; the run proves nothing, so it says so in one line, naming the worker's last
    error and the folder kept for a look, and exits 1 (a person must look)."""
    bot = tmp_path / "mybot.py"
    bot.write_text(
        (Path(__file__).parent.parent / "strategies" / "momentum.py").read_text()
        # This process loads it; a worker process dies at import.
        + f"\nimport os\nif os.getpid() != {os.getpid()}:\n    raise SystemExit('worker refuses to start')\n"
    )
    code = main(["chaos", str(bot), "--runs", "1", "--kill-every", "1", "--minutes", "20"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("tradeguard:")]
    assert "chaos stopped after 0 run(s): chaos worker exited" in line and "folder" in line, line
