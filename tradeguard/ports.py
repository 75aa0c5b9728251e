"""The ports: the narrow interfaces the gateway and reconciler call, that adapters implement.

`Broker` is the port to a venue (AlpacaBroker, PaperBroker, FaultyBroker around either).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from tradeguard.domain.orders import BrokerOrder, BrokerPosition, OrderRequest

__all__ = ["Broker"]


@runtime_checkable
class Broker(Protocol):
    """The port to a broker: six calls over the value types above.

    Every method raises only `tradeguard.errors.BrokerError` subclasses:

    - `OrderRejected`: the broker answered definitely no; nothing was placed.
    - `OutcomeUnknown`: the request may have been acted on (timeout after sending, reset, 5xx,
      429 after a retry). Callers resolve it with `get_order_by_client_id`, never a blind resend.
    - `BrokerUnavailable`: the request never left this process.

    `submit_order` must be safe to call again with the same `client_order_id`: the broker refuses
    a second copy (Alpaca: 422 "client_order_id must be unique"), and an adapter that sees that
    answer looks the order up and returns it. Read methods never return a partial result: a
    failed or truncated read raises, so an error is never mistaken for "flat" (G4).
    """

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Place an order; return it as the broker acknowledged it."""
        ...

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """Return the order with this client_order_id, or None if the broker has none."""
        ...

    def list_orders(
        self,
        *,
        status: str = "open",
        symbols: list[str] | None = None,
        after: datetime | None = None,
        limit: int = 500,
    ) -> list[BrokerOrder]:
        """List orders; `status` is "open", "closed" or "all"."""
        ...

    def list_positions(self) -> list[BrokerPosition]:
        """Return every open position."""
        ...

    def get_position(self, symbol: str) -> BrokerPosition | None:
        """Return the position in `symbol`, or None when flat."""
        ...

    def cancel_order(self, order_id: str) -> None:
        """Request cancellation of an open order."""
        ...
