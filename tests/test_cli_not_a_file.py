"""A path that exists but is not what the command needs is named for what it is, not "missing".

`replay /dev/null` used to say the file "does not exist", `audit --store sqlite:///DIR` that
"the SQLite file does not exist"; and `keys create` on a mistyped store path made a new, empty
store without a word (it may create one: the README's first step is a key before the first
`serve`, so it says so, as `serve` does).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tradeguard import ClaimStore
from tradeguard.cli import main


def _one_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("tradeguard: error: "), err
    return err


def test_replay_of_a_device_says_it_is_not_a_regular_file(capsys: pytest.CaptureFixture[str]) -> None:
    err = _one_error(["replay", os.devnull], capsys)
    assert "not a regular file" in err and "does not exist" not in err


def test_replay_of_a_pipe_says_it_is_not_a_regular_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "day.jsonl"
    os.mkfifo(fifo)  # never opened: the check must not block on it
    err = _one_error(["replay", str(fifo), "--compare"], capsys)
    assert "not a regular file" in err


def test_replay_of_an_empty_file_says_it_is_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "day.jsonl"
    empty.write_text("")
    assert "empty file" in _one_error(["replay", str(empty)], capsys)


@pytest.mark.parametrize("argv", [["audit"], ["claims", "list"], ["db", "check"], ["keys", "list"]])
def test_a_store_path_that_is_a_directory_is_said_to_be_one(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "adir"
    folder.mkdir()
    err = _one_error([*argv, "--store", f"sqlite:///{folder}"], capsys)
    assert f"{folder} is a directory" in err and "does not exist" not in err


def test_keys_create_on_a_missing_store_says_it_created_a_new_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "typo.db"
    url = f"sqlite:///{store}"
    assert main(["keys", "create", "--agent-id", "bot", "--store", url]) == 0
    out, err = capsys.readouterr()
    assert err == (
        f"tradeguard keys: created a new, empty claim store at {store} "
        "(serve it with: tradeguard serve --store URL)\n"
    )
    assert out.splitlines()[-1].startswith("tgk_")  # still the key alone on the last line
    assert main(["keys", "create", "--agent-id", "bot2", "--store", url]) == 0
    assert capsys.readouterr().err == ""  # it exists from now on: nothing to say


def test_keys_create_on_an_existing_store_says_nothing_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    ClaimStore(url).close()
    assert main(["keys", "create", "--agent-id", "bot", "--store", url]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["run", "{dir}"], "strategy file {dir}"),
        (["run", "strategies.momentum", "--bars", "{dir}"], "bar file {dir}"),
        (["chaos", "strategies.momentum", "--bars", "{dir}"], "bar file {dir}"),
        (
            ["reconcile", "--store", "sqlite:///{dir}/claims.db", "--paper-state", "{dir}"],
            "paper state file {dir}",
        ),
    ],
    ids=["run strategy", "run --bars", "chaos --bars", "reconcile --paper-state"],
)
def test_a_folder_given_for_a_file_is_said_to_be_one(
    argv: list[str],
    named: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """These said a folder "does not exist"; `run strategies/` is a natural first try."""
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    if argv[0] == "reconcile":
        ClaimStore(f"sqlite:///{tmp_path}/claims.db").close()
    err = _one_error([a.replace("{dir}", str(tmp_path)) for a in argv], capsys)
    assert f"{named.replace('{dir}', str(tmp_path))} is a folder, not a file" in err
