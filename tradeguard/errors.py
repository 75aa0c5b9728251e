"""The exception tree of tradeguard: every failure a caller can see.

```
TradeguardError
├── ConfigError           bad settings, URL or argument; nothing was recorded or sent
├── StoreError            the claim store failed; nothing was sent (G5)
│   └── UnrecordedChange  the broker canceled/replaced an order; the store failed recording it
├── IntentMismatch        same key, different order: a bug in the bot
├── ClaimInProgress       another worker holds a live claim for this intent
│   └── LeaseLost         this worker's lease was taken over; it may not move the claim
├── IllegalTransition     a lifecycle move the transition table forbids
├── ResolutionRefused     an operator's resolution of a claim contradicts the broker or the claim
├── BrokerError
│   ├── OrderRejected     the broker said no; nothing placed (`kind`: a RejectKind)
│   ├── OutcomeUnknown    sent, no definite answer; resolved by lookup, never blind-retried
│   │   └── UnrecordedOrder  sent (now or by an earlier attempt), the store failed recording the answer
│   └── BrokerUnavailable never left this process
└── SessionFormatError    a bad session file: file, line, what was expected
```

Foreign errors (alpaca-py, requests, SQLAlchemy) are translated in exactly one place each:
`tradeguard.broker.alpaca` for the broker and `tradeguard.store.engine` for the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradeguard.domain.orders import RejectKind

__all__ = [
    "BrokerError",
    "BrokerUnavailable",
    "ClaimInProgress",
    "ConfigError",
    "IllegalTransition",
    "IntentMismatch",
    "LeaseLost",
    "OrderRejected",
    "OutcomeUnknown",
    "ResolutionRefused",
    "SessionFormatError",
    "StoreError",
    "TradeguardError",
    "UnrecordedChange",
    "UnrecordedOrder",
]


class TradeguardError(Exception):
    """Base class of every error tradeguard raises on purpose."""


class ConfigError(TradeguardError, ValueError):
    """A setting, URL or argument is invalid; nothing was recorded or sent."""


class StoreError(TradeguardError):
    """The claim store could not read or write durably; no order was sent (G5)."""


class UnrecordedChange(StoreError):
    """The broker canceled or replaced an order, and the claim store failed recording it.

    Unlike every other `StoreError`, something reached the broker: the change stands there
    (the order canceled, or replaced by a live one at the new terms). Nothing new was placed.
    The claim follows the broker on its next read (the next call in the symbol, a reconcile
    pass): a replacement by its client_order_id's chain, a cancel by the order's state.
    """


class IntentMismatch(TradeguardError):
    """The same intent key was claimed before with a different order payload."""

    def __init__(self, key: str, existing: Mapping[str, Any], requested: Mapping[str, Any]) -> None:
        diffs = sorted(k for k in set(existing) | set(requested) if existing.get(k) != requested.get(k))
        detail = ", ".join(f"{k}: {existing.get(k)!r} != {requested.get(k)!r}" for k in diffs)
        super().__init__(
            f"intent {key} was claimed with a different order ({detail}); "
            "a retry must repeat the same order, a new decision needs a new intent name"
        )
        self.key = key
        self.existing = dict(existing)
        self.requested = dict(requested)


class ClaimInProgress(TradeguardError):
    """Another worker holds a live lease on this claim."""


class LeaseLost(ClaimInProgress):
    """The claim moved on under this worker (lease taken over or state changed)."""


class IllegalTransition(TradeguardError):
    """A lifecycle move that the transition table does not allow."""


class ResolutionRefused(TradeguardError):
    """An operator's resolution of a claim contradicts the broker's evidence or the claim's state.

    Nothing changed.
    """


class BrokerError(TradeguardError):
    """A failure talking to the broker.

    Attributes:
        status_code: HTTP status when there was a response, else None.
        code: The broker's error code (Alpaca's ``code`` field) when present.
        body: The parsed error body, or ``{"raw": text}`` when it was not JSON.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: int | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.body: dict[str, Any] = dict(body or {})


class OrderRejected(BrokerError):
    """The broker refused the request definitely; no order was placed.

    Attributes:
        kind: Why, in broker-neutral terms; set by the adapter that mapped the venue's answer.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: RejectKind = RejectKind.OTHER,
        status_code: int | None = None,
        code: int | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, code=code, body=body)
        self.kind = kind


class OutcomeUnknown(BrokerError):
    """The request may have reached the broker; resolve by client_order_id, never resend blind."""


class UnrecordedOrder(OutcomeUnknown):
    """The order was sent, but the claim store failed before recording the broker's answer.

    Sent by this call, or by an earlier call of the same decision that this one retried while
    the store still failed (this call then sent nothing). The order may be at the broker. The
    claim stays PENDING (or UNKNOWN) under its client_order_id; calling again with the same
    decision, or the next reconcile pass, looks the order up and adopts it. Never resend it
    under a new decision.
    """


class BrokerUnavailable(BrokerError):
    """The request never left this process (connection refused, bad credentials, ...)."""


class SessionFormatError(TradeguardError, ValueError):
    """A session file is malformed.

    Attributes:
        path: The file.
        line: 1-based line number, or None for whole-file problems.
    """

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem
