"""An order Alpaca reports `done_for_day` is still live: its later fills reach its claim (G2, G4).

Audit 11b D1: Alpaca's `done_for_day` means "done executing for the day, and will not receive
further updates until the next trading day"; a GTC order resumes the next session. The guard
took it for final (EXPIRED, filled 0): when the exit then filled, the claim never learned it,
the sale was booked as a "phantom cleared" (with another agent in the symbol, never at all) and
a second exit decision was sized as if the resting order held nothing. The paper broker never
reports `done_for_day`, so a wrapper at the broker port reports it for a resting order, as
Alpaca would after the close.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tradeguard import ManualClock, OrderGateway, PaperBroker
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, ClaimState, OrderStatus
from tradeguard.domain.lifecycle import state_for_order
from tradeguard.paper.prices import FixedPrices
from tradeguard.ports import ForwardingBroker
from tradeguard.reconcile import Reconciler
from tradeguard.store import ClaimStore


class DoneForDay(ForwardingBroker):
    """Reports the named resting orders `done_for_day`, as Alpaca does after the session."""

    def __init__(self, inner: PaperBroker) -> None:
        super().__init__(inner)
        self.resting: set[str] = set()

    def _as_alpaca(self, order: BrokerOrder | None) -> BrokerOrder | None:
        if order is not None and order.id in self.resting and order.status.is_open:
            return dataclasses.replace(order, status=OrderStatus.DONE_FOR_DAY)
        return order

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        return self._as_alpaca(self.inner.get_order_by_client_id(client_order_id))

    def get_order(self, order_id: str) -> BrokerOrder | None:
        return self._as_alpaca(self.inner.get_order(order_id))

    def list_orders(self, **query: Any) -> list[BrokerOrder]:
        return [o for o in map(self._as_alpaca, self.inner.list_orders(**query)) if o is not None]


def test_done_for_day_is_a_live_state() -> None:
    assert OrderStatus.DONE_FOR_DAY.is_open
    assert state_for_order(OrderStatus.DONE_FOR_DAY, False) is ClaimState.SUBMITTED
    assert state_for_order(OrderStatus.DONE_FOR_DAY, True) is ClaimState.PARTIALLY_FILLED


def test_a_gtc_exit_done_for_the_day_that_fills_next_session_is_booked_to_its_claim(store_url: str) -> None:
    clock = ManualClock(datetime(2026, 5, 21, 19, 0, tzinfo=UTC))
    settings = Settings()
    paper = PaperBroker(prices=FixedPrices({"SPY": "100"}), clock=clock)
    broker = DoneForDay(paper)
    with ClaimStore(store_url, settings=settings, clock=clock) as store:
        gateway = OrderGateway(broker, store, agent_id="bot", settings=settings, clock=clock)
        gateway.enter("SPY", qty=10, intent="entry")
        resting = gateway.exit(
            "SPY", intent="take profit", order_type="limit", limit_price="110", time_in_force="gtc"
        )
        assert resting.order is not None and resting.claim is not None
        broker.resting.add(resting.order.id)

        clock.advance(3600)  # after the close: Alpaca says done_for_day
        Reconciler(broker, store, settings=settings, clock=clock).run()
        claim = store.get(resting.claim.key)
        assert claim is not None and claim.state is ClaimState.SUBMITTED
        again = gateway.exit("SPY", intent="stop out", qty=10)
        assert again.claim is None and len(paper.orders()) == 2  # the resting exit holds the shares

        clock.advance(17 * 3600)  # the next session: the GTC order trades
        paper.set_price("SPY", "111")
        for _ in range(2):
            clock.advance(600)
            Reconciler(broker, store, settings=settings, clock=clock).run()
        claim = store.get(resting.claim.key)
        assert claim is not None and claim.state is ClaimState.FILLED and claim.filled_qty == Decimal(10)
        assert gateway.position("SPY").is_flat and paper.get_position("SPY") is None
