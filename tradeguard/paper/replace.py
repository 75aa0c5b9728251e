"""Replace an open order (``PATCH /v2/orders/{id}``) with Alpaca's semantics.

The old order becomes ``replaced`` and names its successor in ``replaced_by``; a new order (new
id, ``replaces`` = the old id, the request's client_order_id or a new uuid) carries the old
values with the request's changes. Legs keep their group: a replaced entry's legs follow the new
entry, a replaced leg takes its predecessor's place among its parent's legs.

A partly filled order is replaced with the FIX convention Alpaca follows: ``qty`` is the chain's
total, fills included (Alpaca refuses a qty not above what filled: "unable to replace order, qty
must be > filled_qty", seen), and the new order reports the chain's fills so far as its own
``filled_qty`` (Alpaca's documentation does not say; this keeps ``qty - filled_qty`` what is
left to trade and lets a claim that follows ``replaced_by`` keep counting its fills).

Refusals seen in Alpaca's answers: "unable to replace order, order is not open", "... qty must
be > filled_qty", 403 "order parameters are not changed", "limit orders must not have
stop_price". Their codes, and the other messages, are assumed (marked).
"""

from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal

from tradeguard.domain import (
    OrderClass,
    OrderRequest,
    OrderStatus,
    OrderType,
    ReplaceRequest,
    TimeInForce,
)
from tradeguard.paper.accept import check_buying_power, check_client_id, opening_cost
from tradeguard.paper.matching import follow_trail
from tradeguard.paper.orders import PaperOrder
from tradeguard.paper.rules import (
    CRYPTO_TIFS,
    QTY_STEP,
    check_auction_order,
    check_position,
    check_price,
    check_stop_against_market,
    check_wash_trade,
    closes,
    rejection,
    unprocessable,
)
from tradeguard.paper.venue import Venue

__all__ = ["replace_order"]

_TAKES = {
    "limit_price": frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT}),
    "stop_price": frozenset({OrderType.STOP, OrderType.STOP_LIMIT}),
    "trail": frozenset({OrderType.TRAILING_STOP}),
}
_DAY_OR_GTC = frozenset({TimeInForce.DAY, TimeInForce.GTC})


def replace_order(venue: Venue, old: PaperOrder, request: ReplaceRequest) -> PaperOrder:
    """Check `request` against `old` as Alpaca does, then replace `old`; return the new order.

    Raises:
        OrderRejected: With Alpaca's status, code and body; nothing changed.
    """
    _check_replaceable(old, request)
    asset = venue.asset(old.symbol)
    crypto = asset is not None and asset.is_crypto
    qty = _new_qty(old, request.qty, crypto=crypto)
    limit = (
        old.limit_price
        if request.limit_price is None
        else check_price(request.limit_price, "limit_price", crypto=crypto)
    )
    stop = (
        old.stop_price
        if request.stop_price is None
        else check_price(request.stop_price, "stop_price", crypto=crypto)
    )
    trail = _new_trail(old, request.trail)
    tif = request.time_in_force or old.time_in_force
    if crypto and tif not in CRYPTO_TIFS:
        raise unprocessable("invalid crypto time_in_force", 42210000)
    if tif is not old.time_in_force:
        kind = old.order_type
        check_auction_order(OrderRequest(old.symbol, old.side, "", order_type=kind, time_in_force=tif))
    if tif not in _DAY_OR_GTC and (
        old.order_class is not OrderClass.SIMPLE or old.order_type is OrderType.TRAILING_STOP
    ):
        raise unprocessable(f"invalid time_in_force {tif.value} for this order", 42210000)  # wording assumed
    if (qty, limit, stop, trail, tif) == (
        old.qty,
        old.limit_price,
        old.stop_price,
        _trail_of(old),
        old.time_in_force,
    ):
        raise rejection(403, 40310000, "order parameters are not changed")
    client_id = request.client_order_id or str(uuid.uuid4())
    check_client_id(venue, client_id)
    _check_account(venue, old, qty, limit, stop)
    return _swap(venue, old, client_id=client_id, qty=qty, limit=limit, stop=stop, trail=trail, tif=tif)


def _check_replaceable(old: PaperOrder, request: ReplaceRequest) -> None:
    if old.status in {OrderStatus.ACCEPTED, OrderStatus.PENDING_NEW}:
        raise unprocessable("unable to replace order, order isn't sent to exchange yet")
    if not old.status.is_open or old.status in {OrderStatus.PENDING_CANCEL, OrderStatus.PENDING_REPLACE}:
        raise unprocessable("unable to replace order, order is not open")
    if old.order_class is OrderClass.OTO:  # Alpaca: "replacing an OTO is not yet supported"
        raise unprocessable("oto orders cannot be replaced", 42210000)  # wording assumed
    if old.notional is not None:  # Alpaca: notional orders cannot be replaced; wording assumed
        raise unprocessable("notional orders cannot be replaced", 42210000)
    given = {"limit_price": request.limit_price, "stop_price": request.stop_price, "trail": request.trail}
    for name, value in given.items():
        if value is not None and old.order_type not in _TAKES[name]:
            raise unprocessable(f"{old.order_type.value} orders must not have {name}", 42210000)
    if old.order_class is not OrderClass.SIMPLE and (request.qty is not None or request.time_in_force):
        # Alpaca documents replacing a bracket's prices only; wording assumed.
        raise unprocessable(
            f"only limit_price and stop_price of {old.order_class.value} orders can be replaced"
        )


def _new_qty(old: PaperOrder, qty: Decimal | None, *, crypto: bool) -> Decimal | None:
    if qty is None:
        return old.qty
    if not qty.is_finite() or qty <= 0:
        raise unprocessable("qty must be > 0")
    if qty != qty.quantize(QTY_STEP):
        raise unprocessable(f"qty must be given in steps of {QTY_STEP:f}")
    whole = qty == qty.to_integral_value() and old.target_qty == old.target_qty.to_integral_value()
    # Alpaca: a fractional qty cannot change; wording assumed. An equity rule: every crypto
    # order is fractional (assumed replaceable like a whole-share one).
    if qty != old.qty and not whole and not crypto:
        raise unprocessable("the qty of a fractional order cannot be replaced", 42210000)
    if qty <= old.filled_qty:
        raise unprocessable("unable to replace order, qty must be > filled_qty")
    return qty


def _trail_of(old: PaperOrder) -> Decimal | None:
    return old.trail_price if old.trail_price is not None else old.trail_percent


def _new_trail(old: PaperOrder, trail: Decimal | None) -> Decimal | None:
    if trail is None:
        return _trail_of(old)
    if not trail.is_finite() or trail <= 0:
        raise unprocessable("trail must be > 0")  # wording assumed
    if old.trail_percent is not None and trail >= 100:
        raise unprocessable("trail_percent must be < 100")
    return trail


def _check_account(
    venue: Venue, old: PaperOrder, qty: Decimal | None, limit: Decimal | None, stop: Decimal | None
) -> None:
    """Hold the new order to the account's rules as if the old one were gone."""
    state = venue.state
    left = (qty if qty is not None else old.target_qty) - old.filled_qty
    price = venue.price(old.symbol)
    if old.order_type in {OrderType.STOP, OrderType.STOP_LIMIT} and not old.triggered and not old.is_leg:
        assert stop is not None
        if stop != old.stop_price:
            check_stop_against_market(old.side, stop, price)
    if old.is_leg or old.order_class is OrderClass.OCO:
        return  # only prices of exits in a group change: what they hold stays the same
    closing = closes(state, old.side, old.symbol)
    probe = OrderRequest(
        old.symbol, old.side, old.client_order_id, qty=left, position_intent=old.position_intent
    )
    # The asset's flags were checked when the order was placed; shorting is re-checked.
    asset = venue.asset(old.symbol)
    assert asset is not None  # the account trades it already
    check_position(
        state, probe, old.symbol, left, allow_short=venue.allow_short, asset=asset, excluding=old.id
    )
    if old.order_class is OrderClass.SIMPLE and old.order_type is not OrderType.TRAILING_STOP:
        check_wash_trade(state, old.side, old.symbol, limit, ignore=frozenset({old.id}))
    if not closing:  # a buy or a short sale opening a position: checked as a new one is
        check_buying_power(venue, opening_cost(old.side, left, limit, stop, price), excluding=old.id)


def _swap(
    venue: Venue,
    old: PaperOrder,
    *,
    client_id: str,
    qty: Decimal | None,
    limit: Decimal | None,
    stop: Decimal | None,
    trail: Decimal | None,
    tif: TimeInForce,
) -> PaperOrder:
    state, now = venue.state, venue.now()
    status: OrderStatus = old.status if old.status is OrderStatus.HELD else OrderStatus.NEW
    if old.filled_qty > 0:
        status = OrderStatus.PARTIALLY_FILLED
    new = dataclasses.replace(
        old,
        id=str(uuid.uuid4()),
        client_order_id=client_id,
        qty=qty,
        target_qty=qty if qty is not None else old.target_qty,
        limit_price=limit,
        stop_price=stop,
        time_in_force=tif,
        status=status,
        created_at=now,
        updated_at=now,
        filled_at=None,
        canceled_at=None,
        leg_ids=list(old.leg_ids),
        trail_price=trail if old.trail_price is not None else None,
        trail_percent=trail if old.trail_percent is not None else None,
        hwm=None,
        replaces=old.id,
        replaced_by=None,
        replaced_at=None,
    )
    if new.order_type is OrderType.TRAILING_STOP:
        new.stop_price = None
        price = venue.price(new.symbol)
        if price is not None:
            follow_trail(new, price)  # a new order: its high-water mark starts at today's price
    old.status, old.replaced_by, old.replaced_at = OrderStatus.REPLACED, new.id, now
    old.touch(now)
    state.track(old)
    for leg in state.legs_of(old):
        leg.parent_id = new.id
    parent = state.parent_of(old)
    if parent is not None:
        parent.leg_ids = [new.id if i == old.id else i for i in parent.leg_ids]
    state.add(new)
    return new
