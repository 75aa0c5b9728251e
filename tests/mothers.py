"""Object mothers: the value objects tests build, with defaults that say what matters.

The public kit (`tradeguard.testing`) builds broker-side values (`make_request`, `make_order`,
`make_position`); these build the claim side and the reconciler's inputs:

- `make_intent`, `make_spec`: a decision and its order (vary `name` for a fresh decision).
- `make_claim`: a `Claim` as the store would hold it, aged `age_secs` before `NOW`.
- `order_for`: the broker's order for a claim; `held`: a ledger position; `snap`: a snapshot.
- `limit`: a GTC limit order request, the kind that rests on the paper book.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tradeguard.domain import (
    BrokerOrder,
    BrokerPosition,
    Claim,
    LedgerPosition,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from tradeguard.domain.intents import Intent, Kind, OrderSpec, derive_client_order_id
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.reconcile import BrokerSnapshot
from tradeguard.testing import make_request

NOW = datetime(2026, 5, 21, 15, 0, tzinfo=UTC)


def make_intent(
    name: str, *, agent: str = "bot", kind: Kind = Kind.ENTRY, symbol: str = "QQQ", side: Side = Side.BUY
) -> Intent:
    """Return an intent; tests vary `name` to get a fresh decision."""
    return Intent(agent, kind, symbol, side, name)


def make_spec(qty: int | str = 1, **fields: Any) -> OrderSpec:
    """Return a market order spec for `qty` shares."""
    return OrderSpec(qty=Decimal(qty), **fields)


def make_claim(
    state: ClaimState = ClaimState.UNKNOWN,
    *,
    age_secs: float = 60,
    symbol: str = "TQQQ",
    kind: Kind = Kind.ENTRY,
    side: str = "buy",
    qty: int = 6,
    turn_id: int | None = None,
    reason: str = "",
    filled: int = 0,
    lease_left_secs: float = -1,
) -> Claim:
    """Return agent "bot"'s claim in `state`, last updated `age_secs` before `NOW`."""
    intent = Intent("bot", kind, symbol, Side(side), f"{state}-{age_secs}-{reason}")
    updated = NOW - timedelta(seconds=age_secs)
    return Claim(
        key=intent.key,
        client_order_id=derive_client_order_id(intent.key),
        agent_id="bot",
        kind=kind,
        symbol=symbol,
        side=side,
        intent=intent.name,
        payload=OrderSpec(qty=Decimal(qty)).as_payload(),
        state=state,
        epoch=1,
        owner="w",
        lease_expires_at=NOW + timedelta(seconds=lease_left_secs),
        order_qty=Decimal(qty),
        broker_order_id=None,
        filled_qty=Decimal(filled),
        filled_avg_price=None,
        turn_id=turn_id,
        attempts=1,
        reason=reason,
        created_at=updated,
        updated_at=updated,
    )


def order_for(claim: Claim, status: OrderStatus = OrderStatus.FILLED, filled: int = 6) -> BrokerOrder:
    """Return the broker's 6-share order under the claim's client_order_id."""
    return BrokerOrder(
        id="o-1",
        client_order_id=claim.client_order_id,
        symbol=claim.symbol,
        side=Side(claim.side),
        status=status,
        qty=Decimal(6),
        filled_qty=Decimal(filled),
    )


def held(symbol: str, qty: int, turn_id: int = 1, agent: str = "bot") -> LedgerPosition:
    """Return a ledger position opened an hour before `NOW`."""
    return LedgerPosition(agent, symbol, Decimal(qty), turn_id, NOW - timedelta(hours=1))


def snap(
    positions: dict[str, int] | None = None,
    lookups: dict[str, BrokerOrder | None] | None = None,
    *,
    earlier_gap: float | None = None,
    open_orders: tuple[BrokerOrder, ...] = (),
    complete: bool = True,
    earlier_orders: tuple[BrokerOrder, ...] | None = None,
) -> BrokerSnapshot:
    """Return a snapshot taken at `NOW` (with an earlier read `earlier_gap` seconds before).

    The earlier read lists `earlier_orders` as open (default: the same `open_orders`).
    """
    pos = {s: BrokerPosition(s, Decimal(q), Decimal(q)) for s, q in (positions or {}).items() if q}
    earlier = None
    if earlier_gap is not None:
        before = open_orders if earlier_orders is None else earlier_orders
        earlier = BrokerSnapshot(
            NOW - timedelta(seconds=earlier_gap), pos, before, complete, dict(lookups or {})
        )
    return BrokerSnapshot(NOW, pos, open_orders, complete, dict(lookups or {}), earlier)


def limit(symbol: str, side: str, qty: int, price: str, cid: str) -> OrderRequest:
    """A GTC limit order, the kind that rests on the book."""
    return make_request(
        symbol,
        side,
        qty,
        client_order_id=cid,
        order_type=OrderType.LIMIT,
        limit_price=Decimal(price),
        time_in_force=TimeInForce.GTC,
    )
