"""G3/G4: agents on one Alpaca account are known as one, whatever key id or URL reaches it.

An account used to be named by its base URL and key id: an operator's CLI (its own key id) or an
agent restarted with a rotated key took the account for another one, left the other agents'
shares out and booked them as its own (found by an adversarial run). Keys now come from the
account's id (`GET /v2/account`). Real parts: the paper server over HTTP, alpaca-py's
`TradingClient`, the real `tradeguard` CLI in a subprocess, a SQLite file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tradeguard.broker.alpaca import AlpacaBroker, adapter
from tradeguard.config import Settings
from tradeguard.faults import FaultPlan
from tradeguard.gateway import OrderGateway
from tradeguard.ports import ACCOUNT_KEY_SCHEME
from tradeguard.store import ClaimStore
from tradeguard.testing import paper_server

# Real time (the paper server runs on the system clock): short horizons keep the test brief.
SETTINGS = Settings(position_settle_secs=0.3, settle_delay_secs=0.1, recent_activity_secs=0.1)


def _gateway(url: str, store: str, agent: str, key_id: str) -> OrderGateway:
    broker = AlpacaBroker.from_credentials(key_id, "secret", url_override=url, settings=SETTINGS)
    return OrderGateway(broker, store, agent_id=agent, settings=SETTINGS)


def test_an_operators_cli_reconcile_with_its_own_keys_books_nothing(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'claims.db'}"
    with paper_server() as server:
        for agent in ("bot-a", "bot-b"):
            assert _gateway(server.url, store, agent, "bot-key").enter("SPY", qty=5, intent="in").order
        time.sleep(0.5)  # past the settle horizon: position reads are believed
        env = {**os.environ, "TRADEGUARD_POSITION_SETTLE_SECS": "0.3", "TRADEGUARD_SETTLE_DELAY_SECS": "0.1"}
        for agent in ("bot-a", "bot-b"):
            done = subprocess.run(
                [sys.executable, "-m", "tradeguard.cli", "reconcile", "--store", store,
                 "--paper-url", server.url, "--agent-id", agent],
                capture_output=True, text=True, env=env, timeout=120, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
        with ClaimStore(store) as claims:
            assert claims.position("bot-a", "SPY").qty == 5  # before: 10 each (the other's 5 "missed")
            assert claims.position("bot-b", "SPY").qty == 5
        held = server.broker.get_position("SPY")
        assert held is not None and held.qty == 10


def test_an_agent_restarted_with_a_rotated_key_sells_only_its_own_shares(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'claims.db'}"
    with paper_server() as server:
        for agent in ("bot-a", "bot-b"):
            assert _gateway(server.url, store, agent, "old-key").enter("SPY", qty=5, intent="in").order
        time.sleep(0.5)
        restarted = _gateway(server.url, store, "bot-a", "rotated-key")
        assert restarted.position("SPY").qty == 5  # its start-up pass books nothing of B's
        out = restarted.exit("SPY", intent="out")
        assert out.order is not None and out.order.qty == Decimal(5)
        held = server.broker.get_position("SPY")
        assert held is not None and held.qty == 5  # before: 0, B's 5 sold


def test_an_agent_whose_account_read_failed_at_start_registers_the_account_key_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its GET /v2/account answered 500 once: it named the account by its credentials (a key the
    # claim service cannot match with the account's other agents). The read is tried again after
    # a while (here at once) and the agent re-registers under the account's own key.
    monkeypatch.setattr(adapter, "_ACCOUNT_RETRY_SECS", 0.0, raising=False)
    store = f"sqlite:///{tmp_path / 'claims.db'}"
    plan = FaultPlan.parse("seed: 1\nfaults:\n  - route: GET /v2/account\n    nth: 1\n    action: error\n")
    with paper_server(faults=plan) as server:
        gw = _gateway(server.url, store, "bot-b", "key-b")
        gw.enter("SPY", qty=5, intent="in")
        with ClaimStore(store) as claims:
            assert not claims.agent_accounts()["bot-b"].startswith(ACCOUNT_KEY_SCHEME)
        gw.exit("SPY", intent="out")
        with ClaimStore(store) as claims:
            registered = claims.agent_accounts()["bot-b"]
    assert registered == server.broker.account_key
