"""`tradeguard import claims`: a claim-store export as a session, in one of three shapes.

- **tradeguard's audit export** (`tradeguard audit --csv`): each `claim` record is a decision's
  first attempt, each `skip` naming a claim a retry the guard blocked, and the claim's first
  move out of PENDING that attempt's answer.
- **SafeAgent's claim records** (JSON, LOGS.md §3): one object per claim call. Records with one
  `request_id` are attempts of one decision: `COMMITTED` sent an order, `SKIP` was blocked,
  `PENDING` never settled. A `SKIP` read as `SUCCESS` while no record of that decision carries a
  broker order id is the dangerous case: the bot believes it holds what it never bought, so its
  belief grows by the quantity and the first attempt is replayed as never placed. All records of
  one `request_id` are on the side of the one that sent the order (else the first's): a record
  carrying the other side (a reason-suffixed key's quirk) gets a `side_mismatch` note. An
  element of `_`-fields only (`{"_comment": ...}`) is a note for the file's readers, skipped.
- **SafeAgent's database export** (CSV, LOGS.md §2: `index,request_id,result,status,created_at`):
  one row per decision, keyed `order:<SYM>:<side>:<qty>:<bar>[:<reason>]` or
  `exit:<SYM>:<qty>:<entry time>`; `result` is a Python dict repr of the Alpaca order, read with
  `ast.literal_eval` (never `eval`); an `exit:` row settled by the exit guard holds a JSON (or
  Python) string instead, `"exit:<SYM>:<qty>:<reason>"`: settled, no order details, its reason
  kept. A `filled_avg_price` in `result` prices the symbol at the order's time. When it names
  the other side than the key (a known quirk of reason-suffixed rows) the order's side wins and
  a note says so. `status` is `filled` (or `COMMITTED`) or `PENDING`, any case; `created_at` a
  time. A row of any other status, time or number of cells (a file cut short) is refused,
  naming its line. An `order:` row whose reason
  names an exit (`…:TRAIL_EXIT_BEAR`) is an exit sent through the bot's order path. With the
  bot's exit-guard patch one exit writes two rows, `exit:SYM:QTY:ENTRY` (the exit guard's claim)
  and then `order:SYM:sell:QTY:<bar ≥ ENTRY>:<reason>` (the sell it sent): they are one exit,
  replayed once, at the order row's bar (see `_safeagent_db`); an `exit:` row with no such order
  row that is still PENDING is a note, never a sell.
"""

from __future__ import annotations

import ast
import bisect
import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from replay.importers.common import (
    ImportReport,
    Proto,
    csv_columns,
    csv_rows,
    is_json,
    json_items,
    json_problem,
    json_text,
    number,
    parse_time,
    read_text,
    write_session,
)
from tradeguard import SessionFormatError, canonical_symbol, derive_client_order_id

__all__ = ["import_claims"]

_ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?"
_ORDER_KEY = re.compile(
    rf"^order:(?P<symbol>[^:]+):(?P<side>buy|sell):(?P<qty>[^:]+):(?P<bar>{_ISO})(?::(?P<reason>.*))?$"
)
_ZONED = re.compile(r"(?:Z|[+-]\d\d:?\d\d)\s*$")
_EXIT_KEY = re.compile(rf"^exit:(?P<symbol>[^:]+):(?P<qty>[^:]+):(?P<entry>{_ISO})$")
# The guard's row states: `filled` once settled (LOGS.md §2), `COMMITTED` in its hosted store.
_DB_STATUSES = {"FILLED", "COMMITTED", "PENDING"}
_STATES = {
    "FILLED": "filled",
    "PARTIALLY_FILLED": "partially_filled",
    "SUBMITTED": "accepted",
    "REJECTED": "rejected",
}


def _ev(line: int, t: datetime, event_type: str, /, **fields: Any) -> Proto:
    return Proto(line, t, {"type": event_type, **fields})


def _time(value: object, what: str, name: str, line: int) -> datetime:
    try:
        return parse_time(str(value))
    except ValueError:
        raise SessionFormatError(name, line, f"{what} {value!r} is not a time") from None


def _decision_names(rows: list[tuple[int, dict[str, Any]]], name: str) -> dict[str, str]:
    """Name each claim key's decision: its intent, told apart where claims share one.

    A decision is a claim (one key, one client_order_id). Bots reuse an intent name across
    claims (a flip's exit and its entry on another symbol, one name per bar for every symbol),
    so a name several keys share gets the claim's kind and symbol, and the key's head if even
    those are shared; merged, two claims would replay as one decision and the second as its
    duplicate.
    """
    intents: dict[str, tuple[str, str]] = {}  # claim key -> (intent, "kind symbol")
    for line, row in rows:
        key = row.get("claim_key")
        if row.get("action") == "claim" and key and key not in intents:
            try:
                detail = json_text(row.get("detail") or "{}", name, line)
            except json.JSONDecodeError:
                detail = {}
            intent = str((detail.get("intent") if isinstance(detail, dict) else None) or key)
            intents[key] = (intent, f"{row.get('kind') or ''} {row.get('symbol') or ''}".strip())
    keys_of: dict[str, set[str]] = {}
    keys_of_what: dict[tuple[str, str], set[str]] = {}
    for key, (intent, what) in intents.items():
        keys_of.setdefault(intent, set()).add(key)
        keys_of_what.setdefault((intent, what), set()).add(key)
    names: dict[str, str] = {}
    for key, (intent, what) in intents.items():
        if len(keys_of[intent]) == 1:
            name = intent
        elif len(keys_of_what[(intent, what)]) == 1:
            name = f"{intent} ({what})"
        else:
            name = f"{intent} ({what} {key[:12]})"
        # Cut from the front of the intent, keeping the part that tells claims apart.
        names[key] = name if len(name) <= 200 else name[-200:]
    return names


def _detail(value: str | None, name: str, line: int) -> dict[str, Any]:
    """Return an audit record's `detail` column: a JSON object (empty when the cell is)."""
    try:
        detail = json_text(value or "{}", name, line)
    except json.JSONDecodeError as exc:
        raise SessionFormatError(name, line, f"detail is not valid JSON: {json_problem(exc)}") from None
    if not isinstance(detail, dict):
        raise SessionFormatError(name, line, f"detail is a {type(detail).__name__}, expected a JSON object")
    return detail


def _bots_own(client_order_id: object, key: str) -> str | None:
    """The claim's client_order_id when the bot chose it; None when tradeguard derived it.

    An id derived from the claim key (`tg-<key>`) is the guard's: the bot alone (`--guard none`)
    never had it, and replayed under it each retry would meet Alpaca's 422 "client_order_id must
    be unique" instead of going out again (audit 18 #8). The live recorder leaves it off too.
    """
    if not isinstance(client_order_id, str) or not client_order_id:
        return None
    prefix = client_order_id.rpartition("-")[0]
    return None if prefix and client_order_id == derive_client_order_id(key, prefix) else client_order_id


def _audit_export(rows: list[tuple[int, dict[str, Any]]], name: str) -> list[Proto]:
    protos: list[Proto] = []
    names = _decision_names(rows, name)
    decisions: dict[str, str] = {}  # claim key -> decision
    firsts: dict[str, dict[str, Any]] = {}  # claim key -> its first attempt's fields
    answered: set[str] = set()
    for line, row in rows:
        action, key = row.get("action"), row.get("claim_key")
        t = _time(row.get("at"), "at", name, line)
        if action == "claim" and key:
            detail = _detail(row.get("detail"), name, line)
            decision = names[key]
            decisions[key] = decision
            qty = row.get("qty") or detail.get("qty")
            firsts[key] = {
                "type": "attempt", "decision": decision, "kind": row.get("kind"),
                "symbol": canonical_symbol(str(row.get("symbol") or "")) or None,
                "side": row.get("side"), "qty": None if qty is None else number(qty, "qty", name, line),
                "client_order_id": _bots_own(row.get("client_order_id"), key), "reason": row.get("reason"),
            }  # fmt: skip
            protos.append(Proto(line, t, firsts[key]))
        elif action == "skip" and key in decisions:
            decision = decisions[key]
            protos.append(Proto(line, t, {**firsts[key], "reason": row.get("reason")}))
            protos.append(_ev(line, t, "answer", decision=decision, result="blocked", by="tradeguard"))
        elif (
            action == "transition"
            and key in decisions
            and key not in answered
            and row.get("prev_state") == "PENDING"
        ):
            answered.add(key)
            state = str(row.get("state"))
            result = _STATES.get(state, "timeout" if state == "UNKNOWN" else "dropped")
            placed = False if state == "NOT_SENT" else None
            reason = row.get("reason")
            protos.append(
                _ev(
                    line,
                    t,
                    "answer",
                    decision=decisions[key],
                    attempt=1,
                    result=result,
                    placed=placed,
                    reason=reason,
                )
            )
        else:
            text = f"{action}: {row.get('reason')}"
            protos.append(_ev(line, t, "note", text=text, symbol=row.get("symbol") or None, tag=action))
    return protos


def _safeagent_records(items: list[tuple[int, Any]], name: str) -> list[Proto]:
    ordered = []
    for line, item in (pair for pair in items if not _comment_only(pair[1])):
        if not isinstance(item, dict) or not item.get("request_id"):
            raise SessionFormatError(name, line, "expected a claim record with a request_id")
        for field in ("symbol", "side", "qty", "claimed_at"):
            if item.get(field) in (None, ""):
                raise SessionFormatError(name, line, f"claim record {item['request_id']!r} without {field}")
        ordered.append((line, item))
    # The bot's belief and each decision's kind are built record by record, so they must meet the
    # records in time order; an export lists them in its own order (by key, by id), and the session
    # is written sorted by time (stable: records of one time keep the file's order).
    times = {line: _time(item["claimed_at"], "claimed_at", name, line) for line, item in ordered}
    ordered.sort(key=lambda pair: times[pair[0]])
    placed = {
        i["request_id"] for _, i in ordered if i.get("broker_order_id") or i.get("outcome") == "COMMITTED"
    }
    # A request_id's records are tries of one order, on the side of the record that sent it (else
    # its first record's): a reason-suffixed record may carry the other side (LOGS.md's quirk).
    sides: dict[str, str] = {}
    sent_sides: dict[str, str] = {}
    for _, item in ordered:
        side = str(item["side"]).lower()
        sides.setdefault(item["request_id"], side)
        if item.get("broker_order_id") or item.get("outcome") == "COMMITTED":
            sent_sides.setdefault(item["request_id"], side)
    sides.update(sent_sides)
    protos: list[Proto] = []
    belief: dict[str, Decimal] = {}
    # A decision's kind is what its first attempt did to the bot's own position: a sell while
    # the bot held a long (MAY21's "sell on flip") closes it, whatever its key says; its retries
    # keep that kind (the position they meet may already be flat).
    kinds: dict[str, str] = {}
    for line, item in ordered:
        t = times[line]
        decision, symbol = str(item["request_id"])[:200], canonical_symbol(str(item["symbol"]))
        qty = number(item["qty"], "qty", name, line)
        side = sides[item["request_id"]]
        kind = kinds.setdefault(
            decision, "exit" if decision.startswith("exit:") or _reduces(belief, symbol, side) else "entry"
        )
        if str(item["side"]).lower() != side:
            text = f"{decision}: this record says {str(item['side']).lower()}, the order it tries is a {side}"
            protos.append(_ev(line, t, "note", symbol=symbol, tag="side_mismatch", text=text))
        attempt = {"decision": decision, "kind": kind, "symbol": symbol, "side": side, "qty": qty}
        protos.append(_ev(line, t, "attempt", **attempt, reason=item.get("_comment")))
        outcome, reading = item.get("outcome"), item.get("caller_interpretation")
        if outcome == "SKIP":
            why = f"SKIP read as {reading}"
            protos.append(
                _ev(line, t, "answer", decision=decision, result="blocked", by="safeagent", reason=why)
            )
        elif outcome == "PENDING":
            why, sent = f"PENDING read as {reading}", decision in placed
            protos.append(
                _ev(line, t, "answer", decision=decision, result="timeout", placed=sent, reason=why)
            )
        if reading == "SUCCESS" and (outcome != "SKIP" or decision not in placed):
            step = qty if side == "buy" else -qty
            belief[symbol] = belief.get(symbol, Decimal(0)) + step
            protos.append(
                Proto(line, t, {"type": "position", "symbol": symbol, "qty": belief[symbol], "view": "bot"})
            )
        if outcome == "SKIP" and reading == "SUCCESS" and decision not in placed:
            text = f"{decision}: SKIP read as SUCCESS, no order exists"
            protos.append(_ev(line, t, "note", symbol=symbol, tag="phantom", text=text))
    return protos


@dataclass(slots=True)
class _Row:
    """One row of SafeAgent's database export, read and checked."""

    line: int
    key: str
    symbol: str
    qty: Decimal
    result: dict[str, Any]
    pending: bool
    order: re.Match[str] | None  # an `order:` key, or None for an `exit:` key
    side: str  # the order's side when the result names one (the key's may be the other)
    t: datetime  # an order row's bar; an exit row's claim (its entry, or created_at if later)
    entry: datetime | None = None  # an exit row's entry
    settled: str | None = None  # an exit row's settled text (its reason), when not an order
    pair: _Row | None = None  # an exit row's order row, or an order row's exit row


def _db_row(line: int, row: dict[str, Any], name: str) -> _Row:
    key = str(row.get("request_id") or "")
    order, exit_ = _ORDER_KEY.match(key), _EXIT_KEY.match(key)
    if order is None and exit_ is None:
        raise SessionFormatError(
            name,
            line,
            f"request_id {key!r} is neither order:<SYM>:<side>:<qty>:<bar> nor exit:<SYM>:<qty>:<time>",
        )
    match = order or exit_
    assert match is not None
    symbol, qty = canonical_symbol(match["symbol"]), number(match["qty"], "qty", name, line)
    result = _literal(row.get("result"), name, line)
    settled = None  # an exit row settled with text, not an order: `exit:SYM:QTY:REASON`
    if isinstance(result, str):
        if order is not None:
            raise SessionFormatError(name, line, "result is a str, expected a dict")
        settled, result = result, {}
        prefix = f"exit:{match['symbol']}:{match['qty']}:"
        settled = settled.removeprefix(prefix) if settled.startswith(prefix) else settled
    status = str(row.get("status") or "")
    if status.upper() not in _DB_STATUSES:
        problem = f"status {status!r} is neither filled, COMMITTED nor PENDING"
        raise SessionFormatError(name, line, problem)
    created = None
    if "created_at" in row:  # a cut or garbled row shows here
        if row["created_at"] is None:
            raise SessionFormatError(name, line, "created_at is empty: expected the claim's time")
        created = _time(row["created_at"], "created_at", name, line)
    side = str(result.get("side") or (order["side"] if order else "sell"))
    if order is not None:
        t = _time(order["bar"], "time", name, line)
        return _Row(line, key, symbol, qty, result, status.upper() == "PENDING", order, side, t)
    entry = _time(match["entry"], "time", name, line)
    if created is not None and not _ZONED.search(str(row["created_at"])):
        # A naive created_at is on the clock the keys are written on (the bot's offset, which
        # LOGS.md shows as -04:00 even in winter), not US/Eastern's.
        created = created.replace(tzinfo=entry.tzinfo)
    # The exit guard claims when the exit is decided, after the entry: at created_at when later.
    t = max(entry, created) if created is not None else entry
    return _Row(line, key, symbol, qty, result, status.upper() == "PENDING", None, side, t, entry, settled)


def _pair_exits(rows: list[_Row]) -> None:
    """Pair each exit row with the order row that sent its sell (see `_safeagent_db`)."""
    exits = sorted((r for r in rows if r.entry is not None), key=lambda r: (r.entry, r.line))
    entries: dict[str, list[datetime]] = {}  # symbol -> its exit rows' entries, in order
    for row in exits:
        entries.setdefault(row.symbol, []).append(row.t if row.entry is None else row.entry)
    sells: dict[tuple[str, Decimal], list[_Row]] = {}  # (symbol, qty) -> reason-suffixed sells, by bar
    for row in sorted(rows, key=lambda r: r.t):
        if row.order is not None and row.order["reason"] and row.side == "sell":
            sells.setdefault((row.symbol, row.qty), []).append(row)
    for row in exits:
        assert row.entry is not None
        # A later entry of the symbol opened another position: its sells are that one's exits.
        later = entries[row.symbol]
        at = bisect.bisect_right(later, row.entry)
        until = later[at] if at < len(later) else None
        for sell in sells.get((row.symbol, row.qty), []):
            if until is not None and sell.t >= until:
                break
            if sell.pair is None and sell.t >= row.entry and not _other_orders(row.result, sell.result):
                row.pair, sell.pair = sell, row
                break


def _comment_only(item: object) -> bool:
    """Whether a records file's element is a note for its readers (`{"_comment": ...}`), not a record."""
    return isinstance(item, dict) and bool(item) and all(str(k).startswith("_") for k in item)


def _fill_price(result: dict[str, Any], name: str, line: int) -> Decimal | None:
    """The order's average fill price in a row's `result`, when it shows one."""
    value = result.get("filled_avg_price")
    if value in (None, "", "None"):
        return None
    price = number(value, "filled_avg_price", name, line)
    return price if price > 0 else None


def _reduces(belief: dict[str, Decimal], symbol: str, side: str) -> bool:
    """Whether an order on `side` reduces the position the bot believes it holds in `symbol`."""
    held = belief.get(symbol, Decimal(0))
    return held > 0 if side == "sell" else held < 0


def _other_orders(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two rows' results are two different broker orders."""
    return bool(one.get("id") and other.get("id") and one["id"] != other["id"])


def _safeagent_db(rows: list[tuple[int, dict[str, Any]]], name: str) -> list[Proto]:
    """Turn the database export's rows into proto-events.

    With the bot's exit-guard patch one exit writes two rows: `exit:<SYM>:<qty>:<entry>` (the
    exit guard's claim) and then `order:<SYM>:sell:<qty>:<bar>:<reason>` (the order path's claim
    of the sell it sends). They are one exit: the order row that sells the same quantity of the
    symbol at a bar at or after the entry (the earliest such, before a later entry of that
    symbol) is that exit's attempt, named by the exit row's key, and the exit row is a note.
    Its side is the order's (`result`), not the key's, when the two differ. An exit row with no
    such order row is the exit's attempt itself when settled, and a note when still PENDING: a
    claim whose order is not in the export was never shown to be sent, so no sell is made up.
    """
    read = [_db_row(line, row, name) for line, row in rows]
    _pair_exits(read)
    protos: list[Proto] = []
    belief: dict[str, Decimal] = {}  # the bot's position, from the orders its rows show sent
    kinds: dict[str, str] = {}  # each decision's kind, set by its first row (see `_safeagent_records`)
    for row in read:
        key, symbol, t = row.key, row.symbol, row.t
        if row.entry is not None and row.pair is not None:
            continue  # told with its order row
        if row.entry is not None and row.pending:
            text = (
                f"{key}: still PENDING in the guard's store, and no order row sent its sell: no sell replayed"
            )
            protos.append(_ev(row.line, t, "note", symbol=symbol, tag="pending", text=text))
            continue
        price = _fill_price(row.result, name, row.line) if not row.pending else None
        if price is not None:  # the order's own fill: the replay's paper broker fills there too
            protos.append(_ev(row.line, t, "price", symbol=symbol, price=price))
        order = row.order
        if order is not None and row.side != order["side"]:
            text = f"{key}: key says {order['side']}, the order says {row.side}"
            protos.append(_ev(row.line, t, "note", symbol=symbol, tag="side_mismatch", text=text))
        decision = key
        if row.pair is not None:
            decision = row.pair.key
            state = "still PENDING" if row.pair.pending else "settled"
            if row.pair.settled:
                state = f"settled: {row.pair.settled}"
            text = f"{decision}: the exit guard's claim of this exit ({state}); its sell went out as {key}"
            protos.append(_ev(row.pair.line, t, "note", symbol=symbol, tag="exit_guard", text=text))
        # An order-path row whose reason names an exit (`TRAIL_EXIT_BEAR`) closed a position
        # through the bot's order path: an exit the entry guard keyed, not an entry that sells.
        closes = (
            kinds.setdefault(
                decision[:200],
                "exit"
                if order is None
                or row.pair is not None
                or bool(order["reason"] and "EXIT" in order["reason"].upper())
                or _reduces(belief, symbol, row.side)
                else "entry",
            )
            == "exit"
        )
        if row.result and not row.pending:
            belief[symbol] = belief.get(symbol, Decimal(0)) + (row.qty if row.side == "buy" else -row.qty)
        reason = (order["reason"] if order else row.settled) or None
        protos.append(Proto(row.line, t, {
            "type": "attempt", "decision": decision[:200], "kind": "exit" if closes else "entry",
            "symbol": symbol, "side": row.side, "qty": row.qty, "bar": t,
            "path": "order" if order else "exit", "reason": reason,
        }))  # fmt: skip
        if row.pending:
            text = f"{key}: still PENDING in the guard's store"
            protos.append(_ev(row.line, t, "note", symbol=symbol, tag="pending", text=text))
        elif row.result:
            ids = {"order_id": row.result.get("id"), "client_order_id": row.result.get("client_order_id")}
            why = f"Alpaca status {row.result.get('status')}"
            protos.append(
                _ev(row.line, t, "answer", decision=decision[:200], result="accepted", **ids, reason=why)
            )
    return protos


_NOT_LITERAL = object()


def _eval(text: str) -> object:
    """Return the Python literal `text` spells (never code), or `_NOT_LITERAL`."""
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


def _literal(value: object, name: str, line: int) -> dict[str, Any] | str:
    """Return a row's `result`: the order's dict, or a string (an exit row's settled text).

    The export writes a repr and quotes it (once or twice): `"{'id': …}"` is unwrapped to the
    dict, `"exit:SQQQ:22:TRAIL_EXIT_BEAR"` (JSON's quoting, or Python's) to the string. Empty: {}.
    """
    text = str(value or "").strip()
    parsed = _eval(text) if text else ""
    if parsed is _NOT_LITERAL:  # quoted twice in a way no literal spells: unquote by hand
        while len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1]
        parsed = _eval(text)
    for _ in range(3):  # a string that holds a repr: the dict (or string) it spells
        if not isinstance(parsed, str):
            break
        inner = _eval(parsed.strip()) if parsed.strip() else _NOT_LITERAL
        if inner is _NOT_LITERAL:
            break
        parsed = inner
    if parsed is _NOT_LITERAL:
        raise SessionFormatError(name, line, f"result is not a Python dict literal: {text[:60]!r}")
    if parsed == "":
        return {}
    if not isinstance(parsed, dict | str):
        raise SessionFormatError(name, line, f"result is a {type(parsed).__name__}, expected a dict")
    return parsed


_CLAIMS_TABLE = {"key", "client_order_id", "state", "intent", "attempts"}
# `tradeguard audit --format csv`: the table a person reads, without the claim keys of `--csv FILE`.
_AUDIT_TABLE = {"id", "at", "agent", "action", "kind", "symbol", "side", "qty", "state", "client_order_id"}


def _refuse_claims_table(columns: set[str], name: str) -> None:
    """Refuse the claims or audit table as CSV, saying which export to import instead."""
    if columns >= _AUDIT_TABLE and "claim_key" not in columns:
        raise SessionFormatError(
            name, 1,
            "the audit table as CSV (tradeguard audit --format csv) lacks the claim keys a replay "
            "needs: write the audit log with tradeguard audit --csv FILE (or --format json, or "
            "tradeguard db export --what audit)",
        )  # fmt: skip
    if columns >= _CLAIMS_TABLE:
        raise SessionFormatError(
            name, 1,
            "the claims table as CSV (tradeguard db export --format csv) lacks what a replay needs: "
            "export it as JSON (tradeguard db export --what claims), or the audit log "
            "(tradeguard db export --what audit, or tradeguard audit --csv FILE), which holds retries too",
        )  # fmt: skip


def _audit_rows(items: list[tuple[int, Any]], name: str) -> list[tuple[int, dict[str, Any]]]:
    """The audit JSON export's records in the audit CSV's shape (`detail` as text, `agent_id`)."""
    rows: list[tuple[int, dict[str, Any]]] = []
    for line, item in items:
        if not isinstance(item, dict):
            raise SessionFormatError(
                name, line, f"expected an audit record (an object), got {type(item).__name__}"
            )
        row = {k: v if v is None or isinstance(v, str) else json.dumps(v) for k, v in item.items()}
        row.setdefault("agent_id", row.get("agent"))
        rows.append((line, row))
    return rows


def import_claims(source: str | Path, out: str | Path | IO[str]) -> ImportReport:
    """Write the session of a claim-store export (see the module docstring for the three shapes).

    Raises:
        SessionFormatError: A malformed export, naming the line.
    """
    path, name = Path(source), str(source)
    text = read_text(source)
    if is_json(text, name):
        items = json_items(text, name, key="claims", one="request_id")
        first = items[0][1] if items else None
        if isinstance(first, dict) and {"action", "claim_key"} <= set(first):
            # `tradeguard db export --what audit`: the audit CSV's records as JSON objects.
            protos, shape = _audit_export(_audit_rows(items, name), name), "tradeguard audit export"
        else:  # SafeAgent's claim records, or `tradeguard db export --what claims` (same fields)
            protos, shape = _safeagent_records(items, name), "SafeAgent claim records"
    else:
        rows = csv_rows(text, name)
        # From the header, not the first row: an export of a quiet day is its header alone.
        columns = csv_columns(text)
        _refuse_claims_table(columns, name)
        if {"action", "claim_key"} <= columns:
            protos, shape = _audit_export(rows, name), "tradeguard audit export"
        elif {"request_id", "result", "status"} <= columns:
            protos, shape = _safeagent_db(rows, name), "SafeAgent database export"
        else:
            expected = "tradeguard's audit export or SafeAgent's (index,request_id,result,status,created_at)"
            # Say what is missing from the export the header looks like, not that its columns are
            # unknown: `request_id` and `status` are SafeAgent's own, `action` tradeguard's.
            for shape, marks, needed in (
                ("SafeAgent's", {"request_id"}, ("request_id", "result", "status")),
                ("tradeguard's audit", {"action", "claim_key"}, ("action", "claim_key")),
            ):
                if marks & columns:
                    missing = ", ".join(c for c in needed if c not in columns)
                    raise SessionFormatError(
                        name, 1, f"missing column(s) {missing} of {shape} export: expected {expected}"
                    )
            raise SessionFormatError(name, 1, f"unknown columns {sorted(columns)}: expected {expected}")
    report = ImportReport("claims", name, str(out), extra={"shape": shape})
    return write_session(
        out, protos, report=report, title=f"claims {path.name}", agent_id="claims-import", description=shape
    )
