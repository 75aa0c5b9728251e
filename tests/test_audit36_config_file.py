"""A `--config` file with a value of the wrong TOML type is one line and exit 2, before any order.

A quoted number in [guard] (`reconcile_interval_secs = "30"`), a table or a boolean where a number
belongs were taken as they were and the run died mid-way with a TypeError traceback (exit 1); a
number where [run] wants a list (`close_outside = 5`) or a table where it wants a number, and a
top-level `run = 5` instead of a table, were tracebacks at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tradeguard.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "TRADEGUARD_CONFIG", "TRADEGUARD_MODE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[guard]\nreconcile_interval_secs = "30"\n', "reconcile_interval_secs = '30' is not a number"),
        ("[guard]\nrequest_timeout_secs = {a = 1}\n", "request_timeout_secs = {'a': 1} is not a number"),
        ("[guard]\ndedup_window_secs = true\n", "[guard]: dedup_window_secs = True is not a number"),
        ("[guard]\npg_prepare_after = 2.5\n", "[guard]: pg_prepare_after = 2.5 is not a whole number"),
        ("[guard]\nclient_order_id_prefix = 5\n", "[guard]: client_order_id_prefix = 5 is not a string"),
        ("[run]\nclose_outside = 5\n", "[run]: close_outside = 5 is not a valid value"),
        ("[run]\nspeed = {a = 1}\n", "[run]: speed = {'a': 1} is not a valid value"),
        ("[run]\nwait_for_open = 3\n", "[run]: wait_for_open = 3 is not a valid value"),
        ("run = 5\n", "[run] must be a table"),
    ],
)
def test_a_config_value_of_the_wrong_type_is_refused_before_the_run(
    text: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bot.toml"
    config.write_text(text)
    store = tmp_path / "claims.db"
    args = ["run", "strategies.momentum", "--config", str(config), "--store", f"sqlite:///{store}"]
    assert main([*args, "--view", "plain"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("tradeguard: error: ") and expected in err[0], err
    assert not store.exists()  # refused before anything was claimed


def test_config_values_of_the_right_types_still_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bot.toml"
    config.write_text(
        '[run]\nclose_outside = ["SQQQ@11:44"]\nwait_for_open = false\nspeed = 2\n'
        "[guard]\nreconcile_interval_secs = 30\nsqlite_busy_timeout_ms = 1000\n"
        'client_order_id_prefix = "me"\n'
    )
    assert main(["run", "strategies.momentum", "--config", str(config), "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "reconcile_interval_secs = 30" in out and 'close_outside = ["SQQQ@11:44"]' in out
    assert 'client_order_id_prefix = "me"' in out and "speed = 2" in out
