"""Broker-neutral value types and the `Broker` port every adapter implements.

Quantities and prices are `decimal.Decimal`: Alpaca sends them as strings and fractional
shares exist, so binary floats would drift. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

__all__ = [
    "Broker",
    "BrokerOrder",
    "BrokerPosition",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "PositionIntent",
    "Side",
    "TimeInForce",
]


class Side(enum.StrEnum):
    """Order side."""

    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        """Return the other side."""
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(enum.StrEnum):
    """Order type, as Alpaca names it."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    TRAILING_STOP = "trailing_stop"


class TimeInForce(enum.StrEnum):
    """Time in force, as Alpaca names it."""

    DAY = "day"
    GTC = "gtc"
    OPG = "opg"
    CLS = "cls"
    IOC = "ioc"
    FOK = "fok"


class PositionIntent(enum.StrEnum):
    """Alpaca's `position_intent`: whether an order opens or closes a position."""

    BUY_TO_OPEN = "buy_to_open"
    BUY_TO_CLOSE = "buy_to_close"
    SELL_TO_OPEN = "sell_to_open"
    SELL_TO_CLOSE = "sell_to_close"


class OrderStatus(enum.StrEnum):
    """Alpaca order statuses, plus OTHER for a value Alpaca adds later.

    Parsing never fails on a new status (ALPACA.md: strict enums break whole calls); an
    unrecognised status maps to OTHER and is treated as open, the cautious reading.
    """

    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    DONE_FOR_DAY = "done_for_day"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REPLACED = "replaced"
    PENDING_CANCEL = "pending_cancel"
    PENDING_REPLACE = "pending_replace"
    ACCEPTED = "accepted"
    PENDING_NEW = "pending_new"
    ACCEPTED_FOR_BIDDING = "accepted_for_bidding"
    STOPPED = "stopped"
    REJECTED = "rejected"
    SUSPENDED = "suspended"
    CALCULATED = "calculated"
    HELD = "held"
    OTHER = "other"

    @classmethod
    def parse(cls, value: str | None) -> OrderStatus:
        """Map Alpaca's status string to a member; unknown values become OTHER."""
        try:
            return cls(str(value).lower())
        except ValueError:
            return cls.OTHER

    @property
    def is_terminal(self) -> bool:
        """True when the order can no longer fill."""
        return self in _TERMINAL_STATUSES

    @property
    def is_open(self) -> bool:
        """True when the order may still fill (unknown statuses count as open)."""
        return not self.is_terminal


_TERMINAL_STATUSES = frozenset(
    {
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
        OrderStatus.EXPIRED,
        OrderStatus.REPLACED,
        OrderStatus.REJECTED,
        OrderStatus.DONE_FOR_DAY,
    }
)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One order to place. Exactly one of `qty` and `notional` is set."""

    symbol: str
    side: Side
    client_order_id: str
    qty: Decimal | None = None
    notional: Decimal | None = None
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    position_intent: PositionIntent | None = None
    extended_hours: bool = False


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """An order as the broker reports it."""

    id: str
    client_order_id: str
    symbol: str
    side: Side
    status: OrderStatus
    qty: Decimal | None = None
    notional: Decimal | None = None
    filled_qty: Decimal = Decimal(0)
    filled_avg_price: Decimal | None = None
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    position_intent: PositionIntent | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: dict[str, object] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    """A position as the broker reports it. `qty` is signed: negative is short."""

    symbol: str
    qty: Decimal
    qty_available: Decimal
    avg_entry_price: Decimal | None = None
    market_value: Decimal | None = None

    @property
    def side(self) -> str:
        """Return "long" or "short"."""
        return "short" if self.qty < 0 else "long"


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
