"""The public test kit: build fault-injection runs of your own bot on tradeguard's paper broker.

- `FaultyBroker` wraps any `Broker` and applies a `FaultPlan`, mapping each port call to the REST
  route it stands for, so one plan drives the in-process broker and the paper server alike.
- `paper_server(...)` starts the paper server for a test; `alpaca_client(...)` gives a real
  alpaca-py `TradingClient` pointed at it, with a read timeout; `orders_of(...)` reads back what
  the broker received.
- `RecordingBroker` wraps any `Broker` and records every call on the way through, and every
  order asked of it (refused ones included): `submitted(client_order_id)` counts the sends of one
  order, `asked(symbol=..., side=...)` lists the requests. It is thread-safe, so it can sit under
  a bot's worker threads; subclass it to add a fault (a lagging or failing read) to one method.
- `make_request`, `make_order`, `make_position` build value objects with sensible defaults.

Example::

    plan = FaultPlan.parse("faults: [{route: POST /v2/orders, nth: 1, action: accept_then_timeout}]")
    with paper_server(faults=plan) as server, alpaca_client(server.url, timeout_secs=1) as client:
        run_my_bot(client)
        assert len(orders_of(server.broker)) == 1

    broker = RecordingBroker(PaperBroker(prices=FixedPrices({"TQQQ": "75.33"})))
    run_my_bot(OrderGateway(broker, "sqlite:///claims.db", agent_id="my-bot"))
    assert len(broker.asked(symbol="TQQQ", side="buy")) == 1  # one order asked, however many retries
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from tradeguard.clock import ManualClock
from tradeguard.domain import (
    BrokerOrder,
    BrokerPosition,
    OrderRequest,
    OrderStatus,
    OrderType,
    ReplaceRequest,
    Side,
    TimeInForce,
)
from tradeguard.faults import Fault, FaultAction, FaultPlan, FaultyBroker
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices, PriceSource, RecordedPrices
from tradeguard.paper.server import PaperServer
from tradeguard.ports import Broker

if TYPE_CHECKING:
    from alpaca.trading.client import TradingClient

    from tradeguard.chaos.campaign import ChaosResult


def chaos(strategy: Any, **options: Any) -> ChaosResult:
    """Run `strategy` under seeded faults and crashes and check G1-G4; see `tradeguard.chaos.chaos`.

    Example::

        result = chaos("strategies.momentum", runs=10, seed=1)
        assert result.ok, result.failing
    """
    # The chaos harness loads the run machinery; a test kit import should not pay for it.
    from tradeguard.chaos.campaign import chaos as run_chaos  # noqa: PLC0415

    return run_chaos(strategy, **options)


__all__ = [
    "chaos",
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
    "RecordingBroker",
    "BrokerCall",
    "alpaca_client",
    "make_order",
    "make_position",
    "make_request",
    "orders_of",
    "paper_server",
]

_BrokerT = TypeVar("_BrokerT", bound=Broker)


class BrokerCall(NamedTuple):
    """One call through a `RecordingBroker`: the port method and its main argument."""

    method: str
    subject: str  # the client_order_id, symbol, order id or order status the call was about


class RecordingBroker(Generic[_BrokerT]):
    """Wrap `inner` and record every call, in order, before passing it on.

    Attributes:
        inner: The wrapped broker (a `PaperBroker`, a `FaultyBroker` around one, ...).
        calls: Every call as a `BrokerCall`, oldest first, failed ones included.
        requests: Every `OrderRequest` given to `submit_order`, refused ones included.
    """

    def __init__(self, inner: _BrokerT) -> None:
        self.inner = inner
        self.calls: list[BrokerCall] = []
        self.requests: list[OrderRequest] = []
        self._lock = threading.Lock()

    def _record(self, method: str, subject: str) -> None:
        with self._lock:
            self.calls.append(BrokerCall(method, subject))

    # ---- the Broker port -------------------------------------------------------------------

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Record the request, then place it with `inner`."""
        with self._lock:
            self.requests.append(request)
            self.calls.append(BrokerCall("submit_order", request.client_order_id))
        return self.inner.submit_order(request)

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """Record the lookup, then ask `inner`."""
        self._record("get_order_by_client_id", client_order_id)
        return self.inner.get_order_by_client_id(client_order_id)

    def list_orders(
        self,
        *,
        status: str = "open",
        symbols: list[str] | None = None,
        after: datetime | None = None,
        limit: int = 500,
    ) -> list[BrokerOrder]:
        """Record the listing, then ask `inner`."""
        self._record("list_orders", status)
        return self.inner.list_orders(status=status, symbols=symbols, after=after, limit=limit)

    def list_positions(self) -> list[BrokerPosition]:
        """Record the read, then ask `inner`."""
        self._record("list_positions", "")
        return self.inner.list_positions()

    def get_position(self, symbol: str) -> BrokerPosition | None:
        """Record the read, then ask `inner`."""
        self._record("get_position", symbol)
        return self.inner.get_position(symbol)

    def cancel_order(self, order_id: str) -> None:
        """Record the cancel, then pass it to `inner`."""
        self._record("cancel_order", order_id)
        self.inner.cancel_order(order_id)

    def get_order(self, order_id: str) -> BrokerOrder | None:
        """Record the read, then ask `inner`."""
        self._record("get_order", order_id)
        return self.inner.get_order(order_id)

    def replace_order(self, order_id: str, request: ReplaceRequest) -> BrokerOrder:
        """Record the replace, then pass it to `inner`."""
        self._record("replace_order", order_id)
        return self.inner.replace_order(order_id, request)

    # ---- what was asked --------------------------------------------------------------------

    def submitted(self, client_order_id: str) -> int:
        """Return how many times an order with this client_order_id was sent."""
        with self._lock:
            return sum(1 for r in self.requests if r.client_order_id == client_order_id)

    def asked(self, *, symbol: str | None = None, side: Side | str | None = None) -> list[OrderRequest]:
        """Return the requests sent, oldest first, optionally only one symbol's or one side's."""
        wanted_side = None if side is None else Side(side)
        wanted_symbol = None if symbol is None else symbol.upper()
        with self._lock:
            return [
                r
                for r in self.requests
                if wanted_symbol in (None, r.symbol.upper()) and wanted_side in (None, r.side)
            ]


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
