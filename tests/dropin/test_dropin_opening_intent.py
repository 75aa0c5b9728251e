"""G3 across agents: an order the drop-in took for an opening one says so (`*_to_open`).

Found by an adversarial run: agent B, flat, sold 3 without a position_intent; agent A's buy of 10
landed between B's position check and B's order. Left to Alpaca's inference the sell closed 3 of
A's shares (and B's ledger went short while A's kept a phantom). Sent as `sell_to_open` it meets
Alpaca's 422 "position intent mismatch" instead. Real parts: the paper broker behind the drop-in,
one claim store on a SQLite file.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from tests.gateway_kit import MAY21_PRICES, broker_qty
from tradeguard import GuardedTradingClient, ManualClock, OrderGateway
from tradeguard.domain import BrokerOrder, OrderRequest
from tradeguard.paper import PaperBroker
from tradeguard.ports import ForwardingBroker


class OtherAgentBuysFirst(ForwardingBroker):
    """Runs `before` once, right before the first order reaches the broker."""

    def __init__(self, inner: PaperBroker, before: object) -> None:
        super().__init__(inner)
        self._before = before

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        before, self._before = self._before, None
        if callable(before):
            before()
        return super().submit_order(request)


def test_a_flat_agents_sell_never_closes_a_long_another_agent_opened_meanwhile(tmp_path: Path) -> None:
    clock = ManualClock()
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock, cash=1_000_000)
    store = f"sqlite:///{tmp_path / 'claims.db'}"
    a = OrderGateway(paper, store, agent_id="bot-a", clock=clock)
    a.position("TQQQ")  # started
    racing = OtherAgentBuysFirst(paper, lambda: a.enter("TQQQ", qty=10, intent="a in"))
    b = GuardedTradingClient(broker=racing, store=store, agent_id="bot-b", clock=clock)
    order = MarketOrderRequest(symbol="TQQQ", qty=3, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
    with pytest.raises(APIError) as refused:
        b.submit_order(order)
    assert refused.value.status_code == 422 and "position intent mismatch" in str(refused.value)
    assert broker_qty(paper, "TQQQ") == 10  # A's 10, all of them (before: 7)
    assert a.position("TQQQ").qty == 10 and b.gateway.position("TQQQ").qty == Decimal(0)
