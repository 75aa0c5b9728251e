"""Run settings (file < environment < flags, `--print-config`) and finding a strategy by path."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from strategies.momentum import MomentumStrategy
from tradeguard.cli import main
from tradeguard.errors import ConfigError
from tradeguard.run.settings import Mode, ViewKind, resolve_settings
from tradeguard.run.strategy import Strategy, load_strategy

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
[run]
strategy = "strategies.momentum"
mode = "paper"
agent_id = "from-file"
speed = 30
close_outside = ["SQQQ@11:40"]

[guard]
reconcile_interval_secs = 30
request_timeout_secs = 4
"""


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "run.toml"
    path.write_text(CONFIG)
    return str(path)


def test_flags_beat_the_environment_which_beats_the_file(config: str) -> None:
    env = {"TRADEGUARD_AGENT_ID": "from-env", "TRADEGUARD_RECONCILE_INTERVAL_SECS": "45"}
    settings, sources = resolve_settings({"agent_id": "from-flag"}, environ=env, config_path=config)
    assert settings.agent_id == "from-flag" and sources["agent_id"] == "flag --agent-id"
    assert settings.mode is Mode.PAPER and sources["mode"] == f"file {config}"
    assert settings.speed == 30.0 and settings.close_outside == ("SQQQ@11:40",)
    assert settings.guard.reconcile_interval_secs == 45.0
    assert sources["guard.reconcile_interval_secs"] == "env TRADEGUARD_RECONCILE_INTERVAL_SECS"
    assert settings.guard.request_timeout_secs == 4.0 and settings.view is ViewKind.AUTO
    settings, _ = resolve_settings({}, environ=env, config_path=config)
    assert settings.agent_id == "from-env"


def test_the_config_file_may_come_from_the_environment(config: str) -> None:
    settings, sources = resolve_settings({}, environ={"TRADEGUARD_CONFIG": config})
    assert settings.strategy == "strategies.momentum" and sources["strategy"] == f"file {config}"


def test_a_sim_never_takes_the_store_from_the_environment() -> None:
    env = {"TRADEGUARD_STORE_URL": "sqlite:///my-live-bot.db"}
    sim, sources = resolve_settings({}, environ=env)
    assert sim.store_url is None and sources["store_url"] == "default"
    paper, _ = resolve_settings({"mode": "paper"}, environ=env)
    assert paper.store_url == "sqlite:///my-live-bot.db"
    flagged, _ = resolve_settings({"store_url": "sqlite:///sim.db"}, environ=env)
    assert flagged.store_url == "sqlite:///sim.db"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[run]\nmode = 'moon'\n", "mode = 'moon' is not sim, paper, live"),
        ("[run]\nspeeed = 2\n", r"unknown key\(s\) in \[run\]: speeed"),
        ("[guard]\nlease_secs = -1\n", "lease_secs must not be negative"),
        ("[runn]\n", r"unknown table\(s\) runn"),
        ("[run\n", "config file"),
        ("[run]\nspeed = 0\n", "speed must be positive"),
        ("[run]\nlive_confirmed = true\n", "live is confirmed on the command line only"),
    ],
)
def test_a_bad_config_file_is_one_clear_error(text: str, error: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=error):
        resolve_settings({}, environ={}, config_path=str(path))


def test_print_config_shows_what_is_in_force_and_where_it_came_from(
    config: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRADEGUARD_SETTLE_DELAY_SECS", "1.5")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "never-printed")
    assert main(["run", "--config", config, "--agent-id", "momo", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert 'agent_id = "momo"' in out and "# flag --agent-id" in out
    assert 'mode = "paper"' in out and f"# file {config}" in out
    assert "settle_delay_secs = 1.5" in out and "# env TRADEGUARD_SETTLE_DELAY_SECS" in out
    assert "# url is not set" in out and "never-printed" not in out


def test_print_config_names_the_strategy_argument_as_an_argument(capsys: pytest.CaptureFixture[str]) -> None:
    """It said `# flag --strategy`, a flag `tradeguard run` does not have."""
    assert main(["run", "strategies.momentum", "--print-config"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("strategy = ")]
    assert line.endswith("# argument STRATEGY")


def test_a_strategy_is_found_by_module_path_file_path_or_class_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert load_strategy("strategies.momentum") is MomentumStrategy
    assert load_strategy("strategies.momentum:MomentumStrategy") is MomentumStrategy
    from_file = load_strategy("strategies/momentum.py")
    assert issubclass(from_file, Strategy) and from_file.__name__ == "MomentumStrategy"
    assert from_file.agent_name() == "momentum"


def test_a_module_without_exactly_one_strategy_asks_for_a_class_name(tmp_path: Path) -> None:
    (tmp_path / "two.py").write_text(
        "from tradeguard import Strategy\nclass A(Strategy): pass\nclass B(Strategy): pass\n"
    )
    (tmp_path / "none.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match="found A, B"):
        load_strategy(str(tmp_path / "two.py"))
    assert load_strategy(f"{tmp_path / 'two.py'}:B").__name__ == "B"
    with pytest.raises(ConfigError, match="found none"):
        load_strategy(str(tmp_path / "none.py"))
    with pytest.raises(ConfigError, match="has no Strategy subclass C"):
        load_strategy(f"{tmp_path / 'two.py'}:C")


@pytest.mark.parametrize("value", ["nan", "inf"])
@pytest.mark.parametrize(
    "argv",
    [
        ["run", "strategies.momentum", "--view", "plain"],
        ["reconcile", "--paper-state", "{state}", "--dry-run"],
        ["claims", "resolve", "x", "--as", "not-sent", "--reason", "r", "--without-broker"],
        ["serve", "--port", "0"],
    ],
    ids=["run", "reconcile", "claims resolve", "serve"],
)
def test_a_setting_that_is_not_a_finite_number_is_one_line_and_status_2(
    value: str,
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`float()` reads nan and inf: a lease of inf seconds was a traceback (no timedelta), a
    reconcile interval of nan a run that never reconciled."""
    from tradeguard import ClaimStore

    monkeypatch.chdir(ROOT)
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    ClaimStore(url).close()
    state = tmp_path / "paper.json"
    state.write_text("{}")
    monkeypatch.setenv("TRADEGUARD_LEASE_SECS", value)
    args = [a.replace("{state}", str(state)) for a in argv]
    assert main([*args, "--store", url]) == 2
    err = capsys.readouterr().err
    expected = f"setting lease_secs must be a finite number, got {value} (env TRADEGUARD_LEASE_SECS)"
    assert err == f"tradeguard: error: {expected}\n"


def test_a_config_file_setting_that_is_nan_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("[guard]\nreconcile_interval_secs = nan\n")
    with pytest.raises(
        ConfigError, match=rf"reconcile_interval_secs must be a finite number, got nan \(file {path}\)"
    ):
        resolve_settings({}, environ={}, config_path=str(path))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_settings_themselves_refuse_a_number_that_is_not_finite(value: float) -> None:
    """A library user's Settings, not only the CLI's: the same traceback or never-due pass."""
    from tradeguard.config import Settings

    with pytest.raises(ConfigError, match=r"setting lease_secs must be a finite number, got (nan|inf|-inf)$"):
        Settings(lease_secs=value)
    with pytest.raises(ConfigError, match="reconcile_interval_secs must be a finite number"):
        Settings().with_changes(reconcile_interval_secs=value)


def test_settings_from_the_environment_name_the_variable_at_fault() -> None:
    from tradeguard.config import Settings

    with pytest.raises(
        ConfigError, match=r"setting lease_secs must not be negative, got -1.0 \(env TRADEGUARD_LEASE_SECS\)$"
    ):
        Settings.from_env({"TRADEGUARD_LEASE_SECS": "-1", "TRADEGUARD_SETTLE_DELAY_SECS": "1"})
