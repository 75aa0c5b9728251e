"""A long-lived bot process for the decision-race harness (`tests/decision_race_kit.py`).

`python -m tests.decision_race_worker`: reads one JSON command a line on stdin, answers one JSON line
on stdout. A command names the store, the paper server, the agent and a few operations; the
worker spins until the command's wall-clock `go` time, so every worker of a round fires at once,
then runs its operations in order. With `crash` set, the process SIGKILLs itself the `nth` time
it passes that crash point (`tradeguard.crashpoints`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

from tradeguard import crashpoints
from tradeguard.config import Settings
from tradeguard.gateway import OrderGateway
from tradeguard.store import ClaimStore

# How long before the start line a worker stops sleeping and spins (a late wake-up's margin).
_SPIN_SECS = 0.02
_stores: dict[str, ClaimStore] = {}
_gateways: dict[tuple[str, str, str], OrderGateway] = {}


def _gateway(command: dict[str, Any]) -> OrderGateway:
    from tradeguard.broker.alpaca import AlpacaBroker

    key = (command["store"], command["paper"], command["agent"])
    if key not in _gateways:
        settings = Settings(**command["settings"])
        if command["store"] not in _stores:
            _stores[command["store"]] = ClaimStore(command["store"], settings=settings)
        broker = AlpacaBroker.from_credentials("k", "s", url_override=command["paper"], settings=settings)
        _gateways[key] = OrderGateway(
            broker, _stores[command["store"]], agent_id=command["agent"], settings=settings,
            reconcile_on_start=False,
        )  # fmt: skip
    return _gateways[key]


def _client(command: dict[str, Any]) -> Any:
    from tradeguard.client import GuardedTradingClient

    return GuardedTradingClient(gateway=_gateway(command))


def _run(command: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    gateway = _gateway(command)
    try:
        if op["kind"] == "entry":
            r = gateway.enter(op["symbol"], qty=op["qty"], intent=op["intent"])
        elif op["kind"] == "exit":
            if op.get("limit"):
                r = gateway.exit(
                    op["symbol"], qty=op.get("qty"), intent=op["intent"], order_type="limit",
                    limit_price=op["limit"],
                )  # fmt: skip
            else:
                r = gateway.exit(op["symbol"], qty=op.get("qty"), intent=op["intent"])
        elif op["kind"] == "client":
            from alpaca.trading.enums import OrderSide, TimeInForce
            from alpaca.trading.requests import MarketOrderRequest

            order = _client(command).submit_order(
                MarketOrderRequest(
                    symbol=op["symbol"], qty=op["qty"], side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                    client_order_id=op["coid"],
                )
            )  # fmt: skip
            return {"op": op, "outcome": "order", "coid": str(order.client_order_id)}
        elif op["kind"] == "client_sell":
            from alpaca.trading.enums import OrderSide, PositionIntent, TimeInForce
            from alpaca.trading.requests import MarketOrderRequest

            order = _client(command).submit_order(
                MarketOrderRequest(
                    symbol=op["symbol"], qty=op["qty"], side=OrderSide.SELL, time_in_force=TimeInForce.DAY,
                    client_order_id=op["coid"],
                    **({"position_intent": PositionIntent.SELL_TO_CLOSE} if op.get("to_close") else {}),
                )
            )  # fmt: skip
            return {"op": op, "outcome": "order", "coid": str(order.client_order_id)}
        elif op["kind"] == "client_close":
            from alpaca.trading.requests import ClosePositionRequest

            options = ClosePositionRequest(qty=str(op["qty"])) if op.get("qty") else None
            order = _client(command).close_position(op["symbol"], options)
            return {"op": op, "outcome": "order", "coid": str(order.client_order_id)}
        elif op["kind"] == "coid":
            from tradeguard.domain import Side
            from tradeguard.domain.intents import Intent, Kind
            from tradeguard.domain.orders import PositionIntent
            from tradeguard.gateway import _spec

            spec = _spec(
                op["qty"], None, "market", "day", None, None, False, PositionIntent.BUY_TO_OPEN, False
            )
            decision = Intent(command["agent"], Kind.ENTRY, op["symbol"], Side.BUY, op["intent"])
            r = gateway.submit(decision, spec, client_order_id=op["coid"])
        elif op["kind"] == "reconcile":
            gateway.reconcile()
            return {"op": op, "outcome": "reconciled"}
        elif op["kind"] == "reconcile_all":
            gateway.reconciler.run()
            return {"op": op, "outcome": "reconciled"}
        else:
            raise ValueError(op["kind"])
        return {
            "op": op, "outcome": r.outcome.value, "reason": r.reason or "",
            "coid": r.claim.client_order_id if r.claim else None,
        }  # fmt: skip
    except Exception as exc:
        return {"op": op, "error": f"{type(exc).__name__}: {exc}"}


def main() -> int:
    """Serve commands until stdin closes."""
    for line in sys.stdin:
        command = json.loads(line)
        crash = command.get("crash")
        if crash:
            hits = {"n": 0}

            def hook(name: str, crash: dict[str, Any] = crash, hits: dict[str, int] = hits) -> None:
                if name == crash["point"]:
                    hits["n"] += 1
                    if hits["n"] >= crash["nth"]:
                        stop = crash.get("mode") == "stop"
                        os.kill(os.getpid(), signal.SIGSTOP if stop else signal.SIGKILL)

            crashpoints.set_hook(hook)
        else:
            crashpoints.set_hook(None)
        _gateway(command)  # opened before the start line
        # Asleep until just before the start line, then spinning to it: the workers still fire
        # together, without four processes spinning on two cores for most of the lead time (that
        # CPU went missing from every other test running beside the race).
        time.sleep(max(0.0, command["go"] - time.time() - _SPIN_SECS))
        while time.time() < command["go"]:
            pass
        results = [_run(command, op) for op in command["ops"]]
        sys.stdout.write(json.dumps(results) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
