"""The paper account's state: orders, positions and cash, and its text for the state file.

The text holds each order's state document (`PaperOrder.to_state`: the fields it is rebuilt
from, with what Alpaca's JSON leaves out: the target quantity of notional orders, the links
between legs and parents, whether a stop was triggered), and the cash, positions and prices.
`tradeguard.paper.statefile` writes it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from tradeguard.domain import BrokerOrder, BrokerPosition, OrderClass, OrderStatus, Side
from tradeguard.domain.orders import TERMINAL_STATUSES
from tradeguard.paper.orders import PaperOrder, fmt, iso

__all__ = ["STATE_VERSION", "TERMINAL", "PaperState", "account_document"]

STATE_VERSION = 2  # 2: order classes, legs, trailing stops, replacements
_READABLE_VERSIONS = frozenset({1, STATE_VERSION})
_ACCOUNT_NAMESPACE = uuid.UUID("6f1d2a8e-3c1b-4d55-9a55-2f0c7e1a9b10")
_GONE = object()
_ZERO = Decimal(0)
_AVG_STEP = Decimal("0.0001")

# The statuses of orders that can no longer fill, the set `OrderStatus.is_terminal` reads: asked
# directly (the property costs two calls through the enum; the hot path asks several times an order).
TERMINAL = TERMINAL_STATUSES


@dataclass(slots=True)
class PaperState:
    """Everything a paper account holds. Not thread-safe: PaperBroker guards it with a lock."""

    cash: Decimal
    orders: dict[str, PaperOrder] = field(default_factory=dict)
    by_client_id: dict[str, str] = field(default_factory=dict)
    qty: dict[str, Decimal] = field(default_factory=dict)
    avg_price: dict[str, Decimal] = field(default_factory=dict)
    last_price: dict[str, Decimal] = field(default_factory=dict)
    set_prices: dict[str, Decimal] = field(default_factory=dict)
    rendered: dict[str, tuple[tuple[object, ...], str]] = field(default_factory=dict, repr=False)
    # Ids of the open orders, oldest first, of all symbols and of each: every position read,
    # wash-trade and buying-power check looks at open orders only (mostly of one symbol), and
    # an account keeps every order it ever had.
    open_ids: dict[str, None] = field(default_factory=dict, repr=False)
    open_by_symbol: dict[str, dict[str, None]] = field(default_factory=dict, repr=False)
    # Names this account for the claim store (`tradeguard.ports.account_key_of`): made once when
    # the account is created, kept in the state file, never changed.
    account_key: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    def add(self, order: PaperOrder) -> None:
        """Record a newly accepted order."""
        self.orders[order.id] = order
        self.by_client_id[order.client_order_id] = order.id
        self.track(order)

    def track(self, order: PaperOrder) -> None:
        """Keep the open-order index in step after `order`'s status changed (or it was added)."""
        if order.status in TERMINAL:
            if self.open_ids.pop(order.id, _GONE) is not _GONE:
                of_symbol = self.open_by_symbol[order.symbol]
                del of_symbol[order.id]
                if not of_symbol:
                    del self.open_by_symbol[order.symbol]
        elif order.id not in self.open_ids:
            self.open_ids[order.id] = None
            self.open_by_symbol.setdefault(order.symbol, {})[order.id] = None

    def forget_terminal(self, before: datetime, keep: Callable[[str], bool] | None = None) -> int:
        """Drop terminal orders last changed before `before`; return how many were dropped.

        Only plain orders go: an order with legs, a parent or a replacement link is kept (its
        group reads the others), and so is one of a symbol nothing else names (an order can be
        what makes a symbol tradable, `Venue.asset`). `keep(client_order_id)` True keeps one.
        Positions and cash do not read past orders: they are kept apart (`qty`, `avg_price`).
        """
        orders, gone = self.orders, []
        named = self.set_prices.keys() | self.qty.keys()
        for order_id, order in orders.items():
            # Orders are kept in the order they were accepted: one accepted at or after `before`
            # (and so changed since) ends the walk, which then costs what it forgets. (Were the
            # clock ever set back, an order accepted after it is kept.)
            if order.created_at >= before:
                break
            if (
                order.status in TERMINAL
                and order.updated_at < before
                and order.parent_id is None
                and not order.leg_ids
                and order.replaced_by is None
                and order.replaces is None
                and order.symbol in named
                and (keep is None or not keep(order.client_order_id))
            ):
                gone.append(order_id)
        for order_id in gone:
            order = orders.pop(order_id)
            if self.by_client_id.get(order.client_order_id) == order_id:
                del self.by_client_id[order.client_order_id]
            self.rendered.pop(order_id, None)
        return len(gone)

    def open_orders(self, symbol: str | None = None) -> list[PaperOrder]:
        """Return the open orders, oldest first, optionally of one symbol."""
        ids = self.open_ids if symbol is None else self.open_by_symbol.get(symbol)
        if not ids:
            return []
        orders = self.orders
        return [orders[i] for i in ids]

    def listed(self, status: str, *, nested: bool) -> list[PaperOrder]:
        """Return the orders `GET /v2/orders?status=` lists, oldest first.

        Without `nested` legs are orders of their own, with it they are left to their parent.
        "open" leaves out `held` legs, as Alpaca's listing does (seen by users: a bracket's held
        stop-loss shows only under its filled parent with ``status=closed&nested=true``).
        """
        if status == "open":
            # From the open-order index (in the order the orders were accepted, as `orders`):
            # a listing of open orders must not cost every order the account ever took.
            opened = (self.orders[i] for i in self.open_ids)
            return [o for o in opened if o.status is not OrderStatus.HELD and not (nested and o.is_leg)]

        def wanted(order: PaperOrder) -> bool:
            return status == "all" or order.status.is_terminal

        return [o for o in self.orders.values() if wanted(o) and not (nested and o.is_leg)]

    def parent_of(self, order: PaperOrder) -> PaperOrder | None:
        """Return a leg's parent order, or None for an order that is no leg."""
        return None if order.parent_id is None else self.orders[order.parent_id]

    def legs_of(self, order: PaperOrder) -> list[PaperOrder]:
        """Return the order's legs, in the order they were made."""
        return [self.orders[i] for i in order.leg_ids]

    def dormant(self, order: PaperOrder) -> bool:
        """True for a leg held until its bracket's or OTO's entry fills (it cannot trade yet)."""
        parent = self.parent_of(order)
        return (
            parent is not None
            and parent.order_class is not OrderClass.OCO
            and parent.status is not OrderStatus.FILLED
        )

    def group(self, order: PaperOrder) -> list[PaperOrder]:
        """Return every order of `order`'s order class group: parent and legs (itself if simple)."""
        head = self.parent_of(order) or order
        return [head, *self.legs_of(head)]

    def successor(self, order: PaperOrder) -> PaperOrder:
        """Return the live end of `order`'s chain of replacements (`order` itself if none)."""
        seen = {order.id}
        while order.replaced_by is not None and order.replaced_by in self.orders:
            order = self.orders[order.replaced_by]
            if order.id in seen:  # a cycle cannot be built here; never loop on a damaged file
                break
            seen.add(order.id)
        return order

    def held(self, symbol: str, side: Side, excluding: str | None = None) -> Decimal:
        """Return the shares of `symbol` that open orders on `side` still want to trade.

        Exits of which only one can fill (a bracket's legs, an OCO's two orders) hold their
        larger remainder once, not the sum; legs waiting for their entry hold nothing yet.

        Args:
            symbol: The symbol.
            side: The side of the orders that count.
            excluding: The id of an order to leave out (one about to be replaced).
        """
        if symbol not in self.open_by_symbol:
            return _ZERO  # no open order of the symbol (the commonest case: answered at once)
        alone = Decimal(0)
        groups: dict[str, Decimal] = {}
        for order in self.open_orders(symbol):
            if order.side is not side or order.id == excluding or self.dormant(order):
                continue
            group = order.group_id
            if group is None:
                alone += order.remaining
            else:
                groups[group] = max(groups.get(group, Decimal(0)), order.remaining)
        return alone + sum(groups.values(), Decimal(0))

    def position(self, symbol: str, mark: Decimal) -> BrokerPosition | None:
        """Return the position in `symbol` valued at `mark`, or None when flat."""
        qty = self.qty.get(symbol, Decimal(0))
        if qty == 0:
            return None
        # Shares held by open closing orders are not available (Alpaca's qty_available).
        closing = Side.SELL if qty > 0 else Side.BUY
        held = min(self.held(symbol, closing), abs(qty))
        available = abs(qty) - held
        return BrokerPosition(
            symbol=symbol,
            qty=qty,
            qty_available=available if qty > 0 else -available,
            avg_entry_price=self.avg_price[symbol],
            market_value=qty * mark,
        )

    def apply_fill(self, order: PaperOrder, qty: Decimal, price: Decimal, now: datetime) -> None:
        """Fill `qty` shares of `order` at `price`: move the order, the position and the cash."""
        previous = order.filled_qty * (order.filled_avg_price or _ZERO)
        filled = order.filled_qty + qty
        order.filled_qty = filled
        order.filled_avg_price = ((previous + qty * price) / filled).quantize(_AVG_STEP)
        order.updated_at = now
        if order.target_qty - filled <= 0:
            order.status = OrderStatus.FILLED
            order.filled_at = now
        else:
            order.status = OrderStatus.PARTIALLY_FILLED
        self.track(order)
        symbol = order.symbol
        signed = qty if order.side is Side.BUY else -qty
        self.cash -= signed * price
        self.last_price[symbol] = price
        held = self.qty.get(symbol, _ZERO)
        new_qty = held + signed
        if new_qty == 0:
            self.qty.pop(symbol, None)
            self.avg_price.pop(symbol, None)
            return
        if held == 0 or (held > 0) == (signed > 0):
            # Adding to a position (or opening one) moves the average entry price;
            # reducing it does not, as at every broker.
            cost = abs(held) * self.avg_price.get(symbol, _ZERO) + qty * price
            self.avg_price[symbol] = (cost / abs(new_qty)).quantize(_AVG_STEP)
        self.qty[symbol] = new_qty

    def broker_order(self, order: PaperOrder, *, nested: bool = True) -> BrokerOrder:
        """Return the port's frozen view of `order`, with Alpaca's JSON as `raw`.

        `raw` is rendered when first read (`PaperOrder.deferred_raw`): most callers never read it.
        """
        legs: tuple[BrokerOrder, ...] = ()
        if nested and order.leg_ids:
            legs = tuple(self.broker_order(self.orders[i], nested=False) for i in order.leg_ids)
        # Positional, in BrokerOrder's field order (a keyword call costs a tenth of a submit);
        # tests/test_paper_deferred_raw.py checks each field against the order's.
        return BrokerOrder(
            order.id,
            order.client_order_id,
            order.symbol,
            order.side,
            order.status,
            order.qty,
            order.notional,
            order.filled_qty,
            order.filled_avg_price,
            order.order_type,
            order.time_in_force,
            order.limit_price,
            order.stop_price,
            order.position_intent,
            order.created_at,
            order.updated_at,
            order.order_class,
            legs,
            order.trail_price,
            order.trail_percent,
            order.replaced_by,
            order.replaces,
            order.deferred_raw(),  # raw: rendered when first read
        )

    def to_text(self) -> str:
        """Return the state-file document as JSON text.

        Each order's text is cached under its mutable fields, so a write renders only the orders
        that changed; without it every order re-renders on every write (quadratic in orders).
        """
        head = json.dumps(
            {
                "version": STATE_VERSION,
                "account_key": self.account_key,
                "cash": fmt(self.cash),
                "positions": {
                    s: {"qty": fmt(q), "avg_entry_price": fmt(self.avg_price[s])} for s, q in self.qty.items()
                },
                "last_prices": {s: fmt(p) for s, p in self.last_price.items()},
                "set_prices": {s: fmt(p) for s, p in self.set_prices.items()},
            },
            separators=(",", ":"),
        )
        parts = []
        for order in self.orders.values():
            key = order.cache_key()
            cached = self.rendered.get(order.id)
            if cached is None or cached[0] != key:
                cached = (key, order.state_text())
                self.rendered[order.id] = cached
            parts.append(cached[1])
        return f'{head[:-1]},"orders":[{",".join(parts)}]}}'

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PaperState:
        """Rebuild the state from a state-file document."""
        if doc.get("version") not in _READABLE_VERSIONS:
            raise ValueError(f"unsupported state version {doc.get('version')!r}")
        state = cls(cash=Decimal(str(doc["cash"])))
        if doc.get("account_key"):
            state.account_key = str(doc["account_key"])  # files from before it get a new one
        for order_doc in doc["orders"]:
            state.add(PaperOrder.from_state(order_doc))
        for symbol, pos in doc["positions"].items():
            state.qty[symbol] = Decimal(str(pos["qty"]))
            state.avg_price[symbol] = Decimal(str(pos["avg_entry_price"]))
        state.last_price = {s: Decimal(str(p)) for s, p in doc.get("last_prices", {}).items()}
        state.set_prices = {s: Decimal(str(p)) for s, p in doc.get("set_prices", {}).items()}
        return state

    @classmethod
    def from_text(cls, text: str) -> PaperState:
        """Rebuild the state from state-file text (see `to_text`)."""
        return cls.from_json(json.loads(text))


def paper_account_id(seed: str) -> str:
    """Return the Alpaca-style account id (a UUID) of the paper account whose state holds `seed`."""
    return str(uuid.uuid5(_ACCOUNT_NAMESPACE, seed))


def account_document(
    *,
    account_id: str,
    cash: Decimal,
    long_value: Decimal,
    short_value: Decimal,
    buying_power: Decimal,
    shorting_enabled: bool,
    created_at: datetime,
) -> dict[str, Any]:
    """Return a paper account as Alpaca's `GET /v2/account` JSON (cash account, multiplier 1)."""
    equity = fmt(cash + long_value + short_value)
    power = fmt(buying_power)
    return {
        "id": account_id,
        "account_number": "PA" + account_id.replace("-", "")[:10].upper(),
        "status": "ACTIVE",
        "crypto_status": "ACTIVE",
        "currency": "USD",
        "buying_power": power,
        "regt_buying_power": power,
        "daytrading_buying_power": power,
        "non_marginable_buying_power": power,
        "options_buying_power": power,
        "cash": fmt(cash),
        "accrued_fees": "0",
        "pending_transfer_in": "0",
        "pending_transfer_out": "0",
        "portfolio_value": equity,
        "equity": equity,
        "last_equity": equity,
        "long_market_value": fmt(long_value),
        "short_market_value": fmt(short_value),
        "initial_margin": "0",
        "maintenance_margin": "0",
        "last_maintenance_margin": "0",
        "sma": "0",
        "multiplier": "1",
        "pattern_day_trader": False,
        "trading_blocked": False,
        "transfers_blocked": False,
        "account_blocked": False,
        "trade_suspended_by_user": False,
        "shorting_enabled": shorting_enabled,
        "daytrade_count": 0,
        "options_approved_level": 0,
        "options_trading_level": 0,
        "created_at": iso(created_at),
    }
