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
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)

from tradeguard.domain import (
    BrokerOrder,
    BrokerPosition,
    OrderClass,
    OrderRequest,
    OrderStatus,
    OrderType,
    PositionIntent,
    Side,
    TimeInForce,
    same_symbol,
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
    OrderType.TRAILING_STOP: TrailingStopOrderRequest,
}

_DECIMAL_FIELDS = ("qty", "notional", "limit_price", "stop_price", "trail_price", "trail_percent")
# Leg prices: (request attribute, payload object, key in it).
_LEG_FIELDS = (
    ("take_profit_limit_price", "take_profit", "limit_price"),
    ("stop_loss_stop_price", "stop_loss", "stop_price"),
    ("stop_loss_limit_price", "stop_loss", "limit_price"),
)
_MAX_LEGS_DEPTH = 1  # Alpaca nests legs one level deep; a leg's own legs are always null

_E = TypeVar("_E", bound=enum.Enum)
_D = TypeVar("_D")


class MalformedResponse(ValueError):
    """Alpaca answered with JSON that lacks or garbles a field the guard relies on."""


def order_payload(request: OrderRequest) -> dict[str, Any]:
    """Return the JSON body of ``POST /v2/orders`` for `request`.

    Bracket, OTO and OCO orders carry ``take_profit``/``stop_loss`` objects (alpaca-py's
    `TakeProfitRequest`/`StopLossRequest`), trailing stops ``trail_price`` or ``trail_percent``
    (`TrailingStopOrderRequest`); every price leaves as an exact decimal string.

    Raises:
        ValueError: The order cannot be expressed (pydantic's ValidationError is one): alpaca-py
            refused the combination, a number is not finite, or the client_order_id is empty.
    """
    if not request.client_order_id:
        # Alpaca would invent one, and an order nobody can look up cannot be resolved or adopted.
        raise ValueError("client_order_id is required")
    exact = {name: getattr(request, name) for name in _DECIMAL_FIELDS}
    exact.update({attr: getattr(request, attr) for attr, _, _ in _LEG_FIELDS})
    for name, number in exact.items():
        if number is not None and not number.is_finite():
            raise ValueError(f"{name} must be a finite number, got {number}")
    fields: dict[str, Any] = {
        "symbol": request.symbol,
        "side": request.side.value,
        "qty": _as_float(request.qty),
        "notional": _as_float(request.notional),
        "time_in_force": request.time_in_force.value,
        "client_order_id": request.client_order_id,
        "position_intent": request.position_intent.value if request.position_intent else None,
        "extended_hours": request.extended_hours,
    }
    # Only the fields an order type takes: alpaca-py refuses any other, even when None-free.
    for name in ("limit_price", "stop_price", "trail_price", "trail_percent"):
        if exact[name] is not None:
            fields[name] = _as_float(exact[name])
    if request.order_class is not OrderClass.SIMPLE:
        fields["order_class"] = request.order_class.value
        if request.take_profit_limit_price is not None:
            fields["take_profit"] = TakeProfitRequest(limit_price=float(request.take_profit_limit_price))
        if request.stop_loss_stop_price is not None:
            fields["stop_loss"] = StopLossRequest(
                stop_price=float(request.stop_loss_stop_price),
                limit_price=_as_float(request.stop_loss_limit_price),
            )
    built = _REQUEST_MODELS[request.order_type](**fields)
    sent: dict[str, Any] = built.to_request_fields()
    payload = {key: value.value if isinstance(value, enum.Enum) else value for key, value in sent.items()}
    for name in _DECIMAL_FIELDS:
        # alpaca-py types these as float; a float can turn 0.1 into 0.1000000000000000055...
        if name in payload and exact[name] is not None:
            payload[name] = format(exact[name], "f")
    for attr, group, key in _LEG_FIELDS:
        number = exact[attr]
        if number is not None and isinstance(payload.get(group), dict) and key in payload[group]:
            payload[group][key] = format(number, "f")
    return payload


def _as_float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def orders_from_raw(raw: object) -> list[BrokerOrder]:
    """Convert the JSON array of ``GET /v2/orders``."""
    if not isinstance(raw, list):
        raise MalformedResponse(f"expected a JSON array of orders, got {type(raw).__name__}")
    return [order_from_raw(item) for item in raw]


def order_from_raw(raw: object, *, _depth: int = 0) -> BrokerOrder:
    """Convert one order object of Alpaca's JSON to a `BrokerOrder` (``raw`` keeps the dict).

    Legs (bracket, OTO, OCO, with ``?nested=true``) are converted too; a leg's own legs are
    always null at Alpaca, and deeper nesting is refused rather than followed.
    """
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
        # "" is Alpaca's simple order; a class added later (mleg) reads as simple, raw keeps it.
        order_class=_lenient(OrderClass, data.get("order_class") or "simple", OrderClass.SIMPLE),
        legs=_legs(data.get("legs"), _depth),
        trail_price=_decimal(data, "trail_price"),
        trail_percent=_decimal(data, "trail_percent"),
        replaced_by=_optional_str(data, "replaced_by"),
        replaces=_optional_str(data, "replaces"),
        raw=dict(data),
    )


def _legs(value: object, depth: int) -> tuple[BrokerOrder, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise MalformedResponse(f"legs: expected a JSON array, got {type(value).__name__}")
    if value and depth >= _MAX_LEGS_DEPTH:
        raise MalformedResponse("legs nested inside a leg")
    return tuple(order_from_raw(leg, _depth=depth + 1) for leg in value)


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


def _optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedResponse(f"{name}: expected a string, got {value!r}")
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
