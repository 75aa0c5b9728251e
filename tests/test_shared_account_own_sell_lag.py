"""G3 on a shared account when the positions read still shows the shares the agent's own sell took.

Found by the shared-account soak (`tests/soak_kit.py`, seed 37): agent A's ledger holds shares
that are partly a phantom (some were closed by hand), A sells the real ones (its own sell fills,
its ledger drops) and moments later exits again. Alpaca's positions endpoint trails fills by
seconds, so the read still shows the shares A's own sell just took; sized against the other
agents' ledgers, A's second exit sold another agent's shares. The exit now waits, while another
agent on the account holds the symbol or has an order there in motion, until the agent's own
fills on the exit's side are `position_settle_secs` old, then reads (a bounded wait: a bot
scaling out still sells; alone on the account nothing changes). Real parts: the paper broker
behind a positions endpoint that trails by 10 s of the manual clock, stores on SQLite and
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.gateway_kit import broker_qty
from tests.test_shared_account_lagging_read import LAG, Trailing, two_agents
from tradeguard import ManualClock, OrderGateway, PaperBroker
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, OrderRequest
from tradeguard.errors import BrokerUnavailable
from tradeguard.execution import Outcome
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore

SETTINGS = Settings(recent_activity_secs=0)  # position_settle_secs 30 s, the lag 10 s
assert LAG.total_seconds() < SETTINGS.position_settle_secs


class Refusing(Trailing):
    """A trailing account whose next order, when `refuse_next` is set, never leaves this process."""

    refuse_next = False

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        if self.refuse_next:
            self.refuse_next = False
            raise BrokerUnavailable("connection refused")
        return super().submit_order(request)


@pytest.fixture
def world(store_url: str) -> Iterator[tuple[ManualClock, Refusing, OrderGateway, OrderGateway]]:
    with two_agents(store_url, Refusing, SETTINGS) as made:
        yield made


def _a_partly_a_phantom(world: tuple[ManualClock, Refusing, OrderGateway, OrderGateway]) -> None:
    """A and B buy 10 each; a minute later a person sells 5: 5 of A's 10 are a phantom."""
    clock, account, a, b = world
    assert a.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    assert b.enter("SPY", qty=10, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    account.inner.close_position("SPY", qty=Decimal(5))
    account.note()
    clock.advance(60)


def test_a_phantom_exit_right_after_its_own_sell_does_not_sell_another_agents_shares(
    world: tuple[ManualClock, Refusing, OrderGateway, OrderGateway],
) -> None:
    clock, account, a, b = world
    _a_partly_a_phantom(world)
    sold = a.exit("SPY", qty=5, intent="a-half")  # A's 5 real shares
    assert sold.outcome is Outcome.SUBMITTED and sold.claim is not None and sold.claim.order_qty == 5
    assert broker_qty(account.inner, "SPY") == 10  # B's 10
    clock.advance(5)  # the positions endpoint still shows the 15 of before A's sell

    result = a.exit("SPY", intent="a-rest")

    assert result.outcome is not Outcome.SUBMITTED, result.reason  # A's other 5 went by hand
    assert broker_qty(account.inner, "SPY") == 10  # B's 10 are still there
    assert b.position("SPY").qty == 10


def test_a_phantom_exit_sent_again_right_after_its_own_sell_does_not_sell_another_agents_shares(
    world: tuple[ManualClock, Refusing, OrderGateway, OrderGateway],
) -> None:
    """The same through a retry of an exit that placed nothing: it is re-sized, not sized anew."""
    clock, account, a, _b = world
    _a_partly_a_phantom(world)
    account.refuse_next = True
    assert a.exit("SPY", intent="a-rest").outcome is Outcome.NOT_SENT  # placed nothing
    assert a.exit("SPY", qty=5, intent="a-half").outcome is Outcome.SUBMITTED  # A's 5 real shares
    clock.advance(5)  # the positions endpoint still shows the 15 of before A's sell

    result = a.exit("SPY", intent="a-rest")

    assert result.outcome is not Outcome.SUBMITTED, result.reason  # A's other 5 went by hand
    assert broker_qty(account.inner, "SPY") == 10  # B's 10 are still there


def test_a_scale_out_beside_another_agent_still_sells_the_rest_after_a_bounded_wait(
    world: tuple[ManualClock, Refusing, OrderGateway, OrderGateway],
) -> None:
    clock, account, a, b = world
    assert a.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    assert b.enter("SPY", qty=10, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    assert a.exit("SPY", qty=5, intent="a-half").outcome is Outcome.SUBMITTED
    clock.advance(5)
    before = clock.now()

    result = a.exit("SPY", intent="a-rest")

    assert result.outcome is Outcome.SUBMITTED, result.reason
    assert result.claim is not None and result.claim.order_qty == 5
    assert (clock.now() - before).total_seconds() <= SETTINGS.position_settle_secs
    assert broker_qty(account.inner, "SPY") == 10 and a.position("SPY").is_flat
    assert b.position("SPY").qty == 10


def test_a_scale_out_over_current_reads_beside_another_agent_still_sells_the_rest(store_url: str) -> None:
    clock = ManualClock()
    account = PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock)  # positions never trail
    stores = [ClaimStore(store_url, settings=SETTINGS, clock=clock) for _ in range(2)]
    try:
        a, b = (
            OrderGateway(account, s, agent_id=agent, settings=SETTINGS, clock=clock)
            for s, agent in zip(stores, ("a", "b"), strict=True)
        )
        assert a.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
        assert b.enter("SPY", qty=10, intent="b-in").outcome is Outcome.SUBMITTED
        clock.advance(60)
        assert a.exit("SPY", qty=5, intent="a-half").outcome is Outcome.SUBMITTED
        clock.advance(5)

        result = a.exit("SPY", intent="a-rest")

        assert result.outcome is Outcome.SUBMITTED, result.reason
        assert result.claim is not None and result.claim.order_qty == 5
        assert account.position_qty("SPY") == 10 and b.position("SPY").qty == 10
    finally:
        for s in stores:
            s.close()


def test_a_scale_out_alone_on_the_account_does_not_wait(
    world: tuple[ManualClock, Refusing, OrderGateway, OrderGateway],
) -> None:
    clock, account, a, _b = world
    assert a.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    assert a.exit("SPY", qty=5, intent="a-half").outcome is Outcome.SUBMITTED
    clock.advance(5)
    before = clock.now()

    result = a.exit("SPY", intent="a-rest")

    assert result.outcome is Outcome.SUBMITTED, result.reason
    assert result.claim is not None and result.claim.order_qty == 5
    assert clock.now() == before
    assert broker_qty(account.inner, "SPY") == 0
