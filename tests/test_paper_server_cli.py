"""The paper-server command: prints its URL, serves, stops on SIGTERM, refuses bad plans."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from tradeguard.cli import main
from tradeguard.testing import alpaca_client


def market(side: OrderSide, qty: float, cid: str) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol="TQQQ", qty=qty, side=side, time_in_force=TimeInForce.DAY, client_order_id=cid
    )


def _run_cli(*args: str) -> subprocess.Popen[str]:
    code = "import sys; from tradeguard.cli import main; sys.exit(main(['paper-server', *sys.argv[1:]]))"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_the_command_prints_its_url_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    with _run_cli("--port", "0", "--price", "TQQQ=42.5", "--state", str(tmp_path / "s.json")) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("paper server listening on http://127.0.0.1:")
        url = line.split()[4]
        with alpaca_client(url) as trading:
            assert trading.submit_order(market(OrderSide.BUY, 1, "cli")).filled_avg_price == "42.5"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "POST /v2/orders -> 200" in err


def test_the_command_refuses_a_malformed_plan_naming_the_line(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("seed: 1\nfaults:\n  - route: POST /v2/orders\n    action: foo\n")
    with _run_cli("--port", "0", "--faults", str(plan)) as proc:
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "plan.yaml:4: unknown action 'foo' (expected one of accept_then_timeout" in err
    assert out == ""


def test_fsync_every_change_keeps_an_answered_order_through_a_kill(tmp_path: Path) -> None:
    from tradeguard.paper import PaperBroker

    state = tmp_path / "s.json"
    args = ("--port", "0", "--price", "TQQQ=42.5", "--state", str(state), "--fsync-every-change")
    with _run_cli(*args) as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[4]
        with alpaca_client(url) as trading:
            trading.submit_order(market(OrderSide.BUY, 3, "kept"))
        proc.kill()  # no shutdown, no compaction: only what was written before the answer
        proc.communicate(timeout=30)
    reloaded = PaperBroker(state_path=state)
    order = reloaded.get_order_by_client_id("kept")
    assert order is not None and order.filled_qty == 3
    position = reloaded.get_position("TQQQ")
    assert position is not None and position.qty == 3


def test_a_port_in_use_is_one_error_line_naming_the_address_and_leaves_no_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said `tradeguard paper-server: [Errno 98] Address already in use`, without the address
    and outside the `tradeguard: error:` convention; `serve` names host and port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        state = tmp_path / "s.json"
        assert main(["paper-server", "--port", str(port), "--state", str(state)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"tradeguard: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert not state.exists()


def test_a_bad_option_of_paper_server_is_said_as_every_command_says_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["paper-server", "--port", "0", "--cash", "lots"]) == 2
    assert capsys.readouterr().err == "tradeguard: error: --cash wants an amount of dollars, got 'lots'\n"
