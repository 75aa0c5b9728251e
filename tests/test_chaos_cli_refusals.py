"""What `tradeguard chaos` refuses before its first run: one line on stderr, exit status 2.

A claim store the real-process runs cannot open, or a `--save` folder that cannot be made, used
to end the campaign with a worker's traceback (exit 1, read as "a violation") or an
`os.makedirs` traceback after every run had been made, their results lost.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tradeguard.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _in_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `tradeguard chaos`; assert exit 2, nothing on stdout, one line on stderr; return it."""
    assert main(["chaos", "strategies.momentum", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("tradeguard: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("store", "said"),
    [
        ("postgresql+psycopg://postgres@127.0.0.1:1/x", "connection"),  # the server is down
        ("not-a-url", "not a valid SQLAlchemy URL"),
        ("folder", "is a folder"),
    ],
)
def test_a_store_the_real_process_runs_cannot_open_is_refused_before_any_run(
    store: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}" if store == "folder" else store
    # --kill-every 1: the first run is a real-process run, which opened the store in a worker.
    line = refused(["--store", url, "--runs", "1", "--kill-every", "1", "--minutes", "5"], capsys)
    assert said in line


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_a_save_folder_that_cannot_be_made_is_refused_before_any_run(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder\n")
    save = a_file if where == "file" else a_file / "sessions"
    # Unguarded runs fail (duplicates), so each one saves its session to --save.
    args = ["--save", str(save), "--runs", "2", "--unguarded", "--kill-every", "0", "--minutes", "60"]
    line = refused(args, capsys)
    assert f"--save {save}: not a folder" in line


def test_the_default_save_folder_is_not_made_by_a_campaign_without_violations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.chdir(tmp_path)
    assert main(["chaos", "strategies.momentum", "--runs", "1", "--kill-every", "0", "--minutes", "5"]) == 0
    assert "G1-G4 held" in capsys.readouterr().out
    assert not (tmp_path / "chaos-sessions").exists()


@pytest.mark.parametrize("points", [",", " ", ""])
def test_an_empty_list_of_crash_points_is_refused(points: str, capsys: pytest.CaptureFixture[str]) -> None:
    """It ran every run without a crash and reported the crash points held."""
    assert "--crash-points" in refused(["--crash-points", points, "--runs", "1", "--minutes", "5"], capsys)
