"""G3 when a positions read trails the holds of exits the broker acknowledged moments ago (audit 33).

An exit is sized from the broker's `qty_available` less the exits it may not show yet: sizing
counts an exit acknowledged before the read as already out of `qty_available`
(`domain.ledger.acknowledged_before`). Alpaca's positions endpoint trails the account by seconds;
a read that trails a resting exit's acknowledgement still counts its shares as available, and an
agent whose ledger is partly a phantom (shares closed by hand) sized a second exit from them,
beside another agent on the account: the other agent's shares were sold. The agent's own resting
exit (another process of it, another decision) and another agent's both do it. Now the shares the
read shows held by open orders must cover the acknowledged exits counted as out of it; what they
do not cover is held back (`Reconciler.holds_the_read_misses`). Real parts: the paper broker
behind a positions endpoint that trails by 10 s of the manual clock (its `qty_available` too),
stores on SQLite and PostgreSQL (one connection per process).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.gateway_kit import broker_qty
from tests.test_shared_account_lagging_read import LAG, Trailing
from tradeguard import ManualClock, OrderGateway, PaperBroker
from tradeguard.config import Settings
from tradeguard.domain import OrderClass, OrderType, ReplaceRequest, Side, TimeInForce
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.errors import ConfigError
from tradeguard.execution import Outcome
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore

SETTINGS = Settings(recent_activity_secs=0)  # position_settle_secs 30 s, the lag 10 s
assert LAG.total_seconds() < SETTINGS.position_settle_secs

World = tuple[ManualClock, Trailing, dict[str, OrderGateway]]


@pytest.fixture
def world(store_url: str) -> Iterator[World]:
    """Agent "a" in two processes ("a1", "a2": a store connection each) and agent "b", one account."""
    clock = ManualClock()
    account = Trailing(PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock), clock)
    stores = [ClaimStore(store_url, settings=SETTINGS, clock=clock) for _ in range(3)]
    gateways = {
        name: OrderGateway(account, s, agent_id=name[0], settings=SETTINGS, clock=clock)
        for s, name in zip(stores, ("a1", "a2", "b"), strict=True)
    }
    yield clock, account, gateways
    for s in stores:
        s.close()


def _a_partly_a_phantom(world: World) -> None:
    """A buys 10 and B 10; a minute later a person sells 5: A's ledger says 10, A truly holds 5."""
    clock, account, bots = world
    assert bots["a1"].enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    assert bots["b"].enter("SPY", qty=10, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    account.inner.close_position("SPY", qty=Decimal(5))
    account.note()
    clock.advance(60)


def test_an_exit_beside_the_agents_own_resting_exit_the_read_does_not_show_sells_nothing_of_anothers(
    world: World,
) -> None:
    """a1 rests a take-profit for A's 5 real shares; 5 s later a2 closes the rest: the read still
    shows the 5 as available, and the ledger's other 5 are the phantom, so nothing is A's."""
    clock, account, bots = world
    _a_partly_a_phantom(world)
    resting = bots["a1"].exit("SPY", qty=5, intent="a-tp", order_type="limit", limit_price=600)
    assert resting.outcome is Outcome.SUBMITTED, resting.reason
    clock.advance(5)  # within the lag: the read shows no shares held by the take-profit

    result = bots["a2"].exit("SPY", intent="a-out")

    assert result.outcome is not Outcome.SUBMITTED, result.reason
    assert broker_qty(account.inner, "SPY") == 15  # B's 10 and A's 5 under the take-profit
    assert bots["b"].position("SPY").qty == 10


def test_an_exit_beside_another_agents_resting_exit_the_read_does_not_show_sells_only_its_own(
    world: World,
) -> None:
    """B rests a take-profit for 5 of its 10; 5 s later A (truly 5, ledger 10) closes all: the read
    still shows B's 5 as available, so A may sell its own 5 and no more."""
    clock, account, bots = world
    _a_partly_a_phantom(world)
    resting = bots["b"].exit("SPY", qty=5, intent="b-tp", order_type="limit", limit_price=600)
    assert resting.outcome is Outcome.SUBMITTED, resting.reason
    clock.advance(5)

    result = bots["a1"].exit("SPY", intent="a-out")

    assert result.claim is not None and result.claim.order_qty == 5, result.reason
    assert broker_qty(account.inner, "SPY") == 10  # B's 10, 5 of them under its take-profit
    assert bots["b"].position("SPY").qty == 10


def test_a_lone_agent_scaling_out_with_resting_exits_is_sized_as_before(world: World) -> None:
    """Alone on the account with a current read nothing changes: the second exit sells the rest."""
    clock, account, bots = world
    assert bots["a1"].enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    resting = bots["a1"].exit("SPY", qty=5, intent="a-tp", order_type="limit", limit_price=600)
    assert resting.outcome is Outcome.SUBMITTED, resting.reason
    clock.advance(5)  # the read trails the take-profit: sized as 5 all the same

    result = bots["a2"].exit("SPY", intent="a-out")

    assert result.outcome is Outcome.SUBMITTED, result.reason
    assert result.claim is not None and result.claim.order_qty == 5
    assert broker_qty(account.inner, "SPY") == 5


def test_a_replace_growing_an_exit_the_read_does_not_show_held_is_refused_beyond_what_the_agent_holds(
    world: World,
) -> None:
    """a1's take-profit for A's 5 real shares, moments old, is replaced by one for 10: the read
    shows none of its shares held (and gives them back once more), so the room looked like 10."""
    clock, account, bots = world
    _a_partly_a_phantom(world)
    resting = bots["a1"].exit("SPY", qty=5, intent="a-tp", order_type="limit", limit_price=600)
    assert resting.claim is not None and resting.claim.broker_order_id is not None, resting.reason
    clock.advance(5)

    with pytest.raises(ConfigError, match="would sell more than is held"):
        bots["a1"].replace(resting.claim.broker_order_id, ReplaceRequest(qty=Decimal(10)))

    [order] = account.inner.list_orders(status="open")
    assert order.qty == 5  # the take-profit stands as it was


def test_the_legs_of_another_agents_resting_bracket_entry_hold_back_nothing(world: World) -> None:
    """B's bracket entry rests below the price: its legs are acknowledged claims, but Alpaca holds
    nothing for legs that wait for their entry, so the read shows no hold for them: A (holding 10,
    a current read) still sells its 10."""
    clock, account, bots = world
    assert bots["a1"].enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    spec = OrderSpec(
        qty=Decimal(5), order_type=OrderType.LIMIT, limit_price=Decimal(400),
        time_in_force=TimeInForce.GTC, order_class=OrderClass.BRACKET,
        take_profit_limit_price=Decimal(600), stop_loss_stop_price=Decimal(300),
    )  # fmt: skip
    b = bots["b"]
    assert b.submit(Intent("b", Kind.ENTRY, "SPY", Side.BUY, "b-bracket"), spec).outcome is Outcome.SUBMITTED
    clock.advance(60)

    # A limit above B's resting buy (Alpaca refuses a sell that could trade against it).
    result = bots["a2"].exit("SPY", intent="a-out", order_type="limit", limit_price=450)

    assert result.claim is not None and result.claim.order_qty == 10, result.reason
    assert broker_qty(account.inner, "SPY") == 0
