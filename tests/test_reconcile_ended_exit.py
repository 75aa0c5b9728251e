"""Audit 21 #3: a phantom behind an exit canceled at the broker clears within one interval (G4).

The pass that adopts the cancel (nothing filled: no ledger can move) compares the symbol's
positions at once instead of leaving them a whole period for the next pass.
"""

from __future__ import annotations

from tests.gateway_kit import MAY21_PRICES, OnSleepClock
from tradeguard.config import Settings
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.gateway import OrderGateway
from tradeguard.store import ClaimStore
from tradeguard.testing import PaperBroker, make_request


def test_a_phantom_behind_an_exit_canceled_at_the_broker_clears_within_one_interval(store_url: str) -> None:
    """The bot holds 10 TQQQ with a resting limit exit; just after a pass someone cancels it
    and sells the 10 from the dashboard. The bot ticks `reconcile_if_due` every second and never
    asks for its position (nothing else looks the exit up)."""
    clock, settings = OnSleepClock(), Settings()
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    with ClaimStore(store_url, settings=settings, clock=clock) as store:
        gw = OrderGateway(paper, store, agent_id="bot", settings=settings, clock=clock)
        gw.enter("TQQQ", qty=10, intent="09:42 breakout")
        sent = gw.exit(
            "TQQQ", intent="take profit", order_type="limit", limit_price="90", time_in_force="gtc"
        )
        assert sent.claim is not None and sent.claim.broker_order_id is not None
        clock.advance(120)
        assert gw.reconcile_if_due() is not None
        while gw.reconcile_if_due() is None:
            clock.advance(1)
        paper.cancel_order(sent.claim.broker_order_id)
        paper.submit_order(make_request("TQQQ", "sell", 10, client_order_id="dashboard-close"))
        closed_at = clock.now()

        while (clock.now() - closed_at).total_seconds() < settings.reconcile_interval_secs:
            clock.advance(1)
            gw.reconcile_if_due()

        assert store.position("bot", "TQQQ").is_flat, "the phantom outlived one reconcile interval"
        claim = store.get(sent.claim.key)
        assert claim is not None and claim.state is ClaimState.CANCELED
