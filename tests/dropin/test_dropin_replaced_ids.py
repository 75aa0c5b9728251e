"""A client_order_id given to a replacement belongs to that replacement, as at Alpaca.

`replace_order_by_id(..., ReplaceOrderRequest(client_order_id=...))` names the new order; Alpaca
then refuses the id for any other order (422 "client_order_id must be unique", nothing placed).
The guard must answer the same and must never let a new decision adopt that replacement: its
fills already belong to the claim whose order was replaced, and booking them twice makes a
phantom position (the ledger short while the broker is flat).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide
from alpaca.trading.requests import ReplaceOrderRequest

from tests.dropin.kit import (
    as_order,
    claims_of,
    guarded_client,
    held,
    ledger_qty,
    limit,
    market,
    plain_client,
)
from tests.dropin.test_dropin_contract_orders import bracket
from tradeguard import GuardedTradingClient, ManualClock, Settings
from tradeguard.domain import OrderSpec, OrderType, RejectKind, Side, TimeInForce
from tradeguard.domain.intents import Intent, Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.execution import Outcome
from tradeguard.paper.server import PaperServer

BUY, SELL = OrderSide.BUY, OrderSide.SELL


@pytest.fixture
def guard(server: PaperServer, claims: str, clock: ManualClock) -> Iterator[GuardedTradingClient]:
    """The drop-in on the paper server, claims in a SQLite file, settle delays off."""
    settings = Settings().with_changes(position_settle_secs=0, settle_delay_secs=0)
    with guarded_client(server, claims, clock=clock, settings=settings) as client:
        yield client


def _exit_replaced_under(client: TradingClient, new_id: str) -> str:
    """Buy 10 SPY, offer them far above the market as `exit-1`, replace that under `new_id`.

    Returns the replacement's broker order id (still open: SPY trades at 500).
    """
    client.submit_order(market("SPY", 10, BUY, "entry-1"))
    first = as_order(client.submit_order(limit("SPY", 10, SELL, 900.00, "exit-1")))
    new = as_order(
        client.replace_order_by_id(first.id, ReplaceOrderRequest(limit_price=800, client_order_id=new_id))
    )
    assert new.client_order_id == new_id and str(new.replaces) == str(first.id)
    return str(new.id)


def _orders(server: PaperServer) -> list[tuple[str, str, Decimal | None, str]]:
    return [(o.client_order_id, o.side.value, o.qty, o.status.value) for o in server.broker.orders()]


def _assert_reuse_refused(client: TradingClient, side: OrderSide = SELL) -> None:
    with pytest.raises(APIError) as reused:
        client.submit_order(market("SPY", 10, side, "exit-1b"))
    assert (reused.value.status_code, reused.value.code) == (422, 40010001)
    assert "client_order_id must be unique" in reused.value.message


def test_plain_alpaca_refuses_an_id_a_replacement_carries(server: PaperServer) -> None:
    # What the guard must match: the paper server answers as Alpaca does.
    with plain_client(server) as plain:
        _exit_replaced_under(plain, "exit-1b")
        server.broker.set_price("SPY", "800.00")
        _assert_reuse_refused(plain)
    assert held(server, "SPY") == 0


def test_reusing_a_filled_replacements_id_is_alpacas_422_and_books_nothing(
    guard: GuardedTradingClient, server: PaperServer
) -> None:
    replacement = _exit_replaced_under(guard, "exit-1b")
    server.broker.set_price("SPY", "800.00")  # the replacement fills: flat
    assert held(server, "SPY") == ledger_qty(guard, "SPY") == 0

    _assert_reuse_refused(guard)

    assert _orders(server) == [
        ("entry-1", "buy", Decimal(10), "filled"),
        ("exit-1", "sell", Decimal(10), "replaced"),
        ("exit-1b", "sell", Decimal(10), "filled"),
    ]
    by_coid = {c.client_order_id: c for c in claims_of(guard, "SPY")}
    exit_claim = by_coid["exit-1"]
    assert (exit_claim.state, exit_claim.filled_qty, exit_claim.broker_order_id) == (
        ClaimState.FILLED, Decimal(10), replacement,
    )  # fmt: skip
    # No claim but exit-1's has the replacement's fills.
    assert [c.client_order_id for c in by_coid.values() if c.broker_order_id == replacement] == ["exit-1"]
    reused = by_coid.get("exit-1b")
    assert reused is None or (reused.state, reused.filled_qty) == (ClaimState.REJECTED, Decimal(0))
    assert held(server, "SPY") == ledger_qty(guard, "SPY") == 0  # no phantom short, no reconcile needed


def test_reusing_an_open_replacements_id_leaves_the_exit_to_its_own_claim(
    guard: GuardedTradingClient, server: PaperServer
) -> None:
    replacement = _exit_replaced_under(guard, "exit-1b")
    _assert_reuse_refused(guard, BUY)  # a buy under the id: refused, nothing placed
    _assert_reuse_refused(guard, SELL)  # and again: still refused, not "a retry of that decision"
    assert [o.client_order_id for o in server.broker.orders()] == ["entry-1", "exit-1", "exit-1b"]

    server.broker.set_price("SPY", "800.00")  # the replacement fills now
    guard.gateway.refresh("SPY")
    claims = {c.client_order_id: c for c in claims_of(guard, "SPY")}
    assert (claims["exit-1"].state, claims["exit-1"].broker_order_id) == (ClaimState.FILLED, replacement)
    assert claims.get("exit-1b") is None or claims["exit-1b"].state is ClaimState.REJECTED
    assert held(server, "SPY") == ledger_qty(guard, "SPY") == 0


def test_an_id_given_two_replacements_ago_is_still_taken(
    guard: GuardedTradingClient, server: PaperServer
) -> None:
    middle = _exit_replaced_under(guard, "exit-1b")
    # Replaced once more without an id: the chain exit-1 -> exit-1b -> (an id of the broker's).
    last = as_order(guard.replace_order_by_id(middle, ReplaceOrderRequest(limit_price=700)))
    server.broker.set_price("SPY", "700.00")
    _assert_reuse_refused(guard)
    filled = [c for c in claims_of(guard, "SPY") if c.state is ClaimState.FILLED and c.kind is Kind.EXIT]
    assert [(c.client_order_id, c.broker_order_id) for c in filled] == [("exit-1", str(last.id))]
    assert held(server, "SPY") == ledger_qty(guard, "SPY") == 0


def test_a_replacement_made_outside_the_guard_still_follows_its_claim(
    guard: GuardedTradingClient, server: PaperServer
) -> None:
    # The claim's own chain: exit-1 replaced by a plain client (the guard never saw it).
    guard.submit_order(market("SPY", 10, BUY, "entry-1"))
    first = as_order(guard.submit_order(limit("SPY", 10, SELL, 900.00, "exit-1")))
    with plain_client(server) as plain:
        new = as_order(plain.replace_order_by_id(first.id, ReplaceOrderRequest(qty=6, limit_price=800)))
    server.broker.set_price("SPY", "800.00")
    guard.gateway.refresh("SPY")
    [claim] = claims_of(guard, "SPY", Kind.EXIT)
    assert (claim.state, claim.filled_qty, claim.broker_order_id) == (
        ClaimState.FILLED, Decimal(6), str(new.id),
    )  # fmt: skip
    assert held(server, "SPY") == ledger_qty(guard, "SPY") == 4


def test_the_gateway_refuses_a_decision_sent_under_a_replacements_id(
    guard: GuardedTradingClient, server: PaperServer
) -> None:
    replacement = _exit_replaced_under(guard, "exit-1b")
    server.broker.set_price("SPY", "800.00")
    gateway = guard.gateway
    spec = OrderSpec(qty=Decimal(10), order_type=OrderType.MARKET, time_in_force=TimeInForce.DAY)
    result = gateway.submit(
        Intent(gateway.agent_id, Kind.ENTRY, "SPY", Side.SELL, "short-again"), spec, client_order_id="exit-1b"
    )
    assert result.outcome is Outcome.REJECTED and result.claim is not None
    assert (result.claim.state, result.claim.reject_kind) == (ClaimState.REJECTED, RejectKind.ID_TAKEN)
    assert result.claim.broker_order_id != replacement and result.claim.filled_qty == 0
    assert [o.client_order_id for o in server.broker.orders()] == ["entry-1", "exit-1", "exit-1b"]
    assert held(server, "SPY") == ledger_qty(guard, "SPY") == 0


def test_the_reconciler_never_gives_a_replacement_to_a_claim_of_its_id(
    guard: GuardedTradingClient, server: PaperServer, clock: ManualClock
) -> None:
    # A claim left UNKNOWN under the replacement's id (its send's answer and lookup both lost)
    # is resolved by the reconciler: the order under that id is another claim's replacement.
    _exit_replaced_under(guard, "exit-1b")
    server.broker.set_price("SPY", "800.00")
    gateway, store = guard.gateway, guard.gateway.store
    spec = OrderSpec(qty=Decimal(10), order_type=OrderType.MARKET, time_in_force=TimeInForce.DAY)
    intent = Intent(gateway.agent_id, Kind.ENTRY, "SPY", Side.SELL, "lost-answer")
    claim = store.claim(intent, spec, owner="worker-1", client_order_id="exit-1b").claim
    claim = store.transition(claim, ClaimState.UNKNOWN, reason="outcome unknown: read timed out")
    clock.advance(300)

    gateway.reconcile()
    gateway.reconcile()  # converged: a second pass changes nothing

    resolved = store.get(claim.key)
    assert resolved is not None
    assert (resolved.state, resolved.reject_kind, resolved.filled_qty) == (
        ClaimState.REJECTED, RejectKind.ID_TAKEN, Decimal(0),
    )  # fmt: skip
    assert held(server, "SPY") == ledger_qty(guard, "SPY") == 0


def test_a_replaced_bracket_leg_stays_with_its_own_claim(
    guard: GuardedTradingClient, server: PaperServer
) -> None:
    # A leg replaced under an id of the bot's takes its predecessor's place among the parent's
    # legs: seen again through the parent, it is the same exit, never a second claim of its fills.
    parent = as_order(guard.submit_order(bracket(limit_price=415)))  # MSFT at 420: not filled yet
    placed = server.broker.get_order(str(parent.id))
    assert placed is not None
    [stop] = [leg for leg in placed.legs if leg.stop_price is not None]
    guard.gateway.refresh("MSFT")
    new = as_order(
        guard.replace_order_by_id(stop.id, ReplaceOrderRequest(stop_price=410, client_order_id="my-stop"))
    )
    server.broker.set_price("MSFT", "414.00")  # the entry fills
    guard.gateway.refresh("MSFT")
    server.broker.set_price("MSFT", "405.00")  # the replaced stop fires
    guard.gateway.refresh("MSFT")

    exits = claims_of(guard, "MSFT", Kind.EXIT)
    assert [c.client_order_id for c in exits if c.client_order_id == "my-stop"] == []
    [fired] = [c for c in exits if c.broker_order_id == str(new.id)]
    assert (fired.client_order_id, fired.state, fired.filled_qty) == (
        stop.client_order_id, ClaimState.FILLED, 5,
    )  # fmt: skip
    assert held(server, "MSFT") == ledger_qty(guard, "MSFT") == 0
