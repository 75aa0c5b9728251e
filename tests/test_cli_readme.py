"""The README's command-line examples run as written, in order, each with exit status 0."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tradeguard.cli import main

ROOT = Path(__file__).resolve().parents[1]


def command_line_examples() -> list[list[str]]:
    section = (ROOT / "README.md").read_text().split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [shlex.split(line)[1:] for line in block.splitlines() if line.startswith("tradeguard ")]


def test_the_command_line_examples_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    examples = command_line_examples()
    assert len(examples) >= 6
    for argv in examples:
        assert main(argv) == 0, argv
    out = capsys.readouterr().out
    assert "schema at head" in out and "nothing to do" in out and "wrote claims.jsonl" in out
    assert not (tmp_path / "tradeguard.db").exists()  # every example named its store
