"""The broker a `Recorder` wraps: each submit's answer and each position read written as it happens.

Order reads are watched too: an order found under the client_order_id of a send whose answer was
lost resolves that attempt as placed (`Recorder.found`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradeguard.clock import SystemClock
from tradeguard.domain import BrokerOrder, BrokerPosition, OrderRequest, OrderStatus
from tradeguard.errors import BrokerError, BrokerUnavailable, OrderRejected, OutcomeUnknown
from tradeguard.ports import Broker, ForwardingBroker

if TYPE_CHECKING:
    from tradeguard.sessions.recorder import Recorder

__all__ = ["SessionRecordingBroker"]

_FILLED = {OrderStatus.FILLED: "filled", OrderStatus.PARTIALLY_FILLED: "partially_filled"}


class SessionRecordingBroker(ForwardingBroker):
    """A `Broker` that records each submit's answer and each position read, then passes it on."""

    def __init__(self, inner: Broker, recorder: Recorder) -> None:
        super().__init__(inner)
        self.recorder = recorder

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Submit, and record the answer (or the error) for the current attempt."""
        rec = self.recorder
        clock = rec.clock or SystemClock()
        started = clock.now()
        coid = request.client_order_id or None
        try:
            order = self.inner.submit_order(request)
        except OrderRejected as exc:
            rec.answer("rejected", status=exc.status_code, body=exc.body or None, reason=exc.message)
            raise
        except OutcomeUnknown as exc:
            waited = max((clock.now() - started).total_seconds(), 0.0)
            result = "error" if exc.status_code else "timeout"
            rec.answer(
                result, status=exc.status_code, after_secs=waited, client_order_id=coid, reason=exc.message
            )
            raise
        except BrokerUnavailable as exc:
            rec.answer("dropped", placed=False, client_order_id=coid, reason=exc.message)
            raise
        except BrokerError as exc:  # no adapter raises a bare one; if one does, the send is unknown
            rec.answer("error", client_order_id=coid, reason=exc.message)
            raise
        rec.answer(
            _FILLED.get(order.status, "accepted"),
            order_id=order.id,
            client_order_id=order.client_order_id,
            filled_qty=order.filled_qty or None,
            filled_avg_price=order.filled_avg_price,
        )
        if order.filled_avg_price is not None:
            rec.price(order.symbol, order.filled_avg_price)
        return order

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """Look up, and resolve a lost answer's attempt as placed when its order is found."""
        order = self.inner.get_order_by_client_id(client_order_id)
        self.recorder.found(client_order_id, order)
        return order

    def list_orders(
        self,
        *,
        status: str = "open",
        symbols: list[str] | None = None,
        after: datetime | None = None,
        limit: int = 500,
    ) -> list[BrokerOrder]:
        """List, and resolve lost answers' attempts whose orders are among those listed."""
        orders = self.inner.list_orders(status=status, symbols=symbols, after=after, limit=limit)
        self.recorder.seen(orders)
        return orders

    def get_position(self, symbol: str) -> BrokerPosition | None:
        """Read, and record the quantity when it changed."""
        position = self.inner.get_position(symbol)
        self.recorder.broker_position(symbol, position.qty if position is not None else Decimal(0))
        return position

    def __getattr__(self, name: str) -> Any:
        # The paper broker's extras (orders(), set_price(), ...) stay reachable through the wrapper.
        return getattr(self.inner, name)
