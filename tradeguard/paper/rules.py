"""Alpaca's checks of one order, as pure functions over the paper state, each raising Alpaca's refusal.

Messages seen in Alpaca's answers are reproduced byte for byte (ALPACA.md's table, and those
noted "seen" below). Where no answer of Alpaca's could be found the message is worded in its
style and marked "wording assumed"; the paper broker's own limits say "paper broker".
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from tradeguard.domain import OrderClass, OrderRequest, OrderType, PositionIntent, Side, TimeInForce
from tradeguard.paper.assets import Asset
from tradeguard.paper.orders import PaperOrder, fmt
from tradeguard.paper.refusals import rejection, unprocessable
from tradeguard.paper.state import PaperState

__all__ = [
    "CRYPTO_TIFS",
    "CRYPTO_TYPES",
    "MAX_AMOUNT",
    "QTY_STEP",
    "check_asset",
    "check_auction_order",
    "check_crypto_cost",
    "check_crypto_order",
    "check_extended_hours",
    "check_fractional",
    "check_limit_price",
    "check_opposite_open",
    "check_position",
    "check_price",
    "check_stop_against_market",
    "check_type_fields",
    "check_wash_trade",
    "closes",
    "closing_intent",
    "order_qty",
    "rejection",
    "unprocessable",
]

QTY_STEP = Decimal("0.000000001")  # Alpaca takes up to 9 decimal places of a share.
MAX_AMOUNT = Decimal(10) ** 12
_ZERO = Decimal(0)
_DAY_OR_GTC = frozenset({TimeInForce.DAY, TimeInForce.GTC})
# Alpaca's crypto orders (its "Crypto Orders" page): these types and times in force only.
CRYPTO_TYPES = frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP_LIMIT})
CRYPTO_TIFS = frozenset({TimeInForce.GTC, TimeInForce.IOC})


def check_price(value: Decimal | None, name: str, *, crypto: bool = False) -> Decimal:
    """Return a valid price for field `name`, or refuse it as Alpaca does (sub-penny included).

    The sub-penny rule is the equities' (Reg NMS); a crypto pair's price may have up to nine
    decimals (ETH/BTC trades near 0.05; Alpaca's per-pair `price_increment` is not modelled;
    the nine-decimal bound and its wording are assumed).
    """
    if value is None:
        raise unprocessable(f"{name} is required")
    if not value.is_finite() or value <= 0:
        raise unprocessable(f"{name} must be > 0")
    _check_size(value, name)
    if crypto:
        if value != value.quantize(QTY_STEP, ROUND_DOWN):
            raise unprocessable(f"invalid {name} {value}. too many decimal places", 42210000)
        return value
    # Alpaca: whole cents at $1 and above, 1/100 cent below.
    places = 2 if value >= 1 else 4
    if value != value.quantize(Decimal(1).scaleb(-places), ROUND_DOWN):
        raise unprocessable(
            f"invalid {name} {value}. sub-penny increment does not fulfill minimum pricing criteria",
            42210000,
        )
    return value


def check_limit_price(limit: Decimal | None) -> Decimal:
    """Return a valid limit price, or refuse it as Alpaca does (including sub-penny prices)."""
    return check_price(limit, "limit_price")


def _check_size(value: Decimal, name: str) -> None:
    # Far beyond any account, and it keeps Decimal arithmetic clear of overflow.
    if value > MAX_AMOUNT:
        raise unprocessable(f"{name} is too large")


def check_asset(asset: Asset | None, symbol: str) -> Asset:
    """Return the asset an order may trade, or refuse the order as Alpaca does.

    Seen: 422 with code 42210000 and message `asset "LYC.AX" not found`; the not-tradable
    wording is from bots' records of Alpaca's answers, not from Alpaca's documentation.
    """
    if asset is None:
        raise unprocessable(f'asset "{symbol}" not found', 42210000)
    if not asset.tradable or not asset.active:
        raise unprocessable(f'asset "{symbol}" is not tradable', 42210000)
    return asset


_TAKES = {
    "limit_price": frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT}),
    "stop_price": frozenset({OrderType.STOP, OrderType.STOP_LIMIT}),
}


def check_crypto_order(request: OrderRequest) -> None:
    """Refuse what Alpaca refuses of a crypto order: its type, time in force, class, extended hours.

    Alpaca takes market, limit and stop_limit orders, gtc or ioc, for crypto. Seen: 422
    42210000 "invalid crypto time_in_force" (alpaca-py PR #681) and "invalid order type for
    crypto order" (alpaca-py issue #200; its code assumed). Crypto has no order classes and no
    extended hours (it trades around the clock): those two refusals' wording is assumed.
    """
    if request.order_type not in CRYPTO_TYPES:
        raise unprocessable("invalid order type for crypto order", 42210000)
    if request.time_in_force not in CRYPTO_TIFS:
        raise unprocessable("invalid crypto time_in_force", 42210000)
    if (
        request.order_class is not OrderClass.SIMPLE
        or request.take_profit_limit_price is not None
        or request.stop_loss_stop_price is not None
        or request.stop_loss_limit_price is not None
    ):
        raise unprocessable("invalid order class for crypto order", 42210000)
    if request.extended_hours:
        raise unprocessable("extended hours are not supported for crypto orders", 42210000)


# Alpaca refuses a buy of a USD-quoted pair below this cost basis (403 40310000 "cost basis must
# be >= minimal amount of order 10", probed on the paper API: ccxt PR #30101); sells and pairs
# quoted in another coin have no such floor.
CRYPTO_MIN_COST_USD = Decimal(10)


def check_crypto_cost(symbol: str, side: Side, qty: Decimal, price: Decimal | None) -> None:
    """Refuse a buy of a USD-quoted pair whose cost basis (qty at the order's price) is under $10."""
    if side is not Side.BUY or not symbol.endswith("/USD") or price is None:
        return
    if qty * price < CRYPTO_MIN_COST_USD:
        raise rejection(403, 40310000, f"cost basis must be >= minimal amount of order {CRYPTO_MIN_COST_USD}")


def check_type_fields(request: OrderRequest, *, crypto: bool = False) -> None:
    """Refuse an order that lacks a price its type needs, or has one or a trail it cannot take.

    "limit orders must not have stop_price" is Alpaca's answer to such a replacement (seen);
    the same words for a new order are assumed.
    """
    kind = request.order_type
    if (
        kind is OrderType.MARKET
        and request.limit_price is None
        and request.stop_price is None
        and request.trail_price is None
        and request.trail_percent is None
    ):
        return  # a plain market order: nothing below applies (the commonest order, kept cheap)
    for field, value in (("limit_price", request.limit_price), ("stop_price", request.stop_price)):
        if value is not None and kind not in _TAKES[field]:
            raise unprocessable(f"{kind.value} orders must not have {field}", 42210000)
    if kind in {OrderType.STOP, OrderType.STOP_LIMIT}:
        check_price(request.stop_price, "stop_price", crypto=crypto)
    if kind in {OrderType.LIMIT, OrderType.STOP_LIMIT} and request.order_class is not OrderClass.OCO:
        check_price(request.limit_price, "limit_price", crypto=crypto)
    trails = [t for t in (request.trail_price, request.trail_percent) if t is not None]
    if kind is not OrderType.TRAILING_STOP:
        if trails:  # wording assumed
            raise unprocessable(f"{kind.value} orders must not have trail_price or trail_percent", 42210000)
        return
    # Wording of the trailing-stop refusals assumed (alpaca-py refuses these before sending).
    if len(trails) != 1:
        raise unprocessable("exactly one of trail_price or trail_percent is required")
    if not trails[0].is_finite() or trails[0] <= 0:
        raise unprocessable("trail_price or trail_percent must be > 0")
    if request.trail_percent is not None and request.trail_percent >= 100:
        raise unprocessable("trail_percent must be < 100")
    if request.trail_price is not None:
        check_price(request.trail_price, "trail_price")
    if request.time_in_force not in _DAY_OR_GTC:  # Alpaca: trailing stops take day or gtc only
        raise unprocessable("trailing stop orders must be DAY or GTC orders", 42210000)


_AUCTIONS = frozenset({TimeInForce.OPG, TimeInForce.CLS})
_AUCTION_TYPES = frozenset({OrderType.MARKET, OrderType.LIMIT})


def check_auction_order(request: OrderRequest) -> None:
    """Refuse an opg or cls order that is not a market or limit order.

    Alpaca's orders page: opg and cls go "with a market/limit order type" (market/limit on open,
    market/limit on close, the auctions' order types). The refusal's wording is assumed.
    """
    if request.time_in_force in _AUCTIONS and request.order_type not in _AUCTION_TYPES:
        tif = request.time_in_force.value
        raise unprocessable(f"{tif} orders must be market or limit orders", 42210000)


def check_extended_hours(request: OrderRequest) -> None:
    """Refuse extended hours on anything but a simple day/gtc limit order (message seen)."""
    if not request.extended_hours:
        return
    if request.order_class is not OrderClass.SIMPLE:  # wording assumed
        raise unprocessable(
            f"extended hours are not supported for {request.order_class.value} orders", 42210000
        )
    if request.order_type is not OrderType.LIMIT or request.time_in_force not in _DAY_OR_GTC:
        raise unprocessable("extended hours order must be DAY or GTC limit orders", 42210000)


def check_stop_against_market(side: Side, stop: Decimal, price: Decimal | None) -> None:
    """Refuse a stop that would trigger at once (seen, with these extra fields in the body)."""
    if price is None:
        return
    if side is Side.SELL and not stop < price:
        message = "stop price must be less than current price"
    elif side is Side.BUY and not stop > price:
        message = "stop price must be greater than current price"
    else:
        return
    raise unprocessable(message, 42210000, market_price=fmt(price) or "0", stop_price=fmt(stop) or "0")


def order_qty(request: OrderRequest, price: Decimal | None) -> Decimal:
    """Return the shares `request` asks for; a notional order is sized at `price`."""
    if request.qty is None and request.notional is None:
        raise unprocessable("qty or notional is required")
    if request.qty is not None and request.notional is not None:
        raise unprocessable("only one of qty or notional is accepted")
    if request.qty is not None:
        if not request.qty.is_finite() or request.qty <= 0:
            raise unprocessable("qty must be > 0")
        _check_size(request.qty, "qty")
        if request.qty != request.qty.quantize(QTY_STEP, ROUND_DOWN):
            raise unprocessable(f"qty must be given in steps of {QTY_STEP:f}")
        return request.qty
    assert request.notional is not None
    if not request.notional.is_finite() or request.notional <= 0:
        raise unprocessable("notional must be > 0")
    _check_size(request.notional, "notional")
    if request.order_type is not OrderType.MARKET:
        raise unprocessable("notional orders must be market orders", 42210000)
    if price is None:
        raise unprocessable(f"no price for {request.symbol} to size a notional order", 42210000)
    return (request.notional / price).quantize(QTY_STEP, ROUND_DOWN)


def check_fractional(request: OrderRequest, qty: Decimal, asset: Asset, *, opens_short: bool) -> None:
    """Refuse a fractional or notional order Alpaca would refuse.

    Seen: "fractional orders must be DAY orders", "... must be simple orders", "... cannot be
    sold short" (all 422 42210000). "requested asset is not fractionable" is quoted from
    Alpaca's documentation; its code is assumed.
    """
    if request.notional is None and qty == qty.to_integral_value():
        return
    if not asset.fractionable:
        raise unprocessable("requested asset is not fractionable", 42210000)
    if request.order_class is not OrderClass.SIMPLE:
        raise unprocessable("fractional orders must be simple orders", 42210000)
    if request.time_in_force is not TimeInForce.DAY:
        raise unprocessable("fractional orders must be DAY orders", 42210000)
    if request.order_type is OrderType.TRAILING_STOP:  # wording assumed
        raise unprocessable("fractional orders cannot be trailing_stop orders", 42210000)
    if opens_short:
        raise unprocessable("fractional orders cannot be sold short", 42210000)


def closing_intent(side: Side, closing: bool) -> PositionIntent:
    """Return the `position_intent` Alpaca infers for an order on `side`."""
    if side is Side.BUY:
        return PositionIntent.BUY_TO_CLOSE if closing else PositionIntent.BUY_TO_OPEN
    return PositionIntent.SELL_TO_CLOSE if closing else PositionIntent.SELL_TO_OPEN


def closes(state: PaperState, side: Side, symbol: str) -> bool:
    """True when an order on `side` reduces the position in `symbol` rather than opening one."""
    held = state.qty.get(symbol, Decimal(0))
    return held > 0 if side is Side.SELL else held < 0


def check_position(
    state: PaperState,
    request: OrderRequest,
    symbol: str,
    qty: Decimal,
    *,
    allow_short: bool,
    asset: Asset,
    excluding: str | None = None,
) -> bool:
    """Check `position_intent`, the shares available to close and shorting.

    A crypto pair is never shorted: a sell beyond the free balance (all of it when flat) is
    Alpaca's 403 "insufficient balance for BTC (requested: 1, available: 0.5)" (wording
    assumed), with the same fields as the equities' "insufficient qty available" body.

    Args:
        state: The account.
        request: The order.
        symbol: Its normalized symbol.
        qty: The shares it asks for.
        allow_short: Whether the account may short.
        asset: The asset (its `shortable` flag).
        excluding: An order whose shares do not count as held (the one being replaced).

    Returns:
        Whether the order closes (part of) a position rather than opening one.
    """
    held = state.qty.get(symbol, _ZERO)
    closing = held > 0 if request.side is Side.SELL else held < 0  # `closes`, inline: a hot path
    if request.position_intent is not None:
        inferred = closing_intent(request.side, closing)
        if request.position_intent is not inferred:
            raise unprocessable(f"position intent mismatch, inferred: {inferred.value}", 42210000)
    if closing or (asset.is_crypto and request.side is Side.SELL):
        # One order never crosses through zero: it may close at most what open orders do not
        # already hold (Alpaca's qty_available).
        in_flight = min(state.held(symbol, request.side, excluding), abs(held))
        available = abs(held) - in_flight
        if qty > available:
            amounts = f"(requested: {fmt(qty)}, available: {fmt(available)})"
            if asset.is_crypto:
                message = f"insufficient balance for {symbol.partition('/')[0]} {amounts}"
            else:
                message = f"insufficient qty available for order {amounts}"
            # Seen in Alpaca's body: "related_orders", the ids of the open orders holding the
            # shares; left out when none does (assumed: Alpaca's Go encoder omits empty lists).
            related = [
                o.id
                for o in state.open_orders(symbol)
                if o.side is request.side and o.id != excluding and not state.dormant(o)
            ]
            extra: dict[str, str | list[str]] = {"related_orders": related} if related else {}
            raise rejection(
                403,
                40310000,
                message,
                available=fmt(available) or "0",
                existing_qty=fmt(abs(held)) or "0",
                held_for_orders=fmt(in_flight) or "0",
                symbol=symbol,
                **extra,
            )
    elif request.side is Side.SELL:
        if not allow_short:
            raise rejection(403, 40310000, "account is not allowed to short")
        # Seen: 422 {"code":42210000,"message":"asset \"EIDO\" cannot be sold short"}. The Trading
        # API opens shorts only in easy-to-borrow names (a hard-to-borrow one needs a locate,
        # which only the Broker API offers): refused the same way (audit 14b M4).
        if not asset.shortable or not asset.easy_to_borrow:
            raise unprocessable(f'asset "{symbol}" cannot be sold short', 42210000)
    if held == 0 and symbol in state.open_by_symbol:
        check_opposite_open(state, request.side, symbol, excluding)
    return closing


def check_opposite_open(state: PaperState, side: Side, symbol: str, excluding: str | None = None) -> None:
    """Refuse an opening order while the account is flat and an order on the other side is open.

    Alpaca never lets an account be long and short one symbol at once, so it blocks "conflicting
    orders" (its staff, Alpaca-API issue #82): seen, 403 40310000 "cannot open a long buy while a
    short sell order is open" and "cannot open a short sell while a long buy order is open",
    whether the orders could cross or not, a trailing stop included. Legs waiting for their
    entry are not at the venue and do not count; `excluding` names the order being replaced.
    """
    for other in state.open_orders(symbol):
        if other.side is side or other.id == excluding or state.dormant(other):
            continue
        if side is Side.BUY:
            raise rejection(403, 40310000, "cannot open a long buy while a short sell order is open")
        raise rejection(403, 40310000, "cannot open a short sell while a long buy order is open")


def _resting_price(order: PaperOrder) -> Decimal | None:
    """The worst price an open order would trade at (None: any price, as a market order)."""
    if order.order_type in {OrderType.LIMIT, OrderType.STOP_LIMIT}:
        return order.limit_price
    if order.order_type in {OrderType.STOP, OrderType.TRAILING_STOP} and not order.triggered:
        return order.stop_price  # waiting to trade at about its stop
    return None


def check_wash_trade(
    state: PaperState, side: Side, symbol: str, limit: Decimal | None, *, ignore: frozenset[str] = frozenset()
) -> None:
    """Refuse an order that could trade against an open order of this account on the other side.

    Bracket, OCO and trailing stop orders are exempt (Alpaca's user-protection page); callers
    skip the check for them. Legs waiting for their entry are not at the venue and never count.

    Args:
        state: The account.
        side: The new order's side.
        symbol: Its symbol.
        limit: Its limit price (None: a market order, which may trade at any price).
        ignore: Ids of open orders that do not count (the order being replaced and its group).
    """
    for other in state.open_orders(symbol):
        if other.side is side or other.id in ignore or state.dormant(other):
            continue
        resting = _resting_price(other)
        if limit is None or resting is None:
            crosses = True
        elif side is Side.BUY:
            crosses = limit >= resting
        else:
            crosses = limit <= resting
        if crosses:
            raise rejection(403, 40310000, "potential wash trade detected. use complex orders")
