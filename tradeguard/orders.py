"""Checking what a bot asks for, before anything is claimed: one place for argument errors.

Every check raises `ConfigError` naming the argument and the bad value, so a bad order never
reaches the claim store or the broker.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TypeVar

from tradeguard.domain import OrderClass, OrderType, PositionIntent, Side, TimeInForce
from tradeguard.domain.intents import OrderSpec, to_decimal
from tradeguard.errors import ConfigError

__all__ = ["Number", "build_spec", "parse_side"]

Number = Decimal | int | float | str
_E = TypeVar("_E", OrderType, TimeInForce, Side, OrderClass)


def _positive(value: Number | None, what: str) -> Decimal | None:
    if value is None:
        return None
    number = to_decimal(value, what)
    if number <= 0:
        raise ConfigError(f"{what} must be positive, got {value!r}")
    # alpaca-py's request models hold floats (12 -> 12.0); send and store "12", not "12.0".
    return Decimal(format(number.normalize(), "f"))


def _enum(kind: type[_E], value: object, what: str) -> _E:
    if isinstance(value, str):
        # The common case, a member or its lower-case value: one dict lookup, no Enum call.
        member = kind._value2member_map_.get(value)
        if member is not None:
            return member  # type: ignore[return-value]
    try:
        return kind(str(value).lower())
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise ConfigError(f"{what} must be one of {allowed}; got {value!r}") from None


def parse_side(value: object) -> Side:
    """Return the Side for "buy"/"sell" (any case), or raise ConfigError."""
    return _enum(Side, value, "side")


def build_spec(
    *,
    qty: Number | None = None,
    notional: Number | None = None,
    order_type: object = "market",
    time_in_force: object = "day",
    limit_price: Number | None = None,
    stop_price: Number | None = None,
    extended_hours: bool = False,
    position_intent: PositionIntent | None,
    is_exit: bool,
    order_class: object = OrderClass.SIMPLE,
    take_profit_limit_price: Number | None = None,
    stop_loss_stop_price: Number | None = None,
    stop_loss_limit_price: Number | None = None,
    trail_price: Number | None = None,
    trail_percent: Number | None = None,
) -> OrderSpec:
    """Validate the raw order arguments a bot passed and return the OrderSpec a retry must repeat.

    Raises:
        ConfigError: A quantity is negative or zero, both or neither of qty and notional are
            given for an entry, a price is missing for its order type, a trailing stop lacks
            its trail, an order class lacks its legs, or a name is unknown.
    """
    shares = _positive(qty, "qty")
    dollars = _positive(notional, "notional")
    if shares is not None and dollars is not None:
        raise ConfigError("give qty or notional, not both")
    if not is_exit and shares is None and dollars is None:
        raise ConfigError("an entry needs qty or notional")
    if is_exit and dollars is not None:
        raise ConfigError("an exit is sized in shares (qty), not notional")
    kind = _enum(OrderType, order_type, "order_type")
    tif = _enum(TimeInForce, time_in_force, "time_in_force")
    legs = _legs(
        _enum(OrderClass, order_class or "simple", "order_class"),
        _positive(take_profit_limit_price, "take_profit.limit_price"),
        _positive(stop_loss_stop_price, "stop_loss.stop_price"),
        _positive(stop_loss_limit_price, "stop_loss.limit_price"),
    )
    limit = _positive(limit_price, "limit_price")
    if legs[0] is OrderClass.OCO and limit is None:
        limit = legs[1]  # an OCO's limit order is its take-profit leg (Alpaca takes either form)
    stop = _positive(stop_price, "stop_price")
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) and limit is None:
        raise ConfigError(f"a {kind} order needs limit_price")
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT) and stop is None:
        raise ConfigError(f"a {kind} order needs stop_price")
    if kind in (OrderType.MARKET, OrderType.STOP, OrderType.TRAILING_STOP) and limit is not None:
        raise ConfigError(f"a {kind} order takes no limit_price")
    if kind in (OrderType.MARKET, OrderType.LIMIT, OrderType.TRAILING_STOP) and stop is not None:
        raise ConfigError(f"a {kind} order takes no stop_price")
    if dollars is not None and kind is not OrderType.MARKET:
        raise ConfigError("notional orders must be market orders (Alpaca's rule)")
    trail = _trail(kind, _positive(trail_price, "trail_price"), _positive(trail_percent, "trail_percent"))
    if legs[0] is not OrderClass.SIMPLE and dollars is not None:
        raise ConfigError(f"{legs[0]} orders need qty, not notional (Alpaca's rule)")
    return OrderSpec(
        qty=shares,
        notional=dollars,
        order_type=kind,
        time_in_force=tif,
        limit_price=limit,
        stop_price=stop,
        position_intent=position_intent,
        extended_hours=bool(extended_hours),
        order_class=legs[0],
        take_profit_limit_price=legs[1],
        stop_loss_stop_price=legs[2],
        stop_loss_limit_price=legs[3],
        trail_price=trail[0],
        trail_percent=trail[1],
    )


def _trail(
    kind: OrderType, price: Decimal | None, percent: Decimal | None
) -> tuple[Decimal | None, Decimal | None]:
    """Check a trailing stop's trail: exactly one of trail_price and trail_percent, and only there."""
    if kind is not OrderType.TRAILING_STOP:
        if price is not None or percent is not None:
            raise ConfigError(f"a {kind} order takes no trail_price or trail_percent")
        return None, None
    if (price is None) == (percent is None):
        raise ConfigError("a trailing_stop order needs exactly one of trail_price and trail_percent")
    return price, percent


_Legs = tuple[OrderClass, Decimal | None, Decimal | None, Decimal | None]


def _legs(
    order_class: OrderClass, take_profit: Decimal | None, stop: Decimal | None, stop_limit: Decimal | None
) -> _Legs:
    """Check that an order class has the legs Alpaca requires of it, and a simple order none."""
    if stop_limit is not None and stop is None:
        raise ConfigError("stop_loss.limit_price needs stop_loss.stop_price")
    if order_class is OrderClass.SIMPLE:
        if take_profit is not None or stop is not None:
            raise ConfigError("take_profit and stop_loss need order_class bracket, oto or oco")
    elif order_class in (OrderClass.BRACKET, OrderClass.OCO):
        if take_profit is None or stop is None:
            raise ConfigError(f"{order_class} orders need both take_profit and stop_loss")
    elif (take_profit is None) == (stop is None):
        raise ConfigError("oto orders need either take_profit or stop_loss, not both")
    return order_class, take_profit, stop, stop_limit
