"""`tradeguard replay --report/--plot` never writes over a file that is not its own earlier output.

Only the session being replayed was protected: `--report today.jsonl` (another day's recording)
or `--plot tradeguard.db` (a claim store) replaced the file with a page or a chart, exit 0. Run
again, a replay still replaces the chart and page it wrote before (the README's `--report may21.html`).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from tradeguard.cli import main

ROOT = Path(__file__).resolve().parents[1]
MAY21 = ROOT / "replay" / "sessions" / "2026-05-21-tqqq-sqqq.jsonl"


def _a_claim_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    store = tmp_path / "tradeguard.db"
    assert main(["db", "upgrade", "--store", f"sqlite:///{store}"]) == 0
    capsys.readouterr()
    return store


@pytest.mark.parametrize("option", ["--report", "--plot"])
@pytest.mark.parametrize("victim", ["another session", "a claim store"])
def test_an_existing_file_of_another_kind_is_kept_and_refused(
    option: str, victim: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if victim == "a claim store":
        target = _a_claim_store(tmp_path, capsys)
    else:
        target = tmp_path / "yesterday.jsonl"
        shutil.copyfile(MAY21, target)
    before = target.read_bytes()
    assert main(["replay", str(MAY21), "--json", option, str(target)]) == 2
    err = capsys.readouterr().err.splitlines()
    said = f"tradeguard: error: {option} {target} exists and is not"
    if option == "--plot" and importlib.util.find_spec("matplotlib") is None:
        said = "tradeguard: error: --plot needs matplotlib"  # refused first, the file kept all the same
    assert len(err) == 1 and err[0].startswith(said)
    assert target.read_bytes() == before
    if victim == "a claim store":
        assert main(["db", "check", "--store", f"sqlite:///{target}"]) == 0  # still a store at head


def test_a_replay_run_again_replaces_its_own_report_and_chart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs the plot extra")
    page, chart = tmp_path / "may21.html", tmp_path / "may21.png"
    for _ in range(2):
        args = ["replay", str(MAY21), "--compare", "--json", "--report", str(page), "--plot", str(chart)]
        assert main(args) == 0
        figures = json.loads(capsys.readouterr().out)
        assert figures["full"]["duplicate_orders_executed"] == 0
    assert page.read_text(encoding="utf-8").lower().startswith("<!doctype html")
    assert chart.read_bytes().startswith(b"\x89PNG")
