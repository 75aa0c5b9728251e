"""alpaca-py's `APIError`, raised for what only the guard can say: the drop-in's exceptions.

A bot written for alpaca-py catches `alpaca.common.exceptions.APIError`. Every error the drop-in
client raises on its own is one, carrying Alpaca's JSON body shape (``code``, ``message``) and an
HTTP status, so that handler keeps working; each is also the matching tradeguard error, so code
written for tradeguard can catch it by that name:

| raised                | is also            | status | when                                        |
|-----------------------|--------------------|--------|---------------------------------------------|
| `InvalidOrder`        | `ConfigError`      | 422    | the order is malformed (Alpaca's 422)       |
| `OrderOutcomeUnknown` | `OutcomeUnknown`   | 504*   | sent, no definite answer: call again        |
| `OrderNotSent`        | `BrokerUnavailable`| 503*   | not placed (429, no connection): retry now  |
| `OrderInProgress`     | `ClaimInProgress`  | 409    | another worker is sending this very order   |
| `ClaimStoreError`     | `StoreError`       | 503    | the claim was not recorded: nothing sent    |
| `ClientOrderIdReused` | `TradeguardError`  | 422    | the id names another order on the account   |
| `StoreOfAnotherAccount`| `ConfigError`     | 409    | a placed order's claim, absent at the broker|

(*) the broker's own status when there was one (a 500 or 504 page, a 429 rate limit), else this one. A refusal
by the broker itself is alpaca-py's plain `APIError` with Alpaca's status and body, as before.

Where alpaca-py lets a `requests` exception through (a read timeout, a connection reset or
refused), `OrderOutcomeUnknown` and `OrderNotSent` are that exception's class too
(`transport_failure`): a bot's ``except requests.exceptions.Timeout`` (or ``ConnectionError``)
retry runs as before, and the retry is safe under the guard.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar, cast

import requests
from alpaca.common.exceptions import APIError

from tradeguard.domain import RejectKind
from tradeguard.errors import (
    BrokerError,
    BrokerUnavailable,
    ClaimInProgress,
    ConfigError,
    OrderRejected,
    OutcomeUnknown,
    StoreError,
    TradeguardError,
)

__all__ = [
    "ClaimStoreError",
    "ClientOrderIdReused",
    "InvalidOrder",
    "OrderInProgress",
    "OrderNotSent",
    "OrderOutcomeUnknown",
    "StoreOfAnotherAccount",
    "api_error",
    "rejection",
    "transport_failure",
]


def _http_error(status: int, text: str) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    response._content = text.encode()
    response.headers["Content-Type"] = "application/json; charset=UTF-8"
    return requests.HTTPError(f"{status} from tradeguard", response=response)


def _alpaca_json(document: Mapping[str, Any]) -> str:
    """Alpaca's JSON text of an error body: compact, keys in order, so `str(error)` reads as on alpaca-py."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def api_error(status: int, code: int, message: str, body: Mapping[str, Any] | None = None) -> APIError:
    """Return the `APIError` alpaca-py raises for Alpaca's answer `status` with this body."""
    document = {"code": code, "message": message, **dict(body or {})}
    text = _alpaca_json(document)
    return APIError(text, _http_error(status, text))  # type: ignore[no-untyped-call]


def rejection(error: BrokerError | None, fallback: str) -> APIError:
    """Return alpaca-py's `APIError` for a broker refusal, rebuilt from what the adapter kept.

    A client_order_id the guard found on another order (a replacement of another claim's order,
    an order placed outside the guard) has no broker body of its own: it is Alpaca's 422
    "client_order_id must be unique", which the broker gives for any id already taken.
    """
    if isinstance(error, OrderRejected) and error.kind is RejectKind.ID_TAKEN and not error.body:
        return ClientOrderIdReused(error.message)
    status = error.status_code if error is not None and error.status_code else 403
    body = dict(error.body) if error is not None and error.body else {}
    code = body.pop("code", None) or (error.code if error is not None and error.code else status * 100000)
    message = body.pop("message", None) or (error.message if error is not None else fallback)
    return api_error(status, int(code), str(message), body)


# Alpaca's message for a client_order_id already taken (ALPACA.md), word for word.
ID_NOT_UNIQUE = "client_order_id must be unique"


class _GuardAPIError(APIError):
    """An `APIError` raised by the guard itself, with Alpaca's body shape.

    alpaca-py's `status_code`, `code` and `message` read the HTTP answer; tradeguard's
    `BrokerError.__init__` (reached through the MRO from `APIError.__init__`) assigns the same
    names. Here they are properties over the one body, and those assignments are ignored.
    """

    status: int = 500

    def __init__(
        self, message: str, *, status: int | None = None, code: int | None = None, detail: str | None = None
    ) -> None:
        status = status or self.status
        document: dict[str, Any] = {"code": code or status * 100000, "message": message}
        if detail:
            document["detail"] = detail  # what only the guard knows, beside Alpaca's own words
        text = _alpaca_json(document)
        APIError.__init__(self, text, _http_error(status, text))  # type: ignore[no-untyped-call]
        self._document = document

    @property
    def body(self) -> dict[str, Any]:
        """Alpaca's JSON body of this answer."""
        return dict(self._document)

    @body.setter
    def body(self, _: object) -> None:
        pass  # BrokerError.__init__ sets it before the document exists

    @property
    def message(self) -> str:
        """The message, as Alpaca's body has it."""
        return str(json.loads(self._error)["message"])

    @message.setter
    def message(self, _: object) -> None:
        pass

    @property
    def code(self) -> int:
        """Alpaca's error code (its HTTP status family)."""
        return int(json.loads(self._error)["code"])

    @code.setter
    def code(self, _: object) -> None:
        pass

    @property
    def status_code(self) -> int:
        """The HTTP status the answer carries."""
        return int(self._http_error.response.status_code)

    @status_code.setter
    def status_code(self, _: object) -> None:
        pass

    def __str__(self) -> str:
        # alpaca-py's: the body's JSON text (a bot may `json.loads(str(e))`).
        return str(self._error)


class InvalidOrder(_GuardAPIError, ConfigError):
    """The order is malformed; nothing was claimed or sent (Alpaca's 422)."""

    status = 422

    def __init__(self, message: str, code: int = 40010001) -> None:
        super().__init__(message, code=code)


# For the type checker: BrokerError declares status_code and code as optional attributes, _GuardAPIError as
# properties that always hold a value: narrower, and what both families read.
class OrderOutcomeUnknown(_GuardAPIError, OutcomeUnknown):  # type: ignore[misc]
    """The order may or may not exist; calling again with the same order resolves it safely."""

    status = 504


class OrderNotSent(_GuardAPIError, BrokerUnavailable):  # type: ignore[misc]
    """The order was not placed (no connection, Alpaca's 429 rate limit); retry freely, same id."""

    status = 503


class OrderInProgress(_GuardAPIError, ClaimInProgress):
    """Another worker is sending this very order now; the next call returns it."""

    status = 409


class ClaimStoreError(_GuardAPIError, StoreError):
    """The claim store failed; the order was not sent (G5)."""

    status = 503


class ClientOrderIdReused(_GuardAPIError, TradeguardError):
    """This client_order_id was used before for a different order on this account; nothing was sent.

    Ids are unique per broker account, as at Alpaca: another account's bot sharing the claim
    store may use the same id (`ports.coid_scope`). An agent whose account is unknown (a broker
    with no `account_key`, or one not read yet) shares its ids with every account: an id any
    agent holds is refused to it, and its ids to every other agent (fail-safe).

    Alpaca refuses a reused id with 422 "client_order_id must be unique"; the guard says so
    before sending, in Alpaca's very words (`message`: a bot that compares it sees what it saw
    on alpaca-py), and names both orders in the body's `detail`. Raised from the
    `IntentMismatch` behind it.
    """

    status = 422

    def __init__(self, detail: str) -> None:
        super().__init__(ID_NOT_UNIQUE, code=40010001, detail=detail)


class StoreOfAnotherAccount(_GuardAPIError, ConfigError):
    """A claim says its order was placed, and the broker account has no such client_order_id.

    The claim store holds another account's records (a paper account started afresh beside a
    store kept on disk, other API keys); nothing was sent, and calling again would not help.
    """

    status = 409


_G = TypeVar("_G", bound=_GuardAPIError)


def transport_failure(error: type[_G], cause: BaseException | None) -> type[_G]:
    """Return `error`, or a class that is also the `requests` exception behind `cause`.

    alpaca-py raises a timeout or a dropped connection as `requests`' own exception, never as
    an `APIError`: a bot written for it retries in ``except requests.exceptions.Timeout`` or
    ``except requests.exceptions.ConnectionError``. Raised only as `APIError`, the guard's
    answer to the same failure escaped that handler (audit 75): the bot crashed or dropped
    the decision instead of retrying, which the guard makes safe. The class returned is both,
    so either handler catches it. `cause` is the broker error (its `__cause__` chain is read).
    """
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, APIError | requests.exceptions.HTTPError):
            return error  # Alpaca answered (a 5xx page, a 429): alpaca-py raises APIError, no more
        if isinstance(cause, requests.exceptions.RequestException):
            return _both(error, type(cause))
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return error


def _ignored(_self: object, _value: object) -> None:
    """A setter that keeps alpaca-py's read-only property as it is."""


_BOTH: dict[tuple[type[Exception], type[Exception]], type[Exception]] = {}


def _both(error: type[_G], transport: type[requests.exceptions.RequestException]) -> type[_G]:
    """The guard's `error` class that is also `requests`' `transport` (one class per pair)."""
    both = _BOTH.get((error, transport))
    if both is None:
        namespace: dict[str, Any] = {"__module__": error.__module__, "__doc__": error.__doc__}
        # `requests` assigns `response` and `request` in its __init__; alpaca-py's are read-only
        # properties over the HTTP answer, which they stay.
        for name in ("response", "request"):
            namespace[name] = property(getattr(APIError, name).fget, _ignored)
        both = _BOTH.setdefault((error, transport), type(error.__name__, (error, transport), namespace))
    return cast("type[_G]", both)
