"""An exit moments after the bot's own entry filled is sent, though the positions read trails.

Alpaca's positions endpoint can trail a fill for a few seconds (ALPACA.md). A bot that bought 10
and sold them 2 s later was answered SKIPPED "nothing to sell: broker has 0 available" while it
held the 10 (audit 25 noticed it): on alpaca-py the sell goes through. The exit now reads again
every `settle_delay_secs` while its own fill is younger than `position_settle_secs`, and sends
once the read shows the shares; a read that never shows them (the shares really are gone) still
ends in a skip, within that horizon, with nothing sent (G3). Real parts: the paper broker behind a
positions endpoint that trails, SQLite and PostgreSQL stores.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tests.gateway_kit import LaggingPositions, OnSleepClock
from tradeguard.config import Settings
from tradeguard.domain import OrderRequest, Side
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore

T0 = datetime(2026, 5, 21, 14, 0, tzinfo=UTC)


def _world(store_url: str) -> tuple[OnSleepClock, PaperBroker, LaggingPositions, ClaimStore, OrderGateway]:
    clock = OnSleepClock(T0)
    paper = PaperBroker(prices=FixedPrices({"TQQQ": "75.00"}), clock=clock)
    port = LaggingPositions(paper)
    settings = Settings()
    store = ClaimStore(store_url, settings=settings, clock=clock)
    gateway = OrderGateway(port, store, agent_id="bot", settings=settings, clock=clock)
    return clock, paper, port, store, gateway


def test_an_exit_right_after_the_bots_own_fill_waits_for_the_read_and_sells(store_url: str) -> None:
    clock, paper, port, store, gateway = _world(store_url)
    with store:
        assert gateway.enter("TQQQ", qty=10, intent="entry").outcome is Outcome.SUBMITTED
        port.hidden.add("TQQQ")  # the positions endpoint has not caught up with the fill
        clock.advance(2)
        clock.on_next_sleep = lambda: port.hidden.discard("TQQQ")  # ...and does a moment later
        out = gateway.exit("TQQQ", intent="exit")
        assert out.outcome is Outcome.SUBMITTED, out.reason
        assert out.order is not None and out.order.qty == 10
        assert paper.position_qty("TQQQ") == 0 == gateway.position("TQQQ").qty
        assert clock.now() - T0 <= timedelta(seconds=2 + Settings().settle_delay_secs)


def test_shares_that_are_really_gone_still_end_in_a_skip_within_the_horizon(store_url: str) -> None:
    clock, paper, _port, store, gateway = _world(store_url)
    with store:
        gateway.enter("TQQQ", qty=10, intent="entry")
        paper.submit_order(OrderRequest("TQQQ", Side.SELL, "by-hand", qty=Decimal(10)))  # closed by hand
        clock.advance(2)
        out = gateway.exit("TQQQ", intent="exit")
        assert out.outcome is Outcome.SKIPPED, out.reason
        sells = [o.client_order_id for o in paper.list_orders(status="all") if o.side is Side.SELL]
        assert sells == ["by-hand"] and paper.position_qty("TQQQ") == 0  # never short (G3)
        # Read again until the fill's horizon, then the skip's own confirming read (a phantom).
        most = Settings().position_settle_secs + Settings().settle_delay_secs
        assert clock.now() - T0 <= timedelta(seconds=most)


def test_an_exit_long_after_the_last_fill_takes_the_read_as_it_is(store_url: str) -> None:
    clock, paper, _port, store, gateway = _world(store_url)
    with store:
        gateway.enter("TQQQ", qty=10, intent="entry")
        paper.submit_order(OrderRequest("TQQQ", Side.SELL, "by-hand", qty=Decimal(10)))
        clock.advance(Settings().position_settle_secs + 5)
        before = clock.now()
        out = gateway.exit("TQQQ", intent="exit")
        assert out.outcome is Outcome.SKIPPED, out.reason
        # No reading again: a read this long after the fill is the truth (only the skip's own
        # phantom check reads a second time, `settle_delay_secs` later).
        assert clock.now() - before <= timedelta(seconds=Settings().settle_delay_secs)


def test_an_exit_whose_ledger_has_nothing_free_answers_at_once_even_right_after_a_fill(
    store_url: str,
) -> None:
    """Reading again helps only when the broker's side fell short. A second exit decision while
    the first (resting) exit covers the whole position has nothing free in the ledger: it is
    answered at once, not after reading for `position_settle_secs` (12 concurrent exits of one
    agent each waited 30 s before; `test_twelve_concurrent_exits_never_ask_for_more_than_is_held`)."""
    clock, _paper, _port, store, gateway = _world(store_url)
    with store:
        gateway.enter("TQQQ", qty=10, intent="entry")
        clock.advance(1)
        resting = gateway.exit("TQQQ", intent="take profit", order_type="limit", limit_price="99.00")
        assert resting.outcome is Outcome.SUBMITTED
        before = clock.now()
        out = gateway.exit("TQQQ", intent="stop out")
        assert out.outcome is Outcome.SKIPPED, out.reason
        assert clock.now() - before <= timedelta(seconds=Settings().settle_delay_secs)
