"""Audit 67: an order listing that trails a fill the positions read already shows (ALPACA.md).

Alpaca's orders and positions endpoints can disagree for a few seconds after a fill, in either
direction. Here the listing (`GET /v2/orders?status=...`) trails: another agent's resting limit
buy has filled, the positions read shows its shares, and the listing still shows the order open
with nothing filled (the lookup by client_order_id is current). A one-agent reconcile pass must
not book those shares into its own agent as a missed fill (ADOPT_DRIFT): the other agent's claim
books them when its order is read, and the account's ledgers would then hold twice what the
broker does, so this agent's next exit sells the other agent's shares (G3, G4).
An exit sizing reads other agents' orders in motion by client_order_id too, however many rest
(a grid), up to a bound past which what an order the listing shows resting may still fill is held
back whole. Real parts: the paper broker behind a listing that trails by `LAG` of the manual clock, stores on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from tests.gateway_kit import broker_qty
from tradeguard import ManualClock, OrderGateway, PaperBroker
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, OrderRequest, OrderType, ReplaceRequest, Side
from tradeguard.errors import OutcomeUnknown
from tradeguard.execution import Outcome
from tradeguard.ports import ForwardingBroker
from tradeguard.reconcile.runner import _LOOKUPS_PER_SIZING
from tradeguard.store import ClaimStore

LAG = timedelta(seconds=5)  # "a few seconds"


class MovingPrices:
    """Prices a test sets as it goes (a resting limit order fills when the price reaches it)."""

    def __init__(self, prices: Mapping[str, str]) -> None:
        self.prices = {s: Decimal(p) for s, p in prices.items()}

    def price(self, symbol: str, at: datetime) -> Decimal | None:
        return self.prices.get(symbol.upper())

    @property
    def symbols(self) -> list[str]:
        return sorted(self.prices)


class TrailingListing(ForwardingBroker):
    """Order listings as they were `LAG` ago on the clock; positions and lookups as they are."""

    def __init__(self, inner: PaperBroker, clock: ManualClock) -> None:
        super().__init__(inner)
        self.paper = inner
        self.clock = clock
        self.history: list[tuple[datetime, dict[str, BrokerOrder]]] = [(clock.now() - LAG, {})]

    def note(self) -> None:
        """Remember the orders as they are now (after every change)."""
        orders = {o.id: o for o in self.paper.list_orders(status="all", limit=10_000)}
        self.history.append((self.clock.now(), orders))

    held: list[OrderRequest]

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        if getattr(self, "held", None) is not None:
            self.held.append(request)  # in flight: it lands when the test says (`land`)
            raise OutcomeUnknown("read timeout (the POST is still in flight)")
        try:
            return self.paper.submit_order(request)
        finally:
            self.note()

    def land(self) -> None:
        """The POSTs held in flight reach the broker now (after two probes found nothing)."""
        held, self.held = self.held, None  # type: ignore[assignment]
        for request in held:
            self.paper.submit_order(request)
        self.note()

    def replace_order(self, order_id: str, request: ReplaceRequest) -> BrokerOrder:
        try:
            return self.paper.replace_order(order_id, request)
        finally:
            self.note()

    def cancel_order(self, order_id: str) -> None:
        try:
            self.paper.cancel_order(order_id)
        finally:
            self.note()

    def list_orders(
        self,
        *,
        status: str = "open",
        symbols: list[str] | None = None,
        after: datetime | None = None,
        limit: int = 500,
    ) -> list[BrokerOrder]:
        horizon = self.clock.now() - LAG
        shown = [orders for at, orders in self.history if at <= horizon][-1]
        wanted = set(symbols) if symbols else None
        listed = [
            o
            for o in shown.values()
            if (status == "all" or (status == "open") == o.status.is_open)
            and (wanted is None or o.symbol in wanted)
            and (after is None or o.created_at > after)
        ]
        return sorted(listed, key=lambda o: o.created_at, reverse=True)[:limit]


World = tuple[ManualClock, MovingPrices, TrailingListing, OrderGateway, OrderGateway]


@pytest.fixture
def world(store_url: str) -> Iterator[World]:
    clock = ManualClock()
    prices = MovingPrices({"SPY": "500"})
    account = TrailingListing(PaperBroker(prices=prices, clock=clock), clock)
    settings = Settings()
    stores = [ClaimStore(store_url, settings=settings, clock=clock) for _ in range(2)]
    a, b = (
        OrderGateway(account, s, agent_id=agent, settings=settings, clock=clock, reconcile_on_start=False)
        for s, agent in zip(stores, ("a", "b"), strict=True)
    )
    try:
        yield clock, prices, account, a, b
    finally:
        for s in stores:
            s.close()


def test_a_pass_never_books_another_agents_fill_the_listing_still_shows_unfilled(world: World) -> None:
    clock, prices, account, a, b = world
    assert a.enter("SPY", qty=5, intent="a-in").outcome is Outcome.SUBMITTED
    resting = b.enter("SPY", qty=10, intent="b-dip", order_type="limit", limit_price="490")
    assert resting.outcome is Outcome.SUBMITTED and resting.claim is not None
    clock.advance(120)  # everything settled; B's buy rests unfilled
    prices.prices["SPY"] = Decimal("489")
    account.paper.step()
    account.note()
    assert broker_qty(account.paper, "SPY") == 15  # B's buy filled; the listing shows it open yet
    clock.advance(1)

    a.reconcile()

    assert a.position("SPY").qty == 5  # not A's: B's claim books them
    b.reconcile()
    assert b.position("SPY").qty == 10
    clock.advance(120)
    a.reconcile()
    b.reconcile()
    assert a.position("SPY").qty + b.position("SPY").qty == broker_qty(account.paper, "SPY")
    assert a.exit("SPY", intent="a-out").outcome is Outcome.SUBMITTED
    assert broker_qty(account.paper, "SPY") == 10  # B's shares are still there


def test_a_cleared_turn_is_not_readopted_from_another_agents_fill_the_listing_shows_resting(
    world: World,
) -> None:
    """A phantom cleared, then another agent's buy of the same size fills: not a re-adoption."""
    clock, prices, account, a, b = world
    assert a.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    resting = b.enter("SPY", qty=10, intent="b-dip", order_type="limit", limit_price="490")
    assert resting.outcome is Outcome.SUBMITTED
    clock.advance(120)
    by_hand = OrderRequest(  # a limit at the market: a market sell would meet B's bid (wash trade)
        "SPY", Side.SELL, "by-hand", qty=Decimal(10), order_type=OrderType.LIMIT, limit_price=Decimal(500)
    )
    account.paper.submit_order(by_hand)  # A's 10 are gone
    account.note()
    clock.advance(120)
    a.reconcile()
    assert a.position("SPY").is_flat  # the phantom cleared; B's buy rests unfilled meanwhile
    clock.advance(10)
    prices.prices["SPY"] = Decimal("489")
    account.paper.step()
    account.note()
    assert broker_qty(account.paper, "SPY") == 10  # B's 10; the listing shows the order open yet
    clock.advance(1)

    a.reconcile()

    assert a.position("SPY").is_flat  # not re-adopted: B's claim books them
    b.reconcile()
    assert b.position("SPY").qty == 10


def test_a_pass_never_books_a_fill_of_another_agents_grid_the_listing_shows_resting(world: World) -> None:
    """More than a few orders in motion are read with one listing elsewhere; not for an adoption."""
    clock, prices, account, a, b = world
    assert a.enter("SPY", qty=5, intent="a-in").outcome is Outcome.SUBMITTED
    for n, price in enumerate(("490", "480", "470", "460")):
        grid = b.enter("SPY", qty=10, intent=f"b-grid-{n}", order_type="limit", limit_price=price)
        assert grid.outcome is Outcome.SUBMITTED
    clock.advance(120)
    prices.prices["SPY"] = Decimal("489")  # the top of B's grid fills
    account.paper.step()
    account.note()
    assert broker_qty(account.paper, "SPY") == 15
    clock.advance(1)

    a.reconcile()

    assert a.position("SPY").qty == 5  # not A's: B's claim books them
    b.reconcile()
    assert b.position("SPY").qty == 10


def test_a_phantom_exit_never_sells_a_grid_fill_the_listing_still_shows_resting(world: World) -> None:
    clock, prices, account, a, b = world
    assert a.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    clock.advance(120)
    # Sold by hand: A's 10 are a phantom now (long enough ago for every read to show it).
    account.paper.submit_order(OrderRequest("SPY", Side.SELL, "by-hand", qty=Decimal(10)))
    account.note()
    clock.advance(120)
    for n, price in enumerate(("490", "480", "470", "460")):
        grid = b.enter("SPY", qty=10, intent=f"b-grid-{n}", order_type="limit", limit_price=price)
        assert grid.outcome is Outcome.SUBMITTED
    clock.advance(120)
    prices.prices["SPY"] = Decimal("489")  # the top of B's grid fills: B's 10, unbooked yet
    account.paper.step()
    account.note()
    clock.advance(1)

    result = a.exit("SPY", intent="a-out", order_type="limit", limit_price="489")

    assert result.outcome is Outcome.SKIPPED, result.reason  # nothing of A's is left to sell
    assert broker_qty(account.paper, "SPY") == 10  # B's 10 are still there


def test_a_pass_never_books_another_agents_order_that_landed_after_it_was_marked_not_sent(
    world: World,
) -> None:
    """An order proven absent on two probes may still land late (ALPACA.md): not this agent's fill."""
    clock, _prices, account, a, b = world
    assert a.enter("SPY", qty=5, intent="a-in").outcome is Outcome.SUBMITTED
    account.held = []
    assert b.enter("SPY", qty=10, intent="b-in").outcome is Outcome.UNKNOWN
    clock.advance(60)
    report = b.reconcile()  # two probes a gap apart, both 404: NOT_SENT
    assert [x.kind.value for x in report.applied] == ["mark_not_sent"], report
    account.land()  # B's POST lands after all and fills
    clock.advance(60)
    assert broker_qty(account.paper, "SPY") == 15

    a.reconcile()

    assert a.position("SPY").qty == 5  # not A's: B's claim adopts its order
    b.reconcile()
    assert b.position("SPY").qty == 10
    assert a.position("SPY").qty + b.position("SPY").qty == broker_qty(account.paper, "SPY")


def test_past_the_lookups_an_exit_holds_back_all_an_unread_order_may_fill(world: World) -> None:
    """A grid larger than one sizing reads by id: what is left unread may have filled, all of it."""
    clock, prices, account, a, b = world
    assert a.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    clock.advance(120)
    account.paper.submit_order(OrderRequest("SPY", Side.SELL, "by-hand", qty=Decimal(10)))  # a phantom
    account.note()
    clock.advance(120)
    for n in range(_LOOKUPS_PER_SIZING):  # read by id, those that may fill most first
        far = b.enter("SPY", qty=2, intent=f"b-far-{n}", order_type="limit", limit_price=str(300 + n))
        assert far.outcome is Outcome.SUBMITTED
    for n in range(5):  # left to the listing, which still shows them resting once they fill
        near = b.enter("SPY", qty=1, intent=f"b-near-{n}", order_type="limit", limit_price=str(490 + n))
        assert near.outcome is Outcome.SUBMITTED
    clock.advance(120)
    prices.prices["SPY"] = Decimal("489")  # the five near ones fill: B's 5, unbooked yet
    account.paper.step()
    account.note()
    assert broker_qty(account.paper, "SPY") == 5
    clock.advance(1)

    result = a.exit("SPY", intent="a-out", order_type="limit", limit_price="489")

    assert result.outcome is Outcome.SKIPPED, result.reason
    assert "not read: all it may fill" in result.reason
    assert broker_qty(account.paper, "SPY") == 5  # B's 5 are still there


def test_past_the_lookups_a_real_exit_sells_what_the_unread_orders_leave(world: World) -> None:
    """The cost of the bound: A's own shares beyond what B's unread orders may fill are sold."""
    clock, _prices, account, a, b = world
    assert a.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    for n in range(_LOOKUPS_PER_SIZING + 4):
        grid = b.enter("SPY", qty=1, intent=f"b-grid-{n}", order_type="limit", limit_price=str(300 + n))
        assert grid.outcome is Outcome.SUBMITTED
    clock.advance(120)

    result = a.exit("SPY", intent="a-out", order_type="limit", limit_price="499")

    assert result.outcome is Outcome.SUBMITTED, result.reason
    assert result.claim is not None and result.claim.order_qty == 6  # 4 held back for B's unread orders
    assert broker_qty(account.paper, "SPY") == 4  # A's 4 it was not let sell
