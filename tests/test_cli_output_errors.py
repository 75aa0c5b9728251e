"""Standard output that refuses a write (a full disk, an I/O error) is one line on stderr, exit 2.

`tradeguard audit --format json > /dev/full` used to end in a traceback and exit 1. These tests
never touch /dev/full: stdout is a file object that fails as a full disk does, either on the
write itself or, as a block-buffered file does, only when the buffer is flushed.
"""

from __future__ import annotations

import errno
import io
import sys
from pathlib import Path

import pytest

from tradeguard import ClaimStore, OrderGateway, PaperBroker
from tradeguard.cli import main

ROOT = Path(__file__).resolve().parents[1]


class FullDisk(io.StringIO):
    """A text file on a full disk: the first write (or, with `on_flush`, the first flush) fails."""

    def __init__(self, *, on_flush: bool = False) -> None:
        super().__init__()
        self.on_flush = on_flush
        self.failed = 0

    def _fail_once(self) -> None:
        if not self.failed:  # once: the interpreter's own flush at close must not fail again
            self.failed += 1
            raise OSError(errno.ENOSPC, "No space left on device")

    def write(self, text: str) -> int:
        if not self.on_flush:
            self._fail_once()
        return super().write(text)

    def flush(self) -> None:
        if self.on_flush:
            self._fail_once()
        super().flush()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    with ClaimStore(url) as store:
        OrderGateway(PaperBroker(), store, agent_id="bot", reconcile_on_start=False).enter(
            "TQQQ", qty=6, intent="09:42 buy"
        )
    return url


COMMANDS = {
    "import": ["import", "bot-log", str(ROOT / "tests/data/bot.log"), "-o", "-"],
    "replay": ["replay", str(ROOT / "sessions/2026-05-21-tqqq-sqqq.jsonl"), "--compare", "--json"],
    "db export": ["db", "export", "--store", "STORE"],
    "audit": ["audit", "--format", "json", "--store", "STORE"],
    "audit table": ["audit", "--store", "STORE"],
    "claims list": ["claims", "list", "--all", "--store", "STORE"],
}


@pytest.mark.parametrize("on_flush", [False, True], ids=["write fails", "flush fails"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_full_disk_on_stdout_is_one_line_and_exit_2(
    command: str,
    on_flush: bool,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [store_url if a == "STORE" else a for a in COMMANDS[command]]
    capsys.readouterr()
    stdout = FullDisk(on_flush=on_flush)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("tradeguard: warning:")]
    assert lines == ["tradeguard: error: cannot write to standard output: No space left on device"], err
    assert stdout.failed == 1
    assert sys.stdout is stdout  # left as the caller had it


def test_a_full_disk_under_db_export_to_a_file_is_one_line_naming_it(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tradeguard.cli import db

    target = tmp_path / "claims.json"
    monkeypatch.setattr(db, "open", lambda *args, **kwargs: FullDisk(), raising=False)
    assert main(["db", "export", "--store", store_url, "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert err == f"tradeguard: error: cannot write {target}: No space left on device\n"
