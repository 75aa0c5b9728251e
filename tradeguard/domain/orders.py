"""Broker-neutral order and position value types, and why an order was refused.

Quantities and prices are `decimal.Decimal`: Alpaca sends them as strings and fractional
shares exist, so binary floats would drift. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from tradeguard.domain.frozen import fast_frozen_init

__all__ = [
    "BrokerOrder",
    "BrokerPosition",
    "DeferredRaw",
    "OrderClass",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "PositionIntent",
    "RejectKind",
    "ReplaceRequest",
    "Side",
    "TERMINAL_STATUSES",
    "TimeInForce",
    "canonical_symbol",
    "crypto_pair",
    "default_time_in_force",
    "ledger_symbol",
    "same_symbol",
    "symbol_key",
]


class Side(enum.StrEnum):
    """Order side."""

    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        """Return the other side."""
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(enum.StrEnum):
    """Order type, as Alpaca names it."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    TRAILING_STOP = "trailing_stop"


class OrderClass(enum.StrEnum):
    """Alpaca's order classes: a simple order, or one that carries exit legs.

    - BRACKET: an entry with a take-profit limit leg and a stop-loss leg; the legs are held
      until the entry fills, then one cancels the other.
    - OTO: an entry with one exit leg (take-profit or stop-loss), held until the entry fills.
    - OCO: two exits of one position (a limit order and a stop-loss leg); one cancels the other.
    """

    SIMPLE = "simple"
    BRACKET = "bracket"
    OCO = "oco"
    OTO = "oto"


class TimeInForce(enum.StrEnum):
    """Time in force, as Alpaca names it."""

    DAY = "day"
    GTC = "gtc"
    OPG = "opg"
    CLS = "cls"
    IOC = "ioc"
    FOK = "fok"


class PositionIntent(enum.StrEnum):
    """Alpaca's `position_intent`: whether an order opens or closes a position."""

    BUY_TO_OPEN = "buy_to_open"
    BUY_TO_CLOSE = "buy_to_close"
    SELL_TO_OPEN = "sell_to_open"
    SELL_TO_CLOSE = "sell_to_close"


class OrderStatus(enum.StrEnum):
    """Alpaca order statuses, plus OTHER for a value Alpaca adds later.

    Parsing never fails on a new status (ALPACA.md: strict enums break whole calls); an
    unrecognised status maps to OTHER and is treated as open, the cautious reading.
    """

    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    DONE_FOR_DAY = "done_for_day"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REPLACED = "replaced"
    PENDING_CANCEL = "pending_cancel"
    PENDING_REPLACE = "pending_replace"
    ACCEPTED = "accepted"
    PENDING_NEW = "pending_new"
    ACCEPTED_FOR_BIDDING = "accepted_for_bidding"
    STOPPED = "stopped"
    REJECTED = "rejected"
    SUSPENDED = "suspended"
    CALCULATED = "calculated"
    HELD = "held"
    OTHER = "other"

    @classmethod
    def parse(cls, value: str | None) -> OrderStatus:
        """Map Alpaca's status string to a member; unknown values become OTHER."""
        try:
            return cls(str(value).lower())
        except ValueError:
            return cls.OTHER

    @property
    def is_terminal(self) -> bool:
        """True when the order can no longer fill."""
        return self in TERMINAL_STATUSES

    @property
    def is_open(self) -> bool:
        """True when the order may still fill (unknown statuses count as open)."""
        return not self.is_terminal


# Not DONE_FOR_DAY: Alpaca's "done executing for the day, and will not receive further updates
# until the next trading day" is a pause; a GTC order resumes in the next session.
TERMINAL_STATUSES = frozenset(
    {
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
        OrderStatus.EXPIRED,
        OrderStatus.REPLACED,
        OrderStatus.REJECTED,
    }
)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One order to place. Exactly one of `qty` and `notional` is set."""

    symbol: str
    side: Side
    client_order_id: str
    qty: Decimal | None = None
    notional: Decimal | None = None
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    position_intent: PositionIntent | None = None
    extended_hours: bool = False
    order_class: OrderClass = OrderClass.SIMPLE
    take_profit_limit_price: Decimal | None = None  # bracket/OTO/OCO take-profit leg
    stop_loss_stop_price: Decimal | None = None  # bracket/OTO/OCO stop-loss leg
    stop_loss_limit_price: Decimal | None = None  # makes the stop-loss leg a stop-limit
    trail_price: Decimal | None = None  # trailing_stop: dollars below (sell) the high-water mark
    trail_percent: Decimal | None = None  # trailing_stop: percent instead of dollars


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ReplaceRequest:
    """What `PATCH /v2/orders/{id}` may change on an open order; None keeps the old value.

    The broker answers with a new order (new id) that replaces the old one; the old order
    becomes REPLACED and names its successor in `BrokerOrder.replaced_by`.
    """

    qty: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail: Decimal | None = None  # the new trail_price or trail_percent of a trailing stop
    time_in_force: TimeInForce | None = None
    client_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """An order as the broker reports it.

    `raw` is the venue's JSON of the order as it was when this value was made. An adapter may
    pass a `DeferredRaw` instead of the document: it is rendered the first time `raw` is read
    (the paper broker does this; most callers never read `raw`). Every reader sees a dict.
    """

    id: str
    client_order_id: str
    symbol: str
    side: Side
    status: OrderStatus
    qty: Decimal | None = None
    notional: Decimal | None = None
    filled_qty: Decimal = Decimal(0)
    filled_avg_price: Decimal | None = None
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    position_intent: PositionIntent | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    order_class: OrderClass = OrderClass.SIMPLE
    legs: tuple[BrokerOrder, ...] = ()  # a bracket's/OTO's/OCO's exit legs, as their own orders
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    replaced_by: str | None = None  # the id of the order that replaced this one (status REPLACED)
    replaces: str | None = None  # the id of the order this one replaced
    raw: dict[str, object] = field(default_factory=dict, compare=False, repr=False)


class DeferredRaw(dict[str, object]):
    """A `BrokerOrder.raw` rendered when it is first read: ``render(order, *args)``.

    `render` gets the `BrokerOrder` and `args` (what the document needs beyond the order's
    fields, taken when the order was made), and returns a dict of its own. It is a dict (empty
    until rendered) only so that it passes where `raw` is typed; nothing reads it as one.
    """

    __slots__ = ("args", "render")

    def __init__(self, render: Callable[..., dict[str, object]], *args: object) -> None:
        # No dict.__init__ call: it would add nothing to the empty dict __new__ made.
        self.render = render
        self.args = args


_raw_slot = BrokerOrder.__dict__["raw"]  # the slot's descriptor: `raw` becomes a property over it
_get_raw_slot = _raw_slot.__get__
_set_raw_slot = _raw_slot.__set__


def _read_raw(order: BrokerOrder) -> dict[str, object]:
    raw: dict[str, object] = _get_raw_slot(order)
    if type(raw) is DeferredRaw:
        # Two threads may render at once: each gets an equal document, the last one is kept.
        raw = raw.render(order, *raw.args)
        _set_raw_slot(order, raw)
    return raw


fast_frozen_init(BrokerOrder)
# The frozen __setattr__ still refuses `order.raw = ...`; the setter serves __init__ and unpickling.
setattr(BrokerOrder, "raw", property(_read_raw, _set_raw_slot, doc="The venue's JSON of the order."))  # noqa: B010


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class BrokerPosition:
    """A position as the broker reports it. `qty` is signed: negative is short."""

    symbol: str
    qty: Decimal
    qty_available: Decimal
    avg_entry_price: Decimal | None = None
    market_value: Decimal | None = None

    @property
    def side(self) -> str:
        """Return "long" or "short"."""
        return "short" if self.qty < 0 else "long"


def symbol_key(symbol: str) -> str:
    """Return the form in which two names of one asset compare equal ("BTC/USD" -> "BTCUSD").

    Alpaca names a crypto pair "BTC/USD" in orders but "BTCUSD" in positions (alpaca-py
    issue #490); anything that matches a broker position with a ledger's or an order's symbol
    compares these keys, never the raw names.
    """
    return symbol.replace("/", "").strip().upper()


# The quote currencies of Alpaca's crypto pairs, longest first so "BTCUSDT" splits as BTC/USDT.
CRYPTO_QUOTES = ("USDT", "USDC", "USD", "BTC")
# A US equity ticker has at most five letters (a class share adds ".B"); the shortest slashless
# pair has six ("BTCUSD"), so no equity symbol is ever read as a pair.
_MIN_PAIR_LEN = 6


def crypto_pair(symbol: str) -> str | None:
    """Return the slash form of a crypto pair ("BTCUSD" and "btc/usd" -> "BTC/USD"), else None.

    A pair is a symbol with one "/" between a base and a quote of `CRYPTO_QUOTES`, or its
    spelling without the slash (Alpaca takes both in orders; alpaca-py issue #490): six or more
    letters and digits ending in a quote, the base at least three. Anything else (equities,
    "BRK/B", option symbols) is not a pair.
    """
    text = symbol.strip().upper()
    if "/" in text:
        base, _, quote = text.partition("/")
        if quote in CRYPTO_QUOTES and base.isalnum() and "/" not in quote:
            return text
        return None
    if len(text) < _MIN_PAIR_LEN or not text.isalnum():
        return None
    for quote in CRYPTO_QUOTES:
        base = text[: -len(quote)]
        if text.endswith(quote) and len(base) >= 3 and not base.isdigit():
            return f"{base}/{quote}"
    return None


def canonical_symbol(symbol: str) -> str:
    """Return the one spelling of `symbol` the guard keys by: upper case; a crypto pair with its slash.

    "BTCUSD", "btc/usd" and "BTC/USD" are all "BTC/USD" (the form Alpaca answers crypto orders
    with); an equity is only stripped and upper-cased ("spy" -> "SPY").
    """
    # A paper account asks for every order, price and position read: each spelling is worked
    # out once (plain str only: a subclass is worked out each time).
    found = _CANONICAL.get(symbol) if type(symbol) is str else None
    if found is None:
        found = ledger_symbol(symbol.strip().upper())
        if type(symbol) is str:
            if len(_CANONICAL) >= _CANONICAL_MAX:
                _CANONICAL.clear()  # bounded: a spelling only costs its working out again
            _CANONICAL[symbol] = found
    return found


_CANONICAL: dict[str, str] = {}
_CANONICAL_MAX = 4096


def ledger_symbol(symbol: str) -> str:
    """Return the one spelling the guard keys `symbol` by: a crypto pair's slash form, else as given.

    Alpaca takes "BTC/USD" and "BTCUSD" for one pair, so a bot may use both; claim keys and
    ledger turns must not tell them apart (one decision, one position). Equities are left
    exactly as they are. Only a symbol with a slash or of six characters or more can be a pair.
    """
    if "/" in symbol or len(symbol) >= _MIN_PAIR_LEN:
        return crypto_pair(symbol) or symbol
    return symbol


def default_time_in_force(symbol: str) -> TimeInForce:
    """Return the time in force of an order whose caller named none: gtc for a crypto pair, else day.

    Alpaca refuses a crypto order that is not gtc or ioc (422 "invalid crypto time_in_force"),
    so an exit or a close the guard builds for a pair must not be a day order.
    """
    return TimeInForce.GTC if crypto_pair(symbol) is not None else TimeInForce.DAY


def same_symbol(a: str, b: str) -> bool:
    """True when two symbols name one asset ("BTC/USD" and "btcusd" do)."""
    return symbol_key(a) == symbol_key(b)


class RejectKind(enum.StrEnum):
    """Why a broker refused an order, in broker-neutral terms.

    Each adapter maps its venue's answers to one of these in one place; nothing above the
    adapters reads error messages. The kind is stored with a REJECTED claim, so the reconciler
    can tell a position-related refusal (a phantom candidate) from any other.
    """

    POSITION = "position"  # the broker holds less than the order closes (phantom candidate)
    DUPLICATE_ID = "duplicate_id"  # the client_order_id is taken: an order exists under it
    ID_TAKEN = "id_taken"  # the id names another order (different symbol, side or size)
    BUYING_POWER = "buying_power"
    SHORTING = "shorting"  # the account or asset may not be shorted
    WASH_TRADE = "wash_trade"
    PATTERN_DAY_TRADING = "pattern_day_trading"
    MARKET_CLOSED = "market_closed"
    ASSET = "asset"  # unknown, inactive or non-tradable asset
    INVALID = "invalid"  # a malformed request (bad qty, sub-penny price, ...)
    AUTH = "auth"
    OTHER = "other"

    @property
    def is_position(self) -> bool:
        """True when the refusal says the broker holds less than the order assumed."""
        return self is RejectKind.POSITION
