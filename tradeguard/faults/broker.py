"""`FaultyBroker`: a fault plan applied in process, around any `Broker`.

Each port call counts as the REST route the route registry (`tradeguard.paper.routes`) names for
its port method, so one plan drives the in-process broker and the paper server alike; the plan's
actions become the port's errors (see `FaultyBroker`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from tradeguard.broker.alpaca.errors_map import classify_response, reject_kind
from tradeguard.clock import Clock, SystemClock
from tradeguard.domain import BrokerOrder, BrokerPosition, OrderClass, OrderRequest, ReplaceRequest
from tradeguard.errors import BrokerError, BrokerUnavailable, OrderRejected, OutcomeUnknown
from tradeguard.faults.plan import Fault, FaultAction, FaultInjector, FaultPlan
from tradeguard.paper.routes import port_route
from tradeguard.ports import Broker

__all__ = ["FaultyBroker"]

T = TypeVar("T")
_NO_DEFAULT: Any = object()  # "this call has no not-found answer" (None is a real answer)


def _fault_error(fault: Fault, what: str) -> BrokerError:
    """Return the error `AlpacaBroker` raises for the fault's answer (`classify_response`).

    The same status and body must mean the same to the guard in process as over HTTP: a 4xx
    is a definite refusal (even after an `accept_then_error` placed the order, as the adapter
    reads it), 401 and 429 were never processed, 408 and 5xx are ambiguous, and Alpaca's
    duplicate client_order_id says the order exists.
    """
    body = fault.effective_body
    status = fault.effective_status
    if isinstance(body, Mapping):
        code = body.get("code")
        message = str(body.get("message") or f"HTTP {status} from {what}")
        details: dict[str, Any] = {"status_code": status, "code": code if isinstance(code, int) else None}
        details["body"] = body
        words = message
    else:
        text = body if isinstance(body, str) else str(body)
        message = f"HTTP {status} from {what} (fault plan)"
        details = {"status_code": status, "body": {"raw": text}}
        words = text.strip()[:200] or "empty body"  # what the adapter classifies a non-JSON body by
    kind = classify_response(status, words)
    if kind is OrderRejected:
        # Fault plans speak Alpaca's answers; the refusal carries their broker-neutral kind.
        return OrderRejected(message, kind=reject_kind(status, words), **details)
    return kind(message, **details)


class FaultyBroker:
    """A `Broker` that injects a fault plan's failures around another broker.

    Each port call counts as the REST route the registry names for it
    (`tradeguard.paper.routes.PORT_ROUTES`: submit_order is POST /v2/orders, get_position is
    GET /v2/positions/{symbol}, ...), with the call's arguments as the fields a fault's `match`
    reads. Actions map to the port's errors:

    - accept_then_timeout: the call runs, the clock sleeps `delay_secs`, then OutcomeUnknown.
    - accept_then_error: the call runs, then the error `AlpacaBroker` raises for the fault's
      status and body (`errors_map.classify_response`): OutcomeUnknown for 5xx and 408, and
      for 4xx OrderRejected although the order stands (the adapter cannot know better).
    - reject, error: nothing runs; the error `AlpacaBroker` raises for the status and body
      (a 4xx is OrderRejected, but 401 and 429 are BrokerUnavailable, 408 and Alpaca's
      duplicate client_order_id OutcomeUnknown); a 404 on a lookup reads as "not found" (None).
    - drop: OutcomeUnknown, nothing runs.
    - rate_limit: BrokerUnavailable(429), nothing runs: Alpaca refuses before processing, and
      the adapter's retry is off, as `AlpacaBroker` maps it (`errors_map.classify_response`).
    - delay: the clock sleeps `delay_secs`, then the call runs normally.

    Args:
        inner: The broker to wrap (a PaperBroker, or an AlpacaBroker against a paper account).
        plan: The plan, or an injector to share call counts with another wrapper.
        clock: What waits for delays and timeouts; a ManualClock makes them instant.
    """

    def __init__(self, inner: Broker, plan: FaultPlan | FaultInjector, *, clock: Clock | None = None) -> None:
        self.inner = inner
        self.injector = plan if isinstance(plan, FaultInjector) else plan.injector()
        self._clock: Clock = clock or SystemClock()

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Submit through the plan."""
        kind = request.order_type._value_  # `_value_`: an enum's `value` is a Python-level property
        fields = {
            "symbol": request.symbol,
            "side": request.side._value_,
            "qty": request.qty,
            "notional": request.notional,
            "type": kind,
            "order_type": kind,
            "time_in_force": request.time_in_force._value_,
            "limit_price": request.limit_price,
            "stop_price": request.stop_price,
            "client_order_id": request.client_order_id,
            "position_intent": request.position_intent.value if request.position_intent else None,
            "extended_hours": request.extended_hours,
            # As AlpacaBroker sends them: a simple order carries no order_class.
            "order_class": None if request.order_class is OrderClass.SIMPLE else request.order_class.value,
            "trail_price": request.trail_price,
            "trail_percent": request.trail_percent,
        }
        return self._call("submit_order", fields, lambda: self.inner.submit_order(request))

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """Look up through the plan."""
        return self._call(
            "get_order_by_client_id",
            {"client_order_id": client_order_id},
            lambda: self.inner.get_order_by_client_id(client_order_id),
            not_found=None,
        )

    def list_orders(
        self,
        *,
        status: str = "open",
        symbols: list[str] | None = None,
        after: datetime | None = None,
        limit: int = 500,
    ) -> list[BrokerOrder]:
        """List through the plan."""
        fields = {
            "status": status,
            "symbols": ",".join(symbols) if symbols else None,
            "after": after.isoformat() if after else None,
            "limit": limit,
        }
        call = functools.partial(
            self.inner.list_orders, status=status, symbols=symbols, after=after, limit=limit
        )
        return self._call("list_orders", fields, call)

    def list_positions(self) -> list[BrokerPosition]:
        """List through the plan."""
        return self._call("list_positions", {}, self.inner.list_positions)

    def get_position(self, symbol: str) -> BrokerPosition | None:
        """Read through the plan."""
        return self._call(
            "get_position",
            {"symbol": symbol},
            lambda: self.inner.get_position(symbol),
            not_found=None,
        )

    def cancel_order(self, order_id: str) -> None:
        """Cancel through the plan."""
        self._call("cancel_order", {"id": order_id}, lambda: self.inner.cancel_order(order_id))

    def get_order(self, order_id: str) -> BrokerOrder | None:
        """Read through the plan."""
        return self._call(
            "get_order", {"id": order_id}, lambda: self.inner.get_order(order_id), not_found=None
        )

    def replace_order(self, order_id: str, request: ReplaceRequest) -> BrokerOrder:
        """Replace through the plan."""
        fields = {
            "id": order_id,
            "qty": request.qty,
            "limit_price": request.limit_price,
            "stop_price": request.stop_price,
            "trail": request.trail,
            "time_in_force": request.time_in_force.value if request.time_in_force else None,
            "client_order_id": request.client_order_id,
        }
        return self._call("replace_order", fields, lambda: self.inner.replace_order(order_id, request))

    def _call(
        self,
        port_method: str,
        fields: Mapping[str, object],
        call: Callable[[], T],
        not_found: T = _NO_DEFAULT,
    ) -> T:
        route = port_route(port_method)
        method, path = route.method, route.concrete(fields)
        fault = self.injector.check(method, path, fields)
        if fault is None:
            return call()
        what = f"{method} {path}"
        action = fault.action
        if action is FaultAction.DELAY:
            self._clock.sleep(fault.effective_delay_secs)
            return call()
        if action.processes:
            with contextlib.suppress(BrokerError):
                call()  # whatever the broker answers is lost: that is the fault
            if action is FaultAction.ACCEPT_THEN_TIMEOUT:
                delay = fault.effective_delay_secs
                self._clock.sleep(delay)
                raise OutcomeUnknown(f"{what}: no response within {delay:g} s (fault plan)")
            raise _fault_error(fault, what)
        if action is FaultAction.REJECT:
            if fault.effective_status == 404 and not_found is not _NO_DEFAULT:
                return not_found  # a lookup miss, as the adapter reads Alpaca's 404
            raise _fault_error(fault, what)
        if action is FaultAction.RATE_LIMIT:
            text = "rate limit exceeded"
            raise BrokerUnavailable(text, status_code=429, body={"raw": text})
        if action is FaultAction.DROP:
            raise OutcomeUnknown(f"{what}: connection closed before an answer (fault plan)")
        raise _fault_error(fault, what)
