"""`tradeguard serve` and `tradeguard keys` as a user runs them: the real command in its own process.

A gateway on another "host" points at the served store by URL and key (G1 across hosts: one
order per decision, the claim recorded in the service's store), and the expected failures of
`serve` are one line with exit status 2 (a taken port, an unreachable store).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tradeguard
from tradeguard import ClaimStore, OrderGateway, PaperBroker
from tradeguard.cli import main
from tradeguard.domain import ClaimState

REPO_ROOT = Path(tradeguard.__file__).resolve().parent.parent

_LISTENING = re.compile(r"claim service on (http://127\.0\.0\.1:\d+)")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


def _start(store_url: str, log: Path) -> tuple[subprocess.Popen[str], str]:
    """Start `tradeguard serve --port 0` on `store_url`, output to `log`; return it and its URL."""
    with log.open("w") as out:  # a file, not a pipe: nobody drains a pipe while the test runs
        process = subprocess.Popen(
            [sys.executable, "-m", "tradeguard.cli", "serve", "--store", store_url, "--port", "0"],
            stdout=out, stderr=subprocess.STDOUT, env=_env(), text=True,
        )  # fmt: skip
    deadline = time.monotonic() + 90  # a loaded 2-core machine: a bound, not a speed check
    match = None
    while match is None and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        match = _LISTENING.search(log.read_text())
    if match is None:
        process.kill()
        process.wait()
        pytest.fail("tradeguard serve did not start:\n" + log.read_text())
    return process, match.group(1)


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


@pytest.fixture
def served(store_url: str, tmp_path: Path) -> Iterator[str]:
    """`tradeguard serve --port 0` over `store_url`; yields its base URL, SIGTERMs it after."""
    process, url = _start(store_url, tmp_path / "serve.log")
    try:
        yield url
    finally:
        _stop(process)


def _key(store_url: str, agent_id: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["keys", "create", "--agent-id", agent_id, "--store", store_url]) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_a_gateway_on_the_served_store_sends_one_order_per_decision(
    store_url: str, served: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = _key(store_url, "remote-bot", capsys)
    broker = PaperBroker()
    broker.set_price("TQQQ", "75.33")
    gateway = OrderGateway(broker, served, agent_id="remote-bot", api_key=key, reconcile_on_start=False)
    first = gateway.enter("TQQQ", qty=6, intent="09:42 base entry")
    again = gateway.enter("TQQQ", qty=6, intent="09:42 base entry")  # the bot's retry
    assert len(broker.list_orders(status="all")) == 1
    assert again.claim.key == first.claim.key
    with ClaimStore(store_url) as store:
        stored = store.get(first.claim.key)
        assert stored is not None and stored.state is ClaimState.FILLED and stored.agent_id == "remote-bot"
        assert store.position("remote-bot", "TQQQ").qty == 6


def test_serve_on_a_taken_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "tradeguard.cli", "serve", "--store", f"sqlite:///{tmp_path / 'c.db'}",
             "--port", str(port)],
            capture_output=True, text=True, env=_env(), timeout=120, check=False,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_serve_with_a_url_that_names_no_store_says_so_first_even_on_a_taken_port() -> None:
    # Reporting the port first sent the user to free it, only to be told then that the URL is wrong.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "tradeguard.cli", "serve", "--store", "mysql://x", "--port", str(port)],
            capture_output=True, text=True, env=_env(), timeout=120, check=False,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "backend 'mysql' is not supported" in result.stderr


def test_serve_on_an_unreachable_store_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--store", "postgresql+psycopg://nobody@127.0.0.1:1/none", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "127.0.0.1:1" in err


def test_serve_on_a_missing_sqlite_file_says_it_created_a_new_store(tmp_path: Path) -> None:
    # A mistyped path would otherwise serve an empty store (no keys, no claims) without a word.
    store_url = f"sqlite:///{tmp_path / 'typo.db'}"
    said = []
    for run in ("first", "second"):
        process, _url = _start(store_url, tmp_path / f"{run}.log")
        _stop(process)
        said.append([line for line in (tmp_path / f"{run}.log").read_text().splitlines() if "new" in line])
    assert said[0] == [
        f"tradeguard serve: created a new, empty claim store at {tmp_path / 'typo.db'} "
        "(no API keys yet: tradeguard keys create --agent-id ID --store URL)"
    ]
    assert said[1] == []  # the store exists from now on: nothing to say


@pytest.mark.parametrize("host", ["999.1.1.1", "no-such-host.invalid"])
@pytest.mark.parametrize("port", ["0", "18787"])
def test_serve_on_a_host_that_is_no_address_is_one_line_and_exit_2_before_anything_starts(
    host: str, port: str, tmp_path: Path
) -> None:
    # Port 0 (any free port) used to skip the check: uvicorn started, logged, then failed (exit 3).
    store = tmp_path / "c.db"
    result = subprocess.run(
        [sys.executable, "-m", "tradeguard.cli", "serve", "--store", f"sqlite:///{store}", "--host", host,
         "--port", port],
        capture_output=True, text=True, env=_env(), timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"tradeguard: error: cannot listen on {host}:{port}: ")
    assert result.stdout == "" and not store.exists()  # no store made, no warning, no uvicorn log


@pytest.mark.parametrize("rate", ["nan", "inf", "-inf", "-1", "1e400"])
def test_serve_refuses_a_rate_that_is_not_a_finite_figure(rate: str, tmp_path: Path) -> None:
    # In its own process: a rate taken (the defect) would start a server that never ends.
    store = tmp_path / "c.db"
    result = subprocess.run(
        [sys.executable, "-m", "tradeguard.cli", "serve", "--store", f"sqlite:///{store}", "--port", "0",
         "--rate-per-sec", rate],
        capture_output=True, text=True, env=_env(), timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "--rate-per-sec" in result.stderr, result.stderr
    assert not store.exists()


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), -1.0])
def test_a_service_config_refuses_a_rate_that_would_turn_the_limit_off_silently(rate: float) -> None:
    from tradeguard.errors import ConfigError
    from tradeguard.service.app import ServiceConfig

    with pytest.raises(ConfigError, match="rate_per_sec"):
        ServiceConfig(rate_per_sec=rate)
