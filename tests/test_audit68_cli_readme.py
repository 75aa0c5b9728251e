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


@pytest.mark.parametrize(
    ("pin", "said"),
    [
        ("TQQQ=abc", "price 'abc' is not a number"),
        ("TQQQ=-5", "price '-5' must be a positive number"),
        ("BAD SYM=5", "symbol must be"),
        ("TQQQ=1e20", "less than 1,000,000,000,000"),
    ],
)
def test_a_bad_paper_server_price_names_the_option(
    pin: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--price` is refused naming the option as given (it said `set_price(TQQQ)`, or served the pin)."""
    state = tmp_path / "paper.json"
    argv = ["paper-server", "--port", str(closed_port()), "--state", str(state), "--price", pin]
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tradeguard: error: --price {pin}: "), lines
    assert said in lines[0] and "set_price" not in lines[0]
    assert not state.exists()  # refused before an account was made


def test_one_retry_held_back_is_said_in_the_singular(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A recorded session with one blocked retry: "1 retry held back", not "1 retries"."""
    monkeypatch.chdir(tmp_path)
    gw = OrderGateway(PaperBroker(), "sqlite:///r.db", agent_id="bot", record_to="today.jsonl")
    gw.enter("TQQQ", qty=6, intent="2026-05-21 09:42 breakout")
    gw.enter("TQQQ", qty=6, intent="2026-05-21 09:42 breakout")  # the retry
    gw.close()
    assert main(["replay", "today.jsonl", "--compare"]) == 0
    out = capsys.readouterr().out
    assert "1 retry held back" in out and "1 retries" not in out


@pytest.mark.parametrize(
    ("argv", "env", "where"),
    [
        (["--speed", "0"], {}, "--speed"),
        ([], {"TRADEGUARD_SPEED": "-2"}, "TRADEGUARD_SPEED"),
    ],
)
def test_a_speed_that_is_not_positive_names_where_it_came_from(
    argv: list[str],
    env: dict[str, str],
    where: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It said "speed must be positive, got -2.0": from which flag, variable or file, it did not say."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    strategy = Path(__file__).resolve().parents[1] / "strategies" / "momentum.py"
    assert main(["run", str(strategy), "--view", "plain", *argv]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"tradeguard: error: {where}: speed must be positive")
