"""An id whose only order was refused may carry a changed order next, as Alpaca takes it.

Audit 24: a refusal of the POST (403 insufficient buying power) places nothing, so Alpaca keeps
no order under its client_order_id and takes that id again, with any order. A bot that resizes
after the refusal and keeps its id (derived from its signal) got its smaller order on plain
alpaca-py; through the drop-in it got 422 "client_order_id must be unique" and no order at all.
An id that placed an order (or may have: an outcome unknown) still names that order only.
"""

from __future__ import annotations

from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide

from tests.dropin.bot import PRICES
from tests.dropin.kit import as_order, guarded_client, held, market, num, outcome_of, plain_client
from tradeguard import ManualClock
from tradeguard.paper.server import PaperServer
from tradeguard.testing import FixedPrices, orders_of, paper_server

BUY = OrderSide.BUY


def _resized_after_a_refusal(client: TradingClient, clock: ManualClock) -> tuple[object, object]:
    refused = outcome_of(lambda: client.submit_order(market("SPY", 100_000, BUY, "sig-0942")))
    clock.advance(5)
    return refused, outcome_of(lambda: client.submit_order(market("SPY", 10, BUY, "sig-0942")))


def test_an_entry_refused_for_buying_power_then_resized_under_its_id_is_placed_as_on_alpaca_py(
    claims: str, clock: ManualClock
) -> None:
    seen = []
    for guarded in (False, True):
        with paper_server(prices=FixedPrices(PRICES), clock=clock) as server:
            if guarded:
                with guarded_client(server, claims, clock=clock) as client:
                    refused, resized = _resized_after_a_refusal(client, clock)
            else:
                with plain_client(server) as client:
                    refused, resized = _resized_after_a_refusal(client, clock)
            assert isinstance(refused, APIError) and refused.status_code == 403, refused
            order = as_order(resized)
            seen.append((num(order.qty), order.client_order_id, held(server, "SPY")))
            assert len(orders_of(server.broker, symbol="SPY")) == 1
    assert seen[1] == seen[0] == ("10", "sig-0942", 10)


def test_its_retry_is_answered_from_the_resized_order_and_the_first_size_is_then_refused(
    server: PaperServer, claims: str, clock: ManualClock
) -> None:
    with guarded_client(server, claims, clock=clock) as client:
        _, resized = _resized_after_a_refusal(client, clock)
        first = as_order(resized)
        retry = as_order(client.submit_order(market("SPY", 10, BUY, "sig-0942")))
        assert retry.id == first.id
        bigger = outcome_of(lambda: client.submit_order(market("SPY", 100_000, BUY, "sig-0942")))
        assert isinstance(bigger, APIError) and (bigger.status_code, bigger.code) == (422, 40010001)
        assert len(orders_of(server.broker, symbol="SPY")) == 1 and held(server, "SPY") == 10
