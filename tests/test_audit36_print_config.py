"""`tradeguard run --print-config` is a config file: saved and given back with --config, it runs.

It printed `live_confirmed = false`, which `--config` refuses (live is confirmed on the command
line only), so every saved print-out was refused; and it named flags `tradeguard run` does not
have (`--store-url`, `--wait-for-open`, `--live-confirmed`) as where settings came from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradeguard.cli import main
from tradeguard.run.barfile import shipped_day_path

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "TRADEGUARD_CONFIG", "TRADEGUARD_MODE"):
        monkeypatch.delenv(name, raising=False)


def test_a_saved_print_config_runs_the_same_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bars = tmp_path / "bars.csv"
    bars.write_text("\n".join(shipped_day_path().read_text().splitlines()[: 1 + 3 * 40]) + "\n")
    store = tmp_path / "claims.db"
    args = ["strategies.momentum", "--bars", str(bars), "--store", f"sqlite:///{store}", "--view", "plain"]
    assert main(["run", *args, "--agent-id", "momo", "--print-config"]) == 0
    config = tmp_path / "momo.toml"
    config.write_text(capsys.readouterr().out)

    assert main(["run", "--config", str(config)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["claims", "list", "--all", "--store", f"sqlite:///{store}", "--format", "json"]) == 0
    claims = json.loads(capsys.readouterr().out)
    assert claims and {c["agent"] for c in claims} == {"momo"} and {c["state"] for c in claims} == {"FILLED"}


def test_print_config_names_the_flags_as_they_are_typed(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "strategies.momentum",
        "--store",
        "sqlite:///x.db",
        "--no-wait-for-open",
        "--i-understand-this-is-live",
    ]
    assert main(["run", *args, "--print-config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    (store,) = [x for x in lines if x.startswith("store_url = ")]
    (wait,) = [x for x in lines if x.startswith("wait_for_open = ")]
    (live,) = [x for x in lines if "live_confirmed" in x]
    assert store.endswith("# flag --store") and wait.endswith("# flag --no-wait-for-open")
    assert live.startswith("# live_confirmed = true") and live.endswith("# flag --i-understand-this-is-live")
