"""G3 with several agents on one account and a positions endpoint that trails fills.

An exit is sized from the broker's `qty_available` less what the other agents on the account hold
by their ledgers. Right after another agent's fill the two disagree: its ledger moved, Alpaca's
positions endpoint has not yet (it trails fills by seconds). Another agent's sell then still
shows in the read, and an agent whose own ledger is a phantom sold those shares (audit 17 #1,
found again by test_stateful on PostgreSQL); another agent's buy does not show yet, and a real
exit was answered "nothing to sell". The exit now waits until the other agents' latest fill in
the symbol is past `position_settle_secs`, then reads. Real parts: the paper broker behind a
positions endpoint that trails by 10 s of the manual clock, stores on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeVar

import pytest

from tests.gateway_kit import broker_qty
from tradeguard import ManualClock, OrderGateway, PaperBroker
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, BrokerPosition, OrderRequest, Side
from tradeguard.execution import Outcome
from tradeguard.paper.prices import FixedPrices
from tradeguard.ports import ForwardingBroker
from tradeguard.store import ClaimStore

LAG = timedelta(seconds=10)  # less than the settle horizon (30 s): a lag the guard must survive
SETTINGS = Settings(recent_activity_secs=0)


class Trailing(ForwardingBroker):
    """Positions as they were `LAG` ago on the clock; orders as they are."""

    def __init__(self, inner: PaperBroker, clock: ManualClock) -> None:
        super().__init__(inner)
        self.clock = clock
        self.history: list[tuple[datetime, dict[str, BrokerPosition]]] = []
        self.note()

    def note(self) -> None:
        """Remember the positions as they are now (after every change)."""
        self.history.append((self.clock.now(), {p.symbol: p for p in self.inner.list_positions()}))

    def _seen(self) -> dict[str, BrokerPosition]:
        shown = self.history[0][1]
        for at, positions in self.history:
            if at <= self.clock.now() - LAG:
                shown = positions
        return shown

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        order = self.inner.submit_order(request)
        self.note()
        return order

    def list_positions(self) -> list[BrokerPosition]:
        return list(self._seen().values())

    def get_position(self, symbol: str) -> BrokerPosition | None:
        return self._seen().get(symbol)


_T = TypeVar("_T", bound=Trailing)


@contextmanager
def two_agents(
    store_url: str, trailing: type[_T], settings: Settings = SETTINGS
) -> Iterator[tuple[ManualClock, _T, OrderGateway, OrderGateway]]:
    """Agents "a" and "b", each with its own store connection, on one account that trails."""
    clock = ManualClock()
    account = trailing(PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock), clock)
    stores = [ClaimStore(store_url, settings=settings, clock=clock) for _ in range(2)]
    a, b = (
        OrderGateway(account, s, agent_id=agent, settings=settings, clock=clock)
        for s, agent in zip(stores, ("a", "b"), strict=True)
    )
    try:
        yield clock, account, a, b
    finally:
        for s in stores:
            s.close()


@pytest.fixture
def world(store_url: str) -> Iterator[tuple[ManualClock, Trailing, OrderGateway, OrderGateway]]:
    with two_agents(store_url, Trailing) as made:
        yield made


def test_a_phantom_agent_never_sells_the_shares_another_agent_just_kept(
    world: tuple[ManualClock, Trailing, OrderGateway, OrderGateway],
) -> None:
    clock, account, a, b = world
    assert a.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    assert b.enter("SPY", qty=20, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    # Sold by hand: A's 10 are a phantom now.
    account.inner.submit_order(OrderRequest("SPY", Side.SELL, "by-hand", qty=Decimal(10)))
    account.note()
    clock.advance(60)
    assert b.exit("SPY", qty=10, intent="b-half").outcome is Outcome.SUBMITTED  # B keeps 10
    clock.advance(5)  # the positions endpoint still shows 20

    result = a.exit("SPY", intent="a-out")

    assert result.outcome is Outcome.SKIPPED, result.reason  # nothing of A's is left to sell
    assert broker_qty(account.inner, "SPY") == 10  # B's 10 are still there
    assert b.position("SPY").qty == 10


def test_an_exit_right_after_another_agents_buy_sells_what_the_agent_holds(
    world: tuple[ManualClock, Trailing, OrderGateway, OrderGateway],
) -> None:
    clock, account, a, b = world
    assert a.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    assert b.enter("SPY", qty=10, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(5)  # the positions endpoint does not show B's 10 yet

    result = a.exit("SPY", intent="a-out")

    assert result.outcome is Outcome.SUBMITTED, result.reason  # not "nothing to sell"
    assert result.claim is not None and result.claim.order_qty == 10
    assert broker_qty(account.inner, "SPY") == 10 and a.position("SPY").is_flat


def test_an_exit_with_no_recent_fill_of_another_agent_does_not_wait(
    world: tuple[ManualClock, Trailing, OrderGateway, OrderGateway],
) -> None:
    clock, _account, a, b = world
    assert a.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    assert b.enter("SPY", qty=10, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    before = clock.now()
    assert a.exit("SPY", intent="a-out").outcome is Outcome.SUBMITTED
    assert clock.now() == before
