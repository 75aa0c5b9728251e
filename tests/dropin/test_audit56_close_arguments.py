"""Audit 56: `close_position` with a qty or percentage Alpaca cannot take is its 422, and sells nothing.

Alpaca refuses a close whose qty is not a positive number with 422 ("qty must be > 0",
"invalid qty"); the guard sized such a close as an exit instead: qty 0 or -5 was a 403
"insufficient qty", qty "NaN" raised `decimal.InvalidOperation` (no `APIError`: a bot's
``except APIError`` did not catch it), and qty "Infinity" sold the whole position. Each is
compared with what plain alpaca-py gets from the paper server for the same position.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide
from alpaca.trading.requests import ClosePositionRequest

from tests.dropin.kit import guarded_client, held, market, plain_client, store_url
from tradeguard import ManualClock
from tradeguard.testing import FixedPrices, paper_server

CLOSES = [
    {"qty": "0"},
    {"qty": "-5"},
    {"qty": "NaN"},
    {"qty": "Infinity"},
    {"qty": "abc"},
    {"percentage": "NaN"},
    {"percentage": "abc"},
]


@pytest.mark.parametrize("options", CLOSES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_a_close_with_an_impossible_size_is_alpacas_422_on_both_clients_and_sells_nothing(
    tmp_path: Path, options: dict[str, str]
) -> None:
    answers = []
    for guarded in (False, True):
        clock = ManualClock()
        with paper_server(prices=FixedPrices({"SPY": "500"}), clock=clock) as server:
            opened = (
                guarded_client(server, store_url(tmp_path), clock=clock) if guarded else plain_client(server)
            )
            with opened as client:
                client.submit_order(market("SPY", 10, OrderSide.BUY))
                clock.advance(5)
                with pytest.raises(APIError) as refused:
                    client.close_position("SPY", ClosePositionRequest(**options))
                error = refused.value
                answers.append((error.status_code, error.code, error.message))
                assert held(server, "SPY") == Decimal(10)
                assert [o.side.value for o in server.broker.orders()] == ["buy"]
    plain, guard = answers
    assert plain[0] == 422
    assert guard == plain
