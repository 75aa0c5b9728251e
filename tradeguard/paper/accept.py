"""Accept one new order: every Alpaca check, in Alpaca's order, then the order and its legs.

Every check runs before the first change to the account, so a refusal leaves nothing behind.
"""

from __future__ import annotations

import os
from decimal import ROUND_DOWN, Decimal

from tradeguard.domain import OrderClass, OrderRequest, OrderType, Side, canonical_symbol
from tradeguard.paper.classes import base_price, check_order_class, make_legs, oco_limit
from tradeguard.paper.matching import follow_trail
from tradeguard.paper.orders import PaperOrder, fmt
from tradeguard.paper.rules import (
    MAX_AMOUNT,
    QTY_STEP,
    check_asset,
    check_auction_order,
    check_crypto_cost,
    check_crypto_order,
    check_extended_hours,
    check_fractional,
    check_position,
    check_stop_against_market,
    check_type_fields,
    check_wash_trade,
    closes,
    order_qty,
    rejection,
    unprocessable,
)
from tradeguard.paper.venue import Venue, short_sale_price

__all__ = [
    "MAX_CLIENT_ID_LEN",
    "accept",
    "check_buying_power",
    "check_client_id",
    "opening_cost",
    "venue_symbol",
]

MAX_CLIENT_ID_LEN = 128
_STOPS = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})
_LIMITS = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_WASH_EXEMPT_CLASSES = frozenset({OrderClass.BRACKET, OrderClass.OCO})
_ZERO = Decimal(0)


def new_uuid() -> str:
    """Return a random (version 4) UUID's text, as `str(uuid.uuid4())` does at a tenth of its cost.

    Ids are made 256 at a time from one `os.urandom` read (a system call per id was a tenth of a
    paper submit); a forked child drops the ids it inherited, so no two processes share one.
    """
    try:
        return _ids.pop()
    except IndexError:
        h = os.urandom(16 * _IDS_PER_READ).hex()
        # Version nibble 4; variant bits 10 in the first nibble of the fourth group.
        _ids.extend(
            f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
            f"{'89ab'[int(h[i + 16], 16) & 3]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
            for i in range(0, len(h), 32)
        )
        return _ids.pop()


_IDS_PER_READ = 256
_ids: list[str] = []  # list.pop and list.extend are atomic: threads never share an id
if hasattr(os, "register_at_fork"):  # POSIX only: where there is no fork there is nothing to drop
    os.register_at_fork(after_in_child=_ids.clear)


def venue_symbol(symbol: str) -> str:
    """Return the account's name of `symbol`: upper case; a crypto pair with its slash.

    Alpaca takes a pair as "BTC/USD" or "BTCUSD" and answers with "BTC/USD" either way, so
    both spellings are one position here (`canonical_symbol`, which skips the pair test for
    the commonest orders: only a symbol with a slash or of six characters or more can be one).
    """
    return canonical_symbol(symbol)


def check_client_id(venue: Venue, client_id: str) -> None:
    """Refuse a client_order_id that is too long or was ever used (unique forever at Alpaca)."""
    if len(client_id) > MAX_CLIENT_ID_LEN:
        raise unprocessable(f"client_order_id must be no more than {MAX_CLIENT_ID_LEN} characters")
    if client_id in venue.state.by_client_id:
        # Unique forever: a canceled or filled order still owns its id.
        raise unprocessable("client_order_id must be unique")


def check_buying_power(venue: Venue, cost: Decimal, excluding: str | None = None) -> None:
    """Refuse an opening order whose estimated cost exceeds the buying power (Alpaca's 403 and fields).

    Alpaca "applies a buying power check to both buy long and sell short positions" (its
    buying-power docs): a short sale's value is checked as a buy's cost is.
    """
    power = venue.buying_power(excluding)
    if cost > power:
        raise rejection(
            403,
            40310000,
            "insufficient buying power",
            buying_power=fmt(power) or "0",
            cost_basis=fmt(cost) or "0",
        )


def opening_cost(
    side: Side, qty: Decimal, limit: Decimal | None, stop: Decimal | None, price: Decimal | None
) -> Decimal:
    """Return the value Alpaca checks an opening order of `qty` against the buying power.

    A buy at its limit (else its stop, else the market); a short sale at the larger of its
    limit and 3% above the market (`venue.short_sale_price`), at its limit or stop when the
    venue has no price.
    """
    if side is Side.BUY:
        return qty * (limit or stop or price or _ZERO)
    if price is None:
        return qty * (limit or stop or _ZERO)
    return qty * short_sale_price(limit, price)


def accept(venue: Venue, request: OrderRequest) -> PaperOrder:
    """Validate `request` as Alpaca does; record and return the new open order (legs included).

    Raises:
        OrderRejected: With Alpaca's status, code and body; nothing was recorded.
    """
    if (
        request.order_type is OrderType.MARKET
        and request.qty is not None
        and request.notional is None
        and request.order_class is OrderClass.SIMPLE
        and request.limit_price is None
        and request.stop_price is None
        and request.trail_price is None
        and request.trail_percent is None
        and not request.extended_hours
        and request.take_profit_limit_price is None
        and request.stop_loss_stop_price is None
        and request.stop_loss_limit_price is None
    ):
        return _accept_plain_market(venue, request)
    return _accept_any(venue, request)


def _accept_any(venue: Venue, request: OrderRequest) -> PaperOrder:
    """`accept` for any order: every check, in Alpaca's order."""
    state = venue.state
    symbol = venue_symbol(request.symbol)
    if not symbol:
        raise unprocessable("symbol is required")
    asset = check_asset(venue.asset(symbol), symbol)
    crypto = asset.is_crypto
    if crypto:
        check_crypto_order(request)
    check_type_fields(request, crypto=crypto)
    check_auction_order(request)
    if request.extended_hours:
        check_extended_hours(request)
    price = venue.price(symbol)
    client_id = request.client_order_id or new_uuid()
    if len(client_id) > MAX_CLIENT_ID_LEN:
        raise unprocessable(f"client_order_id must be no more than {MAX_CLIENT_ID_LEN} characters")
    qty = order_qty(request, price)
    check_client_id(venue, client_id)
    side, kind, order_class = request.side, request.order_type, request.order_class
    closing = closes(state, side, symbol)
    if (
        order_class is not OrderClass.SIMPLE
        or request.take_profit_limit_price is not None
        or (request.stop_loss_stop_price is not None or request.stop_loss_limit_price is not None)
    ):
        check_order_class(request, closing=closing, base=base_price(request, price))
    check_position(state, request, symbol, qty, allow_short=venue.allow_short, asset=asset)
    if crypto:
        check_crypto_cost(symbol, side, qty, _limit(request) or price)
    else:  # every crypto order may be fractional (gtc or ioc, any type it takes)
        check_fractional(request, qty, asset, opens_short=side is Side.SELL and not closing)
    if kind in _STOPS:
        assert request.stop_price is not None  # check_type_fields
        check_stop_against_market(side, request.stop_price, price)
    limit = oco_limit(request) if order_class is OrderClass.OCO else _limit(request)
    # Bracket, OCO and trailing stop orders are exempt from wash-trade protection (Alpaca's
    # user-protection page: they are the "complex orders" its refusal tells you to use).
    # With no open order of the symbol there is nothing to trade against: no call needed.
    if (
        order_class not in _WASH_EXEMPT_CLASSES
        and kind is not OrderType.TRAILING_STOP
        and symbol in state.open_by_symbol
    ):
        check_wash_trade(state, side, symbol, limit)
    if not closing:  # a long or a short opened: "a buying power check to both" (Alpaca's docs)
        check_buying_power(venue, opening_cost(side, qty, limit, request.stop_price, price))
    order = _order(venue, request, symbol=symbol, client_id=client_id, qty=qty, limit=limit)
    legs = () if order_class is OrderClass.SIMPLE else make_legs(order, request)
    if kind is OrderType.TRAILING_STOP and price is not None:
        follow_trail(order, price)
    state.add(order)
    for leg in legs:
        state.add(leg)
    return order


def _accept_plain_market(venue: Venue, request: OrderRequest) -> PaperOrder:
    """`accept` for a simple market order of `qty` shares with no prices, trail or extended hours.

    The commonest order (every replayed attempt, most bots' every order), so the checks that
    cannot refuse it are left out and the rest are spelled out in `accept`'s order; whenever one
    could refuse, the check itself runs and says why, so answers are `accept`'s to the letter.
    """
    state = venue.state
    symbol = venue_symbol(request.symbol)
    if not symbol:
        raise unprocessable("symbol is required")
    asset = venue.asset(symbol)
    if asset is None or not asset.tradable or not asset.active:
        check_asset(asset, symbol)  # raises
    assert asset is not None
    if asset.is_crypto:
        return _accept_any(venue, request)  # the crypto rules, not the equities' shortcuts
    # `check_type_fields` and `check_extended_hours` pass every order this path takes.
    pinned = state.set_prices.get(symbol)
    price = pinned if pinned is not None else venue.price(symbol)
    client_id = request.client_order_id or new_uuid()
    if len(client_id) > MAX_CLIENT_ID_LEN:
        raise unprocessable(f"client_order_id must be no more than {MAX_CLIENT_ID_LEN} characters")
    qty = request.qty
    assert qty is not None
    if not qty.is_finite() or qty <= 0 or qty > MAX_AMOUNT or qty != qty.quantize(QTY_STEP, ROUND_DOWN):
        order_qty(request, price)  # raises what is wrong, in its own order
    if client_id in state.by_client_id:
        check_client_id(venue, client_id)  # raises
    side = request.side
    # `closes` is what `check_position` works out and returns; nothing of a class to check.
    closing = check_position(state, request, symbol, qty, allow_short=venue.allow_short, asset=asset)
    if qty != qty.to_integral_value():
        check_fractional(request, qty, asset, opens_short=side is Side.SELL and not closing)
    if symbol in state.open_by_symbol:  # no stop to check; a market order has no limit
        check_wash_trade(state, side, symbol, None)
    if not closing:  # opening a long or a short
        check_buying_power(venue, opening_cost(side, qty, None, None, price))
    now = venue.clock.now()
    # `_order`'s fields for this request (no limit, stop or trail; a simple class by default).
    order = PaperOrder(
        new_uuid(), client_id, symbol, side, OrderType.MARKET, request.time_in_force,
        qty, None, qty, now, now,  # qty, notional, target_qty, created_at, updated_at
        position_intent=request.position_intent,
    )  # fmt: skip
    state.add(order)
    return order


def _limit(request: OrderRequest) -> Decimal | None:
    return request.limit_price if request.order_type in _LIMITS else None


def _order(
    venue: Venue, request: OrderRequest, *, symbol: str, client_id: str, qty: Decimal, limit: Decimal | None
) -> PaperOrder:
    now = venue.clock.now()
    kind = request.order_type
    # The fields without a default by position (a keyword call costs more than the rest of this).
    return PaperOrder(
        new_uuid(),  # id
        client_id,
        symbol,
        request.side,
        kind,
        request.time_in_force,
        None if request.notional is not None else qty,  # qty
        request.notional,
        qty,  # target_qty
        now,  # created_at
        now,  # updated_at
        limit_price=limit,
        stop_price=request.stop_price if kind in _STOPS else None,
        position_intent=request.position_intent,
        extended_hours=request.extended_hours,
        order_class=request.order_class,
        trail_price=request.trail_price,
        trail_percent=request.trail_percent,
    )
