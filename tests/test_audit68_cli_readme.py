"""What a new user met running the README's commands as written (audit68)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tradeguard import ClaimStore, OrderGateway, PaperBroker
from tradeguard.cli import main


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    with ClaimStore(url) as store:
        OrderGateway(PaperBroker(), store, agent_id="bot", reconcile_on_start=False).enter(
            "TQQQ", qty=6, intent="09:42 buy"
        )
    return url


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_an_aborted_reconcile_says_why_on_stderr_in_every_format(
    fmt: str, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broker that cannot be read aborts the pass: exit 1 and the reason in one line on stderr.

    With --format json or csv the pass used to print an empty list and exit 1 with nothing on
    stderr: a script saw "no actions" and a failure it could not explain.
    """
    url = f"http://127.0.0.1:{closed_port()}"
    argv = ["reconcile", "--store", store_url, "--paper-url", url, "--dry-run", "--format", fmt]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tradeguard: refused: reconcile aborted, nothing changed: ")
    assert "broker read failed" in lines[0] and "Traceback" not in err
    if fmt == "json":
        assert json.loads(out) == []  # the shape a program reads stays a list
    elif fmt == "csv":
        assert out.splitlines() == ["action,agent,symbol,qty,reason"]
    else:
        assert out == ""
