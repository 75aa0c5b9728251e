"""Audit 43: the text of an `APIError` the guard rebuilds is Alpaca's, byte for byte.

alpaca-py's `str(error)` is the answer's body as Alpaca sent it: compact JSON, keys in order. The
guard rebuilds a broker refusal from what its adapter kept, and wrote it with `json.dumps`'s
spaces: a bot that logs, compares or pattern-matches the text (``'"code":40310000' in str(e)``)
saw something else than on alpaca-py for the very same refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

from tests.dropin.kit import guarded_client, plain_client, store_url
from tradeguard import ManualClock
from tradeguard.testing import FixedPrices, paper_server

WHEN = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)  # a Monday, market open


def _refusals(client: TradingClient) -> list[str]:
    """A bot's refused calls, in order; the text of each APIError."""
    calls: list[Callable[[], object]] = [
        lambda: client.submit_order(  # 403 insufficient buying power, with its figures
            MarketOrderRequest(symbol="SPY", qty=1000, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        ),
        lambda: client.submit_order(  # 422 sub-penny price
            LimitOrderRequest(
                symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=0.1 + 0.2
            )
        ),
        lambda: client.close_position("QQQ"),  # 404 position does not exist
    ]
    texts = []
    for call in calls:
        with pytest.raises(APIError) as refused:
            call()
        texts.append(str(refused.value))
    return texts


def test_a_refusal_reads_as_on_alpaca_py(tmp_path: Path) -> None:
    prices = FixedPrices({"SPY": "455.10", "QQQ": "400"})
    with paper_server(prices=prices, clock=ManualClock(WHEN)) as server, plain_client(server) as plain:
        expected = _refusals(plain)
    clock = ManualClock(WHEN)
    with (
        paper_server(prices=prices, clock=clock) as server,
        guarded_client(server, store_url(tmp_path), clock=clock) as guarded,
    ):
        assert _refusals(guarded) == expected
