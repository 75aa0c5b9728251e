"""G3 when a reconcile pass re-sizes a refused exit from a read that trails the agent's own sell (audit 33).

An exit refused for position reasons (403 insufficient qty: a person's order held the shares for a
moment) is re-sized and resent by the pass that follows (`Reconciler._release`). Agent A runs two
processes; its ledger is partly a phantom (shares closed by hand); agent B holds real shares. While
a2's refused exit waits for its pass, a1 sells A's real shares: the pass's positions read (Alpaca's
trails fills by seconds) still shows them, and the release sized the refused exit from that read
against B's ledger, so it sold B's shares. The gateway's own exit path waits such a fill out
(`Reconciler.own_exit_fills_settle_at`, `own_fills_read_may_trail`); the release now does too.
Real parts: the paper broker (strict: a sell beyond `qty_available` is refused 403) behind a
positions endpoint that trails by 10 s of the manual clock, stores on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from tests.gateway_kit import broker_qty
from tests.test_shared_account_lagging_read import LAG, Trailing
from tradeguard import ManualClock, OrderGateway, PaperBroker, crashpoints
from tradeguard.config import Settings
from tradeguard.domain import BrokerPosition, OrderRequest, OrderType, Side
from tradeguard.execution import OrderResult, Outcome
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore

SETTINGS = Settings(recent_activity_secs=0)  # position_settle_secs 30 s, the lag 10 s
assert LAG.total_seconds() < SETTINGS.position_settle_secs


class HookedListing(Trailing):
    """A trailing account that runs `before_listing` (once) right before its next positions listing."""

    before_listing: Callable[[], None] | None = None

    def list_positions(self) -> list[BrokerPosition]:
        hook, self.before_listing = self.before_listing, None
        if hook is not None:
            hook()
        return super().list_positions()


World = tuple[ManualClock, HookedListing, dict[str, OrderGateway]]


@pytest.fixture
def world(store_url: str) -> Iterator[World]:
    """Agent "a" in two processes ("a1", "a2": a store connection each) and agent "b", one account."""
    clock = ManualClock()
    account = HookedListing(PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock), clock)
    stores = [ClaimStore(store_url, settings=SETTINGS, clock=clock) for _ in range(3)]
    gateways = {
        name: OrderGateway(account, s, agent_id=name[0], settings=SETTINGS, clock=clock)
        for s, name in zip(stores, ("a1", "a2", "b"), strict=True)
    }
    yield clock, account, gateways
    crashpoints.set_hook(None)
    for s in stores:
        s.close()


def test_a_release_from_a_read_that_trails_the_agents_own_sell_does_not_sell_another_agents_shares(
    world: World,
) -> None:
    clock, account, bots = world
    assert bots["a1"].enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    assert bots["b"].enter("SPY", qty=10, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    account.inner.close_position("SPY", qty=Decimal(5))  # A's ledger 10, A truly holds 5
    account.note()
    clock.advance(60)
    assert bots["a2"].position("SPY").qty == 10  # a2 started (its start-up pass done)
    person = OrderRequest(
        "SPY", Side.SELL, "by-hand", qty=Decimal(15), order_type=OrderType.LIMIT, limit_price=Decimal(900)
    )
    placed: list[str] = []
    sold: list[OrderResult] = []

    def hold_everything(name: str) -> None:  # right before a2's POST: a person's order holds all 15
        if name == "before_post":
            crashpoints.set_hook(None)
            placed.append(account.submit_order(person).id)

    def sibling_sells() -> None:  # the pass is about to read: the person cancels, a1 sells A's 5
        account.inner.cancel_order(placed[0])
        account.note()
        result = bots["a1"].exit("SPY", qty=5, intent="a-one")
        assert result.outcome is Outcome.SUBMITTED, result.reason
        sold.append(result)

    crashpoints.set_hook(hold_everything)
    account.before_listing = sibling_sells

    result = bots["a2"].exit("SPY", qty=5, intent="a-two")

    assert placed and sold, "the person's order and the sibling's sell ran"
    assert result.outcome is not Outcome.SUBMITTED, result.reason
    assert broker_qty(account.inner, "SPY") == 10  # B's 10 are still there
    assert bots["b"].position("SPY").qty == 10
