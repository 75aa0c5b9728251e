"""Worker processes of audit 67: a drop-in bot (GuardedTradingClient) frozen after its POST.

Each function runs in a process of its own (forked from tests/forks.py's server) with its own
drop-in client: the real alpaca-py TradingClient over HTTP to the paper server, claims in the
store at `url`. Outcomes go to a file as JSON text: the test process asserts on them.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from tradeguard import GuardedTradingClient, crashpoints
from tradeguard.config import Settings

AGENT = "audit67-dropin"


def client(url: str, paper_url: str, lease: float) -> GuardedTradingClient:
    """The one-import drop-in on the paper server, with claims in `url` and a short lease."""
    return GuardedTradingClient(
        "paper-key", "paper-secret", paper=True, url_override=paper_url, store=url,
        settings=Settings(lease_secs=lease), agent_id=AGENT,
    )  # fmt: skip


def order(side: str, qty: int) -> MarketOrderRequest:
    """A day market order in TQQQ without a client_order_id (a retry is known by its content)."""
    return MarketOrderRequest(symbol="TQQQ", qty=qty, side=OrderSide(side), time_in_force=TimeInForce.DAY)


def frozen_submit(
    url: str, paper_url: str, side: str, qty: int, marker: str, result_path: str, lease: float
) -> None:
    """Submit one market order through the drop-in; freeze (SIGSTOP) at `after_post`.

    Writes `marker` right before freezing, and what the call returned (or raised) to
    `result_path` once resumed.
    """

    def freeze(name: str) -> None:
        if name == "after_post":
            crashpoints.set_hook(None)
            Path(marker).write_text("frozen")
            os.kill(os.getpid(), signal.SIGSTOP)

    crashpoints.set_hook(freeze)
    try:
        with client(url, paper_url, lease) as bot:
            answer = bot.submit_order(order(side, qty))
        Path(result_path).write_text(
            json.dumps({"status": str(answer.status), "client_order_id": answer.client_order_id})
        )
    except BaseException as exc:
        Path(result_path).write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
