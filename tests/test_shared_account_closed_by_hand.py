"""G3 on a shared account whose position was closed by hand moments before an exit's positions read.

Found by the shared-account soak (`tests/soak_kit.py`, seed 15): several agents hold SPY on one
account; a person closes the whole position; another agent buys again at once; an agent whose
ledger is now a phantom sizes an exit from a positions read that still trails the close (Alpaca's
positions endpoint lags fills by seconds) and sells the shares the other agent just bought.

The exit waits out other agents' recent fills before it reads, but a close by hand is nobody's
fill: no ledger moved, so nothing says the read is stale. Orders are current where positions lag,
so the exit now takes off what orders outside every claim sold on the held side within
`position_settle_secs` before the read. Real parts: the paper broker behind a positions endpoint
that trails by 10 s of the manual clock, stores on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from tests.gateway_kit import broker_qty
from tests.test_shared_account_lagging_read import Trailing
from tradeguard import ManualClock, OrderGateway, OrderRequest, PaperBroker, Side, crashpoints
from tradeguard.config import Settings
from tradeguard.execution import Outcome
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore

SETTINGS = Settings(recent_activity_secs=0)  # position_settle_secs 30 s, the lag 10 s


class MidWaitClock(ManualClock):
    """A manual clock whose next sleep runs `during` part way through, then ends when it would have."""

    def __init__(self) -> None:
        super().__init__()
        self.during: Callable[[], None] | None = None

    def sleep(self, seconds: float) -> None:
        ends: datetime = self.now() + timedelta(seconds=seconds)
        hook, self.during = self.during, None
        if hook is not None:
            hook()
        self.set(max(self.now(), ends))


@pytest.fixture
def world(store_url: str) -> Iterator[tuple[MidWaitClock, Trailing, dict[str, OrderGateway]]]:
    clock = MidWaitClock()
    account = Trailing(PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock), clock)
    stores = [ClaimStore(store_url, settings=SETTINGS, clock=clock) for _ in range(4)]
    gateways = {
        agent: OrderGateway(account, s, agent_id=agent, settings=SETTINGS, clock=clock)
        for s, agent in zip(stores, "abcd", strict=True)
    }
    yield clock, account, gateways
    for s in stores:
        s.close()


def test_a_phantom_exit_does_not_sell_shares_bought_right_after_a_close_by_hand(
    world: tuple[MidWaitClock, Trailing, dict[str, OrderGateway]],
) -> None:
    clock, account, bots = world
    assert bots["a"].enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    assert bots["b"].enter("SPY", qty=10, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    assert bots["d"].enter("SPY", qty=1, intent="d-in").outcome is Outcome.SUBMITTED
    account.note()
    clock.advance(1)  # A's exit waits out D's fill (until 30 s after it), then reads

    def closed_by_hand_and_bought_again() -> None:
        clock.advance(24)  # 5 s before the read: the read still shows the 21 shares
        account.inner.close_position("SPY")  # a person closes the account's whole position
        account.note()
        assert bots["c"].enter("SPY", qty=5, intent="c-in").outcome is Outcome.SUBMITTED
        account.note()

    clock.during = closed_by_hand_and_bought_again

    result = bots["a"].exit("SPY", intent="a-out")

    assert result.outcome is Outcome.SKIPPED, result.reason  # A's 10 went with the close
    assert broker_qty(account.inner, "SPY") == 5  # C's 5, just bought, are still there


def test_a_phantom_exit_does_not_sell_shares_another_agent_sold_down_to_while_it_waited(
    world: tuple[MidWaitClock, Trailing, dict[str, OrderGateway]],
) -> None:
    """Found by the soak too (seed 17): the exit waits out other agents' recent fills once; a sell
    of another agent during that wait still shows in the read that follows, as that agent's shares."""
    clock, account, bots = world
    assert bots["a"].enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    assert bots["b"].enter("SPY", qty=20, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    account.inner.close_position("SPY", qty=Decimal(10))  # by hand: A's 10 are a phantom now
    account.note()
    clock.advance(60)
    assert bots["d"].enter("SPY", qty=1, intent="d-in").outcome is Outcome.SUBMITTED
    account.note()
    clock.advance(1)  # A's exit waits out D's fill, then reads

    def b_sells_half() -> None:
        clock.advance(25)  # B's exit waits out D's fill as well, and fills 5 s before A reads
        assert bots["b"].exit("SPY", qty=10, intent="b-half").outcome is Outcome.SUBMITTED
        account.note()

    clock.during = b_sells_half

    result = bots["a"].exit("SPY", intent="a-out")

    assert result.outcome is Outcome.SKIPPED, result.reason  # nothing of A's is left to sell
    assert broker_qty(account.inner, "SPY") == 11  # B's 10 and D's 1 are still there


def _passes(clock: ManualClock, bots: dict[str, OrderGateway], n: int = 4) -> None:
    for _ in range(n):  # well past the lag, the settle horizon and a reconcile interval
        clock.advance(SETTINGS.reconcile_interval_secs)
        for bot in bots.values():
            bot.reconcile()


def _held(bots: dict[str, OrderGateway]) -> dict[str, Decimal]:
    return {agent: bot.position("SPY").qty for agent, bot in bots.items()}


def _both_hold_then_closed_by_hand(
    world: tuple[MidWaitClock, Trailing, dict[str, OrderGateway]], qty: Decimal | None = None
) -> tuple[MidWaitClock, Trailing, dict[str, OrderGateway]]:
    """A and B buy 10 each; a minute later a person closes the account's position (or `qty` of it)."""
    clock, account, bots = world
    assert bots["a"].enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    assert bots["b"].enter("SPY", qty=10, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    account.inner.close_position("SPY", qty=qty)
    account.note()
    clock.advance(1)
    return clock, account, bots


def _bought_again(account: Trailing, bot: OrderGateway, qty: int, intent: str) -> None:
    assert bot.enter("SPY", qty=qty, intent=intent).outcome is Outcome.SUBMITTED
    account.note()


def test_drift_after_a_close_by_hand_of_a_shared_symbol_is_attributed(
    world: tuple[MidWaitClock, Trailing, dict[str, OrderGateway]],
) -> None:
    """Found by the soak (audit 25): both agents' shares go with a close by hand, A buys again
    before any pass read the account flat twice; positions alone cannot say whose 20 are gone, the
    account's order history can (the close sold exactly what both turns had bought before it)."""
    clock, account, bots = _both_hold_then_closed_by_hand(world)  # both agents' 10 are phantoms
    _bought_again(account, bots["a"], 5, "a-again")  # before any pass

    _passes(clock, bots)

    assert _held(bots) == {"a": 5, "b": 0, "c": 0, "d": 0}
    assert bots["b"].exit("SPY", intent="b-out").outcome is Outcome.SKIPPED
    assert bots["a"].exit("SPY", intent="a-out").outcome is Outcome.SUBMITTED
    assert broker_qty(account.inner, "SPY") == 0


def test_the_phantom_of_an_agent_that_never_reconciles_does_not_hold_back_a_real_exit(
    world: tuple[MidWaitClock, Trailing, dict[str, OrderGateway]],
) -> None:
    """B's process is gone: only A's passes run. Exits are sized against the other agents'
    ledgers, so B's phantom 10 kept A's real 5 from being sold ("held by other agents") until B
    came back; the order history proves it a phantom, so A's pass clears it."""
    clock, account, bots = _both_hold_then_closed_by_hand(world)
    _bought_again(account, bots["a"], 5, "a-again")

    _passes(clock, {"a": bots["a"]})

    assert _held(bots) == {"a": 5, "b": 0, "c": 0, "d": 0}
    assert bots["a"].exit("SPY", intent="a-out").outcome is Outcome.SUBMITTED
    assert broker_qty(account.inner, "SPY") == 0


def test_a_close_by_hand_attributed_leaves_a_turn_opened_after_it_alone(
    world: tuple[MidWaitClock, Trailing, dict[str, OrderGateway]],
) -> None:
    clock, account, bots = _both_hold_then_closed_by_hand(world)
    _bought_again(account, bots["c"], 5, "c-in")

    _passes(clock, bots)

    assert _held(bots) == {"a": 0, "b": 0, "c": 5, "d": 0}


def test_the_last_of_several_closes_by_hand_decides_what_each_agent_holds(
    world: tuple[MidWaitClock, Trailing, dict[str, OrderGateway]],
) -> None:
    """Two closes by hand with trading between: only the last one matters; the position just after
    it is the broker's now less every fill since, flat here, so each agent holds what it bought since."""
    clock, account, bots = _both_hold_then_closed_by_hand(world)
    _bought_again(account, bots["a"], 5, "a-again")
    clock.advance(1)
    account.inner.close_position("SPY")
    account.note()
    clock.advance(1)
    _bought_again(account, bots["b"], 7, "b-again")
    _bought_again(account, bots["c"], 2, "c-in")

    _passes(clock, bots)

    assert _held(bots) == {"a": 0, "b": 7, "c": 2, "d": 0}
    assert bots["b"].exit("SPY", intent="b-out").outcome is Outcome.SUBMITTED
    assert broker_qty(account.inner, "SPY") == 2


def test_a_partial_close_by_hand_of_a_shared_symbol_is_reported_never_guessed(
    world: tuple[MidWaitClock, Trailing, dict[str, OrderGateway]],
) -> None:
    """Half the account sold by hand: whose half is not in any order; no ledger is touched (G4
    never clears a real position on a guess), the drift is reported for an operator."""
    clock, account, bots = _both_hold_then_closed_by_hand(world, qty=Decimal(10))
    _bought_again(account, bots["a"], 5, "a-again")

    _passes(clock, bots)

    assert _held(bots) == {"a": 15, "b": 10, "c": 0, "d": 0}
    drift = [r for r in bots["a"].store.audit_records() if (r.detail or {}).get("action") == "report_drift"]
    assert drift and "ledgers hold 25" in drift[-1].reason


def test_a_close_by_hand_with_another_order_outside_the_bots_is_reported_never_guessed(
    world: tuple[MidWaitClock, Trailing, dict[str, OrderGateway]],
) -> None:
    """The account closed by hand, then 3 bought by hand: two orders outside every claim; the
    history no longer proves what each turn held, so nothing is attributed."""
    clock, account, bots = _both_hold_then_closed_by_hand(world)
    account.inner.submit_order(OrderRequest("SPY", Side.BUY, "by-hand-1", qty=Decimal(3)))
    account.note()
    _bought_again(account, bots["a"], 5, "a-again")

    _passes(clock, bots)

    assert _held(bots) == {"a": 15, "b": 10, "c": 0, "d": 0}


@pytest.fixture
def fresh_reads(store_url: str) -> Iterator[tuple[ManualClock, PaperBroker, dict[str, OrderGateway]]]:
    clock = ManualClock()
    account = PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock)
    stores = [ClaimStore(store_url, settings=SETTINGS, clock=clock) for _ in range(2)]
    gateways = {
        agent: OrderGateway(account, s, agent_id=agent, settings=SETTINGS, clock=clock)
        for s, agent in zip(stores, "ab", strict=True)
    }
    yield clock, account, gateways
    crashpoints.set_hook(None)
    for s in stores:
        s.close()


def test_a_phantom_exit_does_not_sell_shares_another_agent_sold_down_to_after_its_read(
    fresh_reads: tuple[ManualClock, PaperBroker, dict[str, OrderGateway]],
) -> None:
    """Found by the soak (seed 19): another agent's exit fills between this exit's position read
    and its sizing under the symbol's lock; that agent's ledger is lower already while the read
    still counts the shares. No lag is needed: the read came first."""
    clock, account, bots = fresh_reads
    assert bots["a"].enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    assert bots["b"].enter("SPY", qty=20, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    account.close_position("SPY", qty=Decimal(10))  # by hand: A's 10 are a phantom now
    clock.advance(60)
    fired: list[str] = []

    def b_sells_half(point: str) -> None:
        if point == "exit_before_claim" and not fired:
            fired.append(point)
            assert bots["b"].exit("SPY", qty=10, intent="b-half").outcome is Outcome.SUBMITTED

    crashpoints.set_hook(b_sells_half)

    result = bots["a"].exit("SPY", intent="a-out")

    assert fired
    assert result.outcome is not Outcome.SUBMITTED, result.reason  # nothing of A's is left to sell
    assert account.get_position("SPY") is not None
    assert account.position_qty("SPY") == 10  # B's 10 are still there
