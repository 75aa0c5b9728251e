"""Matching: when open orders trade, and what a fill or a cancel does to the rest of their group.

- A market order trades at the current price; a limit order when the price crosses its limit.
- A stop (and a trailing stop) waits for its stop price, then trades as a market order; a
  stop-limit then trades as a limit order. `triggered` remembers it, so a partly filled stop
  keeps filling when the price moves back.
- A trailing stop follows the price: its high-water mark (``hwm``, the lowest price for a buy)
  moves with every price the venue sees, and its stop is ``hwm - trail`` for a sell (``hwm *
  (1 - trail_percent/100)``), the mirror for a buy.
- When a bracket's or OTO's entry fills, its legs go live: the take-profit leg goes ``new``, the
  stop-loss leg stays ``held`` until its stop is reached.
- Of a group's exits (a bracket's legs, an OCO's two orders) one fills: when it fills the others
  are canceled; when it partly fills the others shrink to what it has left (Alpaca's order
  documentation: "the stop-loss order will be adjusted to the remaining quantity").
- Canceling any order of a group cancels every open order of the group.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from tradeguard.domain import OrderClass, OrderStatus, OrderType, Side, TimeInForce
from tradeguard.paper.orders import PaperOrder
from tradeguard.paper.state import TERMINAL
from tradeguard.paper.venue import Venue

__all__ = ["cancel_group", "follow_trail", "match", "step"]

_STOPS = frozenset({OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})
_TRADES_AS_MARKET = frozenset({OrderType.MARKET, OrderType.STOP, OrderType.TRAILING_STOP})
_IMMEDIATE = frozenset({TimeInForce.IOC, TimeInForce.FOK})
_ENTRY_CLASSES = frozenset({OrderClass.BRACKET, OrderClass.OTO})


def _tick(price: Decimal) -> Decimal:
    # Alpaca's price increments: whole cents at $1 and above, 1/100 cent below.
    step = Decimal("0.01") if price >= 1 else Decimal("0.0001")
    return price.quantize(step, ROUND_HALF_EVEN)


def follow_trail(order: PaperOrder, price: Decimal) -> bool:
    """Move a trailing stop's high-water mark and stop with `price`; return whether they moved."""
    selling = order.side is Side.SELL
    mark = price if order.hwm is None else (max(order.hwm, price) if selling else min(order.hwm, price))
    if order.trail_price is not None:
        stop = mark - order.trail_price if selling else mark + order.trail_price
    else:
        assert order.trail_percent is not None  # a trailing stop has exactly one trail
        factor = order.trail_percent / 100
        stop = mark * (1 - factor) if selling else mark * (1 + factor)
    stop = _tick(stop)
    moved = (mark, stop) != (order.hwm, order.stop_price)
    order.hwm, order.stop_price = mark, stop
    return moved


def _stop_reached(order: PaperOrder, price: Decimal) -> bool:
    assert order.stop_price is not None
    return price <= order.stop_price if order.side is Side.SELL else price >= order.stop_price


def step(venue: Venue, symbol: str | None) -> list[PaperOrder]:
    """Run one matching pass over the orders that could trade; return those that changed.

    Only orders live when the pass starts take part: legs an entry's fill wakes trade from
    the next pass on, so one pass never fills an order twice. A pass as of a past time
    (`Venue.as_of`) leaves out the orders created after it: they were not there to trade.
    """
    state, as_of = venue.state, venue.as_of
    live = [
        o
        for o in state.open_orders(symbol)
        if not state.dormant(o) and (as_of is None or o.created_at <= as_of)
    ]
    changed: dict[str, PaperOrder] = {}
    for order in live:
        if order.status.is_open and match(venue, order):
            changed[order.id] = order
    return list(changed.values())


def match(venue: Venue, order: PaperOrder) -> bool:
    """Try to trade `order` at the current price; return whether it changed."""
    price = venue.price(order.symbol)
    moved = False
    if order.order_type is OrderType.TRAILING_STOP and not order.triggered and price is not None:
        moved = follow_trail(order, price)
    if order.order_type in _STOPS and not order.triggered:
        if price is None or not _stop_reached(order, price):
            return moved
        order.triggered = True
        if order.status is OrderStatus.HELD:
            order.status = OrderStatus.NEW
        order.touch(venue.now())
        moved = True
    limit = None if order.order_type in _TRADES_AS_MARKET else order.limit_price
    crosses = price is not None and (
        limit is None or (price <= limit if order.side is Side.BUY else price >= limit)
    )
    remaining = order.target_qty - order.filled_qty
    qty = remaining if venue.max_fill is None else min(remaining, venue.max_fill)
    tif = order.time_in_force
    if tif is TimeInForce.FOK and qty < remaining:
        crosses = False  # fill-or-kill: all of it now, or none of it
    if crosses:
        assert price is not None
        now = venue.now()
        venue.state.apply_fill(order, qty, price, now)
        if order.order_class is not OrderClass.SIMPLE:
            _after_fill(venue, order, now)
    if tif in _IMMEDIATE and order.status not in TERMINAL:
        cancel_group(venue, order)  # the unfilled rest of an IOC/FOK order dies at once
        return True
    return crosses or moved


def _after_fill(venue: Venue, order: PaperOrder, now: datetime) -> None:
    """Wake an entry's legs, and cancel or shrink the exits that are alternatives to `order`.

    Only orders of a class (bracket, OTO, OCO, and their legs) have either.
    """
    state = venue.state
    if order.status is OrderStatus.FILLED and order.order_class in _ENTRY_CLASSES:
        for leg in state.legs_of(order):
            if leg.status is OrderStatus.HELD and leg.order_type is OrderType.LIMIT:
                leg.status = OrderStatus.NEW
                leg.touch(now)
    group = order.group_id
    if group is None:
        return
    for other in state.group(order):
        if other is order or other.group_id != group or not other.status.is_open:
            continue
        if order.status is OrderStatus.FILLED:
            _cancel(venue, other)
        elif other.filled_qty == 0 and other.target_qty > order.remaining:
            other.target_qty = order.remaining
            other.qty = order.remaining
            other.touch(now)


def cancel_group(venue: Venue, order: PaperOrder) -> list[PaperOrder]:
    """Cancel `order` and every other open order of its group; return those canceled."""
    canceled = [o for o in venue.state.group(order) if o.status.is_open]
    if order.status.is_open and order not in canceled:
        canceled.append(order)
    for other in canceled:
        _cancel(venue, other)
    return canceled


def _cancel(venue: Venue, order: PaperOrder) -> None:
    now = venue.now()
    order.status = OrderStatus.CANCELED
    venue.state.track(order)
    order.canceled_at = now
    order.touch(now)
