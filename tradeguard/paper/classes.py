"""Order classes: Alpaca's checks of bracket, OTO and OCO orders, and the legs they make.

- bracket: an entry, a take-profit limit leg and a stop-loss stop (or stop-limit) leg.
- OTO: an entry and one of those legs.
- OCO: an exit limit order (the take-profit) with a stop-loss leg, on a position already held.

Legs are orders of their own (own ids, uuid4 client_order_ids, the parent's order class) and
start `held`. A bracket's or OTO's legs wait for their entry to fill; then the take-profit leg
goes `new` and the stop-loss leg stays `held` until its stop price is reached (Alpaca's
behaviour as its staff describe it on the forum). See `matching` for what happens next.

Messages: "bracket orders must be entry orders", "oco orders must be limit orders", "oco orders
require take_profit.limit_price", the ``base_price`` checks (with ``base_price`` in the body) and
"take_profit.limit_price must be < stop_loss.stop_price" are Alpaca's, seen in its answers; the
others follow their pattern and are marked "wording assumed".
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from tradeguard.domain import OrderClass, OrderRequest, OrderStatus, OrderType, Side, TimeInForce
from tradeguard.errors import OrderRejected
from tradeguard.paper.orders import PaperOrder, fmt
from tradeguard.paper.rules import check_price, closing_intent, unprocessable

__all__ = ["base_price", "check_order_class", "make_legs", "oco_limit"]

_CENT = Decimal("0.01")
_DAY_OR_GTC = frozenset({TimeInForce.DAY, TimeInForce.GTC})


def oco_limit(request: OrderRequest) -> Decimal | None:
    """Return the limit price an OCO's exit order takes: its take-profit's."""
    return request.take_profit_limit_price


def base_price(request: OrderRequest, price: Decimal | None) -> Decimal | None:
    """Return the price Alpaca holds the legs against: the entry's expected fill price.

    A limit (or stop-limit) entry is expected at its limit, a stop entry at its stop, a market
    entry (and an OCO, whose position is held already) at the current price.
    """
    if request.order_class is OrderClass.OCO or request.order_type is OrderType.MARKET:
        return price
    if request.order_type is OrderType.STOP:
        return request.stop_price
    return request.limit_price


def check_order_class(request: OrderRequest, *, closing: bool, base: Decimal | None) -> None:
    """Refuse a bracket, OTO or OCO order Alpaca would refuse (and legs on a simple order).

    Args:
        request: The order.
        closing: Whether it reduces a position (an OCO must, a bracket or OTO must not).
        base: The price the legs are held against (`base_price`).
    """
    cls = request.order_class
    profit, stop, stop_limit = (
        request.take_profit_limit_price,
        request.stop_loss_stop_price,
        request.stop_loss_limit_price,
    )
    if cls is OrderClass.SIMPLE:
        if profit is not None or stop is not None or stop_limit is not None:  # wording assumed
            raise unprocessable("take_profit and stop_loss need order_class bracket, oco or oto")
        return
    name = cls.value
    if request.time_in_force not in _DAY_OR_GTC:  # Alpaca: day or gtc only; wording assumed
        raise unprocessable(f"{name} orders must be DAY or GTC orders", 42210000)
    if cls is OrderClass.OCO and request.order_type is not OrderType.LIMIT:
        raise unprocessable("oco orders must be limit orders")
    if request.order_type is OrderType.TRAILING_STOP:  # wording assumed
        raise unprocessable(f"{name} orders cannot be trailing_stop orders", 42210000)
    _check_legs_given(name, cls, profit, stop, stop_limit)
    for value, field in ((profit, "take_profit.limit_price"), (stop, "stop_loss.stop_price")):
        if value is not None:
            check_price(value, field)
    if stop_limit is not None:
        check_price(stop_limit, "stop_loss.limit_price")
    if cls is OrderClass.OCO:
        if request.limit_price is not None and request.limit_price != profit:  # wording assumed
            raise unprocessable("oco orders take their limit price from take_profit.limit_price")
        if not closing:  # wording assumed, after Alpaca's "bracket orders must be entry orders"
            raise unprocessable("oco orders must be exit orders", 42210000)
    elif closing:
        raise unprocessable(f"{name} orders must be entry orders", 42210000)
    exit_side = request.side if cls is OrderClass.OCO else request.side.opposite
    _check_prices(exit_side, profit, stop, base, request.symbol)


def _check_legs_given(
    name: str, cls: OrderClass, profit: Decimal | None, stop: Decimal | None, stop_limit: Decimal | None
) -> None:
    if stop is None and stop_limit is not None:
        raise unprocessable(f"{name} orders require stop_loss.stop_price")
    if cls is OrderClass.OTO:
        # Alpaca: an OTO carries exactly one exit; wording assumed.
        if profit is None and stop is None:
            raise unprocessable("oto orders require take_profit or stop_loss")
        if profit is not None and stop is not None:
            raise unprocessable("oto orders take one of take_profit or stop_loss, not both")
        return
    if profit is None:
        raise unprocessable(f"{name} orders require take_profit.limit_price")
    if stop is None:
        raise unprocessable(f"{name} orders require stop_loss.stop_price")


def _check_prices(
    exit_side: Side, profit: Decimal | None, stop: Decimal | None, base: Decimal | None, symbol: str
) -> None:
    """Hold the legs against each other and against the base price, as Alpaca does."""
    selling = exit_side is Side.SELL
    if profit is not None and stop is not None and (profit <= stop if selling else profit >= stop):
        relation = ">" if selling else "<"
        raise unprocessable(f"take_profit.limit_price must be {relation} stop_loss.stop_price", 42210000)
    if base is None:  # the paper venue's own limit: Alpaca always has a quote
        raise unprocessable(f"no price for {symbol} to hold the legs against", 42210000)
    if profit is not None and (profit < base + _CENT if selling else profit > base - _CENT):
        bound = "take_profit.limit_price must be " + (
            ">= base_price + 0.01" if selling else "<= base_price - 0.01"
        )
        raise _base_refusal(bound, base)
    if stop is not None and (stop > base - _CENT if selling else stop < base + _CENT):
        bound = "stop_loss.stop_price must be " + (
            "<= base_price - 0.01" if selling else ">= base_price + 0.01"
        )
        raise _base_refusal(bound, base)


def _base_refusal(message: str, base: Decimal) -> OrderRejected:
    return unprocessable(message, 42210000, base_price=fmt(base) or "0")


def make_legs(parent: PaperOrder, request: OrderRequest) -> list[PaperOrder]:
    """Build the legs of `parent` (already built from `request`) and record them on it.

    A bracket's or OTO's legs trade the opposite side of the entry; an OCO's stop-loss leg
    trades the side of the OCO's own limit order. Every leg starts `held`.
    """
    if request.order_class is OrderClass.SIMPLE:
        return []
    side = parent.side if request.order_class is OrderClass.OCO else parent.side.opposite
    legs: list[PaperOrder] = []
    if request.order_class is not OrderClass.OCO and request.take_profit_limit_price is not None:
        legs.append(_leg(parent, side, OrderType.LIMIT, limit=request.take_profit_limit_price))
    if request.stop_loss_stop_price is not None:
        kind = OrderType.STOP if request.stop_loss_limit_price is None else OrderType.STOP_LIMIT
        legs.append(
            _leg(parent, side, kind, stop=request.stop_loss_stop_price, limit=request.stop_loss_limit_price)
        )
    parent.leg_ids = [leg.id for leg in legs]
    return legs


def _leg(
    parent: PaperOrder,
    side: Side,
    kind: OrderType,
    *,
    limit: Decimal | None = None,
    stop: Decimal | None = None,
) -> PaperOrder:
    return PaperOrder(
        id=str(uuid.uuid4()),
        client_order_id=str(uuid.uuid4()),  # Alpaca names legs itself, with uuids
        symbol=parent.symbol,
        side=side,
        order_type=kind,
        time_in_force=parent.time_in_force,
        qty=parent.qty,
        notional=None,
        target_qty=parent.target_qty,
        created_at=parent.created_at,
        updated_at=parent.updated_at,
        limit_price=limit,
        stop_price=stop,
        position_intent=closing_intent(side, True),
        status=OrderStatus.HELD,
        order_class=parent.order_class,
        parent_id=parent.id,
    )
