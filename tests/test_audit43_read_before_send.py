"""Audit 43: a broker read that fails before a new order is claimed is "not sent", not "may exist".

To classify a new order the drop-in reads the broker's position first (a buy while the agent is
flat: could it close a short?; a sell above the ledger) and, for a notional exit, its price. When
that read timed out or answered 5xx, the bot heard `OrderOutcomeUnknown` ("sent, no definite
answer: the order may exist"), with the read's 500 as status, for an order that was never claimed
nor sent: a bot that trusts the error table (or a plain alpaca-py bot that takes a 5xx on
submit for "maybe placed") may hold back a decision, or chase an order that does not exist. It
is `OrderNotSent` (`BrokerUnavailable`, 503): retrying is safe, and the retry places one order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from tests.dropin.kit import guarded_client, held, store_url
from tradeguard import BrokerUnavailable, ManualClock, OutcomeUnknown
from tradeguard.faults import FaultPlan
from tradeguard.testing import FixedPrices, paper_server

WHEN = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)  # a Monday, market open


def _first_position_read_fails(action: str) -> FaultPlan:
    status = "\n    status: 500" if action == "error" else ""
    return FaultPlan.parse(
        f"seed: 1\nfaults:\n  - route: GET /v2/positions/SPY\n    nth: 1\n    action: {action}{status}\n"
    )


@pytest.mark.parametrize("action", ["error", "drop"])
def test_a_buy_whose_position_read_failed_was_not_sent_and_its_retry_places_it_once(
    tmp_path: Path, action: str
) -> None:
    clock = ManualClock(WHEN)
    with (
        paper_server(
            prices=FixedPrices({"SPY": "455.10"}), clock=clock, faults=_first_position_read_fails(action)
        ) as server,
        guarded_client(server, store_url(tmp_path), clock=clock) as client,
    ):
        buy = MarketOrderRequest(symbol="SPY", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        with pytest.raises(APIError) as failed:
            client.submit_order(buy)
        assert isinstance(failed.value, BrokerUnavailable), type(failed.value)
        assert not isinstance(failed.value, OutcomeUnknown)
        assert failed.value.status_code == 503
        assert "not sent" in failed.value.message
        assert server.broker.orders() == []
        assert client.gateway.store.list_claims() == []

        placed = client.submit_order(buy)  # the bot's retry
        assert placed.status.value == "filled"
        assert len(server.broker.orders()) == 1
        assert held(server, "SPY") == 10
