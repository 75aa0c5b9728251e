"""The paper server's handlers: one function per served route over a PaperBroker.

Each handler takes the broker, the path placeholders, the query and the raw body, and returns a
`Reply`; refusals propagate as `OrderRejected` for the server to render. No sockets here. The
routes themselves (method, path, name) are in `tradeguard.paper.routes`; handlers are keyed by
route name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from uuid import UUID

from tradeguard.domain import BrokerPosition, Side
from tradeguard.errors import OrderRejected
from tradeguard.faults.plan import Fault, FaultAction
from tradeguard.paper.broker import PaperBroker
from tradeguard.paper.market_data import bars_json, latest_quotes_json, latest_trades_json
from tradeguard.paper.refusals import rejection, unprocessable
from tradeguard.paper.routes import Route
from tradeguard.paper.wire import (
    account_configurations_json,
    calendar_json,
    clock_json,
    dump,
    parse_decimal,
    parse_order,
    parse_replace,
    parse_time,
    position_json,
)

__all__ = ["HANDLERS", "Handler", "Query", "Reply", "body_fields", "fault_reply", "handler_for"]

RATE_LIMIT_PER_MIN = 200  # Alpaca's documented limit, echoed in X-Ratelimit-Limit


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer: status, body bytes, content type and extra headers."""

    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=UTF-8"
    headers: tuple[tuple[str, str], ...] = ()


def _json(status: int, document: object) -> Reply:
    return Reply(status, dump(document))


Query = Mapping[str, str]
Handler = Callable[[PaperBroker, Mapping[str, str], Query, bytes], Reply]


def _flag(q: Query, name: str) -> bool:
    # alpaca-py sends booleans as requests renders them ("True"); curl users send "true".
    return q.get(name, "").lower() == "true"


def _list_orders(broker: PaperBroker, _: Mapping[str, str], q: Query, __: bytes) -> Reply:
    limit_text = q.get("limit") or "50"
    if not limit_text.isdigit():
        raise unprocessable("invalid limit")
    side = q.get("side")
    if side not in {None, "", "buy", "sell"}:
        raise unprocessable(f"invalid side {side}")
    orders = broker.list_orders(
        status=q.get("status") or "open",
        symbols=[s for s in q.get("symbols", "").split(",") if s] or None,
        after=parse_time(q.get("after"), "after"),
        until=parse_time(q.get("until"), "until"),
        limit=min(int(limit_text), 500),
        side=Side(side) if side else None,
        direction=q.get("direction") or "desc",
        nested=_flag(q, "nested"),
    )
    return _json(200, [o.raw for o in orders])


def _get_order(broker: PaperBroker, p: Mapping[str, str], q: Query, __: bytes) -> Reply:
    order = broker.get_order(p["id"], nested=_flag(q, "nested"))
    if order is None:
        raise rejection(404, 40410000, "order not found")
    return _json(200, order.raw)


def _by_client_id(broker: PaperBroker, _: Mapping[str, str], q: Query, __: bytes) -> Reply:
    # Alpaca's endpoint answers with the order that carries the id, replaced or not; following
    # `replaced_by` is the client's business (AlpacaBroker does it).
    client_id = q.get("client_order_id")
    order = (
        broker.get_order_by_client_id(client_id, follow=False, nested=_flag(q, "nested"))
        if client_id
        else None
    )
    if order is None:
        raise rejection(404, 40410000, "order not found")
    return _json(200, order.raw)


def _list_assets(broker: PaperBroker, _: Mapping[str, str], q: Query, __: bytes) -> Reply:
    assets = broker.list_assets(
        status=q.get("status"),
        asset_class=q.get("asset_class"),
        exchange=q.get("exchange"),
        attributes=q.get("attributes"),
    )
    return _json(200, [a.to_alpaca() for a in assets])


def _get_asset(broker: PaperBroker, p: Mapping[str, str], _: Query, __: bytes) -> Reply:
    asset = broker.get_asset(p["symbol_or_asset_id"])
    if asset is None:
        raise rejection(404, 40410000, "asset not found")  # seen in Alpaca's answers
    return _json(200, asset.to_alpaca())


def _cancel(broker: PaperBroker, p: Mapping[str, str], _: Query, __: bytes) -> Reply:
    broker.cancel_order(p["id"])
    return Reply(204, content_type="")


def _replace(broker: PaperBroker, p: Mapping[str, str], _: Query, body: bytes) -> Reply:
    return _json(200, broker.replace_order(p["id"], parse_replace(body)).raw)


def _position_json(broker: PaperBroker, position: BrokerPosition) -> dict[str, Any]:
    asset = broker.get_asset(position.symbol)
    if asset is None:
        return position_json(position)
    # A crypto position is listed "BTCUSD" but is the asset "BTC/USD": its id, class and flags.
    return position_json(
        position,
        asset.exchange,
        asset_id=asset.id,
        asset_class=asset.asset_class,
        marginable=asset.marginable,
    )


def _position_symbol(broker: PaperBroker, symbol_or_asset_id: str) -> str:
    """Return the symbol a position route names: Alpaca's take a symbol or an asset id."""
    try:
        UUID(symbol_or_asset_id)
    except ValueError:
        return symbol_or_asset_id  # a symbol never parses as a UUID
    asset = broker.get_asset(symbol_or_asset_id)
    if asset is None:
        raise rejection(404, 40410000, "position does not exist")  # wording assumed
    return asset.symbol


def _position(broker: PaperBroker, p: Mapping[str, str], _: Query, __: bytes) -> Reply:
    position = broker.get_position(_position_symbol(broker, p["symbol"]))
    if position is None:
        raise rejection(404, 40410000, "position does not exist")
    return _json(200, _position_json(broker, position))


def _close(broker: PaperBroker, p: Mapping[str, str], q: Query, __: bytes) -> Reply:
    qty = parse_decimal(q.get("qty") or None, "qty", in_body=False)
    percentage = parse_decimal(q.get("percentage") or None, "percentage", in_body=False)
    symbol = _position_symbol(broker, p["symbol"])
    return _json(200, broker.close_position(symbol, qty=qty, percentage=percentage).raw)


def _close_all(broker: PaperBroker, _: Mapping[str, str], q: Query, __: bytes) -> Reply:
    results = broker.close_all_positions(cancel_orders=q.get("cancel_orders", "").lower() == "true")
    items: list[dict[str, Any]] = [
        {"symbol": symbol, "status": 200, "body": result.raw}
        if not isinstance(result, OrderRejected)
        else {"symbol": symbol, "status": result.status_code, "body": result.body}
        for symbol, result in results.items()
    ]
    return _json(207, items)


HANDLERS: Mapping[str, Handler] = MappingProxyType(
    {
        "submit_order": lambda b, _, __, body: _json(200, b.submit_order(parse_order(body)).raw),
        "list_orders": _list_orders,
        "cancel_all_orders": lambda b, *_: _json(
            207, [{"id": i, "status": 200} for i in b.cancel_all_orders()]
        ),
        "get_order": _get_order,
        "cancel_order": _cancel,
        "replace_order": _replace,
        "get_order_by_client_id": _by_client_id,
        "list_positions": lambda b, *_: _json(200, [_position_json(b, p) for p in b.list_positions()]),
        "close_all_positions": _close_all,
        "get_position": _position,
        "close_position": _close,
        "list_assets": _list_assets,
        "get_asset": _get_asset,
        "get_account": lambda b, *_: _json(200, b.account()),
        "get_clock": lambda b, *_: _json(200, clock_json(b.clock.now())),
        "get_calendar": lambda _b, _p, q, _body: _json(200, calendar_json(q)),
        "latest_stock_trades": lambda b, _p, q, _body: _json(200, latest_trades_json(b, q)),
        "latest_stock_quotes": lambda b, _p, q, _body: _json(200, latest_quotes_json(b, q)),
        "stock_bars": lambda b, _p, q, _body: _json(200, bars_json(b, q)),
        "get_account_configurations": lambda b, *_: _json(
            200, account_configurations_json(shorting_enabled=bool(b.account()["shorting_enabled"]))
        ),
    }
)
"""The handler of each route, by the route's name in `tradeguard.paper.routes.ROUTES`."""


def handler_for(route: Route) -> Handler:
    """Return the handler of a served route."""
    return HANDLERS[route.name]


def fault_reply(fault: Fault, now: float) -> Reply:
    """Return the answer a not-processed or accept-then-error fault sends."""
    body = fault.effective_body
    headers: tuple[tuple[str, str], ...] = ()
    if fault.action is FaultAction.RATE_LIMIT:
        headers = (
            ("X-Ratelimit-Limit", str(RATE_LIMIT_PER_MIN)),
            ("X-Ratelimit-Remaining", "0"),
            ("X-Ratelimit-Reset", str(int(now) + 60)),
        )
    if isinstance(body, str):
        kind = "text/html" if body.lstrip().startswith("<") else "text/plain"
        return Reply(fault.effective_status, body.encode(), f"{kind}; charset=utf-8", headers)
    return Reply(fault.effective_status, dump(body), headers=headers)


def body_fields(body: bytes) -> dict[str, object]:
    """Return the scalar fields of a JSON object body, for fault matching ({} if not JSON)."""
    try:
        doc = json.loads(body) if body else None
    except (ValueError, RecursionError):
        return {}
    return (
        {k: v for k, v in doc.items() if isinstance(v, str | int | float | bool)}
        if isinstance(doc, dict)
        else {}
    )
