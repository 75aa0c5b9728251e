"""`tradeguard import alpaca-orders`: an Alpaca order history as a session, suspected duplicates listed.

Reads what `TradingClient.get_orders(GetOrdersRequest(status="all"))` returns, serialised (a list
of orders, `{"orders": [...]}`, one order object per line, or one order's object alone), or
Alpaca's CSV export of orders (header names in any case, spaces or underscores). `qty` may be
a string or a number.

**Suspected duplicate**: an order with the same symbol, side, quantity, order type and limit and
stop prices as the last such order before it, within `window_secs` (60 s), when neither
client_order_id names a decision (a chain of them, each within the window of the one before, is
one decision: a retry loop's every attempt): a random id (a UUID, Alpaca's default) says
nothing about which decision sent the order, so identical orders close together look like a
retry. Bot-chosen ids that differ mark distinct decisions and are left alone. Each suspected
group becomes one decision with several attempts, so a replay shows what a guard would have
blocked.

**Orders that did not fill all**: a `filled` order (or one in a history without statuses)
replays as ordered; any other replays what it had filled when the history was taken (a
canceled order of 10 that filled 4 replays as 4, a `partially_filled` one still open with 40
of 100 filled as 40). One with nothing filled never executed: it is a note, never an attempt,
and neither a suspected duplicate nor what one repeats (a limit order canceled and re-sent at
a new price is one position, not two): tagged `unfilled` when it was canceled, expired or
replaced, `open` when still open (a replay would fill it whole), `rejected` when Alpaca
rejected it (it placed nothing; a replay injects no rejections, so every mode would fill it).
A note makes no price: only a fill does. A replacement (`replace_order`: its `replaces` names
the order it replaced) is the decision of the order it replaced, never a suspected duplicate:
one decision with one attempt when the replaced order filled nothing, else a decision of its
own beside it (each filled its part).

**Multi-leg options orders** (`order_class` `mleg`): Alpaca leaves the symbol, side and type
out of such an order's top level (each leg names its own), and tradeguard does not guard them
(`GuardedTradingClient` passes them by): each is one note naming its legs, never an attempt,
and the rest of the history is imported.

**Repeated rows**: the same order id twice (pages fetched with an overlap, a CSV row pasted twice)
is one order, taken once; how many rows were dropped is reported. A repeat that disagrees on the
symbol, side, quantity or time is not the same order: the history is refused, naming the line.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from replay.importers.common import (
    ImportReport,
    Proto,
    csv_rows,
    is_json,
    json_items,
    number,
    parse_time,
    read_text,
    write_session,
)
from tradeguard import SessionFormatError, canonical_symbol

__all__ = ["import_alpaca_orders"]

_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I)
_CLOSES = {"sell_to_close", "buy_to_close"}
_ENDED = frozenset({"canceled", "cancelled", "expired", "replaced"})
"""Statuses of an order that will fill nothing more: what it filled by then is all it did."""
_AS_ORDERED = frozenset({"filled", ""})
"""Statuses of an order replayed as ordered: filled, or a history that gives no status. Any other
(ended, or still open: new, accepted, partially_filled, done_for_day, pending_…) replays what it
had filled when the history was taken."""
# Alpaca's dashboard export names -> the API's field names (after lower-casing, `_` for spaces).
_CSV_NAMES = {
    "order_id": "id",
    "avg_filled_price": "filled_avg_price",
    "average_filled_price": "filled_avg_price",
    "filled_price": "filled_avg_price",
    "filled_quantity": "filled_qty",
    "quantity": "qty",
    "avg_fill_price": "filled_avg_price",
    "average_fill_price": "filled_avg_price",
    "avg_price": "filled_avg_price",
    "order_type": "type",
    "created_at": "submitted_at",
    "submitted": "submitted_at",
    "time": "submitted_at",
    "filled": "filled_at",
    "tif": "time_in_force",
}


def _order(line: int, raw: Any, name: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SessionFormatError(name, line, f"expected an order object, got {type(raw).__name__}")
    missing = [
        k
        for k in ("symbol", "side", "submitted_at")
        if not raw.get(k) and not (k == "submitted_at" and raw.get("created_at"))
    ]
    if missing:
        raise SessionFormatError(name, line, f"order without {', '.join(missing)}")
    if raw.get("qty") in (None, "") and raw.get("notional") in (None, ""):
        raise SessionFormatError(name, line, "order without qty or notional")
    side = str(raw["side"]).lower().removeprefix("orderside.")
    if side not in ("buy", "sell"):
        raise SessionFormatError(name, line, f"side {raw['side']!r} is neither buy nor sell")
    try:
        when = parse_time(str(raw.get("submitted_at") or raw.get("created_at")))
    except ValueError:
        raise SessionFormatError(
            name, line, f"submitted_at {raw.get('submitted_at')!r} is not a time"
        ) from None
    qty = raw.get("qty")
    filled = raw.get("filled_qty")
    price = raw.get("filled_avg_price") or raw.get("limit_price")
    return {
        "line": line,
        "t": when,
        "id": str(raw.get("id") or f"line{line}"),
        "coid": str(raw.get("client_order_id") or ""),
        "symbol": canonical_symbol(str(raw["symbol"])),  # BTCUSD and BTC/USD: one pair, as Alpaca holds it
        "side": side,
        "qty": None if qty in (None, "") else number(qty, "qty", name, line),
        "notional": None
        if raw.get("notional") in (None, "")
        else number(raw["notional"], "notional", name, line),
        "filled_qty": Decimal(0) if filled in (None, "") else number(filled, "filled_qty", name, line),
        "price": None if price in (None, "") else number(price, "price", name, line),
        "limit": _price(raw.get("limit_price"), "limit_price", name, line),
        "stop": _price(raw.get("stop_price"), "stop_price", name, line),
        "status": str(raw.get("status") or "").lower().removeprefix("orderstatus."),
        "intent": str(raw.get("position_intent") or "").lower().removeprefix("positionintent.") or None,
        "type": str(raw.get("type") or raw.get("order_type") or "market").lower().removeprefix("ordertype."),
        # None: the history names none (a replay gives a pair gtc, anything else day).
        "tif": str(raw.get("time_in_force") or "").lower().removeprefix("timeinforce.") or None,
        "replaces": str(raw.get("replaces") or "") or None,
    }


def _price(value: object, what: str, name: str, line: int) -> Decimal | None:
    return None if value in (None, "") else number(value, what, name, line)


def _unfilled(order: dict[str, Any]) -> bool:
    """An order with nothing filled that is not `filled` (ended, still open), or a rejected one.

    It never executed. A rejected order placed nothing at all: replayed as an attempt, every
    mode's paper broker would fill it (a replay injects no rejections), so it is a note too;
    so is an order still open with nothing filled (a replay would fill it whole).
    """
    return order["status"] == "rejected" or (order["status"] not in _AS_ORDERED and not order["filled_qty"])


def _tag(order: dict[str, Any]) -> str:
    """The tag of the note an order that never executed becomes."""
    if order["status"] == "rejected":
        return "rejected"
    return "unfilled" if order["status"] in _ENDED else "open"


_SAME_ORDER = ("symbol", "side", "qty", "notional", "t")


def _multi_leg(raw: Any) -> bool:
    """Whether a row is a multi-leg options order (`order_class` `mleg`)."""
    if not isinstance(raw, dict):
        return False
    return str(raw.get("order_class") or "").lower().removeprefix("orderclass.") == "mleg"


def _unique(
    rows: list[tuple[int, Any]], name: str
) -> tuple[list[tuple[int, Any]], list[dict[str, Any]], list[tuple[int, dict[str, Any]]], int]:
    """Take each order id once: return the rows kept, their orders, the multi-leg ones, the count dropped.

    A repeat is the same order seen twice (an overlap of pages, a row pasted twice), not a
    second order: counting it would make a duplicate that never reached the broker. Of two
    copies, the one that saw more filled is kept (a later page may have caught more fills).

    A multi-leg options order (`mleg`) is set apart, not read as an order: Alpaca leaves its
    symbol, side and type out of its top level (each leg names its own), and tradeguard does not
    guard such orders, so a replay has nothing to do with it. It becomes a note (`_multi_leg_note`).

    Raises:
        SessionFormatError: The same id on a different order (symbol, side, size or time).
    """
    kept_rows: list[tuple[int, Any]] = []
    orders: list[dict[str, Any]] = []
    multi: list[tuple[int, dict[str, Any]]] = []
    seen: dict[str, int] = {}  # order id -> its index in `orders`
    seen_multi: set[str] = set()
    for line, raw in rows:
        if _multi_leg(raw):
            if not raw.get("id") or str(raw["id"]) not in seen_multi:
                seen_multi.add(str(raw.get("id") or ""))
                multi.append((line, raw))
            continue
        order = _order(line, raw, name)
        if not (isinstance(raw, dict) and raw.get("id")):  # no id: nothing says it is a repeat
            kept_rows.append((line, raw))
            orders.append(order)
            continue
        index = seen.get(order["id"])
        if index is None:
            seen[order["id"]] = len(orders)
            kept_rows.append((line, raw))
            orders.append(order)
            continue
        first = orders[index]
        if any(first[k] != order[k] for k in _SAME_ORDER):
            raise SessionFormatError(
                name, line, f"order id {order['id']} again, on line {first['line']} for another "
                "symbol, side, quantity or time: two orders cannot share an id",
            )  # fmt: skip
        if order["filled_qty"] > first["filled_qty"]:
            order["line"] = first["line"]
            orders[index] = order
            kept_rows[index] = (first["line"], raw)
    return kept_rows, orders, multi, len(rows) - len(orders) - len(multi)


def _suspects(orders: list[dict[str, Any]], window_secs: float) -> list[dict[str, Any]]:
    """Mark each suspected duplicate with the order it repeats; return the list of them."""
    last: dict[tuple[object, ...], dict[str, Any]] = {}
    by_id: dict[str, dict[str, Any]] = {}
    found = []
    for order in orders:
        size = str(order["qty"] if order["qty"] is not None else f"${order['notional']}")
        # Decimals, compared by value however spelled ("6" and "6.0" are one size; audit 18 #12).
        amount = ("qty", order["qty"]) if order["qty"] is not None else ("$", order["notional"])
        # One order sent again repeats its type and prices too: a limit after a market order is not it.
        key = (order["symbol"], order["side"], amount, order["type"], order["limit"], order["stop"])
        by_id[order["id"]] = order
        replaced = by_id.get(order["replaces"]) if order["replaces"] else None
        if replaced is not None:  # Alpaca replaced that order with this one: the same decision
            name = replaced["decision"]
            if replaced["filled_qty"]:  # it filled its part: this one fills the rest, beside it
                name = f"{name[:150]} (replaced by {order['coid'] or order['id']})"
            order["decision"] = name
            if not _unfilled(order):  # one that never executed is nothing a later order repeats
                last[key] = order
            continue
        order["decision"] = f"{order['symbol']} {order['side']} {size} {order['coid'] or order['id']}"
        if _unfilled(order):  # it never executed: it repeats nothing, and nothing repeats it
            continue
        first = last.get(key)
        random_ids = not order["coid"] or _UUID.match(order["coid"])
        if (
            first is not None
            and random_ids
            and (not first["coid"] or _UUID.match(first["coid"]))
            and (order["t"] - first["t"]).total_seconds() <= window_secs
        ):
            order["decision"] = first["decision"]
            found.append(
                {
                    "id": order["id"], "client_order_id": order["coid"] or None, "symbol": order["symbol"],
                    "side": order["side"], "qty": size, "submitted_at": order["t"].isoformat(),
                    "duplicate_of": first["id"], "seconds_after": (order["t"] - first["t"]).total_seconds(),
                }
            )  # fmt: skip
        # The latest of a chain is what the next one is held against: a retry loop that sends one
        # decision at 0, 35 and 70 s sends three attempts of it, each within the window of the last.
        last[key] = order
    return found


def _protos(orders: list[dict[str, Any]]) -> list[Proto]:
    held: dict[str, Decimal] = {}
    kinds: dict[str, bool] = {}  # decision -> whether it closes: its first order decides for its retries
    protos = []
    for o in orders:
        sym, t, line = o["symbol"], o["t"], o["line"]
        if _unfilled(o):
            protos.append(
                Proto(line, t, {"type": "note", "text": _unfilled_text(o), "symbol": sym, "tag": _tag(o)})
            )
            continue
        position = held.get(sym, Decimal(0))
        closes = (
            o["intent"] in _CLOSES
            if o["intent"]
            else (position > 0) == (o["side"] == "sell") and position != 0
        )
        closes = kinds.setdefault(o["decision"], closes)
        if o["price"] is not None:
            protos.append(Proto(line, t, {"type": "price", "symbol": sym, "price": o["price"]}))
        limit = o["type"] == "limit" and o["price"] is not None
        qty, notional, status, reason = o["qty"], o["notional"], o["status"], None
        result = {"filled": "filled", "partially_filled": "partially_filled"}.get(status, "accepted")
        if status not in _AS_ORDERED:  # it filled part, then ended or stayed open: it did what it filled
            ordered = _num(qty) if qty is not None else f"${_num(notional)}"
            how = f"{status} after" if status in _ENDED else f"still {status} with"
            reason = f"Alpaca order {o['id']} {how} {_num(o['filled_qty'])} of {ordered} filled"
            qty, notional, result = o["filled_qty"], None, "filled"
        protos.append(
            Proto(line, t, {
                "type": "attempt", "decision": o["decision"][:200], "kind": "exit" if closes else "entry",
                "symbol": sym, "side": o["side"], "qty": qty, "notional": notional,
                "order_type": "limit" if limit else "market", "limit_price": o["price"] if limit else None,
                "time_in_force": o["tif"], "position_intent": o["intent"],
                "client_order_id": o["coid"][:128] or None, "reason": reason,
            })
        )  # fmt: skip
        protos.append(
            Proto(line, t, {
                "type": "answer", "decision": o["decision"][:200], "result": result, "order_id": o["id"],
                "client_order_id": o["coid"] or None, "filled_qty": o["filled_qty"] or None,
                "filled_avg_price": o["price"] if o["filled_qty"] else None,
                "reason": f"Alpaca status {status}" if status else None,
            })
        )  # fmt: skip
        step = o["filled_qty"] if o["side"] == "buy" else -o["filled_qty"]
        held[sym] = position + step
    return protos


def _num(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _unfilled_text(order: dict[str, Any]) -> str:
    size = _num(order["qty"]) if order["qty"] is not None else f"${_num(order['notional'])}"
    what = f"{order['type']} {order['side']} {size} {order['symbol']}"
    if order["price"] is not None and order["type"] != "market":
        what += f" at {_num(order['price'])}"
    if order["status"] == "rejected":
        return f"order {order['id']} ({what}) rejected: it placed nothing"
    if order["status"] not in _ENDED:
        return (
            f"order {order['id']} ({what}) still {order['status']} with nothing filled: it has not executed"
        )
    return f"order {order['id']} ({what}) {order['status']} with nothing filled: it never executed"


def _check_csv_columns(columns: set[str] | None, name: str) -> None:
    """Refuse a CSV whose header lacks a column every order needs, naming the header's line.

    Said once for the file (line 1), not as the first row's missing value: the header, not a row,
    is what is wrong (another export, another separator).
    """
    if columns is None:  # a header alone: no order, nothing to check
        return
    needed = {
        "symbol": "symbol" in columns,
        "side": "side" in columns,
        "qty or notional": bool({"qty", "notional"} & columns),
        "submitted_at": bool({"submitted_at", "created_at"} & columns),
    }
    missing = [column for column, present in needed.items() if not present]
    if missing:
        raise SessionFormatError(
            name,
            1,
            f"missing column(s) {', '.join(missing)}: expected Alpaca's order export "
            "(a header with symbol, side, qty or notional, submitted_at, ...; comma-separated)",
        )


def import_alpaca_orders(
    source: str | Path, out: str | Path | IO[str], *, window_secs: float = 60.0
) -> ImportReport:
    """Write the session of an Alpaca order history (JSON or CSV); report the suspected duplicates.

    Raises:
        SessionFormatError: A malformed history, naming the line.
    """
    path, name = Path(source), str(source)
    text = read_text(source)
    if is_json(text, name):
        rows = json_items(text, name, key="orders", one="client_order_id")
    else:
        rows = csv_rows(text, name, _CSV_NAMES)
        _check_csv_columns(set(rows[0][1]) if rows else None, name)
    rows, orders, multi, repeated = _unique(rows, name)
    orders.sort(key=lambda o: (o["t"], o["line"]))
    duplicates = _suspects(orders, window_secs)
    legs, leg_notes = _legs(rows, name)
    leg_notes += [_multi_leg_note(line, raw, name) for line, raw in multi]
    report = ImportReport("alpaca-orders", name, str(out))
    unfilled = sum(1 for o in orders if _unfilled(o) and _tag(o) == "unfilled")
    rejected = sum(1 for o in orders if _tag(o) == "rejected")
    still_open = sum(1 for o in orders if _unfilled(o) and _tag(o) == "open")
    report.extra = {
        "orders": len(orders),
        "repeated_rows_dropped": repeated,
        "unfilled_orders": unfilled,
        "rejected_orders": rejected,
        "open_orders": still_open,
        "legs": len(legs) + len(leg_notes) - len(multi),
        "multi_leg_orders": len(multi),
        "suspected_duplicates": len(duplicates),
        "duplicates": duplicates,
    }
    found = f"{len(orders)} orders, {len(duplicates)} suspected duplicates"
    if repeated:
        found += f" ({repeated} repeated {'row' if repeated == 1 else 'rows'} of the same order id dropped)"
    if unfilled:
        found += f"; {unfilled} canceled, expired or replaced with nothing filled (notes)"
    if rejected:
        found += f"; {rejected} rejected (notes)"
    if still_open:
        found += f"; {still_open} still open with nothing filled (notes)"
    if multi:
        plural = "order" if len(multi) == 1 else "orders"
        found += f"; {len(multi)} multi-leg options {plural} (notes: not guarded)"
    title = f"Alpaca order history {path.name}"
    everything = sorted([*orders, *legs], key=lambda o: (o["t"], o["line"]))
    return write_session(
        out,
        [*_protos(everything), *leg_notes],
        report=report,
        title=title,
        agent_id="alpaca-account",
        description=found,
    )


def _legs(rows: list[tuple[int, Any]], name: str) -> tuple[list[dict[str, Any]], list[Proto]]:
    """Return the legs of bracket, OTO and OCO orders: the filled ones as orders, the rest as notes.

    A leg is an order of its own, placed by Alpaca with its parent, that closes what the parent
    opened. One that filled is replayed as an exit at its fill time (it took the position off
    then); one that never filled (the other side of the bracket, canceled) changed nothing and is
    kept as a note. Legs are never suspected duplicates: Alpaca sent them, not the bot.
    """
    legs: list[dict[str, Any]] = []
    notes: list[Proto] = []
    for line, raw in rows:
        children = raw.get("legs") if isinstance(raw, dict) else None
        if not isinstance(children, list):
            continue
        for child in children:
            if not isinstance(child, dict):
                raise SessionFormatError(name, line, f"expected a leg object, got {type(child).__name__}")
            inherited = {
                k: child.get(k) or raw.get(k) for k in ("symbol", "qty", "submitted_at", "created_at")
            }
            leg = _order(line, {**child, **inherited}, name)
            if leg["filled_qty"] and leg["status"] in ("filled", "partially_filled"):
                legs.append(_filled_leg(leg, child.get("filled_at"), name, line))
                continue
            kind = raw.get("order_class") or "bracket"
            what = " ".join(str(x) for x in (leg["type"], leg["side"], leg["qty"], leg["symbol"]) if x)
            text = f"{kind} leg {leg['id']} ({what}) {leg['status'] or 'not filled'}: it never executed"
            notes.append(
                Proto(line, leg["t"], {"type": "note", "text": text, "symbol": leg["symbol"], "tag": "leg"})
            )
    return legs, notes


def _filled_leg(leg: dict[str, Any], filled_at: object, name: str, line: int) -> dict[str, Any]:
    """Make a filled leg an exit at its fill time, at its fill price (its own decision)."""
    if filled_at:
        try:
            leg["t"] = max(parse_time(str(filled_at)), leg["t"])
        except ValueError:
            raise SessionFormatError(name, line, f"leg filled_at {filled_at!r} is not a time") from None
    leg["type"] = "market"  # it executed at its fill price, which the price event pins
    leg["decision"] = f"{leg['symbol']} {leg['side']} {leg['filled_qty']} leg {leg['coid'] or leg['id']}"
    leg["intent"] = leg["intent"] or ("sell_to_close" if leg["side"] == "sell" else "buy_to_close")
    return leg


def _multi_leg_note(line: int, raw: dict[str, Any], name: str) -> Proto:
    """Keep a multi-leg options order as a note naming its legs: tradeguard does not guard it.

    `GuardedTradingClient` passes such orders by, unclaimed, so no guard mode would have done
    anything else with it; replaying its legs as orders of their own would count the legs of
    one spread as separate decisions.

    Raises:
        SessionFormatError: Its time is missing or not a time.
    """
    at = raw.get("submitted_at") or raw.get("created_at")
    if not at:
        raise SessionFormatError(name, line, "multi-leg order without submitted_at")
    try:
        when = parse_time(str(at))
    except ValueError:
        raise SessionFormatError(name, line, f"submitted_at {at!r} is not a time") from None
    listed = raw.get("legs")
    legs: list[Any] = listed if isinstance(listed, list) else []
    parts = [
        " ".join(str(leg.get(k)) for k in ("side", "qty", "symbol") if leg.get(k) not in (None, ""))
        for leg in legs
        if isinstance(leg, dict)
    ]
    status = str(raw.get("status") or "").lower().removeprefix("orderstatus.") or "no status"
    filled = raw.get("filled_qty")
    what = f"{status}, filled {filled}" if filled not in (None, "") else status
    order = raw.get("id") or f"on line {line}"
    text = (
        f"multi-leg order {order} ({what}; legs: {', '.join(parts) or 'none listed'}): tradeguard"
        " does not guard multi-leg options orders, so a replay leaves it out"
    )
    return Proto(line, when, {"type": "note", "text": text, "tag": "multi_leg"})
