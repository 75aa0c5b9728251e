"""Intents, claim keys and client_order_ids: how one trading decision gets one stable name.

An intent is `(agent_id, kind, symbol, side, name)`; `name` is the bot's stable name for the
decision (bar time + reason, a signal id), never the local clock at retry time. The claim key
is a SHA-256 of the intent's canonical JSON, and the client_order_id sent to the broker is
derived from the key, so every retry of a decision reuses the same id.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

from tradeguard.domain.frozen import fast_frozen_init
from tradeguard.domain.orders import OrderClass, OrderType, PositionIntent, Side, TimeInForce, ledger_symbol
from tradeguard.errors import ConfigError

__all__ = [
    "FIGURE_LIMIT",
    "MAX_CLIENT_ORDER_ID_LEN",
    "MAX_INTENT_NAME_LEN",
    "Intent",
    "Kind",
    "check_agent_id",
    "check_symbol",
    "OrderSpec",
    "canonical_json",
    "derive_client_order_id",
    "exit_group",
    "hash_payload_json",
    "is_leg",
    "leg_name",
    "to_decimal",
]

MAX_CLIENT_ORDER_ID_LEN = 48
MAX_INTENT_NAME_LEN = 200
# No real quantity or price comes near it; a session file (`sessions.model`) and the command line
# refuse figures at or beyond it, and Decimal arithmetic on them keeps its 28 significant digits.
FIGURE_LIMIT = Decimal(10**12)
_SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9./:-]{0,31}$")
_AGENT_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")
# The hex digits of the key kept in a client_order_id: 128 bits, far from any collision.
_COID_KEY_CHARS = 32
# (agent_id, symbol) pairs that passed their checks (plain str only: a subclass is checked each time).
_CHECKED_NAMES: set[tuple[str, str]] = set()
_CHECKED_NAMES_MAX = 4096
# Claim keys by (agent_id, kind, symbol, side, name) of plain strings: a retry makes a new Intent
# of a decision seen before, and its canonical form and SHA-256 cost more than the rest of it.
_KEYS: dict[tuple[str, str, str, str, str], str] = {}
_KEYS_MAX = 4096


class Kind(enum.StrEnum):
    """Whether a decision opens (entry) or closes (exit) a position."""

    ENTRY = "entry"
    EXIT = "exit"


def to_decimal(value: object, what: str) -> Decimal:
    """Convert a user-supplied number to a finite Decimal, or raise ConfigError naming `what`."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    try:
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)  # type: ignore[arg-type]
    except (InvalidOperation, TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not number.is_finite():
        raise ConfigError(f"{what} must be finite, got {value!r}")
    return number


def canonical_json(obj: dict[str, Any]) -> str:
    """Return the canonical JSON text of `obj`: sorted keys, no spaces, ASCII (what keys hash)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def check_agent_id(agent_id: object) -> None:
    """Raise ConfigError unless `agent_id` is 1-64 letters, digits or _.:@-."""
    # fullmatch: `$` would also match before a trailing newline ("bot\n").
    if not isinstance(agent_id, str) or not _AGENT_RE.fullmatch(agent_id):
        raise ConfigError(f"agent_id must be 1-64 characters of letters, digits and _.:@-, got {agent_id!r}")


def check_symbol(symbol: object) -> None:
    """Raise ConfigError unless `symbol` is 1-32 upper-case letters, digits or ./:- (not first)."""
    if not isinstance(symbol, str) or not _SYMBOL_RE.fullmatch(symbol):
        raise ConfigError(f"symbol must be 1-32 upper-case letters, digits or ./:-, got {symbol!r}")


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Intent:
    """One trading decision. Equal intents are the same decision, however often retried."""

    agent_id: str
    kind: Kind
    symbol: str
    side: Side
    name: str
    # The key, once computed: the gateway, the store and the dedup window each ask for it, and
    # it is a canonical form and a SHA-256. Not part of the value (equality, hash, repr, init).
    _key: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        agent_id, symbol = self.agent_id, self.symbol
        # A gateway makes every intent of one agent in a few symbols: each pair is matched once.
        plain = type(agent_id) is str and type(symbol) is str
        if not (plain and (agent_id, symbol) in _CHECKED_NAMES):
            check_agent_id(agent_id)
            check_symbol(symbol)
            if plain:
                if len(_CHECKED_NAMES) >= _CHECKED_NAMES_MAX:
                    _CHECKED_NAMES.clear()  # bounded: names only cost their check again
                _CHECKED_NAMES.add((agent_id, symbol))
        # One spelling per asset in the key and the ledger: a bot's "BTCUSD" is "BTC/USD", so a
        # buy under one name and a sell under the other are one position (`ledger_symbol`).
        keyed = ledger_symbol(symbol)
        if keyed != symbol:
            object.__setattr__(self, "symbol", keyed)
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("intent must be a non-empty name for the decision (e.g. bar time + reason)")
        if len(self.name) > MAX_INTENT_NAME_LEN:
            raise ConfigError(
                f"intent is {len(self.name)} characters; at most {MAX_INTENT_NAME_LEN} are allowed"
            )
        if not self.name.isprintable():
            raise ConfigError(f"intent must be printable text, got {self.name!r}")
        # The gateway passes members already; an Enum call costs more than the rest of the checks.
        if type(self.kind) is not Kind:
            object.__setattr__(self, "kind", Kind(self.kind))
        if type(self.side) is not Side:
            object.__setattr__(self, "side", Side(self.side))

    def canonical(self) -> str:
        """Return the canonical JSON form that the key hashes.

        Byte for byte `canonical_json` of ``{"agent", "intent", "kind", "side", "symbol", "v": 1}``
        (keys in sorted order), written out because every claim and every retry computes it;
        a test holds the two equal. An exit's side is ``"close"``: an exit decision names leaving
        whatever the agent holds, so a retry that arrives after the agent re-entered on the
        other side is still the same decision (and answered as a duplicate), not a new sell.
        """
        enc = _json_string
        # `_value_`, not `value`: an enum's `value` is a Python-level property.
        side = "close" if self.kind is Kind.EXIT else self.side._value_
        return (
            f'{{"agent":{enc(self.agent_id)},"intent":{enc(self.name)},"kind":{enc(self.kind._value_)},'
            f'"side":{enc(side)},"symbol":{enc(self.symbol)},"v":1}}'
        )

    @property
    def key(self) -> str:
        """Return the claim key: hex SHA-256 of the canonical form (computed once per intent)."""
        key = self._key
        if key is None:
            name = self.name
            # Plain strings only (a str subclass may hash or compare otherwise); enum members hash
            # and compare as their values.
            plain = type(name) is str and type(self.agent_id) is str and type(self.symbol) is str
            fields = (self.agent_id, self.kind, self.symbol, self.side, name)
            key = _KEYS.get(fields) if plain else None
            if key is None:
                key = hashlib.sha256(self.canonical().encode("ascii")).hexdigest()
                if plain:
                    if len(_KEYS) >= _KEYS_MAX:
                        _KEYS.clear()  # bounded: a key only costs its hash again
                    _KEYS[fields] = key
            object.__setattr__(self, "_key", key)
        return key


_LEG = "leg:"


def leg_name(parent_client_order_id: str, leg_client_order_id: str) -> str:
    """Return the decision name of a leg's exit claim: ``leg:{parent id}:{leg id}``.

    A bracket's, OTO's or OCO's legs are orders the broker made (and named, with uuids), so
    their claims are named by the parent's and the leg's client_order_ids.
    """
    return f"{_LEG}{parent_client_order_id}:{leg_client_order_id}"


def is_leg(name: str) -> bool:
    """Return True for the decision name of a leg's claim (`leg_name`)."""
    return name.startswith(_LEG)


def exit_group(name: str, client_order_id: str) -> str:
    """Return the group of orders an exit claim's order belongs to, named by one client_order_id.

    A leg's group is its parent's id (`leg_name`): a bracket's two legs, and an OCO's limit
    order (the parent, named by its own id) with its stop-loss leg. The broker holds a group's
    shares once, as only one of its orders may fill. Any other exit is a group of its own.
    """
    if name.startswith(_LEG):
        return name[len(_LEG) :].rpartition(":")[0]
    return client_order_id


def derive_client_order_id(key: str, prefix: str = "tg") -> str:
    """Derive the client_order_id for a claim key: ASCII, at most 48 characters, deterministic."""
    coid = f"{prefix}-{key[:_COID_KEY_CHARS]}"
    assert len(coid) <= MAX_CLIENT_ORDER_ID_LEN
    return coid


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class OrderSpec:
    """What the bot asked for: the payload a retry must repeat exactly.

    For exits `qty` None means "the whole held position"; the quantity actually sent is sized
    at submit time and stored on the claim, not here.
    """

    qty: Decimal | None = None
    notional: Decimal | None = None
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    position_intent: PositionIntent | None = None
    extended_hours: bool = False
    order_class: OrderClass = OrderClass.SIMPLE
    take_profit_limit_price: Decimal | None = None
    stop_loss_stop_price: Decimal | None = None
    stop_loss_limit_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    # The payload, once built: every claim of the spec asks for it, and the gateway hands the
    # same spec to every decision of one order shape. Not part of the value (like Intent._key).
    _payload: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)
    # `from_payload(as_payload())`, once made: what a claim of this spec reads back as its spec.
    _read_back: OrderSpec | None = field(default=None, init=False, repr=False, compare=False)
    # `canonical_json(as_payload())`, once made: the text a claim of this spec stores (and a
    # retry of it finds stored).
    _payload_text: str | None = field(default=None, init=False, repr=False, compare=False)

    def as_payload(self) -> dict[str, Any]:
        """Return a JSON-able dict; Decimals as normalized strings so 6 == 6.0.

        The fields of order classes and trailing stops appear only when set, so a simple
        order's payload (and every claim recorded before they existed) stays the same. Each
        call returns a dict of its own (built once per spec, copied after).
        """
        payload = self._payload
        if payload is None:
            payload = self._build_payload()
            object.__setattr__(self, "_payload", payload)
        return dict(payload)

    def payload_text(self) -> str:
        """Return `canonical_json(self.as_payload())`, the text a claim of this spec stores (made once)."""
        text = self._payload_text
        if text is None:
            text = canonical_json(self.as_payload())
            object.__setattr__(self, "_payload_text", text)
        return text

    def read_back(self) -> OrderSpec:
        """Return `OrderSpec.from_payload(self.as_payload())`: the spec a claim of this one reads back.

        Made once per spec: a store that records a claim of it hands the claim this spec, so
        the claim's first send need not rebuild it from the payload.
        """
        spec = self._read_back
        if spec is None:
            spec = OrderSpec.from_payload(self.as_payload())
            object.__setattr__(self, "_read_back", spec)
        return spec

    def _build_payload(self) -> dict[str, Any]:
        def num(d: Decimal | None) -> str | None:
            return None if d is None else format(d.normalize(), "f")

        extra: dict[str, Any] = {}
        if self.order_class is not OrderClass.SIMPLE:
            extra["order_class"] = self.order_class.value
        for name in _OPTIONAL_PRICES:
            value = getattr(self, name)
            if value is not None:
                extra[name] = num(value)
        return extra | {
            "qty": num(self.qty),
            "notional": num(self.notional),
            "order_type": self.order_type.value,
            "time_in_force": self.time_in_force.value,
            "limit_price": num(self.limit_price),
            "stop_price": num(self.stop_price),
            "position_intent": None if self.position_intent is None else self.position_intent.value,
            "extended_hours": self.extended_hours,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> OrderSpec:
        """Rebuild a spec from `as_payload` output.

        A claim's spec is read on every send, lookup and adoption: equal payloads give the same
        (immutable) spec, so it is built once per payload seen lately.
        """
        try:
            items = tuple(payload.items())
            hash(items)
        except TypeError:  # a value that is no plain JSON scalar (e.g. the terms first asked)
            return cls._from_payload(payload)
        return _spec_from_items(items) if cls is OrderSpec else cls._from_payload(payload)

    @classmethod
    def _from_payload(cls, payload: dict[str, Any]) -> OrderSpec:
        def dec(v: Any) -> Decimal | None:
            return None if v is None else Decimal(v)

        pi = payload.get("position_intent")
        return cls(
            qty=dec(payload.get("qty")),
            notional=dec(payload.get("notional")),
            order_type=OrderType(payload.get("order_type", "market")),
            time_in_force=TimeInForce(payload.get("time_in_force", "day")),
            limit_price=dec(payload.get("limit_price")),
            stop_price=dec(payload.get("stop_price")),
            position_intent=None if pi is None else PositionIntent(pi),
            extended_hours=bool(payload.get("extended_hours", False)),
            order_class=OrderClass(payload.get("order_class", "simple")),
            **{name: dec(payload.get(name)) for name in _OPTIONAL_PRICES},
        )

    def payload_hash(self) -> str:
        """Return a short hash of the payload for quick equality checks."""
        return hash_payload_json(self.payload_text())


_OPTIONAL_PRICES = (
    "take_profit_limit_price",
    "stop_loss_stop_price",
    "stop_loss_limit_price",
    "trail_price",
    "trail_percent",
)


@functools.lru_cache(maxsize=1024)
def _spec_from_items(items: tuple[tuple[str, Any], ...]) -> OrderSpec:
    return OrderSpec._from_payload(dict(items))


def hash_payload_json(canonical: str) -> str:
    """Return the short hash of a payload's canonical JSON text (see `OrderSpec.payload_hash`)."""
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:32]
