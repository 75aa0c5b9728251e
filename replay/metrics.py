"""The replay's figures, computed from what happened at the paper broker (sessions/README.md).

- A decision's **orders** are the orders the broker accepted under the client ids its attempts
  used. An attempt is a **duplicate attempt** when its decision already had an accepted order
  before it.
- A duplicate attempt that reached the broker is a **duplicate sent**: it either got a new
  order accepted (a **duplicate executed**) or was refused by the broker's own checks (**refused
  by the broker**, e.g. Alpaca's 403 "insufficient qty available" on a sell that would cross
  from long to short). One that sent nothing was **blocked** (by the guard of the mode).
- **Exposure** of an attempt is its quantity times the symbol's price at the attempt.
- The **unintended short** is, over the symbols the session never opened a short in on purpose
  (no entry that sells), the sum of the lowest broker position below zero.
- **Phantom entry block seconds**: the time during which the position view that decides entries
  (the bot's own belief in `none` and `entry-only`, tradeguard's ledger in `full`) holds shares
  on a side where the broker holds none, summed over symbols.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from decimal import Context, Decimal
from typing import Any

__all__ = ["AttemptOutcome", "Metrics", "Mode", "Span", "Totals"]

_ZERO = Decimal(0)
_EXPOSURE_STEP = Decimal("0.0001")
_LOST = ("answer lost", "unknown:", "not_sent:")  # how the modes' details begin for a lost answer


class Mode(enum.StrEnum):
    """How a replay guards the bot's attempts."""

    NONE = "none"  # every attempt straight to the broker, as the bot did alone
    ENTRY_ONLY = "entry-only"  # entries keyed and deduplicated, exits not, no reconciliation
    FULL = "full"  # tradeguard: OrderGateway + reconciler


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one attempt led to in one mode.

    Attributes:
        duplicate: The decision already had an accepted order before this attempt.
        sent: The attempt reached the broker.
        placed: The broker accepted a new order for it.
        qty: The shares the attempt asked for (or the order's, for an exit of all held).
        exposure_usd: qty times the price at the attempt.
        detail: A short phrase: the broker's refusal, the guard's answer.
    """

    duplicate: bool
    sent: bool
    placed: bool
    qty: Decimal
    exposure_usd: Decimal
    detail: str = ""

    @property
    def label(self) -> str:
        """One or two words for tables."""
        if self.sent and not self.placed and self.detail.startswith(_LOST):
            return "not placed (lost)"  # the answer was lost and the broker placed nothing
        if self.duplicate:
            if self.placed:
                return "DUPLICATE EXECUTED"
            return "refused by broker" if self.sent else "blocked"
        if self.placed:
            return "placed"
        return "refused by broker" if self.sent else "not sent"

    def as_dict(self) -> dict[str, Any]:
        """Return the outcome as JSON-able values."""
        return {
            "result": self.label,
            "duplicate": self.duplicate,
            "sent": self.sent,
            "placed": self.placed,
            "qty": _shares(self.qty),
            "exposure_usd": _money(self.exposure_usd),
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of time something held, for one symbol."""

    symbol: str
    start: datetime
    end: datetime

    @property
    def secs(self) -> float:
        """Its length in seconds."""
        return (self.end - self.start).total_seconds()


@dataclass(slots=True)
class Totals:
    """The figures of one mode over a whole session."""

    mode: Mode
    attempts: int = 0
    decisions: int = 0
    orders_placed: int = 0
    duplicate_attempts: int = 0
    duplicate_orders_sent: int = 0
    duplicate_exposure_sent_usd: Decimal = _ZERO
    duplicate_orders_executed: int = 0
    duplicate_shares_executed: Decimal = _ZERO
    duplicate_exposure_executed_usd: Decimal = _ZERO
    duplicate_attempts_blocked: int = 0
    exposure_blocked_usd: Decimal = _ZERO
    duplicate_attempts_refused_by_broker: int = 0
    unintended_short_shares: Decimal = _ZERO
    phantom_entry_block_secs: float = 0.0
    phantom_spans: list[Span] = field(default_factory=list)
    untracked_shares_at_end: dict[str, Decimal] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as JSON-able values (money and shares as JSON numbers)."""
        return {
            "mode": self.mode.value,
            "attempts": self.attempts,
            "decisions": self.decisions,
            "orders_placed": self.orders_placed,
            "duplicate_attempts": self.duplicate_attempts,
            "duplicate_orders_sent": self.duplicate_orders_sent,
            "duplicate_exposure_sent_usd": _money(self.duplicate_exposure_sent_usd),
            "duplicate_orders_executed": self.duplicate_orders_executed,
            "duplicate_shares_executed": _shares(self.duplicate_shares_executed),
            "duplicate_exposure_executed_usd": _money(self.duplicate_exposure_executed_usd),
            "duplicate_attempts_blocked": self.duplicate_attempts_blocked,
            "exposure_blocked_usd": _money(self.exposure_blocked_usd),
            "duplicate_attempts_refused_by_broker": self.duplicate_attempts_refused_by_broker,
            "unintended_short_shares": _shares(self.unintended_short_shares),
            "phantom_entry_block_secs": round(self.phantom_entry_block_secs, 3),
            "phantom_spans": [
                {"symbol": s.symbol, "start": s.start.isoformat(), "end": s.end.isoformat(), "secs": s.secs}
                for s in self.phantom_spans
            ],
            "untracked_shares_at_end": {
                k: _shares(v) for k, v in sorted(self.untracked_shares_at_end.items())
            },
        }


def _money(value: Decimal) -> float:
    """Dollars to the cent as a JSON number (`json` writes a float's shortest exact repr: 3653.02)."""
    # A wide context: a sum of many large exposures can need more than the default 28 digits.
    return float(value.quantize(Decimal("0.01"), context=Context(prec=60)))


def _shares(value: Decimal) -> int | float:
    """A share count as a JSON number: whole shares as an integer (-12), fractions as a float."""
    return int(value) if value == value.to_integral_value() else float(value)


class Metrics:
    """Accumulates one mode's figures as the replay goes; keeps no list of events.

    What it holds grows with the decisions (an order count each) and the symbols, not with the
    session's length; `forget` drops the counts of decisions first seen before a time (a replay
    calls it for decisions past their retry horizon), so that too follows the live decisions.
    Position history is kept only when `track` is set (for plots).
    """

    def __init__(self, mode: Mode, *, tz: tzinfo | None = None, track: bool = False) -> None:
        self.totals = Totals(mode)
        self._tz = tz
        self._orders: dict[str, int] = {}
        self._first: deque[tuple[datetime, str]] = deque()  # (first attempt, decision), in time order
        self._lowest: dict[str, Decimal] = {}
        self._shorts_meant: set[str] = set()
        self._phantom_since: dict[str, datetime] = {}
        self.track = track
        self.positions: list[tuple[datetime, str, Decimal]] = []
        self.marks: list[tuple[datetime, str, str]] = []  # (time, symbol, what) for plots
        self._last_qty: dict[str, Decimal] = {}

    def orders_of(self, decision: str) -> int:
        """Return how many orders the broker accepted for `decision` so far."""
        return self._orders.get(decision, 0)

    def attempt(
        self,
        t: datetime,
        decision: str,
        symbol: str,
        *,
        sends_short: bool,
        sent: bool,
        placed: int,
        qty: Decimal,
        price: Decimal | None,
        detail: str,
    ) -> AttemptOutcome:
        """Count one attempt: `placed` new orders were accepted, `sent` says whether it was sent."""
        totals = self.totals
        before = self._orders.get(decision, 0)
        if before == 0 and decision not in self._orders:
            totals.decisions += 1
            self._orders[decision] = 0
            self._first.append((t, decision))
        if sends_short:
            self._shorts_meant.add(symbol)
        totals.attempts += 1
        exposure = (qty * price).quantize(_EXPOSURE_STEP) if price is not None else _ZERO
        duplicate = before > 0
        if placed:
            self._orders[decision] = before + placed
            totals.orders_placed += placed
        if duplicate:
            totals.duplicate_attempts += 1
            if sent:
                totals.duplicate_orders_sent += 1
                totals.duplicate_exposure_sent_usd += exposure
            if placed:
                totals.duplicate_orders_executed += placed
                totals.duplicate_shares_executed += qty * placed
                totals.duplicate_exposure_executed_usd += exposure * placed
                if self.track:
                    self.marks.append((t.astimezone(self._tz), symbol, "duplicate executed"))
            elif sent:
                totals.duplicate_attempts_refused_by_broker += 1
            else:
                totals.duplicate_attempts_blocked += 1
                totals.exposure_blocked_usd += exposure
        return AttemptOutcome(duplicate, sent, bool(placed), qty, exposure, detail)

    def forget(self, before: datetime) -> int:
        """Drop the order counts of decisions first attempted before `before`; return how many.

        A later attempt of a forgotten decision would count as a new decision: call it only with
        a time no later attempt of those decisions can come after (the replay's retry horizon).
        """
        first, orders = self._first, self._orders
        dropped = 0
        while first and first[0][0] < before:
            del orders[first.popleft()[1]]
            dropped += 1
        return dropped

    def sample(self, t: datetime, symbol: str, view: Decimal, broker: Decimal) -> None:
        """Note the view's and the broker's position in `symbol` at `t`."""
        if broker < self._lowest.get(symbol, _ZERO):
            self._lowest[symbol] = broker
        phantom = view != 0 and (broker == 0 or (broker > 0) != (view > 0))
        since = self._phantom_since.get(symbol)
        if phantom and since is None:
            self._phantom_since[symbol] = t
        elif not phantom and since is not None:
            self._close_phantom(symbol, since, t)
        if self.track and self._last_qty.get(symbol) != broker:
            self._last_qty[symbol] = broker
            self.positions.append((t.astimezone(self._tz), symbol, broker))

    def _close_phantom(self, symbol: str, since: datetime, t: datetime) -> None:
        del self._phantom_since[symbol]
        if t > since:  # a view that catches up within the same instant blocked nothing
            span = Span(symbol, since.astimezone(self._tz), t.astimezone(self._tz))
            self.totals.phantom_spans.append(span)
            self.totals.phantom_entry_block_secs += span.secs

    def finish(self, end: datetime, gaps: dict[str, Decimal]) -> Totals:
        """Close open spans at `end`; return the totals."""
        for symbol, since in sorted(self._phantom_since.items()):
            self._close_phantom(symbol, since, max(end, since))
        totals = self.totals
        totals.unintended_short_shares = sum(
            (low for sym, low in self._lowest.items() if sym not in self._shorts_meant), _ZERO
        )
        totals.untracked_shares_at_end = {sym: gap for sym, gap in gaps.items() if gap != 0}
        return totals
