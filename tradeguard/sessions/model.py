"""The session format, version 2: one JSON object per line, each validated by a typed model.

The first line is the `SessionHeader`; every later line is one event, told apart by its `type`:

- `attempt`: the bot tried to send an order for a decision (retries share `decision` and count
  up `attempt`, so a retry is visible as attempt 2, 3, ...);
- `answer`: what the bot got back for one attempt (accepted, filled, rejected with status and
  body, timed out, dropped, a 5xx, or blocked by a guard before it was sent);
- `price`, `position`: a price, and a position as the bot, the guard or the broker saw it;
- `external`: something done to the account outside the bot (a position closed by hand);
- `note`: the bot's own words ("ENTRY BLOCKED: position held"), kept as they were;
- `resolution` (version 2): what was learned later about an attempt whose answer was lost
  (a timeout or a 5xx): whether the broker placed its order after all;
- `cancel`, `replace` (version 2, came later): the bot canceled a decision's order (or every
  open order), or replaced one with new terms, and what the broker answered;
- `end`: the session's last moment (optional; without it the last event's time is the end).

Version 1 files (no `resolution` events) are read as they always were.
`sessions/README.md` is the human description of the same rules.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    model_validator,
)

from tradeguard.config import Settings
from tradeguard.domain.intents import FIGURE_LIMIT
from tradeguard.errors import ConfigError

__all__ = [
    "EVENT_TYPES",
    "SESSION_VERSION",
    "AnswerEvent",
    "AnswerResult",
    "AttemptEvent",
    "CancelEvent",
    "EndEvent",
    "Event",
    "ExternalEvent",
    "NoteEvent",
    "PositionEvent",
    "PriceEvent",
    "RESOLUTION_HORIZON_SECS",
    "ReplaceEvent",
    "ResolutionEvent",
    "SUPPORTED_VERSIONS",
    "SessionHeader",
    "event_adapter",
    "event_types",
]

SESSION_VERSION = 2
"""The version tradeguard writes: 1 plus the `resolution` event."""

SUPPORTED_VERSIONS = (1, 2)
"""The versions tradeguard reads."""

RESOLUTION_HORIZON_SECS = 600.0
"""A `resolution` comes within this much session time after the answer it resolves (the same
bound as an answer after its attempt): a reader holds events back that long, no longer."""

AnswerResult = Literal[
    "accepted", "filled", "partially_filled", "rejected", "timeout", "dropped", "error", "blocked"
]
"""What one attempt got back: the broker's answers, a lost answer, or a guard's refusal to send."""

_SYMBOL = r"^[A-Z0-9][A-Z0-9./:-]{0,31}$"
Symbol = Annotated[str, Field(pattern=_SYMBOL)]
# Bounded: no real order or price comes near 10**12, and a replay's exposure arithmetic (qty x
# price to 4 places, 28 significant digits) overflows on figures much beyond it.
_LIMIT = FIGURE_LIMIT  # the library's bound on any qty or price
Positive = Annotated[Decimal, Field(gt=0, lt=_LIMIT, allow_inf_nan=False)]
Signed = Annotated[Decimal, Field(gt=-_LIMIT, lt=_LIMIT, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class _Line(BaseModel):
    # Frozen and strict about unknown keys: a misspelt field must be loud, not ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


_KINDS = {float: "a number", int: "a whole number", str: "text"}


class SessionHeader(_Line):
    """The first line: what the session is and the account it ran on.

    Attributes:
        version: The format version (1, or 2 for a file that may hold `resolution` events).
        name: A title for reports.
        agent_id: The bot's agent id (claims and ledger are kept under it on replay).
        start: When the session starts; the replay's clock starts here.
        timezone: The zone times are shown in (IANA name).
        reconcile_interval_secs: How often tradeguard reconciles in `full` replays.
        cash: The account's cash at the start.
        allow_short: Whether the account may sell short (a sell with nothing held opens a short).
        source: Where the session comes from (a reconstruction, a recording, an importer).
        description: Free text.
        settings: tradeguard `Settings` the session ran with, by name (those not at their
            defaults); a `full` replay uses them (e.g. ``{"unknown_grace_secs": 2}``).
    """

    type: Literal["session"]
    version: int
    name: str = "session"
    agent_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:@-]{1,64}$")] = "bot"
    start: AwareDatetime
    timezone: str = "America/New_York"
    reconcile_interval_secs: Annotated[float, Field(gt=0)] = 60.0
    cash: Positive = Decimal(100_000)
    allow_short: bool = True
    source: str | None = None
    description: str | None = None
    settings: dict[str, StrictInt | StrictFloat | StrictStr] | None = None  # true is no number here

    @model_validator(mode="after")
    def _settings_are_tradeguards(self) -> SessionHeader:
        # The guard's other settings the session ran with (a recording writes those that were
        # not the defaults): a `full` replay runs under them, so it decides as the live run did.
        if self.settings:
            defaults = Settings()
            for key, value in self.settings.items():
                if not hasattr(defaults, key):
                    raise ValueError(f"settings: {key!r} is no tradeguard setting")
                want = type(getattr(defaults, key))
                numeric = want in (int, float) and type(value) in (int, float)
                if not (numeric or type(value) is want) or (want is int and type(value) is float):
                    raise ValueError(f"settings: {key} must be {_KINDS[want]}, got {value!r}")
            try:
                named: dict[str, Any] = dict(self.settings)
                Settings(**named)
            except (TypeError, ConfigError) as exc:
                raise ValueError(f"settings: {exc}") from None
        return self


class _Event(_Line):
    t: AwareDatetime


_LIMITED = frozenset({"limit", "stop_limit"})
_STOPPED = frozenset({"stop", "stop_limit"})


class TakeProfit(_Line):
    """An order class's take-profit leg, as Alpaca spells it: a limit order at `limit_price`."""

    limit_price: Positive


class StopLoss(_Line):
    """An order class's stop-loss leg: a stop at `stop_price`, a stop-limit with `limit_price` too."""

    stop_price: Positive
    limit_price: Positive | None = None


class AttemptEvent(_Event):
    """One try to send an order for a decision.

    Attributes:
        decision: The bot's stable name for the decision; every retry repeats it.
        attempt: 1 for the first try, 2 for the first retry, ...
        kind: `entry` opens or adds to a position; `exit` closes (part of) one.
        symbol: Upper-case ticker.
        side: `buy` or `sell`.
        qty: Shares (or `notional`, dollars); an exit without either closes all that is held.
        notional: Dollars, for fractional market orders.
        order_type: `market`, `limit`, `stop`, `stop_limit` or `trailing_stop`.
        limit_price: For limit and stop-limit orders (and only for them).
        stop_price: For stop and stop-limit orders (and only for them).
        trail_price: For trailing stops: the trail in dollars (or `trail_percent`, not both).
        trail_percent: For trailing stops: the trail in percent of the price (below 100).
        time_in_force: As Alpaca spells it.
        position_intent: What the bot's own request carried (None: nothing, Alpaca infers it).
        extended_hours: The order may fill outside regular hours (limit orders at Alpaca).
        order_class: `simple` (default), `bracket` (an entry with both legs), `oto` (one leg)
            or `oco` (an exit: a limit order, `take_profit`, with its `stop_loss`).
        take_profit: The take-profit leg (`limit_price`) of a bracket, OTO or OCO.
        stop_loss: The stop-loss leg (`stop_price`, and `limit_price` for a stop-limit).
        path: Which of the bot's code paths sent it: `order` (entries, adds, flip sells: the
            path an entry-only guard keys) or `exit` (unguarded by such a guard). Default: the
            kind's (`order` for entries, `exit` for exits).
        bar: The bar the decision was taken on (an entry-only guard keys on it).
        client_order_id: The bot's own id for this attempt, when it set one.
        reason: The bot's words for the decision.
    """

    type: Literal["attempt"]
    decision: Name
    attempt: Annotated[int, Field(ge=1)]
    kind: Literal["entry", "exit"]
    symbol: Symbol
    side: Literal["buy", "sell"]
    qty: Positive | None = None
    notional: Positive | None = None
    order_type: Literal["market", "limit", "stop", "stop_limit", "trailing_stop"] = "market"
    limit_price: Positive | None = None
    # Came later within version 2 (with the three stop types): a reader older than them refuses
    # a line that has them (its `extra="forbid"`), naming the line, rather than replay a market order.
    stop_price: Positive | None = None
    trail_price: Positive | None = None
    trail_percent: Annotated[Decimal, Field(gt=0, lt=100, allow_inf_nan=False)] | None = None
    time_in_force: Literal["day", "gtc", "opg", "cls", "ioc", "fok"] = "day"
    position_intent: Literal["buy_to_open", "buy_to_close", "sell_to_open", "sell_to_close"] | None = None
    # Came later within version 2 (with order classes): an older reader refuses a line that has
    # them, naming the line, rather than replay a bracket as a plain order (or an OCO as a limit).
    extended_hours: bool | None = None
    order_class: Literal["simple", "bracket", "oto", "oco"] | None = None
    take_profit: TakeProfit | None = None
    stop_loss: StopLoss | None = None
    path: Literal["order", "exit"] | None = None
    bar: AwareDatetime | None = None
    client_order_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    reason: str | None = None

    @model_validator(mode="after")
    def _one_size(self) -> AttemptEvent:
        if self.qty is not None and self.notional is not None:
            raise ValueError("an attempt takes qty or notional, not both")
        if self.kind == "entry" and self.qty is None and self.notional is None:
            raise ValueError("an entry needs qty or notional (only an exit may omit both: all held)")
        kind = self.order_type
        if (kind in _LIMITED) != (self.limit_price is not None):
            raise ValueError("limit_price goes with order_type limit or stop_limit, and only with them")
        if (kind in _STOPPED) != (self.stop_price is not None):
            raise ValueError("stop_price goes with order_type stop or stop_limit, and only with them")
        trails = (self.trail_price is not None) + (self.trail_percent is not None)
        if kind == "trailing_stop" and trails != 1:
            raise ValueError("a trailing_stop needs trail_price or trail_percent (one of them)")
        if kind != "trailing_stop" and trails:
            raise ValueError("trail_price and trail_percent go with order_type trailing_stop only")
        self._check_legs()
        return self

    def _check_legs(self) -> None:
        """An order class has the legs Alpaca requires of it (the gateway's `build_spec` rules)."""
        order_class = self.order_class or "simple"
        profit, loss = self.take_profit is not None, self.stop_loss is not None
        if order_class == "simple":
            if profit or loss:
                raise ValueError("take_profit and stop_loss need order_class bracket, oto or oco")
            return
        if order_class in {"bracket", "oco"} and not (profit and loss):
            raise ValueError(f"order_class {order_class} needs both take_profit and stop_loss")
        if order_class == "oto" and profit == loss:
            raise ValueError("order_class oto needs either take_profit or stop_loss, not both")
        if self.notional is not None:
            raise ValueError(f"order_class {order_class} needs qty, not notional (Alpaca's rule)")
        if order_class == "oco" and (self.kind != "exit" or self.order_type != "limit"):
            raise ValueError("order_class oco is an exit's limit order (its take_profit) with its stop_loss")

    @property
    def bot_path(self) -> str:
        """The code path that sent it, defaulted from the kind."""
        return self.path or ("order" if self.kind == "entry" else "exit")


class AnswerEvent(_Event):
    """What one attempt got back.

    Attributes:
        decision: The attempt's decision.
        attempt: The attempt's number.
        result: accepted, filled, partially_filled, rejected, timeout, dropped, error, blocked.
        status: HTTP status of a rejection or error.
        body: The error body (JSON object, or text).
        order_id: The broker's order id, when one was returned.
        client_order_id: The order's client id, when known.
        filled_qty: Shares filled so far.
        filled_avg_price: Average fill price.
        after_secs: How long the bot waited before giving up (timeouts).
        placed: For timeout, dropped and error: whether the broker placed the order anyway
            (None: unknown, which a replay treats as placed, the case a guard must survive).
        by: For blocked: the guard that answered without sending (e.g. `safeagent`, `tradeguard`).
        reason: A sentence.
    """

    type: Literal["answer"]
    decision: Name
    attempt: Annotated[int, Field(ge=1)]
    result: AnswerResult
    status: Annotated[int, Field(ge=100, le=599)] | None = None
    body: dict[str, Any] | str | None = None
    order_id: str | None = None
    client_order_id: str | None = None
    filled_qty: Signed | None = None
    filled_avg_price: Positive | None = None
    after_secs: Annotated[float, Field(ge=0)] | None = None
    placed: bool | None = None
    by: str | None = None
    reason: str | None = None


class ResolutionEvent(_Event):
    """What was learned after an attempt's answer was lost: whether its order was placed.

    Written by a recording gateway when it (or its reconciler) settles an ambiguous send: the
    order found at the broker by client_order_id (placed), or proven absent (two probes after
    the grace period, a reconcile pass marking it not sent, or a lookup when the recording
    ended: not placed). It follows the `answer` it resolves (a `timeout` or `error` without
    `placed`) within `RESOLUTION_HORIZON_SECS` of session time, once; the reader hands that
    answer on with `placed` set from it.

    Attributes:
        decision: The attempt's decision.
        attempt: The attempt's number.
        placed: Whether the broker placed the order of that attempt's send.
        client_order_id: The id the order was sent under.
        order_id: The broker's order id, when it was found.
        symbol: The attempt's symbol, given with a fill price (what `filled_avg_price` prices).
        filled_qty: Shares the found order had filled when it was found.
        filled_avg_price: Their average fill price. A reader hands the lost answer on with both,
            and a `price` event for `symbol` at the answer's time after it: the price line a
            recorder writes after a filled answer, which the lost answer could not carry.
        by: How it was learned: `lookup` (found by client_order_id), `probe` (absent on two
            probes after the grace period), `reconcile` (a reconcile pass marked it not sent),
            `end` (looked up when the recording ended).
        reason: A sentence.
    """

    type: Literal["resolution"]
    decision: Name
    attempt: Annotated[int, Field(ge=1)]
    placed: bool
    client_order_id: str | None = None
    order_id: str | None = None
    symbol: Symbol | None = None
    filled_qty: Signed | None = None
    filled_avg_price: Positive | None = None
    by: Literal["lookup", "probe", "reconcile", "end"] | None = None
    reason: str | None = None

    @model_validator(mode="after")
    def _fill_of_a_placed_order(self) -> ResolutionEvent:
        if not self.placed and (self.filled_qty is not None or self.filled_avg_price is not None):
            raise ValueError("filled_qty and filled_avg_price go with placed true only")
        if self.filled_avg_price is not None and self.symbol is None:
            raise ValueError("filled_avg_price needs the symbol it prices")
        return self


Scope = Literal["order", "all"]


class _Amendment(_Event):
    """What cancels and replaces share: the order meant, and the broker's answer."""

    type: Literal["cancel", "replace"]  # each kind's own, declared here to come first on a line
    decision: Name | None = None
    # A leg of the decision's bracket, OTO or OCO order (review45): the broker named the leg, and
    # each replay's broker names it anew, so the leg is named by its parent's decision and its
    # role. Came later within version 2: an older reader refuses a line that has it, naming it.
    leg: Literal["take_profit", "stop_loss"] | None = None
    client_order_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    order_id: str | None = None
    symbol: Symbol | None = None
    result: Literal["accepted", "rejected", "timeout", "error", "dropped", "blocked"]
    status: Annotated[int, Field(ge=100, le=599)] | None = None
    body: dict[str, Any] | str | None = None
    reason: str | None = None

    @model_validator(mode="after")
    def _leg_of_a_decision(self) -> _Amendment:
        if self.leg is not None and self.decision is None:
            raise ValueError("leg names a leg of the decision's order: it needs decision")
        return self


class CancelEvent(_Amendment):
    """The bot canceled an order of one of its decisions, or every open order of the account.

    Came later within version 2: an older reader refuses such a line, naming it, rather than
    replay the order as if it still rested.

    Attributes:
        scope: `order` (one order: the current order of `decision`, else the one under
            `client_order_id`; one with neither, an order the session never placed, replays as
            nothing) or `all` (every open order, alpaca-py's `cancel_orders`).
        decision: The decision whose order was canceled (None: an order of no decision).
        leg: `take_profit` or `stop_loss`: that leg of the decision's order was canceled (a
            bracket's, OTO's or OCO's leg: the broker named it, so it is named by its role).
        client_order_id: That order's client id, when known.
        order_id: The broker's id of the order at the time (a replay's broker gives its own).
        symbol: The order's symbol.
        result: `accepted` (the cancel was taken), `rejected` (status and body: unknown order,
            already filled), `timeout` or `error` (the answer was lost), `dropped` (never
            sent: the broker unreachable), `blocked` (tradeguard refused it before sending).
        canceled: For `all`: how many orders the broker canceled (legs included).
    """

    type: Literal["cancel"]
    scope: Scope = "order"
    canceled: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _names_its_order(self) -> CancelEvent:
        names = (self.decision, self.client_order_id, self.order_id)
        if self.scope == "order" and names == (None, None, None):
            raise ValueError("a cancel of one order names its decision, client_order_id or order_id")
        if self.scope == "all" and names != (None, None, None):
            raise ValueError("a cancel of all orders names no decision, client_order_id or order_id")
        if self.scope == "order" and self.canceled is not None:
            raise ValueError("canceled goes with scope all only")
        return self


class ReplaceEvent(_Amendment):
    """The bot replaced an open order of one of its decisions with new terms (Alpaca's PATCH).

    Came later within version 2: an older reader refuses such a line, naming it.

    Attributes:
        decision: The decision whose order was replaced (None: an order of no decision).
        leg: `take_profit` or `stop_loss`: that leg of the decision's order was replaced (a
            bracket's stop moved, say).
        client_order_id: The replaced order's client id, when known.
        order_id: The broker's id of the replaced order at the time.
        qty, limit_price, stop_price, trail, time_in_force: The terms asked (None keeps the old).
        new_client_order_id: The client id the bot asked the replacement to carry.
        new_order_id: The replacement's broker id (`accepted`).
        result: As for `CancelEvent`.
    """

    type: Literal["replace"]
    qty: Positive | None = None
    limit_price: Positive | None = None
    stop_price: Positive | None = None
    trail: Positive | None = None
    time_in_force: Literal["day", "gtc", "opg", "cls", "ioc", "fok"] | None = None
    new_client_order_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    new_order_id: str | None = None

    @model_validator(mode="after")
    def _names_its_order(self) -> ReplaceEvent:
        if self.decision is None and self.client_order_id is None and self.order_id is None:
            raise ValueError("a replace names the decision, client_order_id or order_id of its order")
        return self


class PriceEvent(_Event):
    """The price of `symbol` from `t` on (fills of the replay's paper broker happen at it)."""

    type: Literal["price"]
    symbol: Symbol
    price: Positive


class PositionEvent(_Event):
    """A position as one party saw it at `t`.

    Attributes:
        symbol: The symbol.
        qty: Signed shares (negative: short).
        view: `bot` (the bot's own belief, replayed as is in the `none` and `entry-only`
            modes), `guard` (tradeguard's ledger) or `broker` (a broker read).
    """

    type: Literal["position"]
    symbol: Symbol
    qty: Signed
    view: Literal["bot", "guard", "broker"]


class ExternalEvent(_Event):
    """Something done to the account outside the bot.

    Attributes:
        event: `position_closed`: the broker position in `symbol` was closed (by a person, a
            stop order the bot forgot, another program). The replay closes it at its broker.
        symbol: The symbol.
        reason: A sentence.
    """

    type: Literal["external"]
    event: Literal["position_closed"]
    symbol: Symbol
    reason: str | None = None


class NoteEvent(_Event):
    """The bot's own words, kept as they were (unknown log lines end up here, never dropped).

    Attributes:
        text: The message.
        symbol: The symbol it is about, if any.
        tag: A short machine-readable label (e.g. `entry_blocked`, `skip`).
    """

    type: Literal["note"]
    text: str
    symbol: Symbol | None = None
    tag: str | None = None


class EndEvent(_Event):
    """The last moment of the session."""

    type: Literal["end"]


_EventV1 = Annotated[
    AttemptEvent | AnswerEvent | PriceEvent | PositionEvent | ExternalEvent | NoteEvent | EndEvent,
    Field(discriminator="type"),
]

Event = Annotated[
    AttemptEvent
    | AnswerEvent
    | PriceEvent
    | PositionEvent
    | ExternalEvent
    | NoteEvent
    | EndEvent
    | ResolutionEvent
    | CancelEvent
    | ReplaceEvent,
    Field(discriminator="type"),
]
"""Any event line of the current version."""

EVENT_TYPES = (
    "attempt", "answer", "price", "position", "external", "note", "end", "resolution", "cancel", "replace",
)  # fmt: skip
"""Every event type of the current version."""

_TYPES_V1 = EVENT_TYPES[:7]

_ADAPTERS: dict[int, TypeAdapter[Any]] = {}


def event_types(version: int = SESSION_VERSION) -> tuple[str, ...]:
    """Return the event types a file of format `version` may hold."""
    return _TYPES_V1 if version == 1 else EVENT_TYPES


def event_adapter(version: int = SESSION_VERSION) -> TypeAdapter[Any]:
    """Return the validator of one event line of a file of format `version` (built once each).

    A version 1 file's validator does not know `resolution`: such a line there is refused.
    """
    adapter = _ADAPTERS.get(version)
    if adapter is None:
        # Values are not interned: pydantic-core's string cache would fill with decision ids and
        # make memory grow with the file up to its cap; keys repeat on every line and are worth it.
        union: Any = _EventV1 if version == 1 else Event
        adapter = _ADAPTERS[version] = TypeAdapter(union, config=ConfigDict(cache_strings="keys"))
    return adapter
