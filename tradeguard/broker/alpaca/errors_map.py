"""Alpaca's error vocabulary: what an answer of (HTTP status, code, message) means for the guard.

Alpaca's ``code`` is a coarse family (``http_status * 100000 + n``) shared by unrelated messages:
40010001 is both "client_order_id must be unique" (the order exists) and "qty is required" (a bad
request). So every rule here reads the status, the code and the message together (ALPACA.md).

This module is pure: no alpaca-py, no requests. `errors` uses `classify_response` to pick
the exception class of an HTTP error; the gateway and reconciler use the predicates on the
`BrokerError` they caught. The paper broker raises the same (status, code, message) triples, so
the predicates work for it too.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tradeguard.domain.orders import RejectKind
from tradeguard.errors import BrokerError, BrokerUnavailable, OrderRejected, OutcomeUnknown

__all__ = [
    "CODE_BAD_REQUEST",
    "CODE_FORBIDDEN",
    "CODE_NOT_FOUND",
    "CODE_UNPROCESSABLE",
    "POSITION_KINDS",
    "AlpacaErrorKind",
    "classify_response",
    "error_kind",
    "is_duplicate_client_order_id",
    "is_not_found",
    "is_position_rejection",
    "reject_kind",
]

CODE_BAD_REQUEST = 40010001
CODE_FORBIDDEN = 40310000
CODE_NOT_FOUND = 40410000
CODE_UNPROCESSABLE = 42210000


class AlpacaErrorKind(enum.StrEnum):
    """The Alpaca answers the guard acts on differently (ALPACA.md's error table)."""

    DUPLICATE_CLIENT_ORDER_ID = "duplicate_client_order_id"
    ORDER_NOT_FOUND = "order_not_found"
    POSITION_NOT_FOUND = "position_not_found"
    POSITION_INTENT_MISMATCH = "position_intent_mismatch"
    INSUFFICIENT_QTY = "insufficient_qty"
    NOT_ALLOWED_TO_SHORT = "not_allowed_to_short"
    CANNOT_BE_SOLD_SHORT = "cannot_be_sold_short"  # the asset (or a fractional qty) may not be shorted
    INSUFFICIENT_BUYING_POWER = "insufficient_buying_power"
    WASH_TRADE = "wash_trade"
    # "cannot open a short sell while a long buy order is open" (and the long buy's mirror)
    CONFLICTING_ORDER = "conflicting_order"
    PATTERN_DAY_TRADING = "pattern_day_trading"


@dataclass(frozen=True, slots=True)
class _Rule:
    statuses: frozenset[int]
    message: str  # lower-case substring of Alpaca's message
    kind: AlpacaErrorKind


# The code is deliberately not part of the match: Alpaca has moved messages between code families
# (wash trade is seen as 403/40310000 and as 422/42210000), and missing a duplicate because its
# code changed would turn "the order exists" into "rejected". Status plus message is specific.
_RULES: tuple[_Rule, ...] = (
    _Rule(frozenset({422}), "client_order_id must be unique", AlpacaErrorKind.DUPLICATE_CLIENT_ORDER_ID),
    _Rule(frozenset({404}), "order not found", AlpacaErrorKind.ORDER_NOT_FOUND),
    _Rule(frozenset({404}), "position does not exist", AlpacaErrorKind.POSITION_NOT_FOUND),
    _Rule(frozenset({422}), "position intent mismatch", AlpacaErrorKind.POSITION_INTENT_MISMATCH),
    _Rule(frozenset({403}), "insufficient qty", AlpacaErrorKind.INSUFFICIENT_QTY),
    _Rule(frozenset({403}), "not allowed to short", AlpacaErrorKind.NOT_ALLOWED_TO_SHORT),
    # 422 'asset "EIDO" cannot be sold short' and 'fractional orders cannot be sold short'.
    _Rule(frozenset({422}), "cannot be sold short", AlpacaErrorKind.CANNOT_BE_SOLD_SHORT),
    _Rule(frozenset({403}), "insufficient buying power", AlpacaErrorKind.INSUFFICIENT_BUYING_POWER),
    _Rule(frozenset({403, 422}), "wash trade", AlpacaErrorKind.WASH_TRADE),
    _Rule(frozenset({403}), "cannot open a ", AlpacaErrorKind.CONFLICTING_ORDER),
    _Rule(frozenset({403}), "pattern day trading", AlpacaErrorKind.PATTERN_DAY_TRADING),
)

# Exit rejections that say "the broker does not hold what you think": reconcile the symbol at once
# (DESIGN.md, phantom positions). "not allowed to short" and "cannot be sold short" belong here
# because on an exit they mean the broker would have gone short, i.e. it holds less than the
# ledger; so does "cannot open a short sell while a long buy order is open" (Alpaca answers it
# only when the account is flat in the symbol: an exit of a position it does not hold). A false
# positive only costs one extra, idempotent reconcile.
POSITION_KINDS = frozenset(
    {
        AlpacaErrorKind.POSITION_NOT_FOUND,
        AlpacaErrorKind.POSITION_INTENT_MISMATCH,
        AlpacaErrorKind.INSUFFICIENT_QTY,
        AlpacaErrorKind.NOT_ALLOWED_TO_SHORT,
        AlpacaErrorKind.CANNOT_BE_SOLD_SHORT,
        AlpacaErrorKind.CONFLICTING_ORDER,
    }
)


# Alpaca's answers in the broker-neutral vocabulary the core reads (`OrderRejected.kind`).
_REJECT_KINDS: dict[AlpacaErrorKind, RejectKind] = {
    AlpacaErrorKind.DUPLICATE_CLIENT_ORDER_ID: RejectKind.DUPLICATE_ID,
    AlpacaErrorKind.ORDER_NOT_FOUND: RejectKind.INVALID,
    AlpacaErrorKind.POSITION_NOT_FOUND: RejectKind.POSITION,
    AlpacaErrorKind.POSITION_INTENT_MISMATCH: RejectKind.POSITION,
    AlpacaErrorKind.INSUFFICIENT_QTY: RejectKind.POSITION,
    AlpacaErrorKind.NOT_ALLOWED_TO_SHORT: RejectKind.POSITION,
    AlpacaErrorKind.CANNOT_BE_SOLD_SHORT: RejectKind.POSITION,
    AlpacaErrorKind.CONFLICTING_ORDER: RejectKind.POSITION,
    AlpacaErrorKind.INSUFFICIENT_BUYING_POWER: RejectKind.BUYING_POWER,
    AlpacaErrorKind.WASH_TRADE: RejectKind.WASH_TRADE,
    AlpacaErrorKind.PATTERN_DAY_TRADING: RejectKind.PATTERN_DAY_TRADING,
}


def reject_kind(status: int | None, message: str) -> RejectKind:
    """Return the broker-neutral kind of an Alpaca refusal of (status, message).

    "not allowed to short" counts as position-related: on an exit it means the broker would
    have gone short, i.e. it holds less than the ledger (see `POSITION_KINDS`).
    """
    kind = _kind_of(status, message)
    if kind is not None:
        return _REJECT_KINDS[kind]
    text = message.lower()
    if (status == 403 and "asset" in text) or (status == 422 and _names_an_asset_problem(text)):
        return RejectKind.ASSET
    if "market" in text and "closed" in text:
        return RejectKind.MARKET_CLOSED
    if status in (400, 422):
        return RejectKind.INVALID
    if status == 401:
        return RejectKind.AUTH
    return RejectKind.OTHER


def _names_an_asset_problem(text: str) -> bool:
    # Alpaca's words: 'asset "LYC.AX" not found', 'asset "RGC" is not tradable', "requested asset
    # is not fractionable" (all 422); "asset not found" is the older, unquoted form.
    named = text.startswith('asset "') and text.endswith((" not found", " is not tradable"))
    return named or "asset not found" in text or "not fractionable" in text


# A crypto account holds coins, not shares: a sell of more than it holds is 403 "insufficient
# balance for BTC (requested: 1, available: 0.5)", a buy beyond its dollars names the quote
# currency ("... for USD ..."; both wordings assumed). The first is the equities' "insufficient
# qty" (the broker holds less than the order closes), the second their "insufficient buying power".
_BALANCE = "insufficient balance for "
_CASH_CURRENCIES = frozenset({"usd", "usdt", "usdc"})


def _kind_of(status: int | None, message: str) -> AlpacaErrorKind | None:
    text = message.lower()
    if status == 403 and _BALANCE in text:
        currency = text.partition(_BALANCE)[2].split(" ", 1)[0]
        if currency in _CASH_CURRENCIES:
            return AlpacaErrorKind.INSUFFICIENT_BUYING_POWER
        return AlpacaErrorKind.INSUFFICIENT_QTY
    for rule in _RULES:
        if status in rule.statuses and rule.message in text:
            return rule.kind
    return None


def classify_response(status: int | None, message: str) -> type[BrokerError]:
    """Return the exception class for an HTTP error answer from Alpaca.

    Alpaca's ``code`` does not take part: the status fixes the class, and the message singles out
    the one 4xx that is not a rejection (the duplicate client_order_id, whose code 40010001 is
    shared with plain bad requests).

    Args:
        status: The HTTP status, or None when it could not be read.
        message: Alpaca's ``message`` field, or the body text.

    Returns:
        `OutcomeUnknown` when the order may exist (duplicate client_order_id, 408, 5xx, anything
        unrecognised), `BrokerUnavailable` for 401 (credentials: nothing can be sent) and 429
        (rate limit: not processed), `OrderRejected` for any other 4xx (a definite no).
    """
    if _kind_of(status, message) is AlpacaErrorKind.DUPLICATE_CLIENT_ORDER_ID:
        # The order exists; the caller adopts it by lookup (DESIGN.md: 422 duplicate -> UNKNOWN).
        return OutcomeUnknown
    if status is None:
        return OutcomeUnknown
    if status == 401:
        return BrokerUnavailable
    if status == 429:
        # Alpaca's rate limiter answers before the request is processed ("rate limit exceeded",
        # plain text), and the adapter turned alpaca-py's hidden retry off, so this 429 answers
        # the only POST: nothing was placed, and the same client_order_id may be sent again at
        # once. Were it wrong, the resend meets Alpaca's 422 duplicate and adopts the order (G1).
        return BrokerUnavailable
    # 408: the server gave up reading the request; it does not prove that nothing was placed.
    if status == 408 or status >= 500:
        return OutcomeUnknown
    if 400 <= status < 500:
        return OrderRejected
    # 1xx/3xx as an error (redirects are off): nothing definite can be said.
    return OutcomeUnknown


def _message_of(err: BrokerError) -> str:
    body: Mapping[str, Any] = err.body
    message = body.get("message")
    return message if isinstance(message, str) else err.message


def error_kind(err: BrokerError) -> AlpacaErrorKind | None:
    """Return which of Alpaca's well-known answers `err` is, or None."""
    return _kind_of(err.status_code, _message_of(err))


def is_duplicate_client_order_id(err: BrokerError) -> bool:
    """True for 422 "client_order_id must be unique": the order exists, look it up and adopt it."""
    return isinstance(err, OutcomeUnknown) and error_kind(err) is AlpacaErrorKind.DUPLICATE_CLIENT_ORDER_ID


def is_not_found(err: BrokerError) -> bool:
    """True for Alpaca's 404 with code 40410000 (order not found, position does not exist).

    A 404 without Alpaca's code (an HTML page from a proxy, a wrong ``url_override``) is not a
    definite "absent" and stays an error: a lookup miss may release a claim for resending.
    """
    return err.status_code == 404 and err.code == CODE_NOT_FOUND


def is_position_rejection(err: BrokerError) -> bool:
    """True when an exit was refused because the broker holds less than the caller believes.

    Covers 422 "position intent mismatch", 404 "position does not exist", 403 "insufficient qty
    available", 403 "account is not allowed to short" and 422 "... cannot be sold short". The
    gateway reconciles the symbol at once on these; the 403 insufficient-qty body keeps
    ``available`` and ``held_for_orders``.
    """
    return isinstance(err, OrderRejected) and err.kind.is_position
