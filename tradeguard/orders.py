"""Checking what a bot asks for, before anything is claimed: one place for argument errors.

Every check raises `ConfigError` naming the argument and the bad value, so a bad order never
reaches the claim store or the broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from tradeguard.domain import OrderType, PositionIntent, Side, TimeInForce
from tradeguard.domain.intents import OrderSpec, to_decimal
from tradeguard.errors import ConfigError

__all__ = ["OrderArgs", "build_spec"]

Number = Decimal | int | float | str
_E = TypeVar("_E", OrderType, TimeInForce, Side)


@dataclass(frozen=True, slots=True)
class OrderArgs:
    """The raw order arguments a bot passed to `enter` or `exit`."""

    qty: Number | None = None
    notional: Number | None = None
    order_type: str = "market"
    time_in_force: str = "day"
    limit_price: Number | None = None
    stop_price: Number | None = None
    extended_hours: bool = False


def _positive(value: Number | None, what: str) -> Decimal | None:
    if value is None:
        return None
    number = to_decimal(value, what)
    if number <= 0:
        raise ConfigError(f"{what} must be positive, got {value!r}")
    # alpaca-py's request models hold floats (12 -> 12.0); send and store "12", not "12.0".
    return Decimal(format(number.normalize(), "f"))


def _enum(kind: type[_E], value: object, what: str) -> _E:
    try:
        return kind(str(value).lower())
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise ConfigError(f"{what} must be one of {allowed}; got {value!r}") from None


def parse_side(value: object) -> Side:
    """Return the Side for "buy"/"sell" (any case), or raise ConfigError."""
    return _enum(Side, value, "side")


def build_spec(args: OrderArgs, *, position_intent: PositionIntent, is_exit: bool) -> OrderSpec:
    """Validate the arguments and return the OrderSpec a retry must repeat.

    Raises:
        ConfigError: A quantity is negative or zero, both or neither of qty and notional are
            given for an entry, a price is missing for its order type, or a name is unknown.
    """
    qty = _positive(args.qty, "qty")
    notional = _positive(args.notional, "notional")
    if qty is not None and notional is not None:
        raise ConfigError("give qty or notional, not both")
    if not is_exit and qty is None and notional is None:
        raise ConfigError("an entry needs qty or notional")
    if is_exit and notional is not None:
        raise ConfigError("an exit is sized in shares (qty), not notional")
    order_type = _enum(OrderType, args.order_type, "order_type")
    tif = _enum(TimeInForce, args.time_in_force, "time_in_force")
    limit_price = _positive(args.limit_price, "limit_price")
    stop_price = _positive(args.stop_price, "stop_price")
    if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and limit_price is None:
        raise ConfigError(f"a {order_type} order needs limit_price")
    if order_type in (OrderType.STOP, OrderType.STOP_LIMIT) and stop_price is None:
        raise ConfigError(f"a {order_type} order needs stop_price")
    if order_type in (OrderType.MARKET, OrderType.STOP) and limit_price is not None:
        raise ConfigError(f"a {order_type} order takes no limit_price")
    if notional is not None and order_type is not OrderType.MARKET:
        raise ConfigError("notional orders must be market orders (Alpaca's rule)")
    return OrderSpec(
        qty=qty,
        notional=notional,
        order_type=order_type,
        time_in_force=tif,
        limit_price=limit_price,
        stop_price=stop_price,
        position_intent=position_intent,
        extended_hours=bool(args.extended_hours),
    )
