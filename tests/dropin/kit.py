"""Helpers of the drop-in tests (issue 10): clients on a paper server, and what the broker holds.

`plain_client` is alpaca-py's own `TradingClient` on the paper server (a read timeout on its
session, as a careful bot sets; the hidden 429/504 retry kept but without its 3 s pause);
`guarded_client` is the one-import `GuardedTradingClient` on the same server with a SQLite claim
store. `order_rows` flattens what the paper broker accepted (legs included) into comparable rows
with no ids, so two runs of one bot can be compared order for order.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

from tradeguard import GuardedTradingClient, Settings
from tradeguard.clock import Clock
from tradeguard.domain import AuditRecord, BrokerOrder, Claim
from tradeguard.domain.intents import Kind
from tradeguard.faults.plan import FaultPlan
from tradeguard.paper.server import PaperServer
from tradeguard.ports import ClaimLedger
from tradeguard.store import ClaimStore, MemoryClaimStore

__all__ = [
    "AGENT",
    "OrderRow",
    "as_order",
    "audit_records",
    "broker_positions",
    "claims_of",
    "flatten_orders",
    "guarded_client",
    "held",
    "ledger_qty",
    "limit",
    "market",
    "num",
    "order_rows",
    "outcome_of",
    "plain_client",
    "store_url",
]

AGENT = "dropin-bot"


def num(value: Decimal | str | float | None) -> str | None:
    """Render a quantity or price without exponent or trailing zeros ("10", "455")."""
    if value is None:
        return None
    text = format(Decimal(str(value)).normalize(), "f")
    return "0" if text == "-0" else text


@dataclass(frozen=True, slots=True, order=True)
class OrderRow:
    """One order as the broker holds it, without ids: what two runs of a bot can share."""

    symbol: str
    side: str
    qty: str | None
    type: str
    order_class: str
    status: str
    limit_price: str | None
    stop_price: str | None
    filled_qty: str | None

    @property
    def decision(self) -> tuple[str, str, str | None, str, str]:
        """The order's content without its outcome: symbol, side, qty, type, class."""
        return (self.symbol, self.side, self.qty, self.type, self.order_class)


def flatten_orders(orders: Iterable[BrokerOrder]) -> Iterator[BrokerOrder]:
    """Yield each order and then its legs (a bracket's, OTO's or OCO's), each order once."""
    seen: set[str] = set()
    stack = list(orders)
    while stack:
        order = stack.pop(0)
        if order.id in seen:
            continue
        seen.add(order.id)
        yield order
        stack.extend(order.legs)


def order_rows(server: PaperServer) -> Counter[OrderRow]:
    """Return every order the paper broker accepted, legs included, as a multiset of rows."""
    return Counter(
        OrderRow(
            symbol=o.symbol,
            side=o.side.value,
            qty=num(o.qty),
            type=o.order_type.value,
            order_class=o.order_class.value,
            status=o.status.value,
            limit_price=num(o.limit_price),
            stop_price=num(o.stop_price),
            filled_qty=num(o.filled_qty),
        )
        for o in flatten_orders(server.broker.orders())
    )


def broker_positions(server: PaperServer) -> dict[str, str]:
    """Return the paper broker's positions as {symbol: signed qty}."""
    return {p.symbol: num(p.qty) or "0" for p in server.broker.list_positions()}


def store_url(tmp_path: Path, name: str = "claims.db") -> str:
    """A claim-store URL on a SQLite file under `tmp_path`."""
    return f"sqlite:///{tmp_path / name}"


@contextmanager
def plain_client(
    server: PaperServer, *, raw_data: bool = False, timeout_secs: float = 10.0
) -> Iterator[TradingClient]:
    """Yield alpaca-py's own `TradingClient` on `server`, closed afterwards."""
    client = TradingClient("paper-key", "paper-secret", raw_data=raw_data, url_override=server.url)
    # alpaca-py has no timeout setting; its session's request method is the one hook (as in
    # tradeguard.testing.alpaca_client). The hidden 429/504 retry stays, without its 3 s pause.
    client._session.request = functools.partial(client._session.request, timeout=timeout_secs)  # type: ignore[method-assign]
    client._retry_wait = 0
    try:
        yield client
    finally:
        client._session.close()


@contextmanager
def guarded_client(
    server: PaperServer,
    store: str | ClaimLedger,
    *,
    raw_data: bool = False,
    timeout_secs: float = 10.0,
    settings: Settings | None = None,
    clock: Clock | None = None,
    **options: Any,
) -> Iterator[GuardedTradingClient]:
    """Yield the one-import `GuardedTradingClient` on `server` with its claims in `store`.

    `timeout_secs` is the guard's read timeout (`Settings.request_timeout_secs`) unless
    `settings` is given; `options` go to the client (`dedup_window_secs`, ...).
    """
    settings = settings or Settings(request_timeout_secs=timeout_secs)
    client = GuardedTradingClient(
        "paper-key",
        "paper-secret",
        paper=True,
        raw_data=raw_data,
        url_override=server.url,
        store=store,
        settings=settings,
        clock=clock,
        **({"agent_id": AGENT} | options),
    )
    try:
        yield client
    finally:
        client.close()


# ---- answers ----------------------------------------------------------------------------------


def as_order(answer: object) -> Order:
    """Narrow a submit/close/replace answer to an alpaca-py Order (what raw_data=False returns)."""
    assert isinstance(answer, Order), f"expected an alpaca-py Order, got {type(answer).__name__}: {answer!r}"
    return answer


def outcome_of(call: Callable[[], object]) -> object:
    """Return what `call` returned, or the APIError it raised (anything else propagates)."""
    try:
        return call()
    except APIError as exc:
        return exc


# ---- orders as a bot writes them --------------------------------------------------------------


def market(
    symbol: str, qty: float, side: OrderSide, client_order_id: str | None = None
) -> MarketOrderRequest:
    """A day market order, as alpaca-py's README writes one."""
    return MarketOrderRequest(
        symbol=symbol, qty=qty, side=side, time_in_force=TimeInForce.DAY, client_order_id=client_order_id
    )


def limit(
    symbol: str, qty: float, side: OrderSide, price: float, client_order_id: str | None = None
) -> LimitOrderRequest:
    """A day limit order."""
    return LimitOrderRequest(
        symbol=symbol,
        qty=qty,
        side=side,
        time_in_force=TimeInForce.DAY,
        limit_price=price,
        client_order_id=client_order_id,
    )


# ---- what the broker and the guard hold ---------------------------------------------------------


def held(server: PaperServer, symbol: str) -> Decimal:
    """Return the paper broker's signed position in `symbol` (0 when flat)."""
    position = server.broker.get_position(symbol)
    return Decimal(0) if position is None else position.qty


def ledger_qty(client: GuardedTradingClient, symbol: str) -> Decimal:
    """Return the guard's ledger position in `symbol` (its `gateway.position`)."""
    return client.gateway.position(symbol).qty


def claims_of(
    client: GuardedTradingClient, symbol: str | None = None, kind: Kind | None = None
) -> list[Claim]:
    """Return the client's claims, oldest first, optionally of one symbol or kind."""
    return client.gateway.store.list_claims(agent_id=AGENT, symbol=symbol, kind=kind)


def audit_records(client: GuardedTradingClient) -> list[AuditRecord]:
    """Return every audit record of the client's claim store, oldest first."""
    store = client.gateway.store
    assert isinstance(store, ClaimStore | MemoryClaimStore), type(store)
    return list(store.audit_records())


def lost_answer(match: str, *, nth: int = 1) -> FaultPlan:
    """A fault plan: the `nth` order POST matching `match` (YAML flow map, e.g. ``{side: buy}``)
    is accepted and answered 504, and every lookup by client_order_id answers 503 until the
    test clears the server's injector: a decision whose answer was lost and cannot be read."""
    return FaultPlan.parse(
        f"""
seed: 1
faults:
  - route: POST /v2/orders
    match: {match}
    nth: {nth}
    action: accept_then_error
    status: 504
  - route: GET /v2/orders:by_client_order_id
    action: error
    status: 503
"""
    )
