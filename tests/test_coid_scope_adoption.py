"""An order found by its client_order_id at a broker is adopted only by the claim that holds the id there.

Ids are unique per broker account (migration 0012), so two claims in one store may carry one
id: bot-a's on account x, bot-b's on account y. A lookup by id at account y finds bot-b's
order; bot-a's claim (re-pointed to y with its decision unresolved, or reconciled by a pass
whose broker is y) must never adopt it as its own (G2/G4: no other agent's order or fill).
Real parts: `PaperBroker` accounts, real stores (SQLite, PostgreSQL).
"""

from __future__ import annotations

import contextlib

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from tradeguard import GuardedTradingClient, ManualClock, PaperBroker
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, OrderRequest
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import OutcomeUnknown
from tradeguard.paper.prices import FixedPrices
from tradeguard.ports import Broker, ForwardingBroker, account_key_of
from tradeguard.reconcile import Reconciler
from tradeguard.store import ClaimStore

SETTINGS = Settings(recent_activity_secs=0, position_settle_secs=0)


def paper(clock: ManualClock) -> PaperBroker:
    return PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock)  # type: ignore[arg-type]


def client(broker: Broker, store_url: str, agent: str, clock: ManualClock) -> GuardedTradingClient:
    return GuardedTradingClient(
        store=store_url, agent_id=agent, settings=SETTINGS, clock=clock, broker=broker
    )


def buy(coid: str = "entry-1") -> MarketOrderRequest:
    return MarketOrderRequest(symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                              client_order_id=coid)  # fmt: skip


class Lost(ForwardingBroker):
    """Account x, where a send's answer is lost and the order never lands (a timeout)."""

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        raise OutcomeUnknown("read timed out")


def _unresolved_claim_of_a_on(x: PaperBroker, store_url: str, clock: ManualClock) -> str:
    """bot-a on account x sends "entry-1"; its answer is lost and nothing landed (UNKNOWN)."""
    bot_a = client(Lost(x), store_url, "bot-a", clock)
    try:
        with contextlib.suppress(Exception):
            bot_a.submit_order(buy())
    finally:
        bot_a.close()
    with ClaimStore(store_url) as store:
        (claim,) = store.list_claims(agent_id="bot-a")
        assert claim.state is ClaimState.UNKNOWN and x.orders() == []
        return claim.key


def test_a_re_pointed_agent_never_adopts_the_other_accounts_order_under_its_id(store_url: str) -> None:
    clock = ManualClock()
    x, y = paper(clock), paper(clock)
    key = _unresolved_claim_of_a_on(x, store_url, clock)
    bot_b = client(y, store_url, "bot-b", clock)
    try:
        placed_b = bot_b.submit_order(buy())  # account y's own "entry-1"
    finally:
        bot_b.close()
    # bot-a now trades account y; its start-up pass looks its unresolved claim up there.
    bot_a = client(y, store_url, "bot-a", clock)
    try:
        clock.advance(120)  # past the grace period: the claim is looked up at y
        bot_a.gateway.reconcile()
    finally:
        bot_a.close()
    with ClaimStore(store_url) as store:
        mine = store.get(key)
        assert mine is not None and mine.broker_order_id != str(placed_b.id)  # type: ignore[union-attr]
        # Account y says nothing of its own order (on x): it stays UNKNOWN, visible (G2).
        assert mine.state is ClaimState.UNKNOWN
        assert store.position("bot-a", "SPY").is_flat
        assert store.position("bot-b", "SPY").qty == 1


def test_a_pass_on_account_y_adopts_y_s_order_into_y_s_claim_only(store_url: str) -> None:
    clock = ManualClock()
    x, y = paper(clock), paper(clock)
    key = _unresolved_claim_of_a_on(x, store_url, clock)
    bot_b = client(y, store_url, "bot-b", clock)
    try:
        placed_b = bot_b.submit_order(buy())
    finally:
        bot_b.close()
    with ClaimStore(store_url, settings=SETTINGS, clock=clock) as store:
        store.register_account("bot-a", account_key_of(y))  # re-pointed, its claim still x's
        clock.advance(120)
        Reconciler(y, store).run()  # a whole-store pass with account y's broker
        mine = store.get(key)
        assert mine is not None and mine.broker_order_id != str(placed_b.id)  # type: ignore[union-attr]
        assert mine.state is ClaimState.UNKNOWN and store.position("bot-a", "SPY").is_flat
        theirs = store.get_by_client_order_id("entry-1", account_key=account_key_of(y))
        assert theirs is not None and theirs.agent_id == "bot-b"
        assert theirs.broker_order_id == str(placed_b.id)  # type: ignore[union-attr]


def test_a_re_pointed_agent_never_resends_its_old_accounts_id_on_the_new_account(store_url: str) -> None:
    clock = ManualClock()
    x, y = paper(clock), paper(clock)
    key = _unresolved_claim_of_a_on(x, store_url, clock)
    bot_a = client(y, store_url, "bot-a", clock)  # re-pointed to y
    try:
        clock.advance(120)
        # Absent at y proves nothing of x, where it was sent: it stays UNKNOWN (G2; it was
        # settled NOT_SENT on y's word before `Claim.coid_scope` was read).
        bot_a.gateway.reconcile()
        with ClaimStore(store_url) as store:
            assert (claim := store.get(key)) is not None and claim.state is ClaimState.UNKNOWN
        # Its retry would send x's "entry-1" on y, where y's own claim of the id would adopt it.
        with pytest.raises(APIError) as refused:
            bot_a.submit_order(buy())
        # Answered as the unresolved order it is (Alpaca's 504: it may exist), nothing sent or moved.
        assert refused.value.status_code == 504 and "another broker account" in str(refused.value)
        assert y.orders() == []
        with ClaimStore(store_url) as store:
            assert (claim := store.get(key)) is not None and claim.state is ClaimState.UNKNOWN
    finally:
        bot_a.close()
    bot_b = client(y, store_url, "bot-b", clock)
    try:
        placed_b = bot_b.submit_order(buy())  # y's own "entry-1": placed, and bot-b's alone
    finally:
        bot_b.close()
    assert [o.id for o in y.orders()] == [str(placed_b.id)]  # type: ignore[union-attr]
    with ClaimStore(store_url) as store:
        assert store.position("bot-a", "SPY").is_flat and store.position("bot-b", "SPY").qty == 1
