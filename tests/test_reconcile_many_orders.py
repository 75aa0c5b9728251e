"""Audit 21 #2: a phantom clears on an account with 500 or more orders resting anywhere (G4).

The pass reads every open order: a limit of one page made the paper account's full page read
as cut (no symbol ever free of open orders) and made Alpaca's adapter, which raises rather than
truncate, abort every pass.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from tests.gateway_kit import MAY21_PRICES, OnSleepClock
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, OrderType, TimeInForce
from tradeguard.errors import OutcomeUnknown
from tradeguard.gateway import OrderGateway
from tradeguard.ports import ForwardingBroker
from tradeguard.store import ClaimStore
from tradeguard.testing import PaperBroker, make_request


class NeverTruncates(ForwardingBroker):
    """The port's promise, as Alpaca's adapter keeps it: past `limit` a listing raises."""

    def list_orders(
        self,
        *,
        status: str = "open",
        symbols: list[str] | None = None,
        after: datetime | None = None,
        limit: int = 500,
    ) -> list[BrokerOrder]:
        found = self.inner.list_orders(status=status, symbols=symbols, after=after, limit=limit + 1)
        if len(found) > limit:
            raise OutcomeUnknown(f"more than {limit} orders match; refusing to return a truncated list")
        return found  # type: ignore[no-any-return]


@pytest.mark.parametrize(("resting", "port"), [(500, "paper"), (501, "never truncates")])
def test_a_phantom_clears_beside_hundreds_of_resting_orders(store_url: str, resting: int, port: str) -> None:
    """The bot's 12 TQQQ were closed from the dashboard; another bot rests `resting` limit buys
    in QQQ far below the market. The phantom clears within one reconcile interval."""
    clock, settings = OnSleepClock(), Settings()
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    broker = paper if port == "paper" else NeverTruncates(paper)
    with ClaimStore(store_url, settings=settings, clock=clock) as store:
        gw = OrderGateway(broker, store, agent_id="bot", settings=settings, clock=clock)
        gw.enter("TQQQ", qty=12, intent="09:42 breakout")
        paper.submit_order(make_request("TQQQ", "sell", 12, client_order_id="dashboard-close"))
        for i in range(resting):
            paper.submit_order(
                make_request(
                    "QQQ", "buy", 1, client_order_id=f"grid-{i}", order_type=OrderType.LIMIT,
                    limit_price=Decimal(100), time_in_force=TimeInForce.GTC,
                )
            )  # fmt: skip
        clock.advance(settings.reconcile_interval_secs)

        report = gw.reconcile()

        assert report.aborted is None
        assert [a.kind.value for a in report.applied] == ["clear_phantom"]
        assert gw.position("TQQQ").is_flat
