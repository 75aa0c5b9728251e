"""Alpaca's order checks as pure functions over the paper state, each raising Alpaca's refusal.

The messages in ALPACA.md's table are reproduced byte for byte; the few others (unsupported
order types, notional sizing) are the paper broker's own, worded in Alpaca's style.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Any

from tradeguard.broker.alpaca.errors_map import reject_kind
from tradeguard.domain import OrderRequest, OrderType, PositionIntent, Side
from tradeguard.errors import OrderRejected
from tradeguard.paper.state import PaperState, fmt

__all__ = [
    "MAX_AMOUNT",
    "QTY_STEP",
    "check_limit_price",
    "check_position",
    "check_wash_trade",
    "order_qty",
    "rejection",
    "unprocessable",
]

QTY_STEP = Decimal("0.000000001")  # Alpaca takes up to 9 decimal places of a share.
MAX_AMOUNT = Decimal(10) ** 12


def rejection(status: int, code: int, message: str, **extra: str) -> OrderRejected:
    """Build the `OrderRejected` that Alpaca's answer maps to, with Alpaca's body.

    Alpaca's server sorts the keys of bodies with extra fields (Go maps), so this does too.
    """
    body: dict[str, Any] = {"code": code, "message": message}
    if extra:
        body = dict(sorted({**body, **extra}.items()))
    return OrderRejected(message, kind=reject_kind(status, message), status_code=status, code=code, body=body)


def unprocessable(message: str, code: int = 40010001) -> OrderRejected:
    """Return Alpaca's 422 refusal with `message`."""
    return rejection(422, code, message)


def check_limit_price(limit: Decimal | None) -> Decimal:
    """Return a valid limit price, or refuse it as Alpaca does (including sub-penny prices)."""
    if limit is None:
        raise unprocessable("limit_price is required")
    if not limit.is_finite() or limit <= 0:
        raise unprocessable("limit_price must be > 0")
    _check_size(limit, "limit_price")
    # Alpaca: whole cents at $1 and above, 1/100 cent below.
    places = 2 if limit >= 1 else 4
    if limit != limit.quantize(Decimal(1).scaleb(-places), ROUND_DOWN):
        raise unprocessable(
            f"invalid limit_price {limit}. sub-penny increment does not fulfill minimum pricing criteria",
            42210000,
        )
    return limit


def _check_size(value: Decimal, name: str) -> None:
    # Far beyond any account, and it keeps Decimal arithmetic clear of overflow.
    if value > MAX_AMOUNT:
        raise unprocessable(f"{name} is too large")


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


def _intent(side: Side, closing: bool) -> PositionIntent:
    if side is Side.BUY:
        return PositionIntent.BUY_TO_CLOSE if closing else PositionIntent.BUY_TO_OPEN
    return PositionIntent.SELL_TO_CLOSE if closing else PositionIntent.SELL_TO_OPEN


def check_position(
    state: PaperState, request: OrderRequest, symbol: str, qty: Decimal, *, allow_short: bool
) -> bool:
    """Check `position_intent`, the shares available to close and shorting.

    Returns:
        Whether the order closes (part of) a position rather than opening one.
    """
    held = state.qty.get(symbol, Decimal(0))
    closing = held > 0 if request.side is Side.SELL else held < 0
    inferred = _intent(request.side, closing)
    if request.position_intent is not None and request.position_intent is not inferred:
        raise unprocessable(f"position intent mismatch, inferred: {inferred.value}", 42210000)
    if closing:
        # One order never crosses through zero: it may close at most what open orders do not
        # already hold (Alpaca's qty_available).
        in_flight = min(state.held(symbol, request.side), abs(held))
        available = abs(held) - in_flight
        if qty > available:
            message = (
                f"insufficient qty available for order (requested: {fmt(qty)}, available: {fmt(available)})"
            )
            raise rejection(
                403,
                40310000,
                message,
                available=fmt(available) or "0",
                existing_qty=fmt(abs(held)) or "0",
                held_for_orders=fmt(in_flight) or "0",
                symbol=symbol,
            )
    elif request.side is Side.SELL and not allow_short:
        raise rejection(403, 40310000, "account is not allowed to short")
    return closing


def check_wash_trade(state: PaperState, side: Side, symbol: str, limit: Decimal | None) -> None:
    """Refuse an order that could trade against an open order of this account on the other side."""
    for other in state.open_orders(symbol):
        if other.side is side:
            continue
        if limit is None or other.limit_price is None:
            crosses = True
        elif side is Side.BUY:
            crosses = limit >= other.limit_price
        else:
            crosses = limit <= other.limit_price
        if crosses:
            raise rejection(403, 40310000, "potential wash trade detected. use complex orders")
