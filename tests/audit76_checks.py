"""Audit 76: starting, freezing and resuming bot processes, and the end-of-test checks of G1-G4 and G6.

The checks read real outcomes: the orders the served account took (each client_order_id POSTed
at most once, at most one order per decision), the lowest position the account ever reached (a
long-only account never below zero), and the store after reconcile passes from a clock past every
grace period with the positions read caught up (each agent's ledger equals what its own fills
hold, every claim in a definite state with its audit records).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests import audit76_kit as kit
from tests.forks import FORKS
from tradeguard.broker.alpaca import AlpacaBroker
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import Side
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.gateway import OrderGateway
from tradeguard.store import AuditQuery, ClaimStore


def wait_for(condition: Any, timeout_secs: float, what: str) -> None:
    """Poll `condition` until true; fail naming `what` after `timeout_secs` (a bound, not a check)."""
    deadline = time.monotonic() + timeout_secs
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


def _stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


class Bot:
    """One bot process running `kit.bot`; `result()` reads what it did once it ended."""

    def __init__(
        self, url: str, paper_url: str, agent: str, ops: list[dict[str, Any]], folder: Path, name: str,
        freeze: str = "", reconcile_on_start: bool = False,
    ) -> None:  # fmt: skip
        self.path = folder / f"{name}.json"
        self.marker = Path(f"{self.path}.frozen")
        self.freeze = freeze
        self.proc: multiprocessing.Process = FORKS.Process(
            target=kit.bot, args=(url, paper_url, agent, ops, str(self.path), freeze, reconcile_on_start)
        )
        self.proc.start()
        if freeze:
            wait_for(
                lambda: not self.proc.is_alive() or (self.marker.exists() and _stopped(self.proc.pid or 0)),
                60, f"{name} to freeze at {freeze}",
            )  # fmt: skip
            if not self.marker.exists():
                self.proc.join(30)
                pytest.fail(f"{name} never froze at {freeze}: {self._read()}")

    def resume(self) -> None:
        """SIGCONT the frozen bot."""
        os.kill(self.proc.pid or 0, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the bot (frozen or not) and reap it."""
        os.kill(self.proc.pid or 0, signal.SIGKILL)
        self.proc.join(30)

    def result(self) -> list[dict[str, Any]]:
        """Wait for the bot to end; return its ops' outcomes (it must not have failed to start)."""
        self.proc.join(60)
        assert not self.proc.is_alive(), "the bot did not finish"
        done = self._read()
        assert done is not None, f"the bot wrote no result (exit code {self.proc.exitcode})"
        setup = [d for d in done if d["op"] == "setup"]
        assert not setup, setup
        return done

    def _read(self) -> list[dict[str, Any]] | None:
        if not self.path.exists():
            return None
        return list(json.loads(self.path.read_text())["done"])


def alpaca(paper_url: str) -> AlpacaBroker:
    """The real alpaca-py client on the paper server."""
    return AlpacaBroker.from_credentials("paper-key", "paper-secret", url_override=paper_url)


def gateway(store: ClaimStore, paper_url: str, agent: str, clock: ManualClock | None = None) -> OrderGateway:
    """A gateway of `agent` in the test process (its own connection to the store)."""
    return OrderGateway(
        alpaca(paper_url), store, agent_id=agent, settings=store.settings, clock=clock,
        reconcile_on_start=False,
    )  # fmt: skip


def settings() -> Settings:
    """The kit's short horizons."""
    return Settings(**kit.SETTINGS)


def settle_and_check(
    url: str, account: kit.LateAccount, paper_url: str, symbol: str, agents: list[str],
    *, by_hand: dict[str, Decimal] | None = None,
) -> dict[str, Decimal]:  # fmt: skip
    """Reconcile every agent from a clock past every horizon, the positions read caught up; check G1-G4, G6.

    `by_hand`: shares each agent lost to closes outside the bots (their truth is their fills
    less those). Returns each agent's ledger.
    """
    assert account.lowest.get(symbol, Decimal(0)) >= 0, f"G3: the account went short: {account.lowest}"
    for coid, sent in _posts(account).items():
        assert sent <= 1, f"G1: {coid} POSTed {sent} times"
    lag, account.lag_secs = account.lag_secs, 0.0
    clock = ManualClock(datetime.now(UTC) + timedelta(minutes=5))
    ledgers: dict[str, Decimal] = {}
    try:
        with ClaimStore(url, settings=settings(), clock=clock) as store:
            gateways = [gateway(store, paper_url, a, clock) for a in agents]
            for _ in range(3):
                for g in gateways:
                    report = g.reconcile()
                    assert report.aborted is None, report
                clock.advance(30)
            claims = store.list_claims(symbol=symbol)
            per_decision: dict[tuple[str, str, str], set[str]] = defaultdict(set)
            at_broker = {o.client_order_id: o for o in account.orders() if o.symbol == symbol}
            truth: dict[str, Decimal] = defaultdict(Decimal)
            for c in claims:
                assert c.state not in (ClaimState.PENDING, ClaimState.UNKNOWN), f"G2: left {c}"
                order = at_broker.get(c.client_order_id)
                if order is not None:
                    per_decision[(c.agent_id, c.kind.value, c.intent)].add(c.client_order_id)
                    moved = order.filled_qty if order.side is Side.BUY else -order.filled_qty
                    truth[c.agent_id] += moved
                    assert c.filled_qty == order.filled_qty, f"G2: fill not booked: {c} vs {order}"
                audit = list(store.audit_records(AuditQuery(client_order_id=c.client_order_id)))
                assert audit, f"G6: no audit record of {c.client_order_id}"
            for decision, coids in per_decision.items():
                assert len(coids) <= 1, f"G1: {decision} has orders {coids}"
            for a in agents:
                ledgers[a] = store.position(a, symbol).qty
                expected = truth[a] - (by_hand or {}).get(a, Decimal(0))
                assert ledgers[a] == expected, f"G4: {a}'s ledger {ledgers[a]}, truly {expected}"
            assert sum(ledgers.values(), Decimal(0)) == account.true_qty(symbol), (
                ledgers,
                account.true_qty(symbol),
            )
    finally:
        account.lag_secs = lag
    return ledgers


def _posts(account: kit.LateAccount) -> dict[str, int]:
    return {o.client_order_id: account.recording.submitted(o.client_order_id) for o in account.orders()}
