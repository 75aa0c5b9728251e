"""Real Alpaca JSON bodies, and a tiny stateful fake Alpaca served through requests-mock.

The bodies follow what Alpaca's paper API sends (field names, strings for numbers, nanosecond
"Z" times, the error table of ALPACA.md); every builder returns a fresh dict so tests may change
it. `FakeAlpaca` registers the trading routes the adapter uses on a `requests_mock.Mocker`, keeps
orders and positions, refuses a reused client_order_id like Alpaca, and can lose the answer to a
POST after accepting it (the 504-after-accept case behind duplicate orders). Bracket, OTO and
OCO orders get held legs (nested in the answer to the POST and to ``GET /v2/orders/{id}?nested=
true``, never in the by-client-id lookup), and ``PATCH /v2/orders/{id}`` replaces an open order
as Alpaca does (new id, ``replaces``; the old one ``replaced`` with ``replaced_by``).
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import requests_mock

PAPER_URL = "https://paper-api.alpaca.markets"
ORDERS_URL = f"{PAPER_URL}/v2/orders"
BY_CLIENT_ID_URL = f"{PAPER_URL}/v2/orders:by_client_order_id"
POSITIONS_URL = f"{PAPER_URL}/v2/positions"

ORDER_ID = "61e69015-8549-4bfd-b9c3-01e75843f47d"
CLIENT_ORDER_ID = "tg-4b1c0e4f9a2d7c3e8f10a6b5d4c3b2a1"


def order_body(**changes: Any) -> dict[str, Any]:
    """Return an accepted market buy as ``POST /v2/orders`` answers it, with `changes` applied."""
    body: dict[str, Any] = {
        "id": ORDER_ID,
        "client_order_id": CLIENT_ORDER_ID,
        "created_at": "2026-05-21T13:30:01.942282117Z",
        "updated_at": "2026-05-21T13:30:01.944125781Z",
        "submitted_at": "2026-05-21T13:30:01.937734Z",
        "filled_at": None,
        "expired_at": None,
        "canceled_at": None,
        "failed_at": None,
        "replaced_at": None,
        "replaced_by": None,
        "replaces": None,
        "asset_id": "904837e3-3b76-47ec-b432-046db621571b",
        "symbol": "TQQQ",
        "asset_class": "us_equity",
        "notional": None,
        "qty": "12",
        "filled_qty": "0",
        "filled_avg_price": None,
        "order_class": "",
        "order_type": "market",
        "type": "market",
        "side": "buy",
        "position_intent": "buy_to_open",
        "time_in_force": "day",
        "limit_price": None,
        "stop_price": None,
        "status": "accepted",
        "extended_hours": False,
        "legs": None,
        "trail_percent": None,
        "trail_price": None,
        "hwm": None,
        "subtag": None,
        "source": None,
        "expires_at": "2026-05-21T20:00:00Z",
    }
    body.update(changes)
    return body


def filled_sell_body(**changes: Any) -> dict[str, Any]:
    """Return a filled sell-to-close limit order as ``GET /v2/orders`` lists it."""
    return order_body(
        id="0b11f089-722d-4ced-9beb-e2eeed3637dc",
        client_order_id="tg-exit-0001",
        type="limit",
        order_type="limit",
        side="sell",
        position_intent="sell_to_close",
        limit_price="75.33",
        status="filled",
        filled_qty="12",
        filled_avg_price="75.335",
        filled_at="2026-05-21T13:31:02.113Z",
        **changes,
    )


def position_body(
    symbol: str = "TQQQ", qty: str = "12", qty_available: str | None = "6", **changes: Any
) -> dict[str, Any]:
    """Return a position as ``GET /v2/positions`` lists it (6 of 12 shares held by an open sell)."""
    short = qty.startswith("-")
    body: dict[str, Any] = {
        "asset_id": "8ccae427-5dd0-45b3-b5fe-7ba5e422c766",
        "symbol": symbol,
        "exchange": "NASDAQ",
        "asset_class": "us_equity",
        "asset_marginable": True,
        "qty": qty,
        "avg_entry_price": "75.21",
        "side": "short" if short else "long",
        "market_value": "-903.96" if short else "903.96",
        "cost_basis": "902.52",
        "unrealized_pl": "1.44",
        "unrealized_plpc": "0.0015955547",
        "unrealized_intraday_pl": "1.44",
        "unrealized_intraday_plpc": "0.0015955547",
        "current_price": "75.33",
        "lastday_price": "74.02",
        "change_today": "0.0176979195",
        "qty_available": qty_available,
    }
    body.update(changes)
    return body


def error_text(code: int, message: str, **extra: str) -> str:
    """Return an Alpaca JSON error body (keys sorted, as Alpaca's server sends them)."""
    return json.dumps(
        dict(sorted({"code": code, "message": message, **extra}.items())), separators=(",", ":")
    )


HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)
HTML_504 = (
    "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    "<center><h1>504 Gateway Time-out</h1></center>\r\n</body>\r\n</html>\r\n"
)

DUPLICATE_CLIENT_ORDER_ID = (422, error_text(40010001, "client_order_id must be unique"))
ORDER_NOT_FOUND = (404, error_text(40410000, "order not found"))
POSITION_NOT_FOUND = (404, error_text(40410000, "position does not exist"))
INSUFFICIENT_QTY = (
    403,
    error_text(
        40310000,
        "insufficient qty available for order (requested: 18, available: 6)",
        available="6",
        existing_qty="12",
        held_for_orders="6",
        symbol="TQQQ",
    ),
)

# Every row of ALPACA.md's error table, as (HTTP status, body text).
ALPACA_ERRORS: dict[str, tuple[int, str]] = {
    "duplicate_client_order_id": DUPLICATE_CLIENT_ORDER_ID,
    "position_intent_mismatch": (
        422,
        error_text(42210000, "position intent mismatch, inferred: sell_to_open"),
    ),
    "position_does_not_exist": POSITION_NOT_FOUND,
    "order_not_found": ORDER_NOT_FOUND,
    "insufficient_qty": INSUFFICIENT_QTY,
    "insufficient_buying_power": (
        403,
        error_text(40310000, "insufficient buying power", buying_power="1204.17", cost_basis="3653.28"),
    ),
    "not_allowed_to_short": (403, error_text(40310000, "account is not allowed to short")),
    "wash_trade_403": (403, error_text(40310000, "potential wash trade detected. use complex orders")),
    "wash_trade_422": (422, error_text(42210000, "potential wash trade detected. use complex orders")),
    "pattern_day_trading": (403, error_text(40310100, "trade denied due to pattern day trading protection")),
    "qty_required": (422, error_text(40010001, "qty is required")),
    "qty_or_notional_required": (422, error_text(40010001, "qty or notional is required")),
    "sub_penny_limit": (
        422,
        error_text(
            42210000,
            "invalid limit_price 290.123. sub-penny increment does not fulfill minimum pricing criteria",
        ),
    ),
    "body_format_invalid": (400, error_text(40010000, "request body format is invalid")),
    "unauthorized": (401, error_text(40110000, "request is not authorized")),
    "rate_limited": (429, "rate limit exceeded\n"),
    "server_error_empty": (500, ""),
    "bad_gateway_html": (502, HTML_502),
    "unavailable_empty": (503, ""),
    "gateway_timeout_html": (504, HTML_504),
}

_TERMINAL = {"filled", "canceled", "expired", "replaced", "rejected", "done_for_day"}
_EPOCH = datetime(2026, 5, 21, 13, 30, tzinfo=UTC)


@dataclass
class PostFault:
    """What the next ``POST /v2/orders`` does instead of answering normally.

    Attributes:
        accept: Record the order before failing (the answer is lost, the order exists).
        status: Answer with this HTTP status and `text`...
        text: ...as the body.
        exc: ...or raise this exception (a transport failure) instead.
    """

    accept: bool
    status: int = 504
    text: str = HTML_504
    exc: BaseException | None = None


class FakeAlpaca:
    """A small stateful Alpaca trading API on a `requests_mock.Mocker` (paper URL by default)."""

    def __init__(self, mocker: requests_mock.Mocker, base_url: str = PAPER_URL) -> None:
        self.orders: dict[str, dict[str, Any]] = {}  # by client_order_id, in submission order
        self.positions: dict[str, dict[str, Any]] = {}
        self.post_faults: list[PostFault] = []
        self._ticks = itertools.count(1)
        api = re.escape(f"{base_url}/v2")
        mocker.post(f"{base_url}/v2/orders", text=self._post_order)
        mocker.get(f"{base_url}/v2/orders:by_client_order_id", text=self._get_by_client_id)
        mocker.get(f"{base_url}/v2/orders", text=self._list_orders)
        mocker.delete(re.compile(api + r"/orders/[^/?]+$"), text=self._cancel)
        mocker.get(re.compile(api + r"/orders/[^/?:]+(\?.*)?$"), text=self._get_order)
        mocker.patch(re.compile(api + r"/orders/[^/?]+$"), text=self._replace)
        mocker.get(f"{base_url}/v2/positions", text=self._list_positions)
        mocker.get(re.compile(api + r"/positions/[^/?]+$"), text=self._get_position)

    def add_order(self, submitted_at: datetime | None = None, **changes: Any) -> dict[str, Any]:
        """Store an order as if submitted earlier; `changes` override `order_body` fields."""
        when = _rfc3339(submitted_at or self._now())
        body = order_body(id=str(uuid.uuid4()), client_order_id=f"tg-{uuid.uuid4().hex[:20]}")
        body.update(submitted_at=when, created_at=when, updated_at=when)
        body.update(changes)
        self.orders[body["client_order_id"]] = body
        return body

    def add_position(self, symbol: str, qty: str, qty_available: str | None = None) -> dict[str, Any]:
        """Hold `qty` shares of `symbol` (negative: short)."""
        body = position_body(symbol, qty, qty if qty_available is None else qty_available)
        self.positions[symbol] = body
        return body

    def lose_next_answer(self, status: int = 504, text: str = HTML_504) -> None:
        """Accept the next POST, then answer it with an error (as a 504 after acceptance does)."""
        self.post_faults.append(PostFault(accept=True, status=status, text=text))

    def raise_on_next_post(self, exc: BaseException, *, accept: bool) -> None:
        """Make the next POST raise `exc`, with or without recording the order first."""
        self.post_faults.append(PostFault(accept=accept, exc=exc))

    def _now(self) -> datetime:
        return _EPOCH + timedelta(milliseconds=next(self._ticks))

    def _post_order(self, request: Any, context: Any) -> str:
        sent: dict[str, Any] = request.json()
        cid = sent.get("client_order_id") or str(uuid.uuid4())
        if cid in self.orders:
            context.status_code, text = DUPLICATE_CLIENT_ORDER_ID
            return text
        refusal = self._position_intent_refusal(sent)
        if refusal is not None:
            context.status_code, text = refusal
            return text
        fault = self.post_faults.pop(0) if self.post_faults else None
        if fault is None or fault.accept:
            legs = self._legs(sent, cid)
            body = self.add_order(
                client_order_id=cid,
                symbol=sent["symbol"],
                side=sent["side"],
                type=sent["type"],
                order_type=sent["type"],
                time_in_force=sent["time_in_force"],
                qty=sent.get("qty"),
                notional=sent.get("notional"),
                limit_price=sent.get("limit_price"),
                stop_price=sent.get("stop_price"),
                position_intent=sent.get("position_intent"),
                extended_hours=sent.get("extended_hours", False),
                status="pending_new",
                order_class=sent.get("order_class") or "",
                trail_price=sent.get("trail_price"),
                trail_percent=sent.get("trail_percent"),
                leg_ids=[leg["id"] for leg in legs],
            )
        if fault is not None:
            if fault.exc is not None:
                raise fault.exc
            context.status_code = fault.status
            return fault.text
        return json.dumps(self._render(body, nested=True))

    def _legs(self, sent: dict[str, Any], parent_cid: str) -> list[dict[str, Any]]:
        """Store a bracket's, OTO's or OCO's legs as held orders of their own; return them."""
        order_class = sent.get("order_class") or "simple"
        if order_class == "simple":
            return []
        side = sent["side"] if order_class == "oco" else ("sell" if sent["side"] == "buy" else "buy")
        shapes = []
        if order_class != "oco" and "take_profit" in sent:
            shapes.append({"type": "limit", "limit_price": sent["take_profit"]["limit_price"]})
        if "stop_loss" in sent:
            loss = sent["stop_loss"]
            kind = "stop_limit" if "limit_price" in loss else "stop"
            shapes.append(
                {"type": kind, "stop_price": loss["stop_price"], "limit_price": loss.get("limit_price")}
            )
        legs = []
        for shape in shapes:
            leg = self.add_order(
                client_order_id=str(uuid.uuid4()),
                symbol=sent["symbol"],
                side=side,
                order_type=shape["type"],
                time_in_force=sent["time_in_force"],
                qty=sent.get("qty"),
                order_class=order_class,
                position_intent=f"{side}_to_close",
                status="held",
                parent_client_order_id=parent_cid,
                **shape,
            )
            legs.append(leg)
        return legs

    def _render(self, body: dict[str, Any], *, nested: bool) -> dict[str, Any]:
        """Alpaca's JSON of a stored order: legs inside only when nested (internal keys dropped)."""
        shown = {k: v for k, v in body.items() if k not in {"leg_ids", "parent_client_order_id"}}
        if nested and body.get("leg_ids"):
            by_id = {o["id"]: o for o in self.orders.values()}
            shown["legs"] = [self._render(by_id[i], nested=False) for i in body["leg_ids"]]
        return shown

    def _by_id(self, request: Any) -> dict[str, Any] | None:
        order_id = unquote(urlparse(request.url).path.rsplit("/", 1)[1])
        return next((o for o in self.orders.values() if o["id"] == order_id), None)

    def _get_order(self, request: Any, context: Any) -> str:
        order = self._by_id(request)
        if order is None:
            context.status_code, text = ORDER_NOT_FOUND
            return text
        return json.dumps(self._render(order, nested=_query(request).get("nested", "").lower() == "true"))

    def _replace(self, request: Any, context: Any) -> str:
        old = self._by_id(request)
        if old is None:
            context.status_code, text = ORDER_NOT_FOUND
            return text
        if old["status"] in _TERMINAL:
            context.status_code = 422
            return error_text(40010001, "unable to replace order, order is not open")
        changes: dict[str, Any] = request.json()
        cid = changes.pop("client_order_id", None) or str(uuid.uuid4())
        if cid in self.orders:
            context.status_code, text = DUPLICATE_CLIENT_ORDER_ID
            return text
        kept = {
            k: v
            for k, v in old.items()
            if k not in {"id", "client_order_id", "submitted_at", "created_at", "updated_at"}
        }
        new = self.add_order(
            **{**kept, **changes, "client_order_id": cid, "replaces": old["id"], "status": "new"}
        )
        old.update(status="replaced", replaced_by=new["id"], replaced_at=new["submitted_at"])
        return json.dumps(self._render(new, nested=True))

    def _position_intent_refusal(self, sent: dict[str, Any]) -> tuple[int, str] | None:
        """Refuse a `position_intent` that contradicts the position, as Alpaca does (422 42210000).

        Alpaca infers the intent from the side and the position held: a sell while long closes,
        a sell while flat or short opens (and the mirror for buys). A stated intent that differs
        is refused with the inferred one in the message.
        """
        stated = sent.get("position_intent")
        if not stated:
            return None
        # A crypto order names "BTC/USD", its position is listed as "BTCUSD" (alpaca-py #490).
        name = sent["symbol"].replace("/", "")
        held = next((p for p in self.positions.values() if p["symbol"].replace("/", "") == name), None)
        qty = Decimal(held["qty"]) if held is not None else Decimal(0)
        side = sent["side"]
        closing = qty > 0 if side == "sell" else qty < 0
        inferred = f"{side}_to_{'close' if closing else 'open'}"
        if stated == inferred:
            return None
        return 422, error_text(42210000, f"position intent mismatch, inferred: {inferred}")

    def _get_by_client_id(self, request: Any, context: Any) -> str:
        cid = _query(request).get("client_order_id", "")
        if cid in self.orders:
            return json.dumps(self._render(self.orders[cid], nested=False))
        context.status_code, text = ORDER_NOT_FOUND
        return text

    def _list_orders(self, request: Any, context: Any) -> str:
        query = _query(request)
        status = query.get("status", "open")
        symbols = set(query["symbols"].split(",")) if "symbols" in query else None
        after = datetime.fromisoformat(query["after"]) if "after" in query else None
        selected = [
            order
            for order in self.orders.values()
            if _status_matches(order["status"], status)
            and (symbols is None or order["symbol"] in symbols)
            and (after is None or datetime.fromisoformat(order["submitted_at"]) > after)
        ]
        selected.sort(
            key=lambda order: datetime.fromisoformat(order["submitted_at"]),
            reverse=query.get("direction", "desc") == "desc",
        )
        return json.dumps([self._render(o, nested=False) for o in selected[: int(query.get("limit", "50"))]])

    def _cancel(self, request: Any, context: Any) -> str:
        order_id = unquote(urlparse(request.url).path.rsplit("/", 1)[1])
        for order in self.orders.values():
            if order["id"] == order_id:
                if order["status"] in _TERMINAL:
                    context.status_code = 422
                    return error_text(42210000, f'order is already in "{order["status"]}" state')
                order["status"] = "pending_cancel"
                context.status_code = 204
                return ""
        context.status_code, text = ORDER_NOT_FOUND
        return text

    def _list_positions(self, request: Any, context: Any) -> str:
        return json.dumps(list(self.positions.values()))

    def _get_position(self, request: Any, context: Any) -> str:
        symbol = unquote(urlparse(request.url).path.rsplit("/", 1)[1])
        for held in self.positions.values():
            if held["symbol"].replace("/", "") == symbol:
                return json.dumps(held)
        context.status_code, text = POSITION_NOT_FOUND
        return text


def _query(request: Any) -> dict[str, str]:
    # requests-mock's own `qs` lower-cases values; client_order_ids are case-sensitive.
    return {key: values[-1] for key, values in parse_qs(urlparse(request.url).query).items()}


def _status_matches(order_status: str, query: str) -> bool:
    if query == "all":
        return True
    return (order_status in _TERMINAL) == (query == "closed")


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")
