"""Code run by other processes in the issue 8 hardening tests (importable: tests/forks.py).

Every worker reports through `results` (a queue) or a file, and reports an exception instead of
raising it, so the parent fails with its text rather than waiting for a worker that died.
"""

from __future__ import annotations

import os
import signal
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.mothers import make_intent, make_spec
from tradeguard import crashpoints
from tradeguard.broker.alpaca import AlpacaBroker
from tradeguard.config import Settings
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.gateway import OrderGateway
from tradeguard.store import ClaimStore

STALL_AGENT = "stall-bot"
STALL_INTENT = "09:42 breakout"


def _broker(paper_url: str) -> AlpacaBroker:
    return AlpacaBroker.from_credentials("paper-key", "paper-secret", url_override=paper_url)


def ledger_race_worker(
    url: str, rounds: int, decisions: int, barrier: Any, results: Any, worker: int
) -> None:
    """Each round: claim `decisions` one-share entries in TQQQ and record each as FILLED.

    `barrier` (workers + parent) starts and ends every round, so the parent reads the ledger
    between rounds.
    """
    try:
        with ClaimStore(url) as store:
            for r in range(rounds):
                barrier.wait(timeout=300)
                for i in range(decisions):
                    intent = make_intent(f"r{r} w{worker} d{i}", agent="race-bot", symbol="TQQQ")
                    out = store.claim(intent, make_spec(1), owner=f"worker-{worker}", order_qty=Decimal(1))
                    store.transition(
                        out.claim, ClaimState.FILLED, reason="filled", filled_qty=Decimal(1),
                        broker_order_id=f"order-{out.claim.client_order_id}",
                    )  # fmt: skip
                barrier.wait(timeout=300)
        results.put(("done", worker))
    except BaseException as exc:
        barrier.abort()
        results.put(("error", worker, repr(exc)))


def enter_many_worker(
    url: str, paper_url: str, decisions: int, barrier: Any, results: Any, worker: int
) -> None:
    """Enter `decisions` different one-share TQQQ decisions through the paper server."""
    try:
        gateway = OrderGateway(_broker(paper_url), url, agent_id="race-bot", reconcile_on_start=False)
        barrier.wait(timeout=120)
        for i in range(decisions):
            result = gateway.enter("TQQQ", qty=1, intent=f"w{worker} decision {i}")
            results.put(("enter", worker, i, result.outcome.value))
        gateway.store.close()
    except BaseException as exc:
        barrier.abort()
        results.put(("error", worker, repr(exc)))


def exit_worker(url: str, paper_url: str, rounds: int, barrier: Any, results: Any, worker: int) -> None:
    """Each round, when `barrier` (workers + parent) releases: exit TQQQ under this worker's own decision."""
    try:
        gateway = OrderGateway(_broker(paper_url), url, agent_id="exit-bot", reconcile_on_start=False)
        for r in range(rounds):
            barrier.wait(timeout=300)
            try:
                result = gateway.exit("TQQQ", intent=f"r{r} exit decision {worker}")
                results.put(("exit", r, worker, result.outcome.value))
            except Exception as exc:
                results.put(("exit", r, worker, f"raised {exc!r}"))
            barrier.wait(timeout=300)
        gateway.store.close()
    except BaseException as exc:
        barrier.abort()
        results.put(("error", worker, repr(exc)))


def stall_worker(url: str, paper_url: str, point: str, marker: str, result_path: str) -> None:
    """Enter one decision with a 1 s lease; freeze (SIGSTOP) at crash point `point`.

    Writes `marker` just before freezing, and the enter's outcome (or error) to `result_path`.
    """

    def freeze(name: str) -> None:
        if name == point:
            Path(marker).write_text("frozen")
            os.kill(os.getpid(), signal.SIGSTOP)

    crashpoints.set_hook(freeze)
    try:
        settings = Settings(lease_secs=1)
        with ClaimStore(url, settings=settings) as store:
            gateway = OrderGateway(
                _broker(paper_url), store, agent_id=STALL_AGENT, settings=settings, reconcile_on_start=False
            )
            result = gateway.enter("TQQQ", qty=10, intent=STALL_INTENT)
            Path(result_path).write_text(f"{result.outcome.value}: {result.reason}")
    except BaseException as exc:
        Path(result_path).write_text(f"raised {exc!r}")
