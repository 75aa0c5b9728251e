"""The wire format of the native `/v1` routes: domain values to JSON and back, and error codes.

Shared by the service (`tradeguard.service.native`) and its client
(`tradeguard.store.remote.RemoteClaimLedger`), and free of FastAPI and pydantic so the client
needs only `requests`. Decimals travel as strings (``"6"``, ``"455.25"``: no binary float ever
touches a quantity), times as ISO 8601 with an offset and read back as aware UTC datetimes, enums
by value. Every library exception has one machine-readable `code`; `raise_error` rebuilds the
same exception type from an error body, so a caller of the remote store handles the same
exceptions as a caller of `ClaimStore`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NoReturn

from tradeguard.domain.audit import AuditAction, AuditRecord
from tradeguard.domain.claims import Claim, ClaimOutcome
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.ledger import ExitRoom, LedgerPosition
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.domain.orders import RejectKind, Side
from tradeguard.errors import (
    ClaimInProgress,
    ConfigError,
    IllegalTransition,
    IntentMismatch,
    LeaseLost,
    StoreError,
    TradeguardError,
)

__all__ = [
    "STORE_HEADER",
    "ErrorCode",
    "claim_from_json",
    "claim_json",
    "dec",
    "error_body",
    "intent_from_json",
    "intent_json",
    "num",
    "outcome_from_json",
    "outcome_json",
    "parse_ts",
    "position_from_json",
    "position_json",
    "raise_error",
    "record_from_json",
    "record_json",
    "room_from_json",
    "room_json",
    "ts",
]


# The response header that names the store a claim service serves (`ClaimStore.store_id`), on
# every answer of the native routes: a remote ledger refuses answers from another store.
STORE_HEADER = "X-Tradeguard-Store"


class ErrorCode:
    """The `code` of every error body the native routes answer (a plain namespace of strings)."""

    INTENT_MISMATCH = "intent_mismatch"
    LEASE_LOST = "lease_lost"
    CLAIM_IN_PROGRESS = "claim_in_progress"
    ILLEGAL_TRANSITION = "illegal_transition"
    STORE_UNAVAILABLE = "store_unavailable"  # the database failed: retry later (503)
    STORE_CONFLICT = "store_conflict"  # the store refused the write (a reused client_order_id)
    RATE_LIMITED = "rate_limited"  # the key is past its rate (429, Retry-After): retry later
    INVALID = "invalid_request"  # a bad argument or body (ConfigError, ValueError, validation)
    NOT_FOUND = "not_found"  # missing, or another agent's: the same answer
    FORBIDDEN = "forbidden"
    UNAUTHORIZED = "unauthorized"


def num(value: Decimal | None) -> str | None:
    """Return a Decimal as plain text (no exponent), or None."""
    return None if value is None else format(value, "f")


def dec(value: Any) -> Decimal | None:
    """Return text (or an int) as a finite Decimal, or None (ValueError for NaN or Infinity)."""
    return None if value is None else _finite(value)


def _finite(value: Any) -> Decimal:
    # A quantity or price is a number: "NaN" or "Infinity" read as a Decimal would raise
    # InvalidOperation at the first comparison, far from the answer that carried it.
    number = Decimal(str(value))
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number


def ts(value: datetime | None) -> str | None:
    """Return an aware datetime as ISO 8601 in UTC, or None."""
    return None if value is None else value.astimezone(UTC).isoformat()


def parse_ts(value: Any) -> datetime | None:
    """Return ISO 8601 text with an offset as an aware UTC datetime (naive text is refused)."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ConfigError(f"time {value!r} has no UTC offset; send e.g. 2026-05-21T13:30:00+00:00")
    return parsed.astimezone(UTC)


def _ts(value: Any) -> datetime:
    parsed = parse_ts(value)
    if parsed is None:
        raise ConfigError("a required time is missing")
    return parsed


# -- intents and claims -------------------------------------------------------------------------


def intent_json(intent: Intent) -> dict[str, Any]:
    """Return an intent's fields."""
    return {
        "agent_id": intent.agent_id, "kind": intent.kind.value, "symbol": intent.symbol,
        "side": intent.side.value, "name": intent.name,
    }  # fmt: skip


def intent_from_json(data: Mapping[str, Any]) -> Intent:
    """Rebuild an intent (ConfigError on a bad field, as `Intent` itself raises)."""
    return Intent(data["agent_id"], Kind(data["kind"]), data["symbol"], Side(data["side"]), data["name"])


def claim_json(claim: Claim) -> dict[str, Any]:
    """Return every field of a claim snapshot."""
    return {
        "key": claim.key, "client_order_id": claim.client_order_id, "agent_id": claim.agent_id,
        "kind": claim.kind.value, "symbol": claim.symbol, "side": claim.side.value,
        "intent": claim.intent, "payload": claim.payload, "state": claim.state.value,
        "epoch": claim.epoch, "owner": claim.owner, "lease_expires_at": ts(claim.lease_expires_at),
        "order_qty": num(claim.order_qty), "broker_order_id": claim.broker_order_id,
        "filled_qty": num(claim.filled_qty), "filled_avg_price": num(claim.filled_avg_price),
        "turn_id": claim.turn_id, "attempts": claim.attempts, "reason": claim.reason,
        "created_at": ts(claim.created_at), "updated_at": ts(claim.updated_at),
        "reject_kind": None if claim.reject_kind is None else claim.reject_kind.value,
        "coid_scope": claim.coid_scope,
    }  # fmt: skip


def claim_from_json(data: Mapping[str, Any]) -> Claim:
    """Rebuild a claim snapshot from `claim_json`."""
    reject = data.get("reject_kind")
    return Claim(
        key=data["key"], client_order_id=data["client_order_id"], agent_id=data["agent_id"],
        kind=Kind(data["kind"]), symbol=data["symbol"], side=Side(data["side"]),
        intent=data["intent"], payload=dict(data["payload"]), state=ClaimState(data["state"]),
        epoch=int(data["epoch"]), owner=data["owner"], lease_expires_at=_ts(data["lease_expires_at"]),
        order_qty=dec(data.get("order_qty")), broker_order_id=data.get("broker_order_id"),
        filled_qty=_finite(data["filled_qty"]), filled_avg_price=dec(data.get("filled_avg_price")),
        turn_id=data.get("turn_id"), attempts=int(data["attempts"]), reason=data["reason"],
        created_at=_ts(data["created_at"]), updated_at=_ts(data["updated_at"]),
        reject_kind=None if reject is None else RejectKind(reject),
        coid_scope=data.get("coid_scope"),  # absent from an older service: not known
    )  # fmt: skip


def outcome_json(outcome: ClaimOutcome) -> dict[str, Any]:
    """Return a claim outcome: the claim and whether this call created it."""
    return {"claim": claim_json(outcome.claim), "created": outcome.created}


def outcome_from_json(data: Mapping[str, Any]) -> ClaimOutcome:
    """Rebuild a claim outcome."""
    return ClaimOutcome(claim_from_json(data["claim"]), bool(data["created"]))


def spec_from_json(data: Mapping[str, Any]) -> OrderSpec:
    """Rebuild an order spec from its payload form (`OrderSpec.as_payload`)."""
    return OrderSpec.from_payload(dict(data))


# -- ledger and audit ---------------------------------------------------------------------------


def position_json(position: LedgerPosition) -> dict[str, Any]:
    """Return a ledger position."""
    return {
        "agent_id": position.agent_id, "symbol": position.symbol, "qty": num(position.qty),
        "turn_id": position.turn_id, "opened_at": ts(position.opened_at),
        "updated_at": ts(position.updated_at),
    }  # fmt: skip


def position_from_json(data: Mapping[str, Any]) -> LedgerPosition:
    """Rebuild a ledger position."""
    return LedgerPosition(
        data["agent_id"], data["symbol"], _finite(data["qty"]), data.get("turn_id"),
        parse_ts(data.get("opened_at")), parse_ts(data.get("updated_at")),
    )  # fmt: skip


_ROOM_FIELDS = ("held", "open_exits", "unacknowledged_exits", "reserved_by_others", "broker_available", "qty")


def room_json(room: ExitRoom) -> dict[str, Any]:
    """Return how an exit was sized."""
    return {name: num(getattr(room, name)) for name in _ROOM_FIELDS}


def room_from_json(data: Mapping[str, Any]) -> ExitRoom:
    """Rebuild an exit sizing."""
    return ExitRoom(*(_finite(data[name]) for name in _ROOM_FIELDS))


def record_json(record: AuditRecord) -> dict[str, Any]:
    """Return an audit record."""
    return {
        "id": record.id, "at": ts(record.at), "agent_id": record.agent_id,
        "action": record.action.value, "reason": record.reason, "kind": record.kind,
        "symbol": record.symbol, "side": record.side, "qty": record.qty, "state": record.state,
        "prev_state": record.prev_state, "client_order_id": record.client_order_id,
        "claim_key": record.claim_key, "detail": record.detail,
    }  # fmt: skip


def record_from_json(data: Mapping[str, Any]) -> AuditRecord:
    """Rebuild an audit record."""
    values = dict(data)
    values["at"] = _ts(values["at"])
    values["action"] = AuditAction(values["action"])
    values["detail"] = dict(values.get("detail") or {})
    return AuditRecord(**values)


# -- errors -------------------------------------------------------------------------------------

# Most specific first: LeaseLost is a ClaimInProgress, ConfigError a ValueError.
_CODES: tuple[tuple[type[Exception], str, int], ...] = (
    (IntentMismatch, ErrorCode.INTENT_MISMATCH, 409),
    (LeaseLost, ErrorCode.LEASE_LOST, 409),
    (ClaimInProgress, ErrorCode.CLAIM_IN_PROGRESS, 409),
    (IllegalTransition, ErrorCode.ILLEGAL_TRANSITION, 409),
    (ConfigError, ErrorCode.INVALID, 422),
    (ValueError, ErrorCode.INVALID, 422),
    # A time at the edge of the calendar (0001-01-01T00:00+05:00) overflows when moved to UTC.
    (OverflowError, ErrorCode.INVALID, 422),
)


def error_body(exc: Exception) -> tuple[int, dict[str, Any]]:
    """Return the HTTP status and the body that stand for `exc` (a library error or ValueError).

    A `StoreError` caused by the database (it has a cause) is 503, retry later; one the store
    raised on purpose (a client_order_id that belongs to another claim) is 409.
    """
    body: dict[str, Any] = {"message": str(exc)}
    if isinstance(exc, IntentMismatch):
        body |= {"key": exc.key, "existing": exc.existing, "requested": exc.requested}
    if isinstance(exc, StoreError):
        unavailable = exc.__cause__ is not None
        code = ErrorCode.STORE_UNAVAILABLE if unavailable else ErrorCode.STORE_CONFLICT
        return (503 if unavailable else 409), {"code": code, **body}
    for kind, code, status in _CODES:
        if isinstance(exc, kind):
            return status, {"code": code, **body}
    raise TypeError(f"no error code for {type(exc).__name__}") from exc


def raise_error(code: str, message: str, body: Mapping[str, Any]) -> NoReturn:
    """Raise the library exception an error body stands for (StoreError for a code not known)."""
    if code == ErrorCode.INTENT_MISMATCH:
        raise IntentMismatch(str(body.get("key")), body.get("existing") or {}, body.get("requested") or {})
    known: dict[str, type[TradeguardError]] = {
        ErrorCode.LEASE_LOST: LeaseLost,
        ErrorCode.CLAIM_IN_PROGRESS: ClaimInProgress,
        ErrorCode.ILLEGAL_TRANSITION: IllegalTransition,
        ErrorCode.INVALID: ConfigError,
        ErrorCode.UNAUTHORIZED: ConfigError,
        ErrorCode.FORBIDDEN: ConfigError,
        ErrorCode.NOT_FOUND: ConfigError,
    }
    raise known.get(code, StoreError)(message)
