"""Audit 56: a client_order_id the bot reuses after canceling its order, as alpaca-py answers it.

Alpaca refuses an id once used, for good, even after its order was canceled: 422
"client_order_id must be unique" (ALPACA.md). The guard answered the reused id with the
canceled order instead, as if it were the retry of a lost answer: a bot that canceled a resting
bid and placed it again under the same id heard "placed" (an `Order`, no exception) where
alpaca-py raises, and believed a bid rested that the broker never took. A retry of an order the
bot did not cancel itself still answers with its order (the lost-answer case the guard exists for).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide
from alpaca.trading.requests import LimitOrderRequest

from tests.dropin.kit import as_order, limit, market, plain_client
from tradeguard import GuardedTradingClient, ManualClock
from tradeguard.client import ClientOrderIdReused
from tradeguard.paper.server import PaperServer

BUY, SELL = OrderSide.BUY, OrderSide.SELL


def _cancel(client: TradingClient, order_id: object, how: str) -> None:
    if how == "cancel_order_by_id":
        client.cancel_order_by_id(str(order_id))
    else:
        client.cancel_orders()


def _refusal(call: Callable[[], object]) -> tuple[int | None, int, str]:
    with pytest.raises(APIError) as caught:
        call()
    return caught.value.status_code, caught.value.code, caught.value.message


@pytest.mark.parametrize("how", ["cancel_order_by_id", "cancel_orders"])
def test_a_bid_canceled_and_placed_again_under_its_id_is_alpacas_422_on_both_clients(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock, how: str
) -> None:
    bid = limit("SPY", 2, BUY, 100, client_order_id="bid-1")
    with plain_client(server) as plain:
        first = as_order(plain.submit_order(bid))
        _cancel(plain, first.id, how)
        expected = _refusal(lambda: plain.submit_order(bid))
    assert expected == (422, 40010001, "client_order_id must be unique")

    guarded_bid = limit("SPY", 2, BUY, 100, client_order_id="bid-2")
    placed = as_order(client.submit_order(guarded_bid))
    _cancel(client, placed.id, how)
    clock.advance(1)
    got = _refusal(lambda: client.submit_order(guarded_bid))
    assert got == expected
    # Refused before anything was sent, and refused again on every later call.
    clock.advance(120)
    assert _refusal(lambda: client.submit_order(guarded_bid)) == expected
    by_id = [o for o in server.broker.orders() if o.client_order_id == "bid-2"]
    assert [o.status.value for o in by_id] == ["canceled"]
    assert not [o for o in server.broker.orders() if not o.status.is_terminal]


def test_the_refusal_is_the_guards_reused_id_error_naming_the_canceled_order(
    client: GuardedTradingClient, clock: ManualClock
) -> None:
    stop = LimitOrderRequest(
        symbol="SPY", qty=1, side=BUY, time_in_force="gtc", limit_price=90, client_order_id="dip-buy"
    )
    placed = as_order(client.submit_order(stop))
    client.cancel_order_by_id(placed.id)
    with pytest.raises(ClientOrderIdReused) as caught:
        client.submit_order(stop)
    assert str(placed.id) in caught.value.body["detail"]


def test_an_exit_canceled_and_sent_again_under_its_id_is_refused_and_the_shares_stay_free(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock
) -> None:
    client.submit_order(market("SPY", 5, BUY))
    clock.advance(2)
    ask = limit("SPY", 5, SELL, 600, client_order_id="take-profit")
    placed = as_order(client.submit_order(ask))
    client.cancel_order_by_id(placed.id)
    clock.advance(1)
    assert _refusal(lambda: client.submit_order(ask)) == (422, 40010001, "client_order_id must be unique")
    # The shares are free for the bot's next exit under a new id, as on alpaca-py.
    again = as_order(client.submit_order(limit("SPY", 5, SELL, 600, client_order_id="take-profit-2")))
    assert again.status.value == "new" and str(again.qty) in {"5", "5.0"}


def test_an_order_the_bot_did_not_cancel_still_answers_its_retry(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock
) -> None:
    bid = limit("SPY", 2, BUY, 100, client_order_id="bid-kept")
    first = as_order(client.submit_order(bid))
    clock.advance(5)
    assert as_order(client.submit_order(bid)).id == first.id
    # Canceled at the broker, not through the guard (another agent's bulk cancel, a person):
    # the bot may not know; its retry answers with its order, as before.
    server.broker.cancel_order(str(first.id))
    clock.advance(5)
    client.gateway.reconcile()
    retry = as_order(client.submit_order(bid))
    assert retry.id == first.id and retry.status.value == "canceled"
