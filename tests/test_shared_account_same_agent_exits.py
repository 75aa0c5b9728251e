"""G3 on a shared account when two processes of one agent exit at once and the positions read trails.

Found by the shared-account soak (`tests/soak_kit.py`, seed 51): agent A runs two processes; its
ledger is partly a phantom (shares closed by hand); another agent holds real shares. A's process
1 sells A's real shares while process 2's exit of the same symbol is under way: process 2 had
checked for the agent's own recent sells (`OrderGateway._wait_out_recent_fills`) before process
1's fill existed, then read a positions endpoint that still showed the shares process 1 sold
(Alpaca's trails fills by seconds), and sized its exit once process 1's fill was booked: the
ledger side dropped by that fill, the broker side did not, and against the other agent's ledger
the difference was taken from the other agent's shares. An exit whose agent's own sell was
booked after its wait check, recently enough that the read may not show it, is now re-sized
(nothing was sent) once that fill shows, while another agent on the account holds the symbol.
Real parts: the paper broker behind a positions endpoint that trails by 10 s of the manual clock,
stores on SQLite and PostgreSQL (one connection per process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from tests.gateway_kit import broker_qty
from tests.test_shared_account_lagging_read import LAG, Trailing
from tradeguard import ManualClock, OrderGateway, PaperBroker, crashpoints
from tradeguard.config import Settings
from tradeguard.domain import BrokerPosition
from tradeguard.execution import OrderResult, Outcome
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore

SETTINGS = Settings(recent_activity_secs=0)  # position_settle_secs 30 s, the lag 10 s
assert LAG.total_seconds() < SETTINGS.position_settle_secs


class HookedRead(Trailing):
    """A trailing account that runs `before_read` (once) right before its next position read."""

    before_read: Callable[[], None] | None = None

    def get_position(self, symbol: str) -> BrokerPosition | None:
        hook, self.before_read = self.before_read, None
        if hook is not None:
            hook()
        return super().get_position(symbol)


World = tuple[ManualClock, HookedRead, dict[str, OrderGateway]]


@pytest.fixture
def world(store_url: str) -> Iterator[World]:
    """Agent "a" in two processes ("a1", "a2": a store connection each) and agent "b", one account."""
    clock = ManualClock()
    account = HookedRead(PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock), clock)
    stores = [ClaimStore(store_url, settings=SETTINGS, clock=clock) for _ in range(3)]
    gateways = {
        name: OrderGateway(account, s, agent_id=name[0], settings=SETTINGS, clock=clock)
        for s, name in zip(stores, ("a1", "a2", "b"), strict=True)
    }
    yield clock, account, gateways
    crashpoints.set_hook(None)
    for s in stores:
        s.close()


def _a_partly_a_phantom(world: World, *, b_holds: bool = True) -> None:
    """A buys 10 (and B 10); a minute later a person sells 5: A's ledger says 10, A truly holds 5."""
    clock, account, bots = world
    assert bots["a1"].enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    if b_holds:
        assert bots["b"].enter("SPY", qty=10, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    account.inner.close_position("SPY", qty=Decimal(5))
    account.note()
    clock.advance(60)


def _sibling_exit(
    bots: dict[str, OrderGateway], qty: int, sold: list[OrderResult], intent: str = "a-one"
) -> None:
    result = bots["a1"].exit("SPY", qty=qty, intent=intent)
    assert result.outcome is Outcome.SUBMITTED, result.reason
    sold.append(result)


def _at_exit_before_claim(action: Callable[[], None]) -> None:
    """Run `action` once, at the next exit's "exit_before_claim" point (its read done, its sizing next)."""

    def hook(name: str) -> None:
        if name == "exit_before_claim":
            crashpoints.set_hook(None)
            action()

    crashpoints.set_hook(hook)


def test_an_exit_sized_after_its_sibling_sold_since_the_read_does_not_sell_another_agents_shares(
    world: World,
) -> None:
    _clock, account, bots = world
    _a_partly_a_phantom(world)
    sold: list[OrderResult] = []
    _at_exit_before_claim(lambda: _sibling_exit(bots, 5, sold))  # A's 5 real shares, while a2 sizes

    result = bots["a2"].exit("SPY", qty=5, intent="a-two")

    assert sold and sold[0].claim is not None and sold[0].claim.order_qty == 5
    assert result.outcome is not Outcome.SUBMITTED, result.reason  # A's other 5 went by hand
    assert broker_qty(account.inner, "SPY") == 10  # B's 10 are still there
    assert bots["b"].position("SPY").qty == 10


def test_an_exit_reading_right_after_its_sibling_sold_does_not_sell_another_agents_shares(
    world: World,
) -> None:
    """The sibling's sell fills after a2's wait check and before its positions read, which trails it."""
    _clock, account, bots = world
    _a_partly_a_phantom(world)
    sold: list[OrderResult] = []
    account.before_read = lambda: _sibling_exit(bots, 5, sold)

    result = bots["a2"].exit("SPY", qty=5, intent="a-two")

    assert sold and sold[0].claim is not None and sold[0].claim.order_qty == 5
    assert result.outcome is not Outcome.SUBMITTED, result.reason
    assert broker_qty(account.inner, "SPY") == 10  # B's 10 are still there
    assert bots["b"].position("SPY").qty == 10


@pytest.mark.parametrize("beside_another_agent", [True, False], ids=["beside-b", "alone"])
def test_two_processes_scaling_out_both_sell_waiting_only_beside_another_agent(
    world: World, beside_another_agent: bool
) -> None:
    """The plain exit is kept: a sibling's sell the wait saw is waited out (bounded) beside another
    agent and not at all alone on the account; both processes sell their 3."""
    clock, account, bots = world
    assert bots["a1"].enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    if beside_another_agent:
        assert bots["b"].enter("SPY", qty=10, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    sold: list[OrderResult] = []
    _at_exit_before_claim(lambda: _sibling_exit(bots, 3, sold))
    before = clock.now()

    result = bots["a2"].exit("SPY", qty=3, intent="a-two")

    assert sold, "the sibling's exit ran"
    assert result.outcome is Outcome.SUBMITTED, result.reason
    assert result.claim is not None and result.claim.order_qty == 3
    waited = (clock.now() - before).total_seconds()
    if beside_another_agent:
        assert waited <= SETTINGS.position_settle_secs
        assert broker_qty(account.inner, "SPY") == 14 and bots["a2"].position("SPY").qty == 4
        assert bots["b"].position("SPY").qty == 10
    else:
        assert waited == 0
        assert broker_qty(account.inner, "SPY") == 4


def test_a_resent_exit_whose_sibling_sold_again_during_its_resize_does_not_sell_another_agents_shares(
    world: World,
) -> None:
    """a2's exit is re-sized after its sibling's first sell; the sibling sells again right before
    the re-size's positions read (which trails it): the resend checks again, as a new exit does."""
    clock, account, bots = world
    assert bots["a1"].enter("SPY", qty=15, intent="a-in").outcome is Outcome.SUBMITTED
    assert bots["b"].enter("SPY", qty=10, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    account.inner.close_position("SPY", qty=Decimal(5))  # A's ledger 15, A truly holds 10
    account.note()
    clock.advance(60)
    sold: list[OrderResult] = []

    def first_sell() -> None:
        _sibling_exit(bots, 5, sold)
        account.before_read = lambda: _sibling_exit(bots, 5, sold, "a-one-more")  # the re-size's read

    _at_exit_before_claim(first_sell)

    result = bots["a2"].exit("SPY", qty=5, intent="a-two")

    assert len(sold) == 2, "both of the sibling's sells ran"
    assert result.outcome is not Outcome.SUBMITTED, result.reason  # A's last 5 went by hand
    assert broker_qty(account.inner, "SPY") == 10  # B's 10 are still there
    assert bots["b"].position("SPY").qty == 10
