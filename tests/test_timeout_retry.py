"""The lost-response retry, through real HTTP: unguarded it buys twice, guarded once (G1)."""

from __future__ import annotations

from pathlib import Path

import requests
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import MarketOrderRequest

from tradeguard import GuardedTradingClient, OutcomeUnknown, Settings
from tradeguard.faults import FaultPlan
from tradeguard.testing import alpaca_client, orders_of, paper_server

LOST_FIRST_ANSWER = FaultPlan.parse(
    "seed: 7\nfaults:\n  - {route: POST /v2/orders, nth: 1, action: accept_then_timeout, delay_secs: 3600}\n"
)


def retrying_bot(client: TradingClient, attempts: int = 3) -> Order | None:
    """A typical bot: on a timeout (or an unknown outcome), send the same order again."""
    order = MarketOrderRequest(symbol="TQQQ", qty=6, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    for _ in range(attempts):
        try:
            return client.submit_order(order)
        except (requests.exceptions.Timeout, OutcomeUnknown):
            continue
    return None


def test_same_retrying_bot_places_two_orders_unguarded_and_one_guarded(tmp_path: Path) -> None:
    with paper_server(faults=LOST_FIRST_ANSWER) as server, alpaca_client(server.url, timeout_secs=1) as plain:
        assert retrying_bot(plain) is not None
        unguarded_orders = len(orders_of(server.broker))

    settings = Settings(request_timeout_secs=1, connect_timeout_secs=1)
    with (
        paper_server(faults=LOST_FIRST_ANSWER) as server,
        GuardedTradingClient(
            "paper-key",
            "paper-secret",
            url_override=server.url,
            store=f"sqlite:///{tmp_path / 'claims.db'}",
            agent_id="retrying-bot",
            settings=settings,
        ) as guarded,
    ):
        order = retrying_bot(guarded)
        placed = orders_of(server.broker)
    assert unguarded_orders == 2
    assert len(placed) == 1
    assert order is not None and order.client_order_id == placed[0].client_order_id
