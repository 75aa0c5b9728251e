"""One paper order: a mutable record, its Alpaca JSON, and its state-file document.

Orders render in the exact JSON shape Alpaca returns, so the in-process broker
(`BrokerOrder.raw`) and the paper server show the same bytes. An order with legs (bracket, OTO,
OCO) keeps its legs' ids; each leg is an order of its own that names its parent.

`BrokerOrder.raw` is rendered only when read (`PaperOrder.deferred_raw`), from the BrokerOrder's
own fields plus the few the JSON shows beyond them (`Extra`), taken when the BrokerOrder was made;
both go through one renderer, `alpaca_json`. The state file keeps a shorter document of its own
(`PaperOrder.to_state`): only the fields the order is rebuilt from.
"""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import orjson

from tradeguard.domain import (
    BrokerOrder,
    OrderClass,
    OrderStatus,
    OrderType,
    PositionIntent,
    Side,
    TimeInForce,
)
from tradeguard.domain.orders import DeferredRaw, crypto_pair

__all__ = ["PaperOrder", "alpaca_json", "asset_id", "dumps", "fmt", "iso"]

# filled_at, canceled_at, replaced_at, hwm, extended_hours: Alpaca's JSON beyond BrokerOrder's fields
Extra = tuple[datetime | None, datetime | None, datetime | None, Decimal | None, bool]

_ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps builds an encoder per call
_ASSET_NAMESPACE = uuid.UUID("6f1d2a8e-3c1b-4d55-9a55-2f0c7e1a9b10")


_PLAIN_DIGITS = 28  # decimal's default precision


def fmt(value: Decimal | None) -> str | None:
    """Render a Decimal the way Alpaca does: plain digits, no exponent, no trailing zeros."""
    if value is None:
        return None
    text = str(value)
    # str() is that text already when it has no exponent and no trailing fractional zero (most
    # quantities and prices), and fewer digits than normalize() rounds to (the context's 28):
    # normalize() and format() cost three times as much.
    if len(text) <= _PLAIN_DIGITS and "E" not in text and ("." not in text or text[-1] != "0"):
        return "0" if text == "-0" else text
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
    if utc.microsecond:
        # orjson's text of a UTC time is isoformat's with "Z" (microseconds shown unless 0), at a
        # sixth of its cost: the state file renders two or three times per order.
        text = orjson.dumps(utc, option=orjson.OPT_UTC_Z)[1:-1].decode()
    else:
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
        """Return the order as Alpaca's JSON document (a dict of its own), with `legs` inside."""
        return alpaca_json(self, self.extra(), legs)

    def deferred_raw(self) -> DeferredRaw:
        """Return the order's `BrokerOrder.raw` as it is now, rendered only if someone reads it.

        It holds what Alpaca's JSON shows beyond `BrokerOrder`'s fields, taken now: the raw of
        an order that changes later still shows the order as it was (as an eager one did).
        """
        extra = (self.filled_at, self.canceled_at, self.replaced_at, self.hwm, self.extended_hours)
        return DeferredRaw(_render_raw, extra)  # `extra()`, inline: once per BrokerOrder made

    def extra(self) -> Extra:
        """Return what Alpaca's JSON of the order shows beyond `BrokerOrder`'s fields."""
        return (self.filled_at, self.canceled_at, self.replaced_at, self.hwm, self.extended_hours)

    def to_state(self) -> dict[str, Any]:
        """Return the document stored in the state file: the fields `from_state` reads.

        Fields that are null, false or empty are left out (`from_state` reads a missing one as
        such), and so is what Alpaca's JSON derives (asset id and class, `submitted_at`, the
        always-null fields): a filled market order is about half its Alpaca JSON, and the journal
        writes one per order. Earlier versions wrote Alpaca's whole JSON plus these fields; it
        reads to the same order.
        """
        created = iso(self.created_at)
        doc: dict[str, Any] = {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side._value_,
            "type": self.order_type._value_,
            "time_in_force": self.time_in_force._value_,
            "status": self.status._value_,
            "created_at": created,
            "updated_at": created if self.updated_at == self.created_at else iso(self.updated_at),
            "target_qty": fmt(self.target_qty),  # a notional order's qty is null in Alpaca's JSON
            "filled_qty": fmt(self.filled_qty),
        }
        self._state_numbers(doc)
        self._state_links(doc)
        return doc

    # Most optional fields are None: tested here rather than in a call to `fmt` or `iso`.
    def _state_numbers(self, doc: dict[str, Any]) -> None:
        if self.qty is not None:
            doc["qty"] = fmt(self.qty)
        if self.notional is not None:
            doc["notional"] = fmt(self.notional)
        if self.filled_avg_price is not None:
            doc["filled_avg_price"] = fmt(self.filled_avg_price)
        if self.limit_price is not None:
            doc["limit_price"] = fmt(self.limit_price)
        if self.stop_price is not None:
            doc["stop_price"] = fmt(self.stop_price)
        if self.trail_price is not None:
            doc["trail_price"] = fmt(self.trail_price)
        if self.trail_percent is not None:
            doc["trail_percent"] = fmt(self.trail_percent)
        if self.hwm is not None:
            doc["hwm"] = fmt(self.hwm)
        if self.position_intent is not None:
            doc["position_intent"] = self.position_intent._value_
        if self.extended_hours:
            doc["extended_hours"] = True
        if self.triggered:
            doc["triggered"] = True

    def _state_links(self, doc: dict[str, Any]) -> None:
        if self.filled_at is not None:
            doc["filled_at"] = iso(self.filled_at)
        if self.canceled_at is not None:
            doc["canceled_at"] = iso(self.canceled_at)
        if self.order_class is not OrderClass.SIMPLE:
            doc["order_class"] = self.order_class._value_
        if self.parent_id is not None:
            doc["parent_id"] = self.parent_id
        if self.leg_ids:
            doc["leg_ids"] = list(self.leg_ids)
        if self.replaced_by is not None:
            doc["replaced_by"] = self.replaced_by
        if self.replaces is not None:
            doc["replaces"] = self.replaces
        if self.replaced_at is not None:
            doc["replaced_at"] = iso(self.replaced_at)

    def state_text(self) -> str:
        """Return `to_state` as compact JSON text (one line)."""
        return dumps(self.to_state())

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


class _Shown(Protocol):
    """The fields of an order that its Alpaca JSON shows (a `PaperOrder` or a `BrokerOrder`)."""

    @property
    def id(self) -> str: ...
    @property
    def client_order_id(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> Side: ...
    @property
    def status(self) -> OrderStatus: ...
    @property
    def qty(self) -> Decimal | None: ...
    @property
    def notional(self) -> Decimal | None: ...
    @property
    def filled_qty(self) -> Decimal: ...
    @property
    def filled_avg_price(self) -> Decimal | None: ...
    @property
    def order_type(self) -> OrderType: ...
    @property
    def time_in_force(self) -> TimeInForce: ...
    @property
    def limit_price(self) -> Decimal | None: ...
    @property
    def stop_price(self) -> Decimal | None: ...
    @property
    def position_intent(self) -> PositionIntent | None: ...
    @property
    def created_at(self) -> datetime | None: ...
    @property
    def updated_at(self) -> datetime | None: ...
    @property
    def order_class(self) -> OrderClass: ...
    @property
    def trail_price(self) -> Decimal | None: ...
    @property
    def trail_percent(self) -> Decimal | None: ...
    @property
    def replaced_by(self) -> str | None: ...
    @property
    def replaces(self) -> str | None: ...


def alpaca_json(o: _Shown, extra: Extra, legs: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Return an order as Alpaca's JSON: from a `PaperOrder`, or from a `BrokerOrder` made of one.

    One renderer for both, so a `BrokerOrder.raw` rendered late is the document an eager one was.

    Args:
        o: The order's fields.
        extra: The rest of what the JSON shows (`PaperOrder.extra`).
        legs: The legs' documents, shown inside (None: no legs shown).
    """
    filled_at, canceled_at, replaced_at, hwm, extended_hours = extra
    created = iso(o.created_at)
    # Most optional fields are None: tested here rather than in a call to `fmt` or `iso`.
    # Enum members' `_value_` is their value without the descriptor `.value` goes through.
    kind = o.order_type._value_
    return {
        "id": o.id,
        "client_order_id": o.client_order_id,
        "created_at": created,
        "updated_at": created if o.updated_at == o.created_at else iso(o.updated_at),
        "submitted_at": created,
        "filled_at": None if filled_at is None else iso(filled_at),
        "expired_at": None,
        "canceled_at": None if canceled_at is None else iso(canceled_at),
        "failed_at": None,
        "replaced_at": None if replaced_at is None else iso(replaced_at),
        "replaced_by": o.replaced_by,
        "replaces": o.replaces,
        "asset_id": asset_id(o.symbol),
        "symbol": o.symbol,
        # Orders name a pair with its slash ("BTC/USD"); no equity symbol has one.
        "asset_class": "crypto" if "/" in o.symbol and crypto_pair(o.symbol) else "us_equity",
        "notional": None if o.notional is None else fmt(o.notional),
        "qty": None if o.qty is None else fmt(o.qty),
        "filled_qty": fmt(o.filled_qty),
        "filled_avg_price": None if o.filled_avg_price is None else fmt(o.filled_avg_price),
        # Alpaca sends "" for simple orders (alpaca-py maps it to SIMPLE); legs carry their
        # parent's class.
        "order_class": "" if o.order_class is OrderClass.SIMPLE else o.order_class._value_,
        "order_type": kind,
        "type": kind,
        "side": o.side._value_,
        "position_intent": o.position_intent._value_ if o.position_intent else None,
        "time_in_force": o.time_in_force._value_,
        "limit_price": None if o.limit_price is None else fmt(o.limit_price),
        "stop_price": None if o.stop_price is None else fmt(o.stop_price),
        "status": o.status._value_,
        "extended_hours": extended_hours,
        "legs": legs,
        "trail_percent": None if o.trail_percent is None else fmt(o.trail_percent),
        "trail_price": None if o.trail_price is None else fmt(o.trail_price),
        "hwm": None if hwm is None else fmt(hwm),
        "subtag": None,
        "source": None,
        "expires_at": None,
    }


def dumps(doc: Any) -> str:
    """Return `doc` as compact JSON text, the way the state file writes it (ten times json's speed).

    orjson writes text as UTF-8 and refuses what UTF-8 cannot hold (a lone surrogate, which a
    client order id parsed from JSON may carry): json writes that as an escape.
    """
    try:
        return orjson.dumps(doc).decode()
    except orjson.JSONEncodeError:
        return _ENCODE(doc)


def _render_raw(order: BrokerOrder, extra: Extra) -> dict[str, Any]:
    # A nested order's legs are BrokerOrders of their own, made with it: each shows a copy of
    # its leg's raw, so changing one document never changes the other.
    legs = [dict(leg.raw) for leg in order.legs] if order.legs else None
    return alpaca_json(order, extra, legs)


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _time(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def _text(value: object) -> str | None:
    return None if value is None else str(value)
