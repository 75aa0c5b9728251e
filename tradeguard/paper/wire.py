"""Alpaca's wire format for the paper server: parse request bodies and queries, render responses.

Pure functions, no sockets: each raises `OrderRejected` with the body Alpaca would answer, so the
server's only job is to move bytes. A JSON type Alpaca's decoder could not read (an object where
a number belongs) is 400 "request body format is invalid"; a readable but wrong value is a 422.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from tradeguard.domain import (
    BrokerPosition,
    OrderClass,
    OrderRequest,
    OrderType,
    PositionIntent,
    ReplaceRequest,
    Side,
    TimeInForce,
)
from tradeguard.errors import BrokerError, OrderRejected
from tradeguard.paper.orders import asset_id as symbol_asset_id
from tradeguard.paper.orders import fmt
from tradeguard.paper.refusals import rejection, unprocessable

__all__ = [
    "clock_json",
    "dump",
    "error_body",
    "parse_decimal",
    "parse_order",
    "parse_replace",
    "parse_time",
    "position_json",
]

_EASTERN = ZoneInfo("America/New_York")
_CENT = Decimal("0.01")


def dump(document: object) -> bytes:
    """Serialize compactly, as Alpaca's Go server does."""
    return json.dumps(document, separators=(",", ":")).encode()


def error_body(exc: BrokerError) -> bytes:
    """Return the JSON body of a refusal."""
    return dump(exc.body or {"code": exc.code, "message": exc.message})


def _bad_format() -> OrderRejected:
    return rejection(400, 40010000, "request body format is invalid")


def parse_decimal(value: object, name: str, *, in_body: bool = True) -> Decimal | None:
    """Read a number sent as a JSON number or a numeric string (alpaca-py sends floats)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _bad_format() if in_body else unprocessable(f"invalid {name}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise unprocessable(f"invalid {name}") from None
    if not number.is_finite():
        raise unprocessable(f"invalid {name}")
    return number


def _text(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad_format()
    return value


_E = TypeVar("_E", Side, OrderType, TimeInForce, PositionIntent, OrderClass)


def _choice(doc: Mapping[str, Any], key: str, kind: type[_E]) -> _E | None:
    text = _text(doc, key)
    if text is None:
        return None
    try:
        return kind(text.lower())
    except ValueError:
        raise unprocessable(f"invalid {key} {text}") from None


def _object(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """Return a nested object (take_profit, stop_loss), {} when absent; another type is 400."""
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad_format()
    return value


def _order_class(doc: Mapping[str, Any]) -> OrderClass:
    text = _text(doc, "order_class")
    if not text:
        return OrderClass.SIMPLE  # Alpaca reads "" and a missing class as simple
    if text.lower() == "mleg":
        raise unprocessable("order_class mleg is not supported by the paper broker (no options)")
    chosen = _choice(doc, "order_class", OrderClass)
    assert chosen is not None
    return chosen


def parse_order(body: bytes) -> OrderRequest:
    """Turn a `POST /v2/orders` body into an `OrderRequest`, refusing what Alpaca refuses.

    Only the shape is checked here (Alpaca's decoder: a wrong JSON type is a 400); what the
    values mean is checked by the broker, the same in process and over HTTP.
    """
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise _bad_format() from None
    if not isinstance(doc, dict):
        raise _bad_format()
    symbol = _text(doc, "symbol")
    intent = _choice(doc, "position_intent", PositionIntent)
    side = _choice(doc, "side", Side)
    order_type = _choice(doc, "type", OrderType) or _choice(doc, "order_type", OrderType)
    tif = _choice(doc, "time_in_force", TimeInForce)
    extended = doc.get("extended_hours", False)
    if extended is not None and not isinstance(extended, bool):
        raise _bad_format()
    order_class = _order_class(doc)
    profit, loss = _object(doc, "take_profit"), _object(doc, "stop_loss")
    if not symbol:
        raise unprocessable("symbol is required")
    if side is None and intent is not None:
        # alpaca-py lets position_intent stand in for side.
        side = Side.BUY if intent.value.startswith("buy") else Side.SELL
    if side is None:
        raise unprocessable("side is required")
    if order_type is None:
        raise unprocessable("type is required")
    if tif is None:
        raise unprocessable("time_in_force is required")
    return OrderRequest(
        symbol=symbol,
        side=side,
        client_order_id=_text(doc, "client_order_id") or "",
        qty=parse_decimal(doc.get("qty"), "qty"),
        notional=parse_decimal(doc.get("notional"), "notional"),
        order_type=order_type,
        time_in_force=tif,
        limit_price=parse_decimal(doc.get("limit_price"), "limit_price"),
        stop_price=parse_decimal(doc.get("stop_price"), "stop_price"),
        position_intent=intent,
        extended_hours=bool(extended),
        order_class=order_class,
        take_profit_limit_price=parse_decimal(profit.get("limit_price"), "take_profit.limit_price"),
        stop_loss_stop_price=parse_decimal(loss.get("stop_price"), "stop_loss.stop_price"),
        stop_loss_limit_price=parse_decimal(loss.get("limit_price"), "stop_loss.limit_price"),
        trail_price=parse_decimal(doc.get("trail_price"), "trail_price"),
        trail_percent=parse_decimal(doc.get("trail_percent"), "trail_percent"),
    )


def parse_replace(body: bytes) -> ReplaceRequest:
    """Turn a `PATCH /v2/orders/{id}` body into a `ReplaceRequest`."""
    try:
        doc = json.loads(body) if body else {}
    except (ValueError, RecursionError):
        raise _bad_format() from None
    if not isinstance(doc, dict):
        raise _bad_format()
    return ReplaceRequest(
        qty=parse_decimal(doc.get("qty"), "qty"),
        limit_price=parse_decimal(doc.get("limit_price"), "limit_price"),
        stop_price=parse_decimal(doc.get("stop_price"), "stop_price"),
        trail=parse_decimal(doc.get("trail"), "trail"),
        time_in_force=_choice(doc, "time_in_force", TimeInForce),
        client_order_id=_text(doc, "client_order_id"),
    )


def parse_time(value: str | None, name: str) -> datetime | None:
    """Read an RFC 3339 time (or a date) from a query; a naive one is taken as UTC."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace(" ", "+"))
    except ValueError:
        raise unprocessable(f"invalid {name}") from None
    # A query without offset means UTC at Alpaca; never compare naive with aware times.
    return when if when.tzinfo is not None else when.replace(tzinfo=ZoneInfo("UTC"))


def position_json(
    position: BrokerPosition,
    exchange: str = "NASDAQ",
    *,
    asset_id: str | None = None,
    asset_class: str = "us_equity",
    marginable: bool = True,
) -> dict[str, Any]:
    """Render a position as Alpaca's `GET /v2/positions` item (`exchange` and the rest: its asset's)."""
    qty = position.qty
    avg = position.avg_entry_price or Decimal(0)
    value = position.market_value if position.market_value is not None else qty * avg
    cost = qty * avg
    profit = value - cost
    price = value / qty if qty else avg
    ratio = (profit / abs(cost)).quantize(Decimal("0.0001")) if cost else Decimal(0)
    return {
        "asset_id": asset_id or symbol_asset_id(position.symbol),
        "symbol": position.symbol,
        "exchange": exchange,
        "asset_class": asset_class,
        "asset_marginable": marginable,
        "qty": fmt(qty),
        "qty_available": fmt(position.qty_available),
        "avg_entry_price": fmt(avg),
        "side": position.side,
        "market_value": fmt(value.quantize(_CENT)),
        "cost_basis": fmt(cost.quantize(_CENT)),
        "unrealized_pl": fmt(profit.quantize(_CENT)),
        "unrealized_plpc": fmt(ratio),
        "unrealized_intraday_pl": fmt(profit.quantize(_CENT)),
        "unrealized_intraday_plpc": fmt(ratio),
        "current_price": fmt(price.quantize(Decimal("0.0001"))),
        "lastday_price": fmt(price.quantize(Decimal("0.0001"))),
        "change_today": "0",
    }


def _next_at(local: datetime, hour: int, minute: int) -> datetime:
    """Return the first weekday time hour:minute US/Eastern strictly after `local`."""
    for days in range(8):
        day = local.date() + timedelta(days=days)
        # Built from the calendar date, so a DST change keeps 09:30 at 09:30 local.
        candidate = datetime.combine(day, time(hour, minute), tzinfo=_EASTERN)
        if day.weekday() < 5 and candidate > local:
            return candidate
    raise AssertionError("a weekday comes within eight days")


def clock_json(now: datetime) -> dict[str, Any]:
    """Render `GET /v2/clock`: regular hours 09:30-16:00 US/Eastern on weekdays (no holidays)."""
    local = now.astimezone(_EASTERN)
    next_open = _next_at(local, 9, 30)
    next_close = _next_at(local, 16, 0)
    return {
        "timestamp": local.isoformat(),
        # Open exactly when the next close comes before the next open.
        "is_open": next_close < next_open,
        "next_open": next_open.isoformat(),
        "next_close": next_close.isoformat(),
    }


# Alpaca's calendar runs from 1970 to 2029; without `start`/`end` it lists all of it.
CALENDAR_FIRST, CALENDAR_LAST = date(1970, 1, 1), date(2029, 12, 31)


def _calendar_date(query: Mapping[str, str], name: str, default: date) -> date:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        # A date, or an RFC 3339 time whose date is taken (alpaca-py sends dates).
        return date.fromisoformat(text[:10])
    except ValueError:
        raise unprocessable(f"invalid {name}: {text!r} is not a date (YYYY-MM-DD)") from None


def _next_weekday(day: date) -> date:
    day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def calendar_json(query: Mapping[str, str]) -> list[dict[str, str]]:
    """Render `GET /v2/calendar`: the market days from `start` to `end`, as `clock_json` keeps them.

    Every weekday is a market day with regular hours 09:30-16:00 US/Eastern (no holidays, no early
    closes: the paper venue's own calendar), settled the next weekday (T+1).
    """
    start = max(_calendar_date(query, "start", CALENDAR_FIRST), CALENDAR_FIRST)
    end = min(_calendar_date(query, "end", CALENDAR_LAST), CALENDAR_LAST)
    days: list[dict[str, str]] = []
    day = start
    while day <= end:
        if day.weekday() < 5:
            days.append(
                {
                    "date": day.isoformat(),
                    "open": "09:30",
                    "close": "16:00",
                    "session_open": "0400",
                    "session_close": "2000",
                    "settlement_date": _next_weekday(day).isoformat(),
                }
            )
        day += timedelta(days=1)
    return days


def account_configurations_json(*, shorting_enabled: bool) -> dict[str, Any]:
    """Render `GET /v2/account/configurations` for a paper account (a cash account, multiplier 1)."""
    return {
        "fractional_trading": True,
        "max_margin_multiplier": "1",
        "no_shorting": not shorting_enabled,
        "suspend_trade": False,
        "trade_confirm_email": "none",
        "ptp_no_exception_entry": False,
        "max_options_trading_level": 0,
    }
