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

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradeguard.clock import ManualClock
from tradeguard.domain import (
    BrokerOrder,
    BrokerPosition,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from tradeguard.faults import Fault, FaultAction, FaultPlan, FaultyBroker
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices, PriceSource, RecordedPrices
from tradeguard.paper.server import PaperServer

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
