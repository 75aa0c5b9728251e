"""PaperBroker: the `Broker` port simulated in process with Alpaca's semantics.

What it models (ALPACA.md): market and limit orders (`ioc`/`fok` included), fills from a
pluggable `PriceSource`, optional partial fills, positions with `qty_available`, client order
ids unique forever, `position_intent` checks, no crossing through zero in one order, shorting
only when allowed, buying power, wash-trade refusal, and Alpaca's exact error bodies. Every
refusal raises `OrderRejected(message, status_code=..., code=..., body=...)`.

What it leaves out on purpose: stop and trailing orders (refused with 422), day-order expiry,
market hours (the paper market is always open), margin, fees.

With no price source every symbol trades at `DEFAULT_PRICE` (100.00), so it works out of the box.
Limit orders that do not cross stay open until `set_price()` or `step()` moves them.
"""

from __future__ import annotations

import os
import threading
import uuid
from datetime import datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from tradeguard.clock import Clock, SystemClock
from tradeguard.domain import (
    BrokerOrder,
    BrokerPosition,
    OrderRequest,
    OrderStatus,
    OrderType,
    PositionIntent,
    ReplaceRequest,
    Side,
    TimeInForce,
)
from tradeguard.errors import ConfigError, OrderRejected
from tradeguard.paper.prices import DEFAULT_PRICE, PriceSource
from tradeguard.paper.rules import (
    QTY_STEP,
    check_limit_price,
    check_position,
    check_wash_trade,
    order_qty,
    rejection,
    unprocessable,
)
from tradeguard.paper.state import (
    PaperOrder,
    PaperState,
    account_document,
    fmt,
    load_state,
    save_state,
)

__all__ = ["DEFAULT_CASH", "PaperBroker"]

DEFAULT_CASH = Decimal(100_000)
_MAX_CLIENT_ID_LEN = 128
_SUPPORTED_TYPES = frozenset({OrderType.MARKET, OrderType.LIMIT})


class PaperBroker:
    """An Alpaca paper account in memory (or in a JSON file), behind the `Broker` port.

    Thread-safe: every call holds one lock, since the paper server calls it from many threads.

    Args:
        prices: Where fill prices come from; None fills every symbol at `DEFAULT_PRICE`.
        clock: Time of orders and of price lookups.
        cash: Starting cash of a new account (ignored when `state_path` already holds one).
        allow_short: Whether a sell with no long position may open a short.
        max_fill_qty: Fill at most this many shares of an order per matching pass; the rest
            stays `partially_filled` until `step()` or `set_price()` (Alpaca paper fills are
            sometimes partial). None fills whole orders.
        fill_on_submit: Match a marketable order as it is submitted, so the acknowledgement
            already shows the fill. False leaves every order `new` until `step()`, like a
            slow venue.
        state_path: A JSON file that keeps the account across restarts, rewritten atomically
            after every change.

    Raises:
        ConfigError: `state_path` exists but is not a paper account.
    """

    def __init__(
        self,
        *,
        prices: PriceSource | None = None,
        clock: Clock | None = None,
        cash: Decimal | int | str = DEFAULT_CASH,
        allow_short: bool = False,
        max_fill_qty: Decimal | int | None = None,
        fill_on_submit: bool = True,
        state_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if max_fill_qty is not None and Decimal(max_fill_qty) <= 0:
            raise ConfigError(f"max_fill_qty must be positive, got {max_fill_qty}")
        self._prices = prices
        self._clock: Clock = clock or SystemClock()
        self._allow_short = allow_short
        self._max_fill = None if max_fill_qty is None else Decimal(max_fill_qty)
        self._fill_on_submit = fill_on_submit
        self._path = None if state_path is None else os.fspath(state_path)
        self._lock = threading.RLock()
        loaded = load_state(self._path) if self._path else None
        self._state = loaded or PaperState(cash=Decimal(cash))
        self._created_at = self._clock.now()

    @property
    def clock(self) -> Clock:
        """The clock the account runs on."""
        return self._clock

    # ---- the Broker port -------------------------------------------------------------------

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Place an order with Alpaca's checks; return it as acknowledged (filled if marketable).

        Raises:
            OrderRejected: With Alpaca's status, code and body (see ALPACA.md).
        """
        with self._lock:
            order = self._accept(request)
            if self._fill_on_submit:
                self._match(order)
            self._save()
            return order.to_broker_order()

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """Return the order with this client_order_id, or None (Alpaca: 404 order not found)."""
        with self._lock:
            order_id = self._state.by_client_id.get(client_order_id)
            return None if order_id is None else self._state.orders[order_id].to_broker_order()

    def get_order(self, order_id: str) -> BrokerOrder | None:
        """Return the order with this broker id, or None."""
        with self._lock:
            order = self._state.orders.get(order_id)
            return None if order is None else order.to_broker_order()

    def list_orders(
        self,
        *,
        status: str = "open",
        symbols: list[str] | None = None,
        after: datetime | None = None,
        limit: int = 500,
        until: datetime | None = None,
        side: Side | None = None,
        direction: str = "desc",
    ) -> list[BrokerOrder]:
        """List orders like `GET /v2/orders`: newest first unless `direction="asc"`.

        Raises:
            OrderRejected: 422 for a status other than open, closed or all.
        """
        if status not in {"open", "closed", "all"}:
            raise unprocessable(f"invalid status {status}")
        wanted = {s.upper() for s in symbols} if symbols else None
        with self._lock:
            found = [
                o
                for o in self._state.orders.values()
                if (status == "all" or o.status.is_open == (status == "open"))
                and (wanted is None or o.symbol in wanted)
                and (after is None or o.created_at > after)
                and (until is None or o.created_at <= until)
                and (side is None or o.side is side)
            ]
            if direction != "asc":
                found.reverse()
            return [o.to_broker_order() for o in found[: max(limit, 0)]]

    def list_positions(self) -> list[BrokerPosition]:
        """Return every open position, by symbol."""
        with self._lock:
            positions = (self._position(symbol) for symbol in sorted(self._state.qty))
            return [p for p in positions if p is not None]

    def get_position(self, symbol: str) -> BrokerPosition | None:
        """Return the position in `symbol`, or None when flat."""
        with self._lock:
            return self._position(symbol.upper())

    def cancel_order(self, order_id: str) -> None:
        """Cancel an open order at once.

        Raises:
            OrderRejected: 404 "order not found", or 422 when the order is already final.
        """
        with self._lock:
            order = self._state.orders.get(order_id)
            if order is None:
                raise rejection(404, 40410000, "order not found")
            if order.status.is_terminal:
                raise unprocessable(f'order is already in "{order.status.value}" state', 42210000)
            self._cancel(order)
            self._save()

    def replace_order(self, order_id: str, request: ReplaceRequest) -> BrokerOrder:
        """Replace an open order (not simulated yet: refused as Alpaca refuses an unknown change).

        Raises:
            OrderRejected: Always, for now.
        """
        raise unprocessable("order replacement is not supported by the paper broker yet", 42210000)

    # ---- the rest of Alpaca's account API ----------------------------------------------------

    def cancel_all_orders(self) -> list[str]:
        """Cancel every open order; return their ids."""
        with self._lock:
            opened = self._state.open_orders()
            for order in opened:
                self._cancel(order)
            self._save()
            return [o.id for o in opened]

    def close_position(
        self, symbol: str, *, qty: Decimal | None = None, percentage: Decimal | None = None
    ) -> BrokerOrder:
        """Send a market order that closes all of a position, `qty` shares or `percentage` of it.

        Raises:
            OrderRejected: 404 "position does not exist" when flat; 403 "insufficient qty ..."
                when open orders hold the shares, as at Alpaca.
        """
        symbol = symbol.upper()
        with self._lock:
            held = self._state.qty.get(symbol, Decimal(0))
            if held == 0:
                raise rejection(404, 40410000, "position does not exist")
            amount = abs(held)
            if qty is not None:
                amount = qty
            elif percentage is not None:
                if not 0 < percentage <= 100:
                    raise unprocessable("percentage must be between 0 and 100")
                amount = (abs(held) * percentage / 100).quantize(QTY_STEP, ROUND_DOWN)
            closing = PositionIntent.SELL_TO_CLOSE if held > 0 else PositionIntent.BUY_TO_CLOSE
            side = Side.SELL if held > 0 else Side.BUY
            request = OrderRequest(symbol, side, "", qty=amount, position_intent=closing)
            return self.submit_order(request)

    def close_all_positions(self, *, cancel_orders: bool = False) -> dict[str, BrokerOrder | OrderRejected]:
        """Close every position; return each symbol's closing order or the refusal."""
        with self._lock:
            if cancel_orders:
                self.cancel_all_orders()
            results: dict[str, BrokerOrder | OrderRejected] = {}
            for symbol in sorted(self._state.qty):
                try:
                    results[symbol] = self.close_position(symbol)
                except OrderRejected as exc:
                    results[symbol] = exc
            return results

    def account(self) -> dict[str, Any]:
        """Return the account in the shape of Alpaca's `GET /v2/account`."""
        with self._lock:
            values = [q * self._mark(s) for s, q in self._state.qty.items()]
            return account_document(
                cash=self._state.cash,
                long_value=sum((v for v in values if v > 0), Decimal(0)),
                short_value=sum((v for v in values if v < 0), Decimal(0)),
                buying_power=self._buying_power(),
                shorting_enabled=self._allow_short,
                created_at=self._created_at,
            )

    # ---- test controls ---------------------------------------------------------------------

    def orders(self) -> list[BrokerOrder]:
        """Return every order the account ever accepted, oldest first (rejections never land)."""
        with self._lock:
            return [o.to_broker_order() for o in self._state.orders.values()]

    def price(self, symbol: str) -> Decimal | None:
        """Return the price `symbol` would fill at now, or None if there is none."""
        with self._lock:
            return self._price(symbol.upper())

    def set_price(self, symbol: str, price: Decimal | int | str | None) -> list[BrokerOrder]:
        """Pin the price of `symbol` (None unpins it), then fill the open orders that cross.

        Returns:
            The orders that filled or partly filled in this pass.
        """
        symbol = symbol.upper()
        with self._lock:
            if price is None:
                self._state.set_prices.pop(symbol, None)
            else:
                self._state.set_prices[symbol] = _positive(price, "price")
            return self._step(symbol)

    def step(self) -> list[BrokerOrder]:
        """Run one matching pass over every open order at current prices; return what filled."""
        with self._lock:
            return self._step(None)

    # ---- internals (lock held) ---------------------------------------------------------------

    def _step(self, symbol: str | None) -> list[BrokerOrder]:
        changed = [o for o in self._state.open_orders(symbol) if self._match(o)]
        self._save()
        return [o.to_broker_order() for o in changed]

    def _price(self, symbol: str) -> Decimal | None:
        pinned = self._state.set_prices.get(symbol)
        if pinned is not None:
            return pinned
        if self._prices is None:
            return DEFAULT_PRICE
        return self._prices.price(symbol, self._clock.now())

    def _mark(self, symbol: str) -> Decimal:
        """Price to value a position at: current, else last traded, else its entry price."""
        return (
            self._price(symbol)
            or self._state.last_price.get(symbol)
            or self._state.avg_price.get(symbol, Decimal(0))
        )

    def _position(self, symbol: str) -> BrokerPosition | None:
        return self._state.position(symbol, self._mark(symbol))

    def _buying_power(self) -> Decimal:
        # Open buys reserve their estimated cost, so two orders cannot spend the same cash.
        buys = (o for o in self._state.open_orders() if o.side is Side.BUY)
        reserved = sum((o.remaining * (o.limit_price or self._mark(o.symbol)) for o in buys), Decimal(0))
        return max(self._state.cash - reserved, Decimal(0))

    def _accept(self, request: OrderRequest) -> PaperOrder:
        """Validate `request` as Alpaca does, in Alpaca's order; return the new open order."""
        symbol = request.symbol.strip().upper()
        if not symbol:
            raise unprocessable("symbol is required")
        if request.order_type not in _SUPPORTED_TYPES:
            kind = request.order_type.value
            raise unprocessable(f"order type {kind} is not supported by the paper broker")
        limit = request.limit_price if request.order_type is OrderType.LIMIT else None
        if request.order_type is OrderType.LIMIT:
            limit = check_limit_price(limit)
        client_id = request.client_order_id or str(uuid.uuid4())
        if len(client_id) > _MAX_CLIENT_ID_LEN:
            raise unprocessable(f"client_order_id must be no more than {_MAX_CLIENT_ID_LEN} characters")
        qty = order_qty(request, self._price(symbol))
        if client_id in self._state.by_client_id:
            # Unique forever: a canceled or filled order still owns its id.
            raise unprocessable("client_order_id must be unique")
        closing = check_position(self._state, request, symbol, qty, allow_short=self._allow_short)
        check_wash_trade(self._state, request.side, symbol, limit)
        if request.side is Side.BUY and not closing:
            self._check_buying_power(qty * (limit or self._price(symbol) or Decimal(0)))
        now = self._clock.now()
        order = PaperOrder(
            id=str(uuid.uuid4()),
            client_order_id=client_id,
            symbol=symbol,
            side=request.side,
            order_type=request.order_type,
            time_in_force=request.time_in_force,
            qty=None if request.notional is not None else qty,
            notional=request.notional,
            target_qty=qty,
            created_at=now,
            updated_at=now,
            limit_price=limit,
            position_intent=request.position_intent,
            extended_hours=request.extended_hours,
        )
        self._state.add(order)
        return order

    def _check_buying_power(self, cost: Decimal) -> None:
        power = self._buying_power()
        if cost > power:
            raise rejection(
                403,
                40310000,
                "insufficient buying power",
                buying_power=fmt(power) or "0",
                cost_basis=fmt(cost) or "0",
            )

    def _match(self, order: PaperOrder) -> bool:
        """Try to fill `order` at the current price; return whether it changed."""
        price = self._price(order.symbol)
        crosses = price is not None and (
            order.limit_price is None
            or (price <= order.limit_price if order.side is Side.BUY else price >= order.limit_price)
        )
        qty = order.remaining if self._max_fill is None else min(order.remaining, self._max_fill)
        now = self._clock.now()
        immediate = order.time_in_force in {TimeInForce.IOC, TimeInForce.FOK}
        if order.time_in_force is TimeInForce.FOK and qty < order.remaining:
            crosses = False  # fill-or-kill: all of it now, or none of it
        if crosses:
            assert price is not None
            self._state.apply_fill(order, qty, price, now)
        if immediate and order.status.is_open:
            self._cancel(order)  # the unfilled rest of an IOC/FOK order dies at once
            return True
        return crosses

    def _cancel(self, order: PaperOrder) -> None:
        now = self._clock.now()
        order.status = OrderStatus.CANCELED
        self._state.track(order)
        order.canceled_at = now
        order.updated_at = now

    def _save(self) -> None:
        if self._path is not None:
            save_state(self._state, self._path)


def _positive(value: Decimal | int | str, name: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise ConfigError(f"{name} {value!r} is not a number") from exc
    if not number.is_finite() or number <= 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    return number
