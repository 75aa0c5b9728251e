"""One paper order: a mutable record, its Alpaca JSON, and its state-file document.

Orders render in the exact JSON shape Alpaca returns, so the in-process broker
(`BrokerOrder.raw`) and the paper server show the same bytes. An order with legs (bracket, OTO,
OCO) keeps its legs' ids; each leg is an order of its own that names its parent. Rendering the
legs inside a parent needs the other orders, so `PaperState` does that (`render`).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tradeguard.domain import OrderClass, OrderStatus, OrderType, PositionIntent, Side, TimeInForce

__all__ = ["PaperOrder", "asset_id", "fmt", "iso"]

_ASSET_NAMESPACE = uuid.UUID("6f1d2a8e-3c1b-4d55-9a55-2f0c7e1a9b10")


def fmt(value: Decimal | None) -> str | None:
    """Render a Decimal the way Alpaca does: plain digits, no exponent, no trailing zeros."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in {"-0", ""} else text


_last_iso: tuple[datetime | None, str] = (None, "")


def iso(when: datetime | None) -> str | None:
    """Render an aware time as Alpaca does: UTC with microseconds and a "Z"."""
    global _last_iso  # noqa: PLW0603 - a one-entry cache: an order's times are mostly one instant
    if when is None:
        return None
    last = _last_iso  # read once: another thread may replace it (both values stay consistent)
    if last[0] is when:
        return last[1]
    utc = when if when.tzinfo is UTC else when.astimezone(UTC)
    text = utc.isoformat(timespec="microseconds")[:-6] + "Z"
    _last_iso = (when, text)
    return text


@functools.lru_cache(maxsize=4096)
def asset_id(symbol: str) -> str:
    """Return a stable asset id for `symbol` (derived: the paper venue has no real asset ids).

    Cached: every order rendered names its asset, and a uuid5 is a SHA-1 and two objects.
    """
    return str(uuid.uuid5(_ASSET_NAMESPACE, symbol.upper()))


@dataclass(slots=True)
class PaperOrder:
    """One order the paper broker accepted; mutable while it lives.

    `qty` is what Alpaca shows (None for a notional order); `target_qty` is what the order fills
    in total. A replacement carries its chain's fills (`filled_qty` starts at what the order it
    replaced filled), so `target_qty - filled_qty` is always what is left to trade.
    """

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
    order_class: OrderClass = OrderClass.SIMPLE
    parent_id: str | None = None  # a leg's parent (bracket/OTO entry, or the OCO's limit order)
    leg_ids: list[str] = field(default_factory=list)
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    hwm: Decimal | None = None  # trailing stop: best price seen since it was submitted
    triggered: bool = False  # a stop's price was reached: it now trades as a market/limit order
    replaced_by: str | None = None
    replaces: str | None = None
    replaced_at: datetime | None = None
    # The last Alpaca JSON rendered, under the `cache_key` it was rendered at: a lookup or a
    # retry's answer renders an order that has not changed since. Never copied to another order.
    _alpaca: tuple[tuple[object, ...], dict[str, Any]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def remaining(self) -> Decimal:
        """Shares still to fill."""
        return self.target_qty - self.filled_qty

    @property
    def is_leg(self) -> bool:
        """True for an exit leg of a bracket, OTO or OCO order."""
        return self.parent_id is not None

    @property
    def group_id(self) -> str | None:
        """The id shared by orders of which only one may fill (a bracket's or OCO's exits).

        A leg's group is its parent's id; an OCO's limit order heads its own group. A bracket's
        or OTO's entry is in no group: its legs are the alternatives, not the entry.
        """
        if self.parent_id is not None:
            return self.parent_id
        return self.id if self.order_class is OrderClass.OCO else None

    def touch(self, now: datetime) -> None:
        """Record that the order changed at `now`."""
        self.updated_at = now

    def cache_key(self) -> tuple[object, ...]:
        """Every field that changes while an order lives (the state file caches renderings by it)."""
        return (
            self.status,
            self.filled_qty,
            self.target_qty,
            self.qty,
            self.hwm,
            self.stop_price,
            self.limit_price,
            self.triggered,
            self.replaced_by,
            self.updated_at,
            self.parent_id,
            tuple(self.leg_ids),
        )

    def to_alpaca(self, legs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Return the order as Alpaca's JSON document, with `legs` rendered inside when given.

        Each call returns a dict of its own (a caller may change it); without legs the document
        is rendered once per change of the order and copied after.
        """
        if legs is not None:
            return self._render(legs)
        key = self.cache_key()
        cached = self._alpaca
        if cached is None or cached[0] != key:
            cached = (key, self._render(None))
            self._alpaca = cached
        return dict(cached[1])

    def _render(self, legs: list[dict[str, Any]] | None) -> dict[str, Any]:
        created = iso(self.created_at)
        # Most optional fields are None: tested here rather than in a call to `fmt` or `iso`.
        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": created,
            "updated_at": created if self.updated_at == self.created_at else iso(self.updated_at),
            "submitted_at": created,
            "filled_at": None if self.filled_at is None else iso(self.filled_at),
            "expired_at": None,
            "canceled_at": None if self.canceled_at is None else iso(self.canceled_at),
            "failed_at": None,
            "replaced_at": None if self.replaced_at is None else iso(self.replaced_at),
            "replaced_by": self.replaced_by,
            "replaces": self.replaces,
            "asset_id": asset_id(self.symbol),
            "symbol": self.symbol,
            "asset_class": "us_equity",
            "notional": None if self.notional is None else fmt(self.notional),
            "qty": None if self.qty is None else fmt(self.qty),
            "filled_qty": fmt(self.filled_qty),
            "filled_avg_price": None if self.filled_avg_price is None else fmt(self.filled_avg_price),
            # Alpaca sends "" for simple orders (alpaca-py maps it to SIMPLE); legs carry their
            # parent's class.
            "order_class": "" if self.order_class is OrderClass.SIMPLE else self.order_class.value,
            "order_type": self.order_type.value,
            "type": self.order_type.value,
            "side": self.side.value,
            "position_intent": self.position_intent.value if self.position_intent else None,
            "time_in_force": self.time_in_force.value,
            "limit_price": None if self.limit_price is None else fmt(self.limit_price),
            "stop_price": None if self.stop_price is None else fmt(self.stop_price),
            "status": self.status.value,
            "extended_hours": self.extended_hours,
            "legs": legs,
            "trail_percent": None if self.trail_percent is None else fmt(self.trail_percent),
            "trail_price": None if self.trail_price is None else fmt(self.trail_price),
            "hwm": None if self.hwm is None else fmt(self.hwm),
            "subtag": None,
            "source": None,
            "expires_at": None,
        }

    def to_state(self) -> dict[str, Any]:
        """Return the document stored in the state file: Alpaca's JSON plus what it leaves out."""
        return {
            **self.to_alpaca(),
            "target_qty": fmt(self.target_qty),  # a notional order's qty is null in Alpaca's JSON
            "parent_id": self.parent_id,
            "leg_ids": list(self.leg_ids),
            "triggered": self.triggered,
        }

    @classmethod
    def from_state(cls, doc: dict[str, Any]) -> PaperOrder:
        """Rebuild an order from its state-file document (version 1 documents have no legs)."""
        order_class = doc.get("order_class") or "simple"
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
            order_class=OrderClass(order_class),
            parent_id=_text(doc.get("parent_id")),
            leg_ids=[str(i) for i in doc.get("leg_ids") or ()],
            trail_price=_dec(doc.get("trail_price")),
            trail_percent=_dec(doc.get("trail_percent")),
            hwm=_dec(doc.get("hwm")),
            triggered=bool(doc.get("triggered")),
            replaced_by=_text(doc.get("replaced_by")),
            replaces=_text(doc.get("replaces")),
            replaced_at=_time(doc.get("replaced_at")),
        )


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _time(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def _text(value: object) -> str | None:
    return None if value is None else str(value)
