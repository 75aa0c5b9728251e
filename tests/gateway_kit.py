"""Helpers for gateway tests: a paper account, a spy on the broker port, a gateway on a real store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, BrokerPosition, OrderRequest
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore

MAY21_PRICES = FixedPrices({"TQQQ": "75.33", "SQQQ": "21.50", "QQQ": "530.00"})


@dataclass
class SpyBroker:
    """Records every call on the way to a real broker (the port, not the network)."""

    inner: Any  # a PaperBroker, or a FaultyBroker around one
    submits: list[OrderRequest] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, its main argument)

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        self.submits.append(request)
        self.calls.append(("submit_order", request.client_order_id))
        return self.inner.submit_order(request)

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        self.calls.append(("get_order_by_client_id", client_order_id))
        return self.inner.get_order_by_client_id(client_order_id)

    def list_orders(
        self,
        *,
        status: str = "open",
        symbols: list[str] | None = None,
        after: datetime | None = None,
        limit: int = 500,
    ) -> list[BrokerOrder]:
        self.calls.append(("list_orders", status))
        return self.inner.list_orders(status=status, symbols=symbols, after=after, limit=limit)

    def list_positions(self) -> list[BrokerPosition]:
        self.calls.append(("list_positions", ""))
        return self.inner.list_positions()

    def get_position(self, symbol: str) -> BrokerPosition | None:
        self.calls.append(("get_position", symbol))
        return self.inner.get_position(symbol)

    def cancel_order(self, order_id: str) -> None:
        self.calls.append(("cancel_order", order_id))
        self.inner.cancel_order(order_id)

    def submitted(self, client_order_id: str) -> int:
        """How many times an order with this client_order_id was sent."""
        return sum(1 for name, coid in self.calls if name == "submit_order" and coid == client_order_id)


def make_gateway(
    url: str,
    *,
    clock: ManualClock | None = None,
    agent_id: str = "may21-bot",
    broker: object | None = None,
    settings: Settings | None = None,
) -> tuple[OrderGateway, SpyBroker]:
    """Return a gateway on a real store over a spied PaperBroker sharing one manual clock."""
    clock = clock or ManualClock()
    # The paper broker's positions never trail its fills, so these tests need no recency or settle
    # horizon; the lagging positions endpoint has its own tests (test_hardening_reconcile.py).
    settings = settings or Settings(recent_activity_secs=0, position_settle_secs=0)
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    spy = SpyBroker(paper)
    store = ClaimStore(url, settings=settings, clock=clock)
    gateway = OrderGateway(broker or spy, store, agent_id=agent_id, settings=settings, clock=clock)  # type: ignore[arg-type]
    return gateway, spy


def broker_qty(spy: SpyBroker, symbol: str) -> Decimal:
    pos = spy.inner.get_position(symbol)
    return Decimal(0) if pos is None else pos.qty
