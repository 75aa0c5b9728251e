"""A refused exit whose release failed never stops the symbol's positions being compared (G4).

Audit 12a D4: shares are sold in the Alpaca UI between the guard's position read and its POST,
so the broker refuses the exit 403 "insufficient qty" (the exit is REJECTED in the open turn).
The gateway's immediate pass, which would re-size and resend it, could not read the positions
(one 503). Every later ordinary pass proposed the release (which only the gateway's own
post-refusal pass applies) and counted the symbol as in motion, so its positions were never
compared: the ledger kept the sold shares for good, with nothing reported (the May 21 phantom).
Real parts: the paper broker, a fault plan at the port, stores on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.gateway_kit import LaggingPositions
from tradeguard import crashpoints
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import ClaimState, OrderRequest, Side
from tradeguard.execution import Outcome
from tradeguard.faults.broker import FaultyBroker
from tradeguard.faults.plan import FaultPlan
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.ports import ForwardingBroker
from tradeguard.store import ClaimStore

ONE_FAILED_POSITIONS_READ = FaultPlan.parse(
    "faults:\n  - {route: GET /v2/positions, nth: 1, action: error, status: 503}\n", source="test"
)


def test_a_phantom_behind_a_refused_exit_is_trimmed_by_the_ordinary_passes(store_url: str) -> None:
    clock = ManualClock(datetime(2026, 5, 21, 14, 0, tzinfo=UTC))
    paper = PaperBroker(prices=FixedPrices({"TQQQ": "75.00"}), clock=clock)
    settings = Settings()
    port = ForwardingBroker(paper)
    with ClaimStore(store_url, settings=settings, clock=clock) as store:
        gateway = OrderGateway(port, store, agent_id="bot", settings=settings, clock=clock)
        gateway.enter("TQQQ", qty=5, intent="entry")
        clock.advance(90)

        def a_person_sells_3(point: str) -> None:  # right after the guard read the position
            if point == "exit_before_claim":
                crashpoints.set_hook(None)
                paper.submit_order(OrderRequest("TQQQ", Side.SELL, "ui-1", qty=Decimal(3)))

        crashpoints.set_hook(a_person_sells_3)
        try:
            port.inner = FaultyBroker(paper, ONE_FAILED_POSITIONS_READ, clock=clock)
            refused = gateway.exit("TQQQ", intent="exit-1")
        finally:
            crashpoints.set_hook(None)
        assert refused.outcome is Outcome.REJECTED
        assert refused.claim is not None and refused.claim.state is ClaimState.REJECTED

        for _ in range(10):
            clock.advance(60)
            gateway.reconcile()
        assert gateway.position("TQQQ").qty == 2 == paper.position_qty("TQQQ")
        out = gateway.exit("TQQQ", intent="exit-2")
        assert out.outcome is Outcome.SUBMITTED and paper.position_qty("TQQQ") == 0


@pytest.mark.parametrize("lag", ["stale", "missing"])
def test_a_fill_after_the_refusal_waits_out_the_settle_horizon_like_any_other(
    store_url: str, lag: str
) -> None:
    """Audit 13 D1: the refusal exempted the turn from `position_settle_secs` for every later
    move too. The bot scaled in 10 after the refused exit; a pass 1 s later, its positions read
    still trailing the fill (stale: the old 2; missing: no position at all), trimmed the ledger
    to 2 (or cleared it, leaving 12 real shares un-exitable). The refusal is evidence of the
    position as of then only; the new fill waits like any other, and the ledger converges."""
    clock = ManualClock(datetime(2026, 5, 21, 14, 0, tzinfo=UTC))
    paper = PaperBroker(prices=FixedPrices({"TQQQ": "75.00"}), clock=clock)
    settings = Settings()
    lagging = LaggingPositions(paper)
    port = ForwardingBroker(lagging)
    with ClaimStore(store_url, settings=settings, clock=clock) as store:
        gateway = OrderGateway(port, store, agent_id="bot", settings=settings, clock=clock)
        gateway.enter("TQQQ", qty=5, intent="entry")
        clock.advance(90)

        def a_person_sells_3(point: str) -> None:
            if point == "exit_before_claim":
                crashpoints.set_hook(None)
                paper.submit_order(OrderRequest("TQQQ", Side.SELL, "ui-1", qty=Decimal(3)))

        crashpoints.set_hook(a_person_sells_3)
        try:
            port.inner = FaultyBroker(lagging, ONE_FAILED_POSITIONS_READ, clock=clock)
            assert gateway.exit("TQQQ", intent="exit-1").outcome is Outcome.REJECTED
        finally:
            crashpoints.set_hook(None)
        port.inner = lagging
        clock.advance(60)
        gateway.reconcile()  # the phantom 3 behind the refusal is trimmed
        assert gateway.position("TQQQ").qty == 2 == paper.position_qty("TQQQ")

        if lag == "stale":
            lagging.freeze()
        else:
            lagging.hidden.add("TQQQ")
        clock.advance(60)
        gateway.enter("TQQQ", qty=10, intent="scale-in")
        clock.advance(1)
        report = gateway.reconcile()
        assert report.applied == [] and [p.symbol for p in report.put_off] == ["TQQQ"]
        assert gateway.position("TQQQ").qty == 12 == paper.position_qty("TQQQ")
        lagging.frozen = None
        lagging.hidden.clear()
        for _ in range(3):
            clock.advance(60)
            gateway.reconcile()
        assert gateway.position("TQQQ").qty == 12 == paper.position_qty("TQQQ")
        assert gateway.exit("TQQQ", intent="exit-2").outcome is Outcome.SUBMITTED
        assert paper.position_qty("TQQQ") == 0


# Both exits refused 403 (shares sold between the read and the POST, say) while the broker holds
# them; the pass right after the first refusal cannot read the positions (one 500).
TWO_REFUSED_EXITS = FaultPlan.parse(
    """
faults:
  - route: POST /v2/orders
    match: {side: sell}
    nth: [1, 2]
    action: reject
    status: 403
    body: {code: 40310000, message: "insufficient qty available for order (requested: 9, available: 0)"}
  - {route: GET /v2/positions, nth: 1, action: error, status: 500}
""",
    source="test",
)


@pytest.mark.parametrize(("first_qty", "second_qty"), [(None, None), (3, 3)])
def test_the_pass_after_a_refused_exit_resends_that_exit_only(
    store_url: str, first_qty: int | None, second_qty: int | None
) -> None:
    """Found by test_stateful.py (a rare failure): exit "x2" came back REJECTED while, inside the
    same call, the order of exit "x1" (refused earlier, its own pass aborted) reached the broker.

    The gateway's pass after x2's refusal re-sized and resent every refused exit of the agent in
    the symbol: x1 first (the older claim) took the shares, so x2's own release sized to nothing
    and the call answered "rejected, nothing placed" while it had sold the position under another
    decision's id; with room for both, one call placed two orders. The bot had been told x1 placed
    nothing; its release belongs to the bot's next call of x1 (as after an ordinary pass).
    """
    clock = ManualClock(datetime(2026, 5, 21, 14, 0, tzinfo=UTC))
    paper = PaperBroker(prices=FixedPrices({"TQQQ": "75.00"}), clock=clock)
    settings = Settings()
    port = ForwardingBroker(paper)
    with ClaimStore(store_url, settings=settings, clock=clock) as store:
        gateway = OrderGateway(port, store, agent_id="bot", settings=settings, clock=clock)
        gateway.enter("TQQQ", qty=10, intent="entry")
        clock.advance(90)
        port.inner = FaultyBroker(paper, TWO_REFUSED_EXITS, clock=clock)
        first = gateway.exit("TQQQ", intent="x1", qty=first_qty)
        assert first.outcome is Outcome.REJECTED and first.claim is not None  # its pass aborted
        clock.advance(60)
        placed = len(paper.orders())

        second = gateway.exit("TQQQ", intent="x2", qty=second_qty)

        new = [o.client_order_id for o in paper.orders()[placed:]]
        assert second.outcome is Outcome.SUBMITTED and second.claim is not None, second.reason
        assert new == [second.claim.client_order_id]  # actual: [x1's] with x2 REJECTED, or [x1's, x2's]
        assert store.get(first.claim.key).state is ClaimState.REJECTED  # type: ignore[union-attr]
        assert paper.position_qty("TQQQ") == 10 - (second_qty or 10)
