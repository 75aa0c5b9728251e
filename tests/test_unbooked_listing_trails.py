"""Audit 21 #5: an orders listing that trails a fill does not free another agent's unbooked shares.

Exit sizing holds back what other agents' orders in motion filled that their ledgers do not book
yet; past three such claims it reads one listing of the symbol's orders. A claim whose order may
exist but is absent from the listing is looked up by client_order_id (lookups are current).
"""

from __future__ import annotations

from datetime import datetime

from tests.gateway_kit import MAY21_PRICES, OnSleepClock
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, OrderRequest
from tradeguard.errors import BrokerUnavailable, OutcomeUnknown
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.ports import ForwardingBroker
from tradeguard.store import ClaimStore
from tradeguard.testing import PaperBroker, make_request


class TrailingListing(ForwardingBroker):
    """`status=all` listings leave out orders that filled in the last 10 s; lookups are current."""

    def __init__(self, inner: PaperBroker, clock: OnSleepClock) -> None:
        super().__init__(inner)
        self.clock = clock

    def list_orders(
        self,
        *,
        status: str = "open",
        symbols: list[str] | None = None,
        after: datetime | None = None,
        limit: int = 500,
    ) -> list[BrokerOrder]:
        found = self.inner.list_orders(status=status, symbols=symbols, after=after, limit=limit)
        now = self.clock.now()
        return [
            o
            for o in found
            if status != "all"
            or not (o.filled_qty and o.updated_at and (now - o.updated_at).total_seconds() < 10)
        ]


class LostAnswers(ForwardingBroker):
    """The first POST lands and its answer is lost; later ones never land; lookups fail."""

    def __init__(self, inner: PaperBroker) -> None:
        super().__init__(inner)
        self.sent = 0

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        self.sent += 1
        if self.sent == 1:
            self.inner.submit_order(request)
        raise OutcomeUnknown("read timeout")

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        raise BrokerUnavailable("connection refused")


def test_a_phantom_exit_never_sells_shares_a_trailing_listing_leaves_out(store_url: str) -> None:
    """A's 10 SPY were sold from the dashboard (a phantom not cleared yet). B sent four entries
    whose answers were lost; the first filled 5. A's exit must hold those 5 back."""
    clock, settings = OnSleepClock(), Settings()
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    with ClaimStore(store_url, settings=settings, clock=clock) as store:
        a = OrderGateway(
            TrailingListing(paper, clock), store, agent_id="agent-a", settings=settings, clock=clock
        )
        b = OrderGateway(LostAnswers(paper), store, agent_id="agent-b", settings=settings, clock=clock)
        a.enter("SPY", qty=10, intent="a in")
        paper.submit_order(make_request("SPY", "sell", 10, client_order_id="dashboard-close"))
        clock.advance(60)
        assert [b.enter("SPY", qty=5, intent=f"b in {i}").outcome for i in range(4)] == [Outcome.UNKNOWN] * 4
        clock.advance(1)
        assert paper.position_qty("SPY") == 5

        result = a.exit("SPY", intent="a out")

        assert result.outcome is not Outcome.SUBMITTED, result.reason
        assert paper.position_qty("SPY") == 5, "A's phantom exit sold B's shares"
