"""Audit 66: an agent re-pointed to another broker account still holds its shares on the old one (G3).

Bot "a" bought 10 SPY on account x, then was moved to account y (same agent id, same store) with
its turn still open: the 10 shares stay at x. Agent "c" on x then entered and its 5 were sold by
hand: x holds 10, the ledgers hold 15 (a 10, c 5). By the guard's rule c's exit must not sell
shares another agent's ledger holds (the test of a lagging read in
`test_shared_account_lagging_read.py` takes the same view): nothing to sell. But exit sizing,
adoption and x's reconcile passes counted other agents by their *registered* account only, and
a's is y now: c sold 5 of a's shares at x, a drop-in's first close adopted them, c's pass booked
them into c as a missed fill, and nothing ever settled a's turn once x's shares were gone (y's
passes rightly refuse: a flat read of y says nothing of x). A holder's open turn now also counts
on every account its claims were made on (`coid_scope`), and only there when its claims all name
their account: agent "b" on y sells its own shares beside a's turn at x. An entry of a on y while
its SPY turn holds x's fills is refused (one turn never holds two accounts' fills, else the view
could never converge). Real parts: two `PaperBroker` accounts, a SQLite file, PostgreSQL, the
in-memory store.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from tradeguard import ManualClock, OrderGateway, Outcome, PaperBroker
from tradeguard.config import Settings
from tradeguard.domain import OrderRequest, Side
from tradeguard.paper.prices import FixedPrices
from tradeguard.ports import ClaimLedger
from tradeguard.reconcile import ActionKind, Reconciler
from tradeguard.store import ClaimStore, MemoryClaimStore

SETTINGS = Settings(recent_activity_secs=0, position_settle_secs=0)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "memory"])
def world(request: pytest.FixtureRequest) -> Iterator[tuple[ManualClock, ClaimLedger]]:
    clock = ManualClock()
    store: ClaimStore | MemoryClaimStore
    if request.param == "memory":
        store = MemoryClaimStore(settings=SETTINGS, clock=clock)
    else:
        url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
        store = ClaimStore(url, settings=SETTINGS, clock=clock)
    with store:
        yield clock, store


def paper(clock: ManualClock) -> PaperBroker:
    return PaperBroker(prices=FixedPrices({"SPY": "500", "QQQ": "400"}), clock=clock)  # type: ignore[arg-type]


def gateway(broker: PaperBroker, store: ClaimLedger, agent: str, clock: ManualClock) -> OrderGateway:
    gw = OrderGateway(broker, store, agent_id=agent, settings=SETTINGS, clock=clock)
    gw.position("SPY")  # started: its account is registered
    return gw


def held(broker: PaperBroker) -> Decimal:
    position = broker.get_position("SPY")
    return Decimal(0) if position is None else position.qty


def test_an_agent_on_the_old_account_never_sells_the_shares_a_repointed_agent_left_there(
    world: tuple[ManualClock, ClaimLedger],
) -> None:
    clock, store = world
    x, y = paper(clock), paper(clock)
    a_on_x = gateway(x, store, "a", clock)
    assert a_on_x.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    a_on_y = gateway(y, store, "a", clock)  # re-pointed: a's 10 are still at x
    c_on_x = gateway(x, store, "c", clock)
    assert c_on_x.enter("SPY", qty=5, intent="c-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    x.submit_order(OrderRequest("SPY", Side.SELL, "by-hand", qty=Decimal(5)))  # c's 5 are gone
    clock.advance(60)

    result = c_on_x.exit("SPY", intent="c-out")

    assert result.outcome is Outcome.SKIPPED, result.reason  # the 10 left are a's by the ledgers
    assert held(x) == 10
    assert a_on_y.position("SPY", resolve=False).qty == 10


def test_an_agent_on_the_old_account_never_adopts_the_shares_a_repointed_agent_left_there(
    world: tuple[ManualClock, ClaimLedger],
) -> None:
    """A drop-in bot's first close adopts the shares no ledger on its account holds: a's are held."""
    clock, store = world
    x, y = paper(clock), paper(clock)
    a_on_x = gateway(x, store, "a", clock)
    assert a_on_x.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    gateway(y, store, "a", clock)  # re-pointed: a's 10 are still at x
    c_on_x = gateway(x, store, "c", clock)
    clock.advance(60)

    adopted = c_on_x.adopt_broker_position("SPY", why="first close of a drop-in bot")

    assert adopted.is_flat, adopted
    assert c_on_x.exit("SPY", intent="c-out").outcome is Outcome.SKIPPED
    assert held(x) == 10


def test_the_old_accounts_pass_waits_for_a_repointed_agents_order_still_working_there(
    world: tuple[ManualClock, ClaimLedger],
) -> None:
    """a's sell resting at x fills after a was re-pointed: its ledger books it at its next refresh."""
    clock, store = world
    x, y = paper(clock), paper(clock)
    a_on_x = gateway(x, store, "a", clock)
    assert a_on_x.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    c_on_x = gateway(x, store, "c", clock)
    assert c_on_x.enter("SPY", qty=5, intent="c-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    sell = a_on_x.exit("SPY", qty=4, intent="a-out", order_type="limit", limit_price=Decimal(600))
    assert sell.outcome is Outcome.SUBMITTED, sell.reason
    clock.advance(60)
    gateway(y, store, "a", clock)  # re-pointed while its sell rests at x
    x.set_price("SPY", "650")  # the sell fills: x holds 11, a's ledger still 10 until it is read
    clock.advance(60)

    report = c_on_x.reconcile()

    assert report.actions == []  # a's order is in motion here: the symbol waits, no drift
    assert c_on_x.position("SPY", resolve=False).qty == 5


def test_an_agent_on_the_new_account_sells_its_own_shares_beside_a_repointed_agents_old_turn(
    world: tuple[ManualClock, ClaimLedger],
) -> None:
    clock, store = world
    x, y = paper(clock), paper(clock)
    a_on_x = gateway(x, store, "a", clock)
    assert a_on_x.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    b_on_y = gateway(y, store, "b", clock)
    assert b_on_y.enter("SPY", qty=20, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    gateway(y, store, "a", clock)  # re-pointed: a's 10 are at x, none at y
    clock.advance(60)

    result = b_on_y.exit("SPY", intent="b-out")

    assert result.outcome is Outcome.SUBMITTED, result.reason
    assert result.claim is not None and result.claim.order_qty == 20
    assert held(y) == 0


def test_the_old_accounts_pass_never_books_a_repointed_agents_shares_into_another_agent(
    world: tuple[ManualClock, ClaimLedger],
) -> None:
    clock, store = world
    x, y = paper(clock), paper(clock)
    a_on_x = gateway(x, store, "a", clock)
    assert a_on_x.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    gateway(y, store, "a", clock)  # re-pointed: a's 10 are still at x
    c_on_x = gateway(x, store, "c", clock)
    assert c_on_x.enter("SPY", qty=5, intent="c-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    x.submit_order(OrderRequest("SPY", Side.SELL, "by-hand", qty=Decimal(5)))  # x holds 10: a's
    clock.advance(60)

    report = c_on_x.reconcile()

    assert c_on_x.position("SPY", resolve=False).qty == 5  # not a's 10: whose 5 went is unknown
    assert [a.kind for a in report.actions] == [ActionKind.REPORT_DRIFT]


def test_the_old_accounts_pass_clears_a_repointed_agents_turn_there_once_its_shares_are_gone(
    world: tuple[ManualClock, ClaimLedger],
) -> None:
    """Only the account the shares were on can say they are gone: its pass settles the old turn."""
    clock, store = world
    x, y = paper(clock), paper(clock)
    a_on_x = gateway(x, store, "a", clock)
    assert a_on_x.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    a_on_y = gateway(y, store, "a", clock)
    clock.advance(60)
    passes = Reconciler(x, store, settings=SETTINGS, clock=clock)
    assert passes.run().actions == []  # x holds a's 10: no orphan
    x.submit_order(OrderRequest("SPY", Side.SELL, "by-hand", qty=Decimal(10)))
    clock.advance(60)

    report = passes.run()

    assert [a.kind for a in report.actions] == [ActionKind.CLEAR_PHANTOM]
    assert a_on_y.position("SPY", resolve=False).is_flat
    assert a_on_y.reconcile().actions == []  # nothing left to report on y either


def test_a_turn_is_never_bought_on_both_accounts_and_the_view_converges(
    world: tuple[ManualClock, ClaimLedger],
) -> None:
    """One open turn per agent and symbol: an entry on the new account beside the old turn is refused.

    Were both accounts' fills in one turn, neither account's read could settle it (each holds
    part; a pass leaves a turn holding another account's fills alone) and the view would never
    converge (G4). The old turn settles on its own account's word; then the agent trades here.
    """
    clock, store = world
    x, y = paper(clock), paper(clock)
    a_on_x = gateway(x, store, "a", clock)
    assert a_on_x.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    a_on_y = gateway(y, store, "a", clock)

    refused = a_on_y.enter("SPY", qty=5, intent="a-in-y")

    assert refused.outcome is Outcome.NOT_SENT and refused.claim is None, refused.reason
    assert "another broker account" in refused.reason and "a-in-y" in refused.reason
    assert held(y) == 0 and y.orders() == []
    assert a_on_y.enter("QQQ", qty=1, intent="a-qqq").outcome is Outcome.SUBMITTED  # other symbols trade
    x.submit_order(OrderRequest("SPY", Side.SELL, "by-hand", qty=Decimal(10)))  # x is flat
    clock.advance(60)
    for _ in range(3):
        a_on_y.reconcile()
        Reconciler(x, store, settings=SETTINGS, clock=clock).run()
        clock.advance(60)
    assert a_on_y.position("SPY", resolve=False).is_flat  # x's pass settled x's turn

    again = a_on_y.enter("SPY", qty=5, intent="a-in-y")  # the same decision, retried: sent now

    assert again.outcome is Outcome.SUBMITTED, again.reason
    assert a_on_y.position("SPY").qty == 5 == held(y)
    assert a_on_y.exit("SPY", intent="a-out").outcome is Outcome.SUBMITTED
    clock.advance(60)
    assert a_on_y.reconcile().actions == []
    assert Reconciler(x, store, settings=SETTINGS, clock=clock).run().actions == []
    assert a_on_y.position("SPY", resolve=False).is_flat and held(x) == held(y) == 0


def test_an_entry_on_the_new_account_waits_for_the_old_accounts_order_still_resting(
    world: tuple[ManualClock, ClaimLedger],
) -> None:
    """a's buy resting at x would fill into the turn an entry at y opens: refused until it ends."""
    clock, store = world
    x, y = paper(clock), paper(clock)
    a_on_x = gateway(x, store, "a", clock)
    resting = a_on_x.enter("SPY", qty=10, intent="a-dip", order_type="limit", limit_price="400")
    assert resting.outcome is Outcome.SUBMITTED and resting.order is not None
    clock.advance(60)
    a_on_y = gateway(y, store, "a", clock)

    refused = a_on_y.enter("SPY", qty=5, intent="a-in-y")

    assert refused.outcome is Outcome.NOT_SENT and "orders are made on another" in refused.reason
    assert y.orders() == []
    a_on_x.cancel(resting.order.id)  # ended at x: nothing of a's is in motion there
    clock.advance(60)
    assert a_on_y.enter("SPY", qty=5, intent="a-in-y").outcome is Outcome.SUBMITTED
    assert a_on_y.position("SPY").qty == 5 == held(y) and held(x) == 0


def test_an_agent_re_pointed_back_still_holds_its_old_turn_against_the_agents_there(
    world: tuple[ManualClock, ClaimLedger],
) -> None:
    """x -> y -> x: the turn opened before a's latest registration is placed by its claims (x's)."""
    clock, store = world
    x, y = paper(clock), paper(clock)
    a_on_x = gateway(x, store, "a", clock)
    assert a_on_x.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    gateway(y, store, "a", clock)
    clock.advance(60)
    gateway(x, store, "a", clock)  # back on x
    c_on_x = gateway(x, store, "c", clock)
    assert c_on_x.enter("SPY", qty=5, intent="c-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    x.submit_order(OrderRequest("SPY", Side.SELL, "by-hand", qty=Decimal(5)))  # c's 5 are gone
    clock.advance(60)

    result = c_on_x.exit("SPY", intent="c-out")

    assert result.outcome is Outcome.SKIPPED, result.reason  # the 10 left are a's
    assert held(x) == 10
