"""Audit 76 kit: a served paper account that trails and cancels late, and worker processes on it.

`LateAccount` is the account the paper server serves (the test process holds it; the bots reach it
over HTTP with the real alpaca-py client):

- its positions endpoints show the account as it was `lag_secs` of wall time ago (Alpaca's trail
  fills by seconds), orders and lookups are current;
- with `defer_cancels`, ``DELETE /v2/orders/{id}`` answers 204 and only marks the order
  `pending_cancel` (its shares stay held, and it can still fill: `step`); `finish_cancels` ends
  them, as Alpaca does a moment later;
- every POST is counted per client_order_id (`recording`), and the lowest position each symbol
  ever reached is kept (`lowest`): a long-only account must never go below zero (G3).

The worker functions run in processes of their own (tests/forks.py's fork server): each opens its
own store and its own AlpacaBroker, as a bot on another host does, and writes what happened to a
file as JSON (the test process asserts on it).
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.gateway_kit import ServedRecording
from tests.trailing import as_of
from tradeguard import crashpoints
from tradeguard.broker.alpaca import AlpacaBroker
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, BrokerPosition, OrderRequest, OrderStatus
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.store import ClaimStore

# Short horizons so that a test runs in seconds; the positions lag stays inside them.
SETTINGS: dict[str, float] = {
    "lease_secs": 1.5,
    "request_timeout_secs": 2.0,
    "connect_timeout_secs": 1.0,
    "unknown_grace_secs": 2.5,
    "unknown_probe_gap_secs": 0.2,
    "settle_delay_secs": 0.2,
    "recent_activity_secs": 0.5,
    "position_settle_secs": 1.2,
}


class LateAccount(ServedRecording):
    """A served paper account whose positions trail by `lag_secs` and whose cancels finish late."""

    def __init__(
        self, lag_secs: float = 0.0, *, listing_lag_secs: float = 0.0, defer_cancels: bool = False,
        **options: Any,
    ) -> None:  # fmt: skip
        super().__init__(**options)
        self.lag_secs = lag_secs
        self.listing_lag_secs = listing_lag_secs
        self._listed: list[tuple[float, list[BrokerOrder]]] = [(0.0, [])]
        self.defer_cancels = defer_cancels
        self.pending_cancel: set[str] = set()
        self.lowest: dict[str, Decimal] = {}
        self._shown: list[tuple[float, dict[str, BrokerPosition]]] = [(0.0, {})]

    # ---- what changes the account: every change is noted for the trailing positions ----------

    def _note(self) -> None:
        with self._lock:
            now = {p.symbol: p for p in PaperBroker.list_positions(self)}
            self._shown.append((time.monotonic(), now))
            if self.listing_lag_secs:
                every = PaperBroker.list_orders(self, status="all", limit=10**6, direction="asc")
                self._listed.append((time.monotonic(), every))
            for symbol in set(self.lowest) | set(now):
                qty = now[symbol].qty if symbol in now else Decimal(0)
                self.lowest[symbol] = min(self.lowest.get(symbol, Decimal(0)), qty)

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        with self._lock:
            try:
                return super().submit_order(request)
            finally:
                self._note()

    def step(self, at: Any = None) -> list[BrokerOrder]:
        with self._lock:
            try:
                return super().step(at)
            finally:
                self.pending_cancel = {i for i in self.pending_cancel if self._open(i)}
                self._note()

    def cancel_order(self, order_id: str) -> None:
        with self._lock:
            if not self.defer_cancels:
                try:
                    super().cancel_order(order_id)
                finally:
                    self._note()
                return
            order = PaperBroker.get_order(self, order_id)
            if order is None or order.status.is_terminal:
                super().cancel_order(order_id)  # Alpaca's 404 / 422, as the paper broker words them
            self.pending_cancel.add(order_id)  # 204; the shares stay held until it is done

    def finish_cancels(self) -> None:
        """End every cancel taken (Alpaca does a moment after its 204), unless the order filled first."""
        with self._lock:
            for order_id in sorted(self.pending_cancel):
                if self._open(order_id):
                    PaperBroker.cancel_order(self, order_id)
            self.pending_cancel.clear()
            self._note()

    def close_by_hand(self, symbol: str) -> None:
        """Close the position outside every bot (a person on Alpaca's dashboard)."""
        with self._lock:
            try:
                PaperBroker.close_position(self, symbol)
            finally:
                self._note()

    def _open(self, order_id: str) -> bool:
        order = PaperBroker.get_order(self, order_id)
        return order is not None and order.status.is_open

    # ---- what reads it -----------------------------------------------------------------------

    def _shown_now(self) -> dict[str, BrokerPosition]:
        return as_of(self._shown, time.monotonic() - self.lag_secs)

    def list_positions(self) -> list[BrokerPosition]:
        with self._lock:
            if not self.lag_secs:
                return super().list_positions()
            return list(self._shown_now().values())

    def get_position(self, symbol: str) -> BrokerPosition | None:
        with self._lock:
            if not self.lag_secs:
                return super().get_position(symbol)
            return self._shown_now().get(symbol)

    def true_qty(self, symbol: str) -> Decimal:
        """The account's position now, past the lag."""
        pos = PaperBroker.get_position(self, symbol)
        return Decimal(0) if pos is None else pos.qty

    def _pending(self, order: BrokerOrder | None) -> BrokerOrder | None:
        if order is None or order.id not in self.pending_cancel or order.status.is_terminal:
            return order
        raw = dict(order.raw)
        raw["status"] = OrderStatus.PENDING_CANCEL.value
        return replace(order, status=OrderStatus.PENDING_CANCEL, raw=raw)

    def get_order(self, order_id: str, *, nested: bool = True) -> BrokerOrder | None:
        with self._lock:
            return self._pending(super().get_order(order_id, nested=nested))

    def get_order_by_client_id(
        self, client_order_id: str, *, follow: bool = True, nested: bool = True
    ) -> BrokerOrder | None:
        with self._lock:
            found = super().get_order_by_client_id(client_order_id, follow=follow, nested=nested)
            return self._pending(found)

    def list_orders(self, **query: Any) -> list[BrokerOrder]:
        with self._lock:
            listed = super().list_orders(**query)
            if self.listing_lag_secs:
                listed = self._trailing_listing(**query)
            return [o for o in (self._pending(o) for o in listed) if o is not None]

    def _trailing_listing(
        self, *, status: str = "open", symbols: list[str] | None = None, after: Any = None, limit: int = 500,
        until: Any = None, side: Any = None, direction: str = "desc", nested: bool = False,
    ) -> list[BrokerOrder]:  # fmt: skip
        """The listing as it was `listing_lag_secs` ago (the lookups by id stay current)."""
        horizon = time.monotonic() - self.listing_lag_secs
        shown = [orders for at, orders in self._listed if at <= horizon][-1]
        found = [
            o
            for o in shown
            if (status == "all" or (status == "open") == o.status.is_open)
            and (not symbols or o.symbol in symbols)
            and (after is None or (o.created_at is not None and o.created_at > after))
            and (until is None or (o.created_at is not None and o.created_at < until))
            and (side is None or o.side is side)
        ]
        if direction != "asc":
            found.reverse()
        return found[: max(limit, 0)]


# ---- worker processes -------------------------------------------------------------------------


def _broker(paper_url: str) -> AlpacaBroker:
    return AlpacaBroker.from_credentials("paper-key", "paper-secret", url_override=paper_url)


def _write(path: str, doc: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    Path(tmp).write_text(json.dumps(doc))
    os.replace(tmp, path)


def _freeze_at(point: str, marker: str) -> None:
    def freeze(name: str) -> None:
        if name == point:
            crashpoints.set_hook(None)
            Path(marker).write_text("frozen")
            os.kill(os.getpid(), signal.SIGSTOP)

    crashpoints.set_hook(freeze)


def bot(
    url: str, paper_url: str, agent: str, ops: list[dict[str, Any]], result: str, freeze: str = "",
    reconcile_on_start: bool = False,
) -> None:  # fmt: skip
    """Run `ops` (enter / exit / cancel / reconcile) as `agent`; freeze (SIGSTOP) at point `freeze`.

    Each op's outcome (or the exception it raised) goes into `result`, one entry per op.
    """
    if freeze:
        _freeze_at(freeze, f"{result}.frozen")
    done: list[dict[str, Any]] = []
    try:
        settings = Settings(**SETTINGS)
        with ClaimStore(url, settings=settings) as store:
            gateway = OrderGateway(
                _broker(paper_url), store, agent_id=agent, settings=settings,
                reconcile_on_start=reconcile_on_start,
            )  # fmt: skip
            for op in ops:
                try:
                    done.append(_run(gateway, op))
                except Exception as exc:  # the bot sees it; the test judges it
                    done.append({"op": op["op"], "raised": type(exc).__name__, "message": str(exc)})
    except BaseException as exc:
        done.append({"op": "setup", "raised": type(exc).__name__, "message": str(exc)})
    _write(result, {"agent": agent, "done": done})


def _run(gateway: OrderGateway, op: dict[str, Any]) -> dict[str, Any]:
    kind = op["op"]
    if kind == "enter":
        r = gateway.enter(
            op["symbol"], qty=op["qty"], intent=op["intent"], order_type=op.get("type", "market"),
            limit_price=op.get("limit"),
        )  # fmt: skip
    elif kind == "exit":
        r = gateway.exit(
            op["symbol"], qty=op.get("qty"), intent=op["intent"], order_type=op.get("type", "market"),
            limit_price=op.get("limit"),
        )  # fmt: skip
    elif kind == "cancel":
        claim = gateway.cancel(op["order_id"])
        return {"op": kind, "state": None if claim is None else claim.state.value}
    elif kind == "position":
        return {"op": kind, "qty": str(gateway.position(op["symbol"]).qty)}
    elif kind == "reconcile":
        report = gateway.reconciler.run()
        return {"op": kind, "aborted": None if report.aborted is None else str(report.aborted)}
    else:
        raise ValueError(kind)
    claim = r.claim
    return {
        "op": kind, "intent": op["intent"], "outcome": r.outcome.value, "reason": r.reason or "",
        "qty": None if claim is None or claim.order_qty is None else str(claim.order_qty),
        "coid": None if claim is None else claim.client_order_id,
        "state": None if claim is None else claim.state.value,
    }  # fmt: skip
