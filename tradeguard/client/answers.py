"""What the drop-in returns and raises: alpaca-py's answers made from the gateway's results.

`answer` turns an `OrderResult` into the `Order` (or Alpaca's dict) alpaca-py would have
returned, or the `APIError` it would have raised; `as_api_errors` raises tradeguard's own errors
as the `APIError`s of `tradeguard.client.errors`. The one place the drop-in maps errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from typing import Any

from alpaca.common.exceptions import APIError

from tradeguard.client.convert import as_order, as_raw
from tradeguard.client.errors import (
    ClaimStoreError,
    ClientOrderIdReused,
    InvalidOrder,
    OrderInProgress,
    OrderNotSent,
    OrderOutcomeUnknown,
    StoreOfAnotherAccount,
    rejection,
    transport_failure,
)
from tradeguard.domain import BrokerOrder, Claim
from tradeguard.errors import (
    BrokerError,
    BrokerUnavailable,
    ClaimInProgress,
    ConfigError,
    IntentMismatch,
    OrderRejected,
    OutcomeUnknown,
    StoreError,
    UnrecordedChange,
)
from tradeguard.execution import OrderResult, Outcome
from tradeguard.ports import Broker

__all__ = ["answer", "as_api_errors", "decimal_arg", "json_body"]


@contextmanager
def as_api_errors() -> Iterator[None]:
    """Raise tradeguard's errors as the `APIError`s a bot written for alpaca-py catches."""
    try:
        yield
    except APIError:
        raise
    except ConfigError as exc:
        raise InvalidOrder(str(exc)) from exc
    except IntentMismatch as exc:
        raise ClientOrderIdReused(str(exc)) from exc
    except OrderRejected as exc:
        raise rejection(exc, exc.message) from exc
    except OutcomeUnknown as exc:  # UnrecordedOrder included: sent, answer not recorded
        raise transport_failure(OrderOutcomeUnknown, exc)(exc.message, status=exc.status_code) from exc
    except BrokerUnavailable as exc:
        # Alpaca's own words when it answered (a 401's 40110000 "request is not authorized"): a
        # bot that checks them behaves as before; the guard's otherwise (no answer, a 5xx page).
        body = exc.body if isinstance(exc.body, dict) else {}
        code, message = body.get("code"), body.get("message")
        raise transport_failure(OrderNotSent, exc)(
            message if isinstance(message, str) and message else exc.message,
            status=exc.status_code,
            code=code if isinstance(code, int) and code > 0 else None,
        ) from exc
    except ClaimInProgress as exc:
        raise OrderInProgress(str(exc)) from exc
    except UnrecordedChange as exc:
        raise ClaimStoreError(str(exc)) from exc  # the broker acted: never "not sent" (audit 75)
    except StoreError as exc:
        raise ClaimStoreError(f"the order was not sent: {exc}") from exc


def decimal_arg(value: object, name: str) -> Decimal | None:
    """Read a number a bot passed (qty, price), or raise `InvalidOrder` naming it."""
    if value is None:
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise InvalidOrder(f"invalid {name}") from None  # Alpaca's words for a number it cannot read
    if not number.is_finite():
        raise InvalidOrder(f"invalid {name}")  # "NaN", "inf": no order has such a size or price
    return number


def answer(result: OrderResult, *, raw: bool, nothing_to_sell: Callable[[], APIError], broker: Broker) -> Any:
    """Return the order alpaca-py would have returned, or raise what it would have raised.

    `broker` reads back a known decision's order the gateway could not return (see `_read_back`).
    """
    order: BrokerOrder | None = result.order
    # UNKNOWN with an order: the decision's order is at the broker, only whose send placed it is not.
    if order is not None and result.outcome in (Outcome.SUBMITTED, Outcome.DUPLICATE, Outcome.UNKNOWN):
        return as_raw(order) if raw else as_order(order)
    if result.outcome is Outcome.REJECTED:
        raise rejection(result.error, result.reason)
    if result.outcome is Outcome.NOT_SENT:
        # The broker's status when it answered (429: rate limit exceeded), as alpaca-py raises it.
        status = result.error.status_code if result.error is not None else None
        raise transport_failure(OrderNotSent, result.error)(result.reason, status=status)
    if result.outcome is Outcome.SKIPPED:
        raise nothing_to_sell()
    if result.outcome is Outcome.DUPLICATE:
        claim = result.claim
        if claim is not None and claim.broker_order_id is None:
            raise OrderInProgress(result.reason)
        if claim is not None:
            order = _read_back(broker, claim)
            if order is not None:
                return as_raw(order) if raw else as_order(order)
        raise OrderOutcomeUnknown(
            f"{result.reason}; the order could not be read back now: call again to get it"
        )
    status = result.error.status_code if result.error is not None else None
    raise transport_failure(OrderOutcomeUnknown, result.error)(
        f"{result.reason}; the order may exist. Call again with the same order to resolve it "
        "by client_order_id (nothing is resent blind)",
        status=status,
    )


def _read_back(broker: Broker, claim: Claim) -> BrokerOrder | None:
    """Read a placed decision's order once more; raise `StoreOfAnotherAccount` if it is absent.

    The claim says the broker acknowledged the order (it has a broker order id), yet the
    gateway could not return it. A failed read leaves it at "call again" (None). A definite
    "no such client_order_id" means this claim store's records are another account's (a paper
    account started afresh beside a store kept on disk, other API keys): calling again would
    never help, so the caller is told what does not match.
    """
    try:
        order = broker.get_order_by_client_id(claim.client_order_id)
    except BrokerError:
        return None
    if order is None:
        raise StoreOfAnotherAccount(
            f"the claim store records {claim.client_order_id} as placed (broker order "
            f"{claim.broker_order_id}, {claim.state}, {claim.created_at:%Y-%m-%d %H:%M:%S} UTC), but this "
            "broker account has no order with that client_order_id: the store holds another "
            "account's claims (a paper account started afresh beside a store kept on disk, other "
            "API keys). Use one claim store per account, or a fresh store; nothing was sent"
        )
    return order


def json_body(error: APIError) -> dict[str, Any]:
    """Return the JSON body of an `APIError`, every field kept ({"code", "message"} when it has none).

    Alpaca's refusals carry more than a code and a message (an insufficient-qty 403 names
    `available`, `existing_qty`, `held_for_orders` and `symbol`); a bot reads them from the
    body of a `close_all_positions` answer as it would from the plain client's.
    """
    try:
        body = json.loads(str(error))
    except ValueError:
        body = None
    if isinstance(body, dict) and "message" in body:
        return body
    return {"code": (error.status_code or 500) * 100000, "message": str(error)}
