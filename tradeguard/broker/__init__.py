"""The broker port and its adapters (Alpaca, paper)."""

from tradeguard.broker.types import (
    Broker,
    BrokerOrder,
    BrokerPosition,
    OrderRequest,
    OrderStatus,
    OrderType,
    PositionIntent,
    Side,
    TimeInForce,
)

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
