"""Checking what a bot asks for, before anything is claimed: one place for argument errors.

Every check raises `ConfigError` naming the argument and the bad value, so a bad order never
reaches the claim store or the broker.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TypeVar

from tradeguard.domain import OrderType, PositionIntent, Side, TimeInForce
from tradeguard.domain.intents import OrderSpec, to_decimal
from tradeguard.errors import ConfigError

__all__ = ["Number", "build_spec", "parse_side"]

Number = Decimal | int | float | str
_E = TypeVar("_E", OrderType, TimeInForce, Side)


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


def build_spec(
    *,
    qty: Number | None = None,
    notional: Number | None = None,
    order_type: object = "market",
    time_in_force: object = "day",
    limit_price: Number | None = None,
    stop_price: Number | None = None,
    extended_hours: bool = False,
    position_intent: PositionIntent,
    is_exit: bool,
) -> OrderSpec:
    """Validate the raw order arguments a bot passed and return the OrderSpec a retry must repeat.

    Raises:
        ConfigError: A quantity is negative or zero, both or neither of qty and notional are
            given for an entry, a price is missing for its order type, or a name is unknown.
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
    limit = _positive(limit_price, "limit_price")
    stop = _positive(stop_price, "stop_price")
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) and limit is None:
        raise ConfigError(f"a {kind} order needs limit_price")
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT) and stop is None:
        raise ConfigError(f"a {kind} order needs stop_price")
    if kind in (OrderType.MARKET, OrderType.STOP) and limit is not None:
        raise ConfigError(f"a {kind} order takes no limit_price")
    if dollars is not None and kind is not OrderType.MARKET:
        raise ConfigError("notional orders must be market orders (Alpaca's rule)")
    return OrderSpec(
        qty=shares,
        notional=dollars,
        order_type=kind,
        time_in_force=tif,
        limit_price=limit,
        stop_price=stop,
        position_intent=position_intent,
        extended_hours=bool(extended_hours),
    )
