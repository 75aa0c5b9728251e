"""Convert between tradeguard's value types and Alpaca's JSON.

Outgoing orders are built with alpaca-py's own request models, so its checks apply (qty xor
notional, the price fields each order type allows), then numbers are sent as exact decimal
strings, which Alpaca's API accepts, instead of alpaca-py's binary floats.

Incoming orders and positions are read from the raw JSON, not from alpaca-py's strict pydantic
models: a value Alpaca adds later (order status, exchange, asset class) must not break a whole
read (ALPACA.md). Unknown statuses become `OrderStatus.OTHER`; fields tradeguard does not model are
ignored and kept in `BrokerOrder.raw`. What the guard cannot do without (ids, symbol, side,
quantities) is checked, and a missing or malformed value raises `MalformedResponse`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from alpaca.trading.requests import (
    LimitOrderRequest,
    MarketOrderRequest,
    StopLimitOrderRequest,
    StopOrderRequest,
)

from tradeguard.domain import (
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
    "MalformedResponse",
    "order_from_raw",
    "order_payload",
    "orders_from_raw",
    "parse_time",
    "position_from_raw",
    "positions_from_raw",
    "same_symbol",
]

_REQUEST_MODELS: dict[OrderType, Any] = {
    OrderType.MARKET: MarketOrderRequest,
    OrderType.LIMIT: LimitOrderRequest,
    OrderType.STOP: StopOrderRequest,
    OrderType.STOP_LIMIT: StopLimitOrderRequest,
}

_DECIMAL_FIELDS = ("qty", "notional", "limit_price", "stop_price")

_E = TypeVar("_E", bound=enum.Enum)
_D = TypeVar("_D")


class MalformedResponse(ValueError):
    """Alpaca answered with JSON that lacks or garbles a field the guard relies on."""


def order_payload(request: OrderRequest) -> dict[str, Any]:
    """Return the JSON body of ``POST /v2/orders`` for `request`.

    Raises:
        ValueError: The order cannot be expressed (pydantic's ValidationError is one): alpaca-py
            refused the combination, a number is not finite, the client_order_id is empty, or the
            type is trailing_stop, which `OrderRequest` cannot describe (it has no trail).
    """
    if not request.client_order_id:
        # Alpaca would invent one, and an order nobody can look up cannot be resolved or adopted.
        raise ValueError("client_order_id is required")
    for name in _DECIMAL_FIELDS:
        number: Decimal | None = getattr(request, name)
        if number is not None and not number.is_finite():
            raise ValueError(f"{name} must be a finite number, got {number}")
    model = _REQUEST_MODELS.get(request.order_type)
    if model is None:
        raise ValueError(f"{request.order_type} orders are not supported: OrderRequest has no trail")
    built = model(
        symbol=request.symbol,
        side=request.side.value,
        qty=_as_float(request.qty),
        notional=_as_float(request.notional),
        time_in_force=request.time_in_force.value,
        limit_price=_as_float(request.limit_price),
        stop_price=_as_float(request.stop_price),
        client_order_id=request.client_order_id,
        position_intent=request.position_intent.value if request.position_intent else None,
        extended_hours=request.extended_hours,
    )
    fields: dict[str, Any] = built.to_request_fields()
    payload = {key: value.value if isinstance(value, enum.Enum) else value for key, value in fields.items()}
    for name in _DECIMAL_FIELDS:
        # alpaca-py types these as float; a float can turn 0.1 into 0.1000000000000000055...
        exact: Decimal | None = getattr(request, name)
        if name in payload and exact is not None:
            payload[name] = format(exact, "f")
    return payload


def _as_float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def orders_from_raw(raw: object) -> list[BrokerOrder]:
    """Convert the JSON array of ``GET /v2/orders``."""
    if not isinstance(raw, list):
        raise MalformedResponse(f"expected a JSON array of orders, got {type(raw).__name__}")
    return [order_from_raw(item) for item in raw]


def order_from_raw(raw: object) -> BrokerOrder:
    """Convert one order object of Alpaca's JSON to a `BrokerOrder` (``raw`` keeps the dict)."""
    data = _require_object(raw, "order")
    status = data.get("status")
    return BrokerOrder(
        id=_require_str(data, "id"),
        client_order_id=_require_str(data, "client_order_id"),
        symbol=_require_str(data, "symbol"),
        side=_parse_side(data.get("side")),
        status=OrderStatus.parse(status if isinstance(status, str) else None),
        qty=_decimal(data, "qty"),
        notional=_decimal(data, "notional"),
        filled_qty=_decimal(data, "filled_qty") or Decimal(0),
        filled_avg_price=_decimal(data, "filled_avg_price"),
        order_type=_lenient(OrderType, data.get("type") or data.get("order_type"), OrderType.MARKET),
        time_in_force=_lenient(TimeInForce, data.get("time_in_force"), TimeInForce.DAY),
        limit_price=_decimal(data, "limit_price"),
        stop_price=_decimal(data, "stop_price"),
        position_intent=_lenient(PositionIntent, data.get("position_intent"), None),
        created_at=parse_time(data.get("created_at"), "created_at"),
        updated_at=parse_time(data.get("updated_at"), "updated_at"),
        raw=dict(data),
    )


def positions_from_raw(raw: object) -> list[BrokerPosition]:
    """Convert the JSON array of ``GET /v2/positions``."""
    if not isinstance(raw, list):
        raise MalformedResponse(f"expected a JSON array of positions, got {type(raw).__name__}")
    return [position_from_raw(item) for item in raw]


def position_from_raw(raw: object) -> BrokerPosition:
    """Convert one position object to a `BrokerPosition` with signed `qty` and `qty_available`.

    Alpaca sends a short's ``qty`` negative with ``side: "short"``; both quantities are given the
    sign the side implies whatever the body does, so a short is never read as a long.
    """
    data = _require_object(raw, "position")
    qty = _decimal(data, "qty")
    if qty is None:
        raise MalformedResponse("position.qty is missing")
    # Older bodies lack qty_available; then nothing is known to be held for orders.
    available = _decimal(data, "qty_available")
    if available is None:
        available = qty
    side = data.get("side")
    sign = -1 if side == "short" or (side is None and qty < 0) else 1
    return BrokerPosition(
        symbol=_require_str(data, "symbol"),
        qty=sign * abs(qty),
        qty_available=sign * abs(available),
        avg_entry_price=_decimal(data, "avg_entry_price"),
        market_value=_decimal(data, "market_value"),
    )


def same_symbol(a: str, b: str) -> bool:
    """True when two symbols name one asset ("BTC/USD" and "btcusd" do)."""
    return a.replace("/", "").upper() == b.replace("/", "").upper()


def parse_time(value: object, name: str) -> datetime | None:
    """Parse Alpaca's RFC 3339 time (nanoseconds are truncated) into an aware UTC datetime."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedResponse(f"{name}: expected an RFC 3339 string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedResponse(f"{name}: {value!r} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        # Alpaca always sends "Z"; a bare time is read as UTC rather than as local time.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _require_object(raw: object, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise MalformedResponse(f"expected a JSON object for the {what}, got {type(raw).__name__}")
    return raw


def _require_str(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedResponse(f"{name} is missing or not a string: {value!r}")
    return value


def _parse_side(value: object) -> Side:
    # Strict on purpose: guessing a side would turn an exit into an entry.
    try:
        return Side(str(value).lower())
    except ValueError:
        raise MalformedResponse(f"side {value!r} is neither buy nor sell") from None


def _lenient(kind: type[_E], value: object, default: _D) -> _E | _D:
    """Return `kind(value)`, or `default` for a value Alpaca added later (the raw dict keeps it)."""
    try:
        return kind(value)
    except ValueError:
        return default


def _decimal(data: Mapping[str, Any], name: str) -> Decimal | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MalformedResponse(f"{name}: expected a number, got {value!r}")
    try:
        # str() first: Decimal(0.1) would carry the float's binary error into the ledger.
        number = Decimal(str(value))
    except InvalidOperation:
        raise MalformedResponse(f"{name}: {value!r} is not a number") from None
    if not number.is_finite():
        raise MalformedResponse(f"{name}: {value!r} is not a finite number")
    return number
