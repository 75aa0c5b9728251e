"""Translate every failure of an alpaca-py call into a tradeguard `BrokerError`, in one place.

`map_alpaca_error` is the only function that looks at foreign exceptions (alpaca-py's `APIError`,
`requests` exceptions, pydantic's `ValidationError`, anything else). The class it picks says where
the failure happened, the same for every call:

- `BrokerUnavailable`: the request was not acted on: connect timeout, connection refused, DNS
  failure, TLS certificate refused, a malformed URL (it never left this process), 401 (bad
  credentials) or 429 (rate limit: refused before processing; alpaca-py's retry is off, so the
  429 answers the one request sent). Sending the same client_order_id again is safe at once.
- `OrderRejected`: Alpaca answered a definite no (400, 403, 404, 422 and other 4xx), or the order
  could not even be built (`Stage.PREPARE`). Nothing was placed.
- `OutcomeUnknown`: the request may have been acted on: read timeout, a connection dropped after
  sending, a truncated body, 408, 5xx, 422 "client_order_id must be unique" (the order
  exists), an answer that does not parse, and any exception nobody foresaw.

Reads use the same classes (decided here, relied on by nobody: the reconciler treats every
`BrokerError` as "read failed", never as empty). A read that timed out is `OutcomeUnknown`, one
that could not connect is `BrokerUnavailable`; a 404 on a lookup is turned into ``None`` by the
adapter, not here, and only when Alpaca's own code 40410000 says so.
"""

from __future__ import annotations

import enum
import json
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import requests
import urllib3.exceptions
from alpaca.common.exceptions import APIError

from tradeguard.broker.alpaca.errors_map import classify_response, reject_kind
from tradeguard.domain import RejectKind
from tradeguard.errors import BrokerError, BrokerUnavailable, OrderRejected, OutcomeUnknown

__all__ = ["Stage", "map_alpaca_error"]

_MAX_TEXT = 2000  # keep an HTML error page from bloating logs and audit records


class Stage(enum.StrEnum):
    """What the adapter was doing when the failure happened."""

    PREPARE = "prepare order"  # building the request locally: nothing can have been sent
    SUBMIT = "submit order"
    REPLACE = "replace order"
    READ = "read"
    CANCEL = "cancel order"


# requests raises these before a byte goes out: no connection, or the URL, headers or JSON body
# could not even be prepared. (InvalidJSONError's subclass JSONDecodeError is the exception: it
# is raised on a response body, after sending, and is checked first.)
_NOT_SENT_REQUEST_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectTimeout,
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.URLRequired,
    requests.exceptions.InvalidHeader,
    requests.exceptions.InvalidJSONError,
)

# Root causes, found inside a requests.ConnectionError or SSLError, that prove the request was
# not sent: the socket never connected, the name did not resolve, the TLS handshake was refused.
_NOT_SENT_CAUSES: tuple[type[BaseException], ...] = (
    urllib3.exceptions.NewConnectionError,  # includes NameResolutionError
    ConnectionRefusedError,
    socket.gaierror,
    ssl.SSLCertVerificationError,
)


def map_alpaca_error(exc: BaseException, stage: Stage) -> BrokerError:
    """Return the `BrokerError` that `exc`, raised during `stage`, means.

    Never raises and never returns a foreign exception: an exception type nobody foresaw is
    `OutcomeUnknown` (for a submit the order may exist, so it must be resolved by lookup).

    Args:
        exc: What alpaca-py, requests, pydantic or the adapter's own parsing raised.
        stage: What was being done; `Stage.PREPARE` means nothing was sent.

    Returns:
        An `OrderRejected`, `OutcomeUnknown` or `BrokerUnavailable` carrying the HTTP status,
        Alpaca's code and the parsed body when there was a response. `exc` itself when it
        already is a `BrokerError`.
    """
    if isinstance(exc, BrokerError):
        return exc
    if stage is Stage.PREPARE:
        return _prepare_error(exc)
    if isinstance(exc, APIError):
        return _api_error(exc, stage)
    if isinstance(exc, requests.exceptions.RequestException):
        return _transport_error(exc, stage)
    return OutcomeUnknown(f"{stage} failed unexpectedly, outcome unknown: {_describe(exc)}")


def _prepare_error(exc: BaseException) -> BrokerError:
    # pydantic's ValidationError is a ValueError: alpaca-py refused the order's combination.
    if isinstance(exc, ValueError | TypeError):
        return OrderRejected(f"invalid order, not sent: {_describe(exc)}", kind=RejectKind.INVALID)
    return BrokerUnavailable(f"could not build the order, not sent: {_describe(exc)}")


def _api_error(exc: APIError, stage: Stage) -> BrokerError:
    status = _status_of(exc)
    text = _text_of(exc)
    body = _parse_body(text)
    code = _code_of(body)
    message = body.get("message")
    if not isinstance(message, str) or not message:
        message = text.strip()[:200] or "empty body"
    cls = classify_response(status, message)
    shown = f"HTTP {status}" + (f" ({code})" if code is not None else "")
    text = f"{stage} failed: {shown}: {message}"
    if cls is OrderRejected:
        kind = reject_kind(status, message)
        return OrderRejected(text, kind=kind, status_code=status, code=code, body=body)
    return cls(text, status_code=status, code=code, body=body)


def _transport_error(exc: requests.exceptions.RequestException, stage: Stage) -> BrokerError:
    what = _describe(exc)
    if isinstance(exc, requests.exceptions.JSONDecodeError):
        return OutcomeUnknown(f"{stage} answered with a body that is not JSON, outcome unknown: {what}")
    if isinstance(exc, _NOT_SENT_REQUEST_ERRORS):
        return BrokerUnavailable(f"{stage} not sent: {what}")
    if isinstance(exc, requests.exceptions.ConnectionError) and _has_cause(exc, _NOT_SENT_CAUSES):
        return BrokerUnavailable(f"{stage} not sent: {what}")
    # Everything else may have reached Alpaca: ReadTimeout, a connection reset or dropped after
    # sending, a TLS error mid-stream, a truncated or undecodable body, an unparseable 200.
    return OutcomeUnknown(f"{stage} failed, outcome unknown: {what}")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """Yield `exc` and the exceptions it explicitly wraps (args, urllib3's reason, `from`).

    Implicit ``__context__`` is not followed: an unrelated earlier error must not make a failed
    send look like a failed connect.
    """
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
        if current.__cause__ is not None:
            stack.append(current.__cause__)


def _has_cause(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    return any(isinstance(cause, kinds) for cause in _causes(exc))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _status_of(exc: APIError) -> int | None:
    # APIError.status_code is safe (no body parsing); it is None when no response was attached.
    status: Any = exc.status_code
    return status if isinstance(status, int) else None


def _text_of(exc: APIError) -> str:
    # Never exc.code / exc.message: they json.loads the body and raise on empty or HTML bodies.
    response: Any = exc.response
    if response is not None:
        try:
            text = response.text
        except Exception:  # a body that cannot be decoded is just "no text"
            text = None
        if isinstance(text, str):
            return text
    return str(exc.args[0]) if exc.args else ""


def _parse_body(text: str) -> dict[str, Any]:
    """Return the JSON object in `text`, or ``{"raw": text}`` when it is not one."""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    return {"raw": text[:_MAX_TEXT]}


def _code_of(body: dict[str, Any]) -> int | None:
    code = body.get("code")
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    # isdecimal, not isdigit: "¹" is a digit that int() refuses.
    if isinstance(code, str) and code.strip().isascii() and code.strip().isdecimal():
        return int(code.strip())
    return None
