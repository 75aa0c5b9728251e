"""Worker processes of audit 44: bots on one served paper account and one PostgreSQL store.

Each function runs in a process of its own (forked from the preloaded fork server of
tests/forks.py), with its own gateway and
AlpacaBroker (the real alpaca-py TradingClient over HTTP to the paper server). Outcomes go to a
file or a queue as text: the test process asserts on them.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from tradeguard import crashpoints
from tradeguard.broker.alpaca import AlpacaBroker
from tradeguard.config import Settings
from tradeguard.gateway import OrderGateway
from tradeguard.store import ClaimStore

AGENT = "audit44-bot"


def broker(paper_url: str) -> AlpacaBroker:
    """The real alpaca-py client on the paper server."""
    return AlpacaBroker.from_credentials("paper-key", "paper-secret", url_override=paper_url)


def frozen_send(
    url: str, paper_url: str, kind: str, qty: int, intent: str, marker: str, result_path: str, lease: float
) -> None:
    """Enter (or exit) one decision with a short lease; freeze (SIGSTOP) at `after_post`.

    Writes `marker` right before freezing, and the call's outcome (or error) to `result_path`
    once resumed.
    """

    def freeze(name: str) -> None:
        if name == "after_post":
            crashpoints.set_hook(None)
            Path(marker).write_text("frozen")
            os.kill(os.getpid(), signal.SIGSTOP)

    crashpoints.set_hook(freeze)
    try:
        settings = Settings(lease_secs=lease)
        with ClaimStore(url, settings=settings) as store:
            gateway = OrderGateway(
                broker(paper_url), store, agent_id=AGENT, settings=settings, reconcile_on_start=False
            )
            if kind == "entry":
                result = gateway.enter("TQQQ", qty=qty, intent=intent)
            else:
                result = gateway.exit("TQQQ", qty=qty, intent=intent)
            Path(result_path).write_text(
                json.dumps({"outcome": result.outcome.value, "reason": result.reason or ""})
            )
    except BaseException as exc:
        Path(result_path).write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))


def reconcile_worker(
    url: str, paper_url: str, settings: dict[str, Any], barrier: Any, rounds: int, out: Any
) -> None:
    """Run `rounds` full reconcile passes, each started at the barrier with the other passers."""
    try:
        with ClaimStore(url, settings=Settings(**settings)) as store:
            gateway = OrderGateway(
                broker(paper_url), store, agent_id="audit44-reconciler", settings=Settings(**settings),
                reconcile_on_start=False,
            )  # fmt: skip
            for _ in range(rounds):
                barrier.wait(60)
                report = gateway.reconciler.run()
                out.put(("ok", str(report.aborted)))
    except BaseException as exc:
        barrier.abort()
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def race_worker(
    url: str, paper_url: str, agent: str, rounds: list[list[dict[str, Any]]], barrier: Any, out: Any
) -> None:
    """Run each round's ops (entries and exits in the round's symbol) right after the barrier."""
    try:
        settings = Settings(position_settle_secs=0.2, settle_delay_secs=0.05, recent_activity_secs=0.2)
        with ClaimStore(url, settings=settings) as store:
            gateway = OrderGateway(
                broker(paper_url), store, agent_id=agent, settings=settings, reconcile_on_start=False
            )
            for ops in rounds:
                barrier.wait(60)
                for op in ops:
                    try:
                        if op["kind"] == "entry":
                            r = gateway.enter(op["symbol"], qty=op["qty"], intent=op["intent"])
                        else:
                            r = gateway.exit(op["symbol"], qty=op.get("qty"), intent=op["intent"])
                        out.put(("ok", agent, json.dumps(op), r.outcome.value, r.reason or ""))
                    except Exception as exc:  # a bot sees it; the test judges it
                        out.put(("raised", agent, json.dumps(op), type(exc).__name__, str(exc)))
                barrier.wait(60)
    except BaseException as exc:
        barrier.abort()
        out.put(("error", agent, "", type(exc).__name__, str(exc)))


def exit_frozen_after_read(
    url: str, paper_url: str, agent: str, intent: str, marker: str, result_path: str, settle: float
) -> None:
    """Exit the whole position of `agent` in SPY; freeze (SIGSTOP) once its position read is done."""

    def freeze(name: str) -> None:
        if name == "exit_before_claim":
            crashpoints.set_hook(None)
            Path(marker).write_text("frozen")
            os.kill(os.getpid(), signal.SIGSTOP)

    crashpoints.set_hook(freeze)
    try:
        settings = Settings(position_settle_secs=settle)
        with ClaimStore(url, settings=settings) as store:
            gateway = OrderGateway(
                broker(paper_url), store, agent_id=agent, settings=settings, reconcile_on_start=False
            )
            result = gateway.exit("SPY", intent=intent)
            Path(result_path).write_text(
                json.dumps({"outcome": result.outcome.value, "reason": result.reason or ""})
            )
    except BaseException as exc:
        Path(result_path).write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
