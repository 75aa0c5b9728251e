"""The public test kit: build fault-injection runs of your own bot on tradeguard's paper broker.

- `FaultyBroker` wraps any `Broker` and applies a `FaultPlan`, mapping each port call to the REST
  route it stands for, so one plan drives the in-process broker and the paper server alike.
- `paper_server(...)` starts the paper server for a test; `alpaca_client(...)` gives a real
  alpaca-py `TradingClient` pointed at it, with a read timeout; `orders_of(...)` reads back what
  the broker received.
- `make_request`, `make_order`, `make_position` build value objects with sensible defaults.

Example::

    plan = FaultPlan.parse("faults: [{route: POST /v2/orders, nth: 1, action: accept_then_timeout}]")
    with paper_server(faults=plan) as server, alpaca_client(server.url, timeout_secs=1) as client:
        run_my_bot(client)
        assert len(orders_of(server.broker)) == 1
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from tradeguard.broker.errors_map import reject_kind
from tradeguard.broker.faults import Fault, FaultAction, FaultInjector, FaultPlan
from tradeguard.broker.paper import PaperBroker
from tradeguard.broker.paper_prices import FixedPrices, PriceSource, RecordedPrices
from tradeguard.broker.paper_server import PaperServer
from tradeguard.clock import Clock, ManualClock, SystemClock
from tradeguard.domain import (
    BrokerOrder,
    BrokerPosition,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from tradeguard.errors import BrokerError, BrokerUnavailable, OrderRejected, OutcomeUnknown
from tradeguard.ports import Broker

if TYPE_CHECKING:
    from alpaca.trading.client import TradingClient

__all__ = [
    "Fault",
    "FaultAction",
    "FaultPlan",
    "FaultyBroker",
    "FixedPrices",
    "ManualClock",
    "PaperBroker",
    "PaperServer",
    "PriceSource",
    "RecordedPrices",
    "alpaca_client",
    "make_order",
    "make_position",
    "make_request",
    "orders_of",
    "paper_server",
]

T = TypeVar("T")
_NO_DEFAULT: Any = object()  # "this call has no not-found answer" (None is a real answer)


def _fault_error(fault: Fault, kind: type[BrokerError], what: str) -> BrokerError:
    body = fault.effective_body
    status = fault.effective_status
    if isinstance(body, Mapping):
        code = body.get("code")
        message = str(body.get("message") or f"HTTP {status} from {what}")
        details: dict[str, Any] = {"status_code": status, "code": code if isinstance(code, int) else None}
        details["body"] = body
    else:
        message = f"HTTP {status} from {what} (fault plan)"
        details = {"status_code": status, "body": {"raw": body if isinstance(body, str) else str(body)}}
    if kind is OrderRejected:
        # Fault plans speak Alpaca's answers; the refusal carries their broker-neutral kind.
        return OrderRejected(message, kind=reject_kind(status, message), **details)
    return kind(message, **details)


class FaultyBroker:
    """A `Broker` that injects a fault plan's failures around another broker.

    Each port call counts as its REST route: submit_order = POST /v2/orders,
    get_order_by_client_id = GET /v2/orders:by_client_order_id, list_orders = GET /v2/orders,
    list_positions = GET /v2/positions, get_position = GET /v2/positions/{symbol},
    cancel_order = DELETE /v2/orders/{id}. Actions map to the port's errors:

    - accept_then_timeout: the call runs, the clock sleeps `delay_secs`, then OutcomeUnknown.
    - accept_then_error: the call runs, then OutcomeUnknown with the fault's status and body.
    - reject: OrderRejected, nothing runs; a 404 on a lookup reads as "not found" (None).
    - error, drop: OutcomeUnknown, nothing runs.
    - rate_limit: OutcomeUnknown(429) for POST (alpaca-py may have retried it); for other
      routes BrokerUnavailable(429), since a refused read or cancel changed nothing.
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
        """Submit through the plan (route POST /v2/orders)."""
        fields = {
            "symbol": request.symbol,
            "side": request.side.value,
            "qty": request.qty,
            "notional": request.notional,
            "type": request.order_type.value,
            "order_type": request.order_type.value,
            "time_in_force": request.time_in_force.value,
            "limit_price": request.limit_price,
            "stop_price": request.stop_price,
            "client_order_id": request.client_order_id,
            "position_intent": request.position_intent.value if request.position_intent else None,
            "extended_hours": request.extended_hours,
        }
        return self._call("POST", "/v2/orders", fields, lambda: self.inner.submit_order(request))

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """Look up through the plan (route GET /v2/orders:by_client_order_id)."""
        return self._call(
            "GET",
            "/v2/orders:by_client_order_id",
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
        """List through the plan (route GET /v2/orders)."""
        fields = {
            "status": status,
            "symbols": ",".join(symbols) if symbols else None,
            "after": after.isoformat() if after else None,
            "limit": limit,
        }
        call = functools.partial(
            self.inner.list_orders, status=status, symbols=symbols, after=after, limit=limit
        )
        return self._call("GET", "/v2/orders", fields, call)

    def list_positions(self) -> list[BrokerPosition]:
        """List through the plan (route GET /v2/positions)."""
        return self._call("GET", "/v2/positions", {}, self.inner.list_positions)

    def get_position(self, symbol: str) -> BrokerPosition | None:
        """Read through the plan (route GET /v2/positions/{symbol})."""
        return self._call(
            "GET",
            f"/v2/positions/{symbol}",
            {"symbol": symbol},
            lambda: self.inner.get_position(symbol),
            not_found=None,
        )

    def cancel_order(self, order_id: str) -> None:
        """Cancel through the plan (route DELETE /v2/orders/{id})."""
        self._call(
            "DELETE", f"/v2/orders/{order_id}", {"id": order_id}, lambda: self.inner.cancel_order(order_id)
        )

    def _call(
        self,
        method: str,
        path: str,
        fields: Mapping[str, object],
        call: Callable[[], T],
        not_found: T = _NO_DEFAULT,
    ) -> T:
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
            raise _fault_error(fault, OutcomeUnknown, what)
        if action is FaultAction.REJECT:
            if fault.effective_status == 404 and not_found is not _NO_DEFAULT:
                return not_found  # a lookup miss, as the adapter reads Alpaca's 404
            raise _fault_error(fault, OrderRejected, what)
        if action is FaultAction.RATE_LIMIT:
            kind = OutcomeUnknown if method == "POST" else BrokerUnavailable
            raise kind("rate limit exceeded", status_code=429, body={"raw": "rate limit exceeded"})
        if action is FaultAction.DROP:
            raise OutcomeUnknown(f"{what}: connection closed before an answer (fault plan)")
        raise _fault_error(fault, OutcomeUnknown, what)


@contextmanager
def paper_server(
    broker: PaperBroker | None = None,
    *,
    faults: FaultPlan | str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    **broker_options: Any,
) -> Iterator[PaperServer]:
    """Run a paper server for the `with` block; yield it (`.url`, `.broker`, `.injector`).

    Args:
        broker: The account to serve; by default a new `PaperBroker(**broker_options)`.
        faults: A plan, or the path of a plan file.
        host: Interface to listen on.
        **broker_options: Passed to `PaperBroker` when `broker` is None.
    """
    if broker is None:
        broker = PaperBroker(**broker_options)
    elif broker_options:
        raise TypeError("pass either a broker or options for a new one, not both")
    plan = faults if isinstance(faults, FaultPlan) or faults is None else FaultPlan.load(faults)
    with PaperServer(broker, host=host, fault_plan=plan) as server:
        yield server


@contextmanager
def alpaca_client(
    url: str,
    *,
    timeout_secs: float | None = 10.0,
    retry_wait_secs: int | None = None,
    key: str = "paper-key",
    secret: str = "paper-secret",  # noqa: S107 - the paper server accepts any key
) -> Iterator[TradingClient]:
    """Yield an unmodified alpaca-py `TradingClient` on `url`, closed afterwards.

    alpaca-py sends requests without a timeout; this sets one on its session, as a careful bot
    would, so `accept_then_timeout` makes it raise `requests.exceptions.ReadTimeout`.

    Args:
        url: The paper server's URL.
        timeout_secs: Connect and read timeout of each request; None waits forever.
        retry_wait_secs: Pause of alpaca-py's hidden 429/504 retries (private `_retry_wait`,
            3 s by default); 0 replays that path without waiting. None keeps alpaca-py's.
        key: Any API key: the paper server accepts all.
        secret: Any secret.
    """
    # Imported here: alpaca-py is the one dependency of this kit that only this helper needs,
    # and it takes about half a second to import.
    from alpaca.trading.client import TradingClient  # noqa: PLC0415

    client = TradingClient(key, secret, url_override=url)
    if timeout_secs is not None:
        # alpaca-py exposes no timeout setting; its session's request method is the one hook.
        client._session.request = functools.partial(  # type: ignore[method-assign]
            client._session.request, timeout=timeout_secs
        )
    if retry_wait_secs is not None:
        client._retry_wait = retry_wait_secs
    try:
        yield client
    finally:
        client._session.close()  # pooled keep-alive sockets would otherwise leak a ResourceWarning


def orders_of(
    broker: PaperBroker,
    *,
    symbol: str | None = None,
    side: Side | str | None = None,
    client_order_id: str | None = None,
) -> list[BrokerOrder]:
    """Return the orders `broker` accepted, oldest first, optionally filtered."""
    return [
        o
        for o in broker.orders()
        if (symbol is None or o.symbol == symbol.upper())
        and (side is None or o.side == Side(side))
        and (client_order_id is None or o.client_order_id == client_order_id)
    ]


def make_request(
    symbol: str = "TQQQ",
    side: Side | str = Side.BUY,
    qty: Decimal | int | str | None = 10,
    *,
    client_order_id: str = "tg-test-1",
    **overrides: Any,
) -> OrderRequest:
    """Build an `OrderRequest` (a 10-share market buy of TQQQ unless told otherwise)."""
    return OrderRequest(
        symbol=symbol,
        side=Side(side),
        client_order_id=client_order_id,
        qty=None if qty is None else Decimal(str(qty)),
        **overrides,
    )


def make_order(
    symbol: str = "TQQQ",
    side: Side | str = Side.BUY,
    qty: Decimal | int | str = 10,
    *,
    status: OrderStatus | str = OrderStatus.FILLED,
    client_order_id: str = "tg-test-1",
    price: Decimal | int | str = "100",
    **overrides: Any,
) -> BrokerOrder:
    """Build a `BrokerOrder` (filled at `price` when its status says filled)."""
    status = OrderStatus(status)
    filled = Decimal(str(qty)) if status is OrderStatus.FILLED else Decimal(0)
    at = datetime(2026, 5, 21, 13, 30, tzinfo=UTC)
    values: dict[str, Any] = {
        "id": f"order-{client_order_id}",
        "client_order_id": client_order_id,
        "symbol": symbol,
        "side": Side(side),
        "status": status,
        "qty": Decimal(str(qty)),
        "filled_qty": filled,
        "filled_avg_price": Decimal(str(price)) if filled else None,
        "order_type": OrderType.MARKET,
        "time_in_force": TimeInForce.DAY,
        "created_at": at,
        "updated_at": at,
    }
    values.update(overrides)
    return BrokerOrder(**values)


def make_position(
    symbol: str = "TQQQ",
    qty: Decimal | int | str = 10,
    *,
    qty_available: Decimal | int | str | None = None,
    avg_entry_price: Decimal | int | str = "100",
    price: Decimal | int | str | None = None,
) -> BrokerPosition:
    """Build a `BrokerPosition` (nothing held by open orders unless `qty_available` says so)."""
    shares = Decimal(str(qty))
    mark = Decimal(str(price if price is not None else avg_entry_price))
    return BrokerPosition(
        symbol=symbol,
        qty=shares,
        qty_available=shares if qty_available is None else Decimal(str(qty_available)),
        avg_entry_price=Decimal(str(avg_entry_price)),
        market_value=shares * mark,
    )
