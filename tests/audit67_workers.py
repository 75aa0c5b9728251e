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
from typing import Any

from alpaca.common.exceptions import APIError
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


def dropin_race_worker(
    url: str, paper_url: str, agent: str, rounds: list[list[dict[str, Any]]], barrier: Any, out: Any
) -> None:
    """Run each round's drop-in calls (buys, sells, close_position) right after the barrier."""
    try:
        settings = Settings(position_settle_secs=0.2, settle_delay_secs=0.05, recent_activity_secs=0.2)
        with GuardedTradingClient(
            "paper-key", "paper-secret", paper=True, url_override=paper_url, store=url,
            settings=settings, agent_id=agent, raw_data=True,
        ) as bot:  # fmt: skip
            for ops in rounds:
                barrier.wait(60)
                for op in ops:
                    try:
                        if op["call"] == "close":
                            answer = bot.close_position(op["symbol"])
                        else:
                            request = MarketOrderRequest(
                                symbol=op["symbol"], qty=op["qty"], side=OrderSide(op["call"]),
                                time_in_force=TimeInForce.DAY, client_order_id=op.get("coid"),
                            )  # fmt: skip
                            answer = bot.submit_order(request)
                        out.put(("ok", agent, json.dumps(op), str(answer.get("status")), ""))
                    except APIError as exc:  # a refusal in Alpaca's words: the bot sees it
                        out.put(("refused", agent, json.dumps(op), str(exc.status_code), str(exc)))
                    except Exception as exc:
                        out.put(("raised", agent, json.dumps(op), type(exc).__name__, str(exc)))
                barrier.wait(60)
    except BaseException as exc:
        barrier.abort()
        out.put(("error", agent, "", type(exc).__name__, str(exc)))
