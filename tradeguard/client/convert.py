"""Between alpaca-py's request and response models and tradeguard's order types.

`read_order` turns any alpaca-py `OrderRequest` (market, limit, stop, stop-limit, trailing stop;
simple, bracket, OTO, OCO) into the fields the guard claims; `as_order` and `as_raw` turn a
`BrokerOrder` back into what alpaca-py would have returned (an `Order`, or Alpaca's JSON dict
when the client was built with ``raw_data=True``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from alpaca.trading.models import Order
from alpaca.trading.requests import OrderRequest as AlpacaOrderRequest

from tradeguard.client.errors import InvalidOrder
from tradeguard.domain import BrokerOrder, OrderClass, PositionIntent, Side, canonical_symbol
from tradeguard.domain.intents import MAX_INTENT_NAME_LEN, OrderSpec
from tradeguard.errors import ConfigError
from tradeguard.orders import build_spec, parse_side

__all__ = ["MAX_ALPACA_CLIENT_ORDER_ID_LEN", "DropInOrder", "as_order", "as_raw", "read_order"]

MAX_ALPACA_CLIENT_ORDER_ID_LEN = 128  # Alpaca's limit (ALPACA.md); longer ids are refused with 422
_ZERO_ID = "00000000-0000-0000-0000-000000000000"
assert MAX_ALPACA_CLIENT_ORDER_ID_LEN + len("coid:") <= MAX_INTENT_NAME_LEN


def _value(field: Any) -> Any:
    """Return an enum's value, or the field itself."""
    return getattr(field, "value", field)


@dataclass(frozen=True, slots=True)
class DropInOrder:
    """An alpaca-py order request, read: what the guard claims and sends.

    Attributes:
        symbol: Upper-case symbol; a crypto pair in its slash form ("BTCUSD" is "BTC/USD"), so
            both of Alpaca's spellings are one decision key and one ledger position.
        side: The order's side.
        spec: The order, checked; `position_intent` is the caller's (None when not set).
        client_order_id: The caller's id, or None.
        position_intent: The caller's `position_intent`, or None (the guard classifies).
    """

    symbol: str
    side: Side
    spec: OrderSpec
    client_order_id: str | None
    position_intent: PositionIntent | None


def read_order(order_data: AlpacaOrderRequest) -> DropInOrder:
    """Read an alpaca-py order request.

    Raises:
        ConfigError: The request is malformed (a message in Alpaca's terms) or is a multi-leg
            options order (``mleg``), which the guard does not claim.
    """
    fields = order_data.to_request_fields()
    order_class = _value(fields.get("order_class")) or OrderClass.SIMPLE.value
    if order_class == "mleg" or fields.get("legs"):
        raise ConfigError("multi-leg (mleg) options orders are not guarded; use TradingClient for them")
    take_profit = fields.get("take_profit") or {}
    stop_loss = fields.get("stop_loss") or {}
    intent_text = _value(fields.get("position_intent"))
    explicit = PositionIntent(intent_text) if intent_text else None
    side_text = _value(fields.get("side"))
    if side_text is None and explicit is not None:
        side_text = "buy" if explicit.value.startswith("buy") else "sell"
    side = parse_side(side_text)
    try:
        spec = _spec_of(fields, order_class, explicit, take_profit, stop_loss)
    except ConfigError as exc:
        said = _ALPACAS_REFUSALS.get(str(exc))
        if said is not None:
            raise InvalidOrder(*said) from exc  # Alpaca's 422 body, code and message (audit 75)
        words = _in_alpacas_words(str(exc))
        if words == str(exc):
            raise
        raise ConfigError(words) from exc
    coid = fields.get("client_order_id")
    if coid is not None:
        coid = str(coid)
        if len(coid) > MAX_ALPACA_CLIENT_ORDER_ID_LEN:
            raise ConfigError(
                f"client_order_id must be no more than {MAX_ALPACA_CLIENT_ORDER_ID_LEN} characters"
            )
        if not coid.isprintable() or not coid.strip():
            raise ConfigError(f"client_order_id must be printable text, got {coid!r}")
    symbol = canonical_symbol(str(fields.get("symbol") or ""))
    if not symbol:
        raise ConfigError("symbol is required")
    return DropInOrder(symbol, side, spec, coid or None, explicit)


def _spec_of(
    fields: dict[str, Any],
    order_class: str,
    explicit: PositionIntent | None,
    take_profit: dict[str, Any],
    stop_loss: dict[str, Any],
) -> OrderSpec:
    """The order's `OrderSpec`, checked (`orders.build_spec`)."""
    return build_spec(
        qty=fields.get("qty"),
        notional=fields.get("notional"),
        order_type=str(_value(fields.get("type", "market"))),
        time_in_force=str(_value(fields.get("time_in_force", "day"))),
        limit_price=fields.get("limit_price"),
        stop_price=fields.get("stop_price"),
        extended_hours=bool(fields.get("extended_hours") or False),
        position_intent=explicit,
        is_exit=False,
        order_class=order_class,
        take_profit_limit_price=take_profit.get("limit_price"),
        stop_loss_stop_price=stop_loss.get("stop_price"),
        stop_loss_limit_price=stop_loss.get("limit_price"),
        trail_price=fields.get("trail_price"),
        trail_percent=fields.get("trail_percent"),
    )


# The guard's checks of an order's shape (`orders.build_spec`) that alpaca-py's request models let
# through, with the 422 Alpaca answers the same order (the paper venue's `rules` and `classes`):
# message and code, word for word, so a bot that reads them sees what alpaca-py showed it.
_ALPACAS_REFUSALS: dict[str, tuple[str, int]] = {
    "notional orders must be market orders (Alpaca's rule)": (
        "notional orders must be market orders",
        42210000,
    ),
    **{
        f"{cls} orders need qty, not notional (Alpaca's rule)": (
            "fractional orders must be simple orders",
            42210000,
        )
        for cls in ("bracket", "oto", "oco")
    },
    "oto orders need either take_profit or stop_loss, not both": (
        "oto orders take one of take_profit or stop_loss, not both",
        40010001,
    ),
    "take_profit and stop_loss need order_class bracket, oto or oco": (
        "take_profit and stop_loss need order_class bracket, oco or oto",
        40010001,
    ),
    "give qty or notional, not both": ("only one of qty or notional is accepted", 40010001),
    "an entry needs qty or notional": ("qty or notional is required", 40010001),
}

# The guard's check of a size or price (`orders._positive`), in Alpaca's words for the same 422.
_NOT_POSITIVE = re.compile(r"^([a-z_.]+) must be positive, got ")


def _in_alpacas_words(message: str) -> str:
    """Return the message Alpaca gives for the order the guard refused with `message` (audit 56)."""
    found = _NOT_POSITIVE.match(message)
    if found is None:
        return message
    name = found.group(1)
    if name in ("trail_price", "trail_percent"):
        return "trail_price or trail_percent must be > 0"
    return f"{name} must be > 0"


def _num(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def as_raw(order: BrokerOrder) -> dict[str, Any]:
    """Return Alpaca's JSON document of `order` (what ``raw_data=True`` returns)."""
    if order.raw:
        return dict(order.raw)
    created = order.created_at.isoformat() if order.created_at else None
    return {
        "id": order.id,
        "client_order_id": order.client_order_id,
        "created_at": created,
        "updated_at": order.updated_at.isoformat() if order.updated_at else created,
        "submitted_at": created,
        "asset_id": _ZERO_ID,
        "symbol": order.symbol,
        "asset_class": "us_equity",
        "qty": _num(order.qty),
        "notional": _num(order.notional),
        "filled_qty": _num(order.filled_qty),
        "filled_avg_price": _num(order.filled_avg_price),
        "order_class": "" if order.order_class is OrderClass.SIMPLE else order.order_class.value,
        "order_type": order.order_type.value,
        "type": order.order_type.value,
        "side": order.side.value,
        "time_in_force": order.time_in_force.value,
        "limit_price": _num(order.limit_price),
        "stop_price": _num(order.stop_price),
        "trail_price": _num(order.trail_price),
        "trail_percent": _num(order.trail_percent),
        "status": order.status.value if order.status.value != "other" else "new",
        "extended_hours": False,
        "legs": [as_raw(leg) for leg in order.legs] or None,
        "replaced_by": order.replaced_by,
        "replaces": order.replaces,
        "position_intent": None if order.position_intent is None else order.position_intent.value,
    }


def as_order(order: BrokerOrder) -> Order:
    """Return the alpaca-py `Order` for `order` (from its raw Alpaca JSON when it has it)."""
    if order.raw:
        try:
            return Order(**order.raw)
        except ValueError:
            pass  # a value alpaca-py's models do not know yet: rebuild from the fields we keep
    return Order(**as_raw(BrokerOrder(**{**_fields(order), "raw": {}})))


def _fields(order: BrokerOrder) -> dict[str, Any]:
    return {name: getattr(order, name) for name in order.__slots__}
