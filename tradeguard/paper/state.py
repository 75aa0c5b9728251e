"""The paper account's state: orders, positions and cash, their Alpaca JSON, and the state file.

Orders are kept as mutable records and rendered in the exact JSON shape Alpaca returns, so the
in-process broker (`BrokerOrder.raw`) and the paper server show the same bytes. The state file
holds those same order documents, written atomically (temp file + `os.replace`) so a crash
mid-write never leaves a half-written account.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tradeguard.domain import (
    BrokerOrder,
    BrokerPosition,
    OrderStatus,
    OrderType,
    PositionIntent,
    Side,
    TimeInForce,
)
from tradeguard.errors import ConfigError

__all__ = [
    "PaperOrder",
    "PaperState",
    "account_document",
    "asset_id",
    "fmt",
    "iso",
    "load_state",
    "save_state",
]

STATE_VERSION = 1
_ASSET_NAMESPACE = uuid.UUID("6f1d2a8e-3c1b-4d55-9a55-2f0c7e1a9b10")


def fmt(value: Decimal | None) -> str | None:
    """Render a Decimal the way Alpaca does: plain digits, no exponent, no trailing zeros."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in {"-0", ""} else text


def iso(when: datetime | None) -> str | None:
    """Render an aware time as Alpaca does: UTC with microseconds and a "Z"."""
    if when is None:
        return None
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def asset_id(symbol: str) -> str:
    """Return a stable asset id for `symbol` (the paper broker has no asset master)."""
    return str(uuid.uuid5(_ASSET_NAMESPACE, symbol.upper()))


@dataclass(slots=True)
class PaperOrder:
    """One order the paper broker accepted; mutable while it lives."""

    id: str
    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    qty: Decimal | None
    notional: Decimal | None
    target_qty: Decimal
    created_at: datetime
    updated_at: datetime
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    position_intent: PositionIntent | None = None
    extended_hours: bool = False
    status: OrderStatus = OrderStatus.NEW
    filled_qty: Decimal = Decimal(0)
    filled_avg_price: Decimal | None = None
    filled_at: datetime | None = None
    canceled_at: datetime | None = None

    @property
    def remaining(self) -> Decimal:
        """Shares still to fill."""
        return self.target_qty - self.filled_qty

    def to_alpaca(self) -> dict[str, Any]:
        """Return the order as Alpaca's JSON document."""
        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "submitted_at": iso(self.created_at),
            "filled_at": iso(self.filled_at),
            "expired_at": None,
            "canceled_at": iso(self.canceled_at),
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": asset_id(self.symbol),
            "symbol": self.symbol,
            "asset_class": "us_equity",
            "notional": fmt(self.notional),
            "qty": fmt(self.qty),
            "filled_qty": fmt(self.filled_qty),
            "filled_avg_price": fmt(self.filled_avg_price),
            # Alpaca sends "" for simple orders; alpaca-py maps it to OrderClass.SIMPLE.
            "order_class": "",
            "order_type": self.order_type.value,
            "type": self.order_type.value,
            "side": self.side.value,
            "position_intent": self.position_intent.value if self.position_intent else None,
            "time_in_force": self.time_in_force.value,
            "limit_price": fmt(self.limit_price),
            "stop_price": fmt(self.stop_price),
            "status": self.status.value,
            "extended_hours": self.extended_hours,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
            "subtag": None,
            "source": None,
            "expires_at": None,
        }

    def to_broker_order(self) -> BrokerOrder:
        """Return the port's frozen view of the order, with Alpaca's JSON as `raw`."""
        return BrokerOrder(
            id=self.id,
            client_order_id=self.client_order_id,
            symbol=self.symbol,
            side=self.side,
            status=self.status,
            qty=self.qty,
            notional=self.notional,
            filled_qty=self.filled_qty,
            filled_avg_price=self.filled_avg_price,
            order_type=self.order_type,
            time_in_force=self.time_in_force,
            limit_price=self.limit_price,
            stop_price=self.stop_price,
            position_intent=self.position_intent,
            created_at=self.created_at,
            updated_at=self.updated_at,
            raw=self.to_alpaca(),
        )

    def to_state(self) -> dict[str, Any]:
        """Return the document stored in the state file."""
        # target_qty is not in Alpaca's JSON (a notional order's qty is null there).
        return {**self.to_alpaca(), "target_qty": fmt(self.target_qty)}

    @classmethod
    def from_state(cls, doc: dict[str, Any]) -> PaperOrder:
        """Rebuild an order from its state-file document."""
        return cls(
            id=str(doc["id"]),
            client_order_id=str(doc["client_order_id"]),
            symbol=str(doc["symbol"]),
            side=Side(doc["side"]),
            order_type=OrderType(doc["type"]),
            time_in_force=TimeInForce(doc["time_in_force"]),
            qty=_dec(doc.get("qty")),
            notional=_dec(doc.get("notional")),
            target_qty=_dec(doc["target_qty"]) or Decimal(0),
            created_at=datetime.fromisoformat(doc["created_at"]),
            updated_at=datetime.fromisoformat(doc["updated_at"]),
            limit_price=_dec(doc.get("limit_price")),
            stop_price=_dec(doc.get("stop_price")),
            position_intent=PositionIntent(doc["position_intent"]) if doc.get("position_intent") else None,
            extended_hours=bool(doc.get("extended_hours")),
            status=OrderStatus(doc["status"]),
            filled_qty=_dec(doc.get("filled_qty")) or Decimal(0),
            filled_avg_price=_dec(doc.get("filled_avg_price")),
            filled_at=_time(doc.get("filled_at")),
            canceled_at=_time(doc.get("canceled_at")),
        )


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _time(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


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
    rendered: dict[str, tuple[tuple[OrderStatus, Decimal], str]] = field(default_factory=dict, repr=False)
    # Ids of the open orders, oldest first: every position read and every buying-power check
    # looks at open orders only, and an account keeps every order it ever had.
    open_ids: dict[str, None] = field(default_factory=dict, repr=False)

    def add(self, order: PaperOrder) -> None:
        """Record a newly accepted order."""
        self.orders[order.id] = order
        self.by_client_id[order.client_order_id] = order.id
        self.track(order)

    def track(self, order: PaperOrder) -> None:
        """Keep `open_ids` in step after `order`'s status changed."""
        if order.status.is_open:
            self.open_ids[order.id] = None
        else:
            self.open_ids.pop(order.id, None)

    def open_orders(self, symbol: str | None = None) -> list[PaperOrder]:
        """Return the open orders, oldest first, optionally of one symbol."""
        opened = (self.orders[i] for i in self.open_ids)
        return [o for o in opened if symbol is None or o.symbol == symbol]

    def held(self, symbol: str, side: Side) -> Decimal:
        """Return the shares of `symbol` that open orders on `side` still want to trade."""
        return sum((o.remaining for o in self.open_orders(symbol) if o.side is side), Decimal(0))

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
        previous = order.filled_qty * (order.filled_avg_price or Decimal(0))
        order.filled_qty += qty
        order.filled_avg_price = ((previous + qty * price) / order.filled_qty).quantize(Decimal("0.0001"))
        order.status = OrderStatus.FILLED if order.remaining <= 0 else OrderStatus.PARTIALLY_FILLED
        self.track(order)
        order.updated_at = now
        if order.status is OrderStatus.FILLED:
            order.filled_at = now
        signed = qty if order.side is Side.BUY else -qty
        self.cash -= signed * price
        self.last_price[order.symbol] = price
        held = self.qty.get(order.symbol, Decimal(0))
        new_qty = held + signed
        if new_qty == 0:
            self.qty.pop(order.symbol, None)
            self.avg_price.pop(order.symbol, None)
            return
        if held == 0 or (held > 0) == (signed > 0):
            # Adding to a position (or opening one) moves the average entry price;
            # reducing it does not, as at every broker.
            cost = abs(held) * self.avg_price.get(order.symbol, Decimal(0)) + qty * price
            self.avg_price[order.symbol] = (cost / abs(new_qty)).quantize(Decimal("0.0001"))
        self.qty[order.symbol] = new_qty

    def to_text(self) -> str:
        """Return the state-file document as JSON text.

        Each order's text is cached under its mutable fields, so a write renders only the orders
        that changed; without it every order re-renders on every write (quadratic in orders).
        """
        head = json.dumps(
            {
                "version": STATE_VERSION,
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
            # status and filled_qty change with every mutation (fill or cancel) of an order.
            key = (order.status, order.filled_qty)
            cached = self.rendered.get(order.id)
            if cached is None or cached[0] != key:
                cached = (key, json.dumps(order.to_state(), separators=(",", ":")))
                self.rendered[order.id] = cached
            parts.append(cached[1])
        return f'{head[:-1]},"orders":[{",".join(parts)}]}}'

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PaperState:
        """Rebuild the state from a state-file document."""
        if doc.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported state version {doc.get('version')!r}")
        state = cls(cash=Decimal(str(doc["cash"])))
        for order_doc in doc["orders"]:
            state.add(PaperOrder.from_state(order_doc))
        for symbol, pos in doc["positions"].items():
            state.qty[symbol] = Decimal(str(pos["qty"]))
            state.avg_price[symbol] = Decimal(str(pos["avg_entry_price"]))
        state.last_price = {s: Decimal(str(p)) for s, p in doc.get("last_prices", {}).items()}
        state.set_prices = {s: Decimal(str(p)) for s, p in doc.get("set_prices", {}).items()}
        return state


def account_document(
    *,
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
        "id": str(uuid.uuid5(_ASSET_NAMESPACE, "account")),
        "account_number": "PA-TRADEGUARD",
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


def load_state(path: str) -> PaperState | None:
    """Read the state file; None when it does not exist yet.

    Raises:
        ConfigError: The file exists but is not a paper account this version can read.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read paper state: {exc}") from exc
    try:
        return PaperState.from_json(doc)
    except (KeyError, TypeError, ValueError, InvalidOperation, AttributeError) as exc:
        raise ConfigError(f"{path}: not a paper account state file: {exc!r}") from exc


def save_state(state: PaperState, path: str) -> None:
    """Write the state file atomically: a temp file in the same folder, fsync, then os.replace."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".paper-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(state.to_text())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Never leave temp files behind, whatever interrupted the write.
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
