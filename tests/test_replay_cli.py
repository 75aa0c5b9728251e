"""`tradeguard replay` and `tradeguard import` as users run them: in a subprocess, exit statuses included."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.store_workers import subprocess_env
from tradeguard.cli import main

ROOT = Path(__file__).resolve().parents[1]
MAY21 = ROOT / "sessions" / "2026-05-21-tqqq-sqqq.jsonl"


def tradeguard(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradeguard.cli", *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compare_json_gives_the_may21_figures_per_mode() -> None:
    done = tradeguard("replay", "sessions/2026-05-21-tqqq-sqqq.jsonl", "--compare", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert list(doc) == ["none", "entry-only", "full"]
    figures = {
        mode: (
            d["duplicate_orders_executed"],
            d["duplicate_exposure_executed_usd"],
            d["duplicate_attempts_blocked"],
            d["exposure_blocked_usd"],
            d["unintended_short_shares"],
        )
        for mode, d in doc.items()
    }
    assert figures == {
        "none": (5, 2303.02, 0, 0.0, 0),
        "entry-only": (1, 907.2, 6, 3653.02, -12),
        "full": (0, 0.0, 7, 4560.22, 0),
    }
    assert doc["none"]["phantom_entry_block_secs"] == pytest.approx(10_800, abs=60)
    assert doc["entry-only"]["phantom_entry_block_secs"] == pytest.approx(10_800, abs=60)
    assert 0 < doc["full"]["phantom_entry_block_secs"] <= 60  # one reconcile interval
    assert all(len(d["events"]) == 33 for d in doc.values())  # 23 attempts, 1 outside close, 9 notes


def test_the_default_prints_the_per_event_table_then_the_totals() -> None:
    done = tradeguard("replay", str(MAY21))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("May 21, 2026: QQQ momentum bot on TQQQ/SQQQ (reconstruction)")
    header = next(i for i, line in enumerate(lines) if line.startswith("time "))
    assert lines[header].split() == ["time", "event", "symbol", "recorded", "full"]
    exit_retry = next(line for line in lines if line.startswith("11:26:28"))
    assert exit_retry.split()[-2:] == ["blocked", "($907.20)"]
    totals = next(line for line in lines if line.startswith("duplicate orders executed"))
    assert totals.split()[-1] == "0"


def test_compare_prints_duplicates_sent_beside_executed_and_refused() -> None:
    done = tradeguard("replay", str(MAY21), "--compare")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("duplicate")]
    rows = {line.rsplit(None, 3)[0]: line.split()[-3:] for line in lines}
    assert rows["duplicate orders sent (reached the broker)"] == ["7", "1", "0"]
    assert rows["duplicate exposure sent, USD"] == ["4,560.22", "907.20", "0.00"]
    assert rows["duplicate orders executed"] == ["5", "1", "0"]
    assert rows["duplicate attempts refused by the broker"] == ["2", "0", "0"]


def test_the_shipped_session_is_found_by_name_from_anywhere(tmp_path: Path) -> None:
    done = tradeguard("replay", "2026-05-21-tqqq-sqqq.jsonl", "--guard", "entry-only", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["duplicate_attempts_blocked"] == 6


BAD = {
    "truncated line": ("cut", 4, "not valid JSON (the last line is cut short"),
    "unknown event": ('{"type": "fill", "t": "2026-05-21T09:31:00-04:00"}', 4, "unknown event type 'fill'"),
    "wrong version": (None, 1, "session format version 3 is not supported"),
    "out of order": ('{"type": "note", "t": "2026-05-21T09:00:01-04:00", "text": "x"}', 4, "time order"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_session_exits_2_naming_the_line(tmp_path: Path, case: str) -> None:
    extra, line, expected = BAD[case]
    lines = MAY21.read_text().splitlines()[:3]
    if case == "wrong version":
        lines[0] = lines[0].replace('"version": 1', '"version": 3')
    text = "\n".join(lines) + "\n"
    if case == "truncated line":
        text += MAY21.read_text().splitlines()[3][:30]
    elif extra is not None:
        text += extra + "\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(text)
    done = tradeguard("replay", str(bad), "--compare")
    assert done.returncode == 2
    assert done.stderr.startswith(f"tradeguard: error: {bad}:{line}: "), done.stderr
    assert expected in done.stderr


def test_a_malformed_order_history_exits_2_naming_the_line(tmp_path: Path) -> None:
    history = tmp_path / "orders.json"
    history.write_text('[\n  {"id": "o1", "symbol": "TQQQ", "side": "buy", "qty": "6"}\n]\n')
    done = tradeguard("import", "alpaca-orders", str(history), "-o", str(tmp_path / "s.jsonl"))
    assert done.returncode == 2
    assert done.stderr.startswith(f"tradeguard: error: {history}:2: order without submitted_at")


def test_import_json_then_replay_says_what_the_guard_would_have_blocked(tmp_path: Path) -> None:
    orders = [
        {"id": f"o{i}", "symbol": "TQQQ", "side": "buy", "qty": 6, "filled_qty": 6,
         "filled_avg_price": "75.33", "status": "filled", "submitted_at": f"2026-05-21T13:42:{i:02d}Z",
         "client_order_id": None}
        for i in (1, 12)
    ]  # fmt: skip
    history = tmp_path / "orders.json"
    history.write_text(json.dumps({"orders": orders}))
    session = tmp_path / "s.jsonl"
    done = tradeguard("import", "alpaca-orders", str(history), "-o", str(session), "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["orders"], doc["suspected_duplicates"]) == (2, 1)
    assert doc["duplicates"][0]["duplicate_of"] == "o1"
    replayed = json.loads(tradeguard("replay", str(session), "--json").stdout)
    assert replayed["duplicate_attempts_blocked"] == 1


def test_plot_without_matplotlib_is_a_clear_error(tmp_path: Path) -> None:
    if importlib.util.find_spec("matplotlib") is not None:
        pytest.skip("matplotlib is installed here; the message is for installs without it")
    done = tradeguard("replay", str(MAY21), "--plot", str(tmp_path / "p.png"))
    assert done.returncode == 2
    assert "pip install 'tradeguard[plot]'" in done.stderr
    assert not (tmp_path / "p.png").exists()


def test_report_is_one_self_contained_page(tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    done = tradeguard("replay", str(MAY21), "--compare", "--report", str(page))
    assert done.returncode == 0, done.stderr
    html = page.read_text()
    assert (
        html.startswith("<!doctype html>") and "<script" not in html and "http" not in html.split("<body>")[1]
    )
    assert "DUPLICATE $907.20" in html and "exposure blocked, USD" in html
    has_plot = importlib.util.find_spec("matplotlib") is not None
    assert ("data:image/png;base64," in html) is has_plot


def test_demo_ends_with_the_three_mode_comparison(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--store", f"sqlite:///{tmp_path / 'demo.db'}"]) == 0
    tail = capsys.readouterr().out.rstrip().splitlines()[-4:]
    assert tail[0].startswith("The May 21 session replayed three ways")
    assert tail[1].lstrip().startswith("without a guard:") and "$2,303.02" in tail[1]
    assert tail[2].lstrip().startswith("with the entry guard of May 21:") and "12-share short" in tail[2]
    assert tail[3].lstrip().startswith("with tradeguard:") and "nothing went out twice" in tail[3]
