"""`tradeguard import bot-log`: the text log of the QQQ momentum bot (LOGS.md §1) as a session.

Lines look like `[2026-03-05 10:20:19-040:00 MESSAGE`: the UTC offset is written with a stray
digit (`-040:00` is read as -04:00) and the closing bracket is missing; both are read as they are.
Fractions of a second after a dot or a comma (`10:20:19,123`, as Python's `logging` writes them)
are read too.
A decision is named by its side, symbol, quantity and bar (`bar=`): two lines with the same four
are attempts of one decision, compared by value (`qty=6` and `qty=6.0`, a bar at `-04:00` and the
same instant in UTC) and named as the first line spells them.

- `ENTER <BULL|BEAR> stage=... symbol=S qty=N est_price=P ... bar=B`: an entry attempt (a buy),
  its price, and the bot's belief growing by N.
- `SAFEAGENT SKIP: duplicate order blocked <side> S qty=N [stage=...] bar=B`: a retry of that
  decision (the side in any case, or as alpaca-py's enum prints it, `OrderSide.BUY`; a line with
  no side is refused), blocked by the entry guard (when the first attempt is not in the log, one is added
  just before it, marked as inferred). The guard keyed the bot's order path, which sent entries,
  adds and flip sells: the retry is of an exit when the decision is an `EXIT` line's (same side,
  symbol, qty and bar), or, with none, when it would close what the bot believes it holds (a
  blocked sell while long: the May 21 duplicate sell on a flip); else of an entry (a sell with
  nothing held opens a short). Its decision's attempts are all on the order path (the guard
  found the key claimed).
- `SAFEAGENT EXIT SKIP: duplicate exit blocked [<side>] S qty=N [bar=B | entry=E reason=R] ...`:
  the same on the exit side (a sell when the side is left out: the exit of a long). With a bar,
  it is named as an entry's SKIP is. Without one, it repeats the latest exit of S with quantity
  N (and reason R, when both give one) of the position held (or of the log, before any entry):
  it becomes that exit's next attempt. With no such exit in the log, it is named as an `EXIT`
  line closing the entry E (to the second) would be, and its first attempt is inferred.
- `EXIT ... symbol=S qty=N ... bar=B`: an exit attempt (a sell), the belief falling by N.
- `EXIT <reason> symbol=S qty=N price=P held_min=... pnl_pct=...` (the bot's exit-guard patch:
  no `bar=`): an exit attempt too. With no bar to name it, the exit is named by what the line
  has: side, symbol, quantity, reason (`reason=`, or the words after `EXIT` less BULL/BEAR), and
  the entry it closes (the time of the `ENTER` line that opened the position, as the exit guard
  keys `exit:S:N:<entry>`); a log that holds no such entry names it by the line's minute. So the
  same exit written twice seconds apart (11:26:26 and 11:26:28 on May 21) is two attempts of one
  decision, and so is the same exit written at two minutes of one position.
- Everything else (`ENTRY BLOCKED`, `EXIT BLOCKED: invalid price`, `STAY`, `NO ENTRY`, account
  warnings, lines without a time: those before the first timed line at its time) is kept as a
  note, never dropped; so is an `EXIT` line that
  cannot be read (no symbol or qty, a figure that is not a positive number, a bar that is not a
  time): tagged `unreadable`, never guessed at. `ENTER` and `SAFEAGENT SKIP` lines follow
  LOGS.md's grammar (a bar, numbers, a ticker): one that breaks it is refused, naming its line.

Symbols are spelt as the guard keys them (`tradeguard.canonical_symbol`): `symbol=ddm` is DDM,
as the rest of the product reads a lower-case ticker, and `BTCUSD` is BTC/USD.

A bot writes its log in time order: a line timed before an earlier line (a log merged or
reversed by hand) is refused naming it, as a session file refuses an event that goes back in
time; so is a file with no lines at all (as every importer refuses an empty file).
"""

from __future__ import annotations

import io
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from replay.importers.common import (
    MAX_FIGURE,
    ImportReport,
    Proto,
    number,
    parse_time,
    read_text,
    write_session,
)
from tradeguard import SessionFormatError, canonical_symbol

__all__ = ["import_bot_log"]

# Fractions of a second after `.` or `,` (Python's `logging` writes `09:42:05,123`): a time read up
# to the seconds only would drop its zone and leave `,123-040:00 ENTER ...` as the message.
_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d{2,3}:\d\d)?)\]?\s?(.*)$")
_PAIRS = re.compile(r"(\w+)=(\S+)")
# The side in any case, or as alpaca-py's enum prints (`OrderSide.BUY`): a bot formats what it holds.
_SKIP = re.compile(
    r"^SAFEAGENT (?P<exit>EXIT )?SKIP: duplicate (?:order|exit) blocked "
    r"(?:(?P<side>(?i:(?:orderside\.)?(?:buy|sell))) )?(?P<symbol>[A-Za-z0-9.]+)\b"
)
# A symbol as a session event holds it (`tradeguard.sessions.model`'s `Symbol`), once canonical.
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9./:-]{0,31}")
# Words after `EXIT` that name the bot's regime, not the exit's reason.
_REGIMES = {"BULL", "BEAR"}
_TAGS = (
    ("ENTRY BLOCKED", "entry_blocked"),
    ("EXIT BLOCKED", "exit_blocked"),
    ("NO ENTRY", "no_entry"),
    ("STAY ", "stay"),
    ("SAFEAGENT", "guard"),
)


class _Log:
    """The state of one pass over a log: the proto-events, the belief, the decisions seen."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.protos: list[Proto] = []
        self.belief: dict[str, Decimal] = {}
        self.seen: set[str] = set()
        self.kinds: dict[str, str] = {}  # decision -> its kind (its first attempt's): every retry's
        self.attempts: dict[str, list[dict[str, Any]]] = {}  # decision -> its attempts' fields
        # symbol -> the time of the ENTER line that opened the position held (from flat).
        self.opened: dict[str, datetime] = {}
        # (symbol, qty) -> the exits seen: (reason, decision, the position's opening entry).
        self.exits: dict[tuple[str, Decimal], list[tuple[str | None, str, datetime | None]]] = {}
        # (side, symbol, qty, bar instant) -> the decision's name, as its first line spelt it.
        self.names: dict[tuple[str, str, Decimal, datetime], str] = {}

    def add(self, line: int, t: datetime, **fields: Any) -> None:
        self.protos.append(Proto(line, t, fields))
        if fields["type"] == "attempt":
            self.attempts.setdefault(fields["decision"], []).append(fields)

    def note(self, line: int, t: datetime, text: str, symbol: str | None = None) -> None:
        tag = next((tag for prefix, tag in _TAGS if text.startswith(prefix)), None)
        self.add(line, t, type="note", text=text, symbol=symbol, tag=tag)

    def decision(
        self, line: int, t: datetime, pairs: dict[str, str], side: str, symbol: str
    ) -> tuple[str, Decimal]:
        qty = number(pairs.get("qty"), "qty", self.name, line)
        bar = pairs.get("bar")
        if bar is None:
            raise SessionFormatError(self.name, line, "an order line without bar=<ISO time>")
        try:
            instant = parse_time(bar)
        except ValueError:
            raise SessionFormatError(self.name, line, f"bar={bar!r} is not a time") from None
        # One decision however each line spells its figures (`qty=6` and `qty=6.0`, a bar with
        # `-04:00` or in UTC): named as its first line spells it.
        name = self.names.setdefault((side, symbol, qty, instant), f"{side} {symbol} qty={qty} bar={bar}")
        return name, qty

    def attempt(
        self,
        line: int,
        t: datetime,
        pairs: dict[str, str],
        *,
        side: str,
        symbol: str,
        kind: str,
        reason: str,
        named: tuple[str, Decimal] | None = None,
        path: str | None = None,
    ) -> str:
        """Add one attempt (and, for a decision not seen before, the belief it moves).

        `named` is the decision's name and quantity when the line has no bar to name it by;
        `path` the bot's code path when the line says (else `order` for entries, `exit` for exits).
        An entry moves the belief by its quantity on its side (a sell entry opens a short); an
        exit takes it toward flat, never through it.
        """
        name, qty = named or self.decision(line, t, pairs, side, symbol)
        bar = parse_time(pairs["bar"]) if "bar" in pairs else None
        earlier = self.attempts.get(name)
        if bar is not None and earlier and earlier[0].get("bar") == bar:
            bar = earlier[0]["bar"]  # the same instant as its first line wrote it: one guard key
        self.add(
            line, t, type="attempt", decision=name, kind=kind, symbol=symbol, side=side, qty=qty,
            bar=bar, reason=reason, path=path or ("order" if kind == "entry" else "exit"),
        )  # fmt: skip
        if name not in self.seen:
            self.seen.add(name)
            self.kinds[name] = kind
            held = self.belief.get(symbol, Decimal(0))
            if kind == "entry":
                if held == 0:
                    self.opened[symbol] = t
                self.belief[symbol] = held + (qty if side == "buy" else -qty)
            else:
                self.belief[symbol] = max(held - qty, Decimal(0)) if held > 0 else min(held + qty, Decimal(0))
            self.add(line, t, type="position", symbol=symbol, qty=self.belief[symbol], view="bot")
        return name

    def closes(self, symbol: str, side: str) -> bool:
        """Whether an order of `side` in `symbol` would close what the bot believes it holds."""
        held = self.belief.get(symbol, Decimal(0))
        return held > 0 if side == "sell" else held < 0

    def on_order_path(self, name: str) -> None:
        """Mark the attempts of `name` so far as sent on the bot's order path.

        The entry guard's `SKIP: duplicate order blocked` found the decision's key claimed: its
        earlier attempt went through the order path, whatever its own line looked like.
        """
        for fields in self.attempts.get(name, ()):
            fields["path"] = "order"

    def skip(self, line: int, t: datetime, message: str, match: re.Match[str]) -> None:
        """Read a guard's SKIP: a retry of a decision, blocked (its first attempt inferred if unseen).

        The entry guard's SKIP (`duplicate order blocked`) keyed the bot's order path, which sent
        entries, adds and flip sells: it is the retry of an exit when its decision was one (an
        `EXIT` line of the same side, symbol, qty and bar), or, unseen, when it would close what
        the bot holds (a sell of a long: the May 21 duplicate sell on a flip); else an entry.
        """
        pairs = dict(_PAIRS.findall(message))
        side = (match["side"] or "sell").lower().removeprefix("orderside.")  # only an exit's may omit it
        symbol = self.symbol(line, match["symbol"])
        path = None
        if match["exit"]:
            kind = "exit"
        else:
            path = "order"
            name = self.decision(line, t, pairs, side, symbol)[0]
            if name in self.seen:
                kind = self.kinds[name]
                self.on_order_path(name)
            else:
                kind = "exit" if self.closes(symbol, side) else "entry"
        named = None
        if kind == "exit" and path is None and "bar" not in pairs:
            qty = _positive(pairs.get("qty"))
            entry = _time_or_none(pairs["entry"]) if "entry" in pairs else None
            if qty is None or ("entry" in pairs and entry is None):
                self.add(line, t, type="note", text=message, symbol=symbol, tag="unreadable")
                return
            named = (self.repeated_exit(t, symbol, qty, pairs.get("reason"), entry), qty)
            if named[0] not in self.seen:  # a later SKIP of it repeats it too
                self.exits.setdefault((symbol, qty), []).append(
                    (pairs.get("reason"), named[0], self.opened.get(symbol))
                )
        name, _qty = named or self.decision(line, t, pairs, side, symbol)
        if name not in self.seen:
            reason = "inferred: the first attempt of this decision is not in the log"
            self.attempt(
                line, t, pairs, side=side, symbol=symbol, kind=kind, reason=reason, named=named, path=path
            )
        self.attempt(
            line, t, pairs, side=side, symbol=symbol, kind=kind, reason=message, named=named, path=path
        )
        self.add(line, t, type="answer", decision=name, result="blocked", by="safeagent", reason=message)

    def repeated_exit(
        self, t: datetime, symbol: str, qty: Decimal, reason: str | None, entry: datetime | None
    ) -> str:
        """Name the exit a bar-less exit SKIP repeats: the latest such exit of the position held.

        The guard's `entry=` is its own clock (with microseconds), not the log line's, so it is
        not matched to the second; it names the exit only when the log holds none to repeat.
        """
        opened = self.opened.get(symbol)
        for seen_reason, name, of in reversed(self.exits.get((symbol, qty), [])):
            if of == opened and (reason is None or seen_reason is None or seen_reason == reason):
                return name
        if entry is not None:
            return _exit_name(symbol, qty, reason, f"entry={entry.replace(microsecond=0).isoformat()}")
        return self.exit_name(t, symbol, qty, reason)

    def symbol(self, line: int, written: str) -> str:
        """Return a symbol as the guard keys it (`ddm` is DDM, `btcusd` BTC/USD), or refuse it.

        Raises:
            SessionFormatError: No order could carry it, naming the line and the expected form.
        """
        symbol = canonical_symbol(written)
        if not _SYMBOL.fullmatch(symbol):
            raise SessionFormatError(
                self.name, line, f"symbol {written!r} is not a ticker: expected 1-32 letters, digits or ./:- "
                "(any case), e.g. symbol=DDM",
            ) from None  # fmt: skip
        return symbol

    def read(self, line: int, t: datetime, message: str) -> None:
        skip = _SKIP.match(message)
        if skip is not None and (skip["side"] or skip["exit"]):  # an entry's SKIP names its side
            self.skip(line, t, message, skip)
            return
        if skip is not None:  # a blocked retry whose side cannot be read: never a mere note
            raise SessionFormatError(
                self.name, line, "a SAFEAGENT SKIP line without buy or sell before the symbol: expected "
                "'SAFEAGENT SKIP: duplicate order blocked <buy|sell> <SYMBOL> qty=<n> bar=<ISO>'",
            )  # fmt: skip
        words = message.split(" ", 1)
        pairs = dict(_PAIRS.findall(message))
        written = pairs.get("symbol")
        if words[0] == "ENTER" and written:
            symbol = self.symbol(line, written)
            if "est_price" in pairs:
                price = number(pairs["est_price"], "est_price", self.name, line)
                self.add(line, t, type="price", symbol=symbol, price=price)
            self.attempt(line, t, pairs, side="buy", symbol=symbol, kind="entry", reason=message)
            return
        if words[0] == "EXIT" and not message.startswith("EXIT BLOCKED"):
            self.exit(line, t, message, pairs)
            return
        self.note(line, t, message, _symbol_or_none(written))

    def exit(self, line: int, t: datetime, message: str, pairs: dict[str, str]) -> None:
        """Read an `EXIT` line: an exit attempt (a sell), or a note when it cannot be read."""
        symbol = _symbol_or_none(pairs.get("symbol"))
        qty = _positive(pairs.get("qty"))
        price = _positive(pairs["price"]) if "price" in pairs else None
        if (
            not symbol
            or qty is None
            or ("price" in pairs and price is None)
            or ("bar" in pairs and _time_or_none(pairs["bar"]) is None)
        ):
            self.add(line, t, type="note", text=message, symbol=symbol, tag="unreadable")
            return
        if price is not None:
            self.add(line, t, type="price", symbol=symbol, price=price)
        reason = _exit_reason(message, pairs)
        named = None if "bar" in pairs else (self.exit_name(t, symbol, qty, reason), qty)
        name = self.attempt(
            line, t, pairs, side="sell", symbol=symbol, kind="exit", reason=message, named=named
        )
        self.exits.setdefault((symbol, qty), []).append((reason, name, self.opened.get(symbol)))

    def exit_name(self, t: datetime, symbol: str, qty: Decimal, reason: str | None) -> str:
        """Name an exit without a bar: by the entry it closes, or the line's minute."""
        opened = self.opened.get(symbol)
        when = f"entry={opened.isoformat()}" if opened else f"minute={t.isoformat(timespec='minutes')}"
        return _exit_name(symbol, qty, reason, when)


def _exit_name(symbol: str, qty: Decimal, reason: str | None, when: str) -> str:
    return f"sell {symbol} qty={qty} exit {(reason or '?')[:80]} {when}"


def _symbol_or_none(written: str | None) -> str | None:
    """Return a symbol as the guard keys it, or None when there is none or no order could carry it."""
    if not written:
        return None
    symbol = canonical_symbol(written)
    return symbol if _SYMBOL.fullmatch(symbol) else None


def _positive(value: str | None) -> Decimal | None:
    """Return a figure of an `EXIT` line, or None when it is no positive number a session takes."""
    try:
        figure = Decimal(value or "")
    except ArithmeticError:
        return None
    return figure if figure.is_finite() and 0 < figure < MAX_FIGURE else None


def _time_or_none(value: str) -> datetime | None:
    try:
        return parse_time(value)
    except ValueError:
        return None


def _exit_reason(message: str, pairs: dict[str, str]) -> str | None:
    """Return an exit line's reason: `reason=`, else the bare words after `EXIT` (less BULL/BEAR)."""
    if pairs.get("reason"):
        return pairs["reason"]
    words = []
    for word in message.split()[1:]:
        if "=" in word:
            break
        if word not in _REGIMES:
            words.append(word)
    return " ".join(words) or None


def import_bot_log(source: str | Path, out: str | Path | IO[str]) -> ImportReport:
    """Write the session of a bot log (LOGS.md §1).

    Raises:
        SessionFormatError: An `ENTER` or `SAFEAGENT SKIP` line that cannot be read (no bar, a
            bad number; an `EXIT` line that cannot be read is kept as a note instead), a log
            with no timed line, a line timed before an earlier one, or an empty file; named by
            its line.
    """
    name = str(source)
    log = _Log(name)
    last: datetime | None = None
    last_line = 0
    untimed: list[tuple[int, str]] = []  # lines before the first timed one
    # Read whole (the events are all held until they are sorted anyway), then split as a text
    # file is: on \n, \r\n or \r, and nothing else.
    with io.StringIO(read_text(source), newline=None) as handle:
        for line, raw in enumerate(handle, start=1):
            text = raw.rstrip("\r\n")
            if not text.strip():
                continue
            match = _LINE.match(text)
            when = None
            if match is not None:
                try:
                    when = parse_time(match[1])
                except ValueError:
                    when = None
            if when is None or match is None:
                if last is None:  # before any time (a banner, nohup's line): timed by the first one
                    untimed.append((line, text.strip()))
                    continue
                log.note(line, last, text.strip())  # a continuation (a traceback, a wrapped line)
                continue
            for early, note in untimed:
                log.note(early, when, note)
            untimed.clear()
            if last is not None and when < last:
                raise SessionFormatError(
                    name, line, f"time {when.isoformat()} is before line {last_line}'s {last.isoformat()}: "
                    "a bot log is written in time order (a merged or reordered log?)",
                )  # fmt: skip
            last, last_line = when, line
            log.read(line, when, match[2].strip())
    if last is None:
        if untimed:  # no line of it is a bot log's: another file
            raise SessionFormatError(
                name,
                untimed[0][0],
                "expected a line starting [YYYY-MM-DD HH:MM:SS±HH:MM (no line has a time)",
            )
        raise SessionFormatError(name, 1, "empty file: expected lines starting [YYYY-MM-DD HH:MM:SS±HH:MM")
    report = ImportReport("bot-log", name, str(out))
    return write_session(
        out, log.protos, report=report, title=f"bot log {Path(source).name}", agent_id="bot-log"
    )
