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
        except BrokerError as exc:
            fields = broker_answer(exc)
            if not isinstance(exc, OrderRejected):  # a send that may exist, or never left: its id
                fields["client_order_id"] = coid
            if isinstance(exc, OutcomeUnknown):
                fields["after_secs"] = max((clock.now() - started).total_seconds(), 0.0)
            elif isinstance(exc, BrokerUnavailable):
                fields["placed"] = False
            rec.answer(fields.pop("result"), **fields)
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


def broker_answer(error: BaseException) -> dict[str, Any]:
    """How a session names a failed broker call (an order's submit, a cancel, a replace).

    `rejected` (with Alpaca's status and body), `timeout` or `error` (the answer lost: the call may
    have taken effect), `dropped` (it never left: the broker unreachable), and `blocked` for what
    is not the broker's (tradeguard refused it first), each with the reason in words.
    """
    if isinstance(error, OrderRejected):
        return {"result": "rejected", "status": error.status_code, "body": error.body or None,
                "reason": error.message}  # fmt: skip
    if isinstance(error, OutcomeUnknown):
        return {"result": "error" if error.status_code else "timeout", "status": error.status_code,
                "reason": error.message}  # fmt: skip
    if isinstance(error, BrokerUnavailable):
        return {"result": "dropped", "reason": error.message}
    if isinstance(error, BrokerError):  # no adapter raises a bare one; if one does, it is unknown
        return {"result": "error", "reason": error.message}
    return {"result": "blocked", "reason": f"{type(error).__name__}: {error}"}
