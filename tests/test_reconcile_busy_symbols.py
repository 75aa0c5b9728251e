"""Audit 21 #4: another agent's resting order no longer keeps this agent's partial phantom forever.

A one-agent pass (the gateway's, `tradeguard run`'s, the drop-in's) skipped a symbol the broker
holds while any other agent's claim there was active. Only claims that may have moved shares
their ledger lacks (unresolved, recently moved, or not listed open with the fills they booked)
keep it busy; an order resting unchanged does not.
"""

from __future__ import annotations

from decimal import Decimal

from tests.gateway_kit import MAY21_PRICES, OnSleepClock
from tradeguard.config import Settings
from tradeguard.domain import OrderType
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.ports import ClaimLedger
from tradeguard.testing import PaperBroker, make_request


def _dashboard_sells(paper: PaperBroker, qty: int) -> None:
    """A person sells at a marketable limit (a market sell beside a resting buy is a wash trade)."""
    paper.submit_order(
        make_request("SPY", "sell", qty, client_order_id="dashboard-sell", order_type=OrderType.LIMIT,
                     limit_price=Decimal(589))
    )  # fmt: skip


def test_a_partial_phantom_is_trimmed_beside_another_agents_resting_order(shared: ClaimLedger) -> None:
    """A holds 10 SPY; B (flat) rests a GTC limit buy far below the market; someone sells 4 of
    A's from the dashboard. A's own passes trim A's ledger to 6 within one interval."""
    clock = shared.clock
    assert isinstance(clock, OnSleepClock)
    settings = Settings()
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    a = OrderGateway(paper, shared, agent_id="agent-a", settings=settings, clock=clock)
    b = OrderGateway(paper, shared, agent_id="agent-b", settings=settings, clock=clock)
    a.enter("SPY", qty=10, intent="a in")
    rests = b.enter("SPY", qty=5, intent="b dip", order_type="limit", limit_price="100", time_in_force="gtc")
    assert rests.outcome is Outcome.SUBMITTED
    _dashboard_sells(paper, 4)
    clock.advance(settings.reconcile_interval_secs)

    report = a.reconcile()

    assert [x.kind.value for x in report.applied] == ["trim_phantom"], [x.reason for x in report.actions]
    assert shared.position("agent-a", "SPY").qty == 6 == paper.position_qty("SPY")
    assert shared.position("agent-b", "SPY").is_flat


def test_another_agents_fill_not_booked_yet_still_keeps_the_symbol(shared: ClaimLedger) -> None:
    """B's resting buy fills at the broker while B's claim still says SUBMITTED (nobody refreshed
    it): A's pass must not book B's 5 as A's missed fill."""
    clock = shared.clock
    assert isinstance(clock, OnSleepClock)
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    a = OrderGateway(paper, shared, agent_id="agent-a", clock=clock)
    b = OrderGateway(paper, shared, agent_id="agent-b", clock=clock)
    a.enter("SPY", qty=10, intent="a in")
    rests = b.enter("SPY", qty=5, intent="b dip", order_type="limit", limit_price="580", time_in_force="gtc")
    assert rests.outcome is Outcome.SUBMITTED
    clock.advance(60)
    paper.set_price("SPY", "579")
    assert paper.position_qty("SPY") == 15

    report = a.reconcile()

    assert report.changes == [], [x.reason for x in report.changes]
    assert shared.position("agent-a", "SPY").qty == 10
