"""Order helpers shared by the paper broker's tests."""

from __future__ import annotations

from decimal import Decimal

from tradeguard.domain import OrderRequest, OrderType, TimeInForce
from tradeguard.testing import make_request


def limit(symbol: str, side: str, qty: int, price: str, cid: str) -> OrderRequest:
    """A GTC limit order, the kind that rests on the book."""
    return make_request(
        symbol,
        side,
        qty,
        client_order_id=cid,
        order_type=OrderType.LIMIT,
        limit_price=Decimal(price),
        time_in_force=TimeInForce.GTC,
    )
