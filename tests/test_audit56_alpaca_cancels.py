"""Audit 56: a cancel Alpaca finishes after answering it still ends the bot's decision.

Alpaca answers ``DELETE /v2/orders/{id}`` with 204 and shows the order ``pending_cancel`` until
the cancel is done. The guard recorded that the bot ended a decision only when the order read
canceled right after the DELETE (the paper server cancels at once), so over Alpaca a bid the
bot canceled and then placed again, identical and inside the dedup window, was answered as a
retry with the canceled order and never placed (plain alpaca-py places it); and a
client_order_id reused after the bot canceled its order was answered with the canceled order
instead of Alpaca's 422. The real alpaca-py `TradingClient` over requests-mock (`FakeAlpaca`).
"""

from __future__ import annotations

from typing import Any

import pytest
import requests_mock
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import LimitOrderRequest

from tests.alpaca_bodies import ORDERS_URL, FakeAlpaca
from tradeguard import GuardedTradingClient, ManualClock, Settings
from tradeguard.domain.lifecycle import ClaimState


def bid(client_order_id: str | None = None) -> LimitOrderRequest:
    return LimitOrderRequest(
        symbol="TQQQ", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=70,
        client_order_id=client_order_id,
    )  # fmt: skip


def guarded(store_url: str, clock: ManualClock) -> GuardedTradingClient:
    return GuardedTradingClient(
        "key", "secret", store=store_url, agent_id="bidder", clock=clock,
        settings=Settings(recent_activity_secs=0),
    )  # fmt: skip


def posts(mocker: requests_mock.Mocker) -> int:
    return sum(1 for r in mocker.request_history if r.method == "POST" and r.url == ORDERS_URL)


def rest(fake: FakeAlpaca, order: object) -> None:
    """Alpaca took the order: it rests (the fake's answer is pending_new)."""
    assert isinstance(order, Order)
    fake.orders[order.client_order_id]["status"] = "new"


def finish_cancels(fake: FakeAlpaca) -> None:
    """Alpaca completes the cancels it took."""
    for order in fake.orders.values():
        if order["status"] == "pending_cancel":
            order["status"] = "canceled"


def test_plain_alpaca_py_places_an_identical_bid_again_after_canceling_it(
    mocker: requests_mock.Mocker, fake: FakeAlpaca
) -> None:
    plain = TradingClient("key", "secret")
    first = plain.submit_order(bid())
    rest(fake, first)
    plain.cancel_order_by_id(first.id)
    assert fake.orders[first.client_order_id]["status"] == "pending_cancel"  # as Alpaca shows it
    finish_cancels(fake)
    plain.submit_order(bid())
    assert posts(mocker) == 2 and len(fake.orders) == 2


@pytest.mark.parametrize("how", ["cancel_order_by_id", "cancel_orders"])
def test_the_guard_places_the_identical_bid_again_once_alpaca_finished_the_cancel(
    store_url: str, mocker: requests_mock.Mocker, fake: FakeAlpaca, clock: ManualClock, how: str
) -> None:
    client = guarded(store_url, clock)
    try:
        first = client.submit_order(bid())
        rest(fake, first)
        if how == "cancel_order_by_id":
            client.cancel_order_by_id(first.id)
        else:
            client.cancel_orders()
        assert fake.orders[first.client_order_id]["status"] == "pending_cancel"
        finish_cancels(fake)
        clock.advance(3)  # well inside the 60 s dedup window
        second = client.submit_order(bid())
        assert isinstance(second, Order) and second.id != first.id
        assert posts(mocker) == 2 and len(fake.orders) == 2
        # Its own retry is answered from it: still one order per decision.
        clock.advance(3)
        retry = client.submit_order(bid())
        assert isinstance(retry, Order) and retry.id == second.id and posts(mocker) == 2
        canceled = client.gateway.store.get_by_client_order_id(first.client_order_id)
        assert canceled is not None and canceled.state is ClaimState.CANCELED
    finally:
        client.close()


def test_an_identical_bid_while_the_cancel_is_still_pending_is_answered_from_it(
    store_url: str, mocker: requests_mock.Mocker, fake: FakeAlpaca, clock: ManualClock
) -> None:
    """Until Alpaca says canceled the order may still fill: the guard sends nothing (G1)."""
    client = guarded(store_url, clock)
    try:
        first = client.submit_order(bid())
        rest(fake, first)
        client.cancel_order_by_id(first.id)
        clock.advance(3)
        again = client.submit_order(bid())
        assert isinstance(again, Order) and again.id == first.id and posts(mocker) == 1
    finally:
        client.close()


def test_a_client_order_id_reused_after_alpaca_finished_the_bots_cancel_is_its_422(
    store_url: str, mocker: requests_mock.Mocker, fake: FakeAlpaca, clock: ManualClock
) -> None:
    plain = TradingClient("key", "secret")
    placed = plain.submit_order(bid("plain-bid"))
    rest(fake, placed)
    plain.cancel_order_by_id(placed.id)
    finish_cancels(fake)
    with pytest.raises(APIError) as on_alpaca:
        plain.submit_order(bid("plain-bid"))
    client = guarded(store_url, clock)
    try:
        first = client.submit_order(bid("guarded-bid"))
        rest(fake, first)
        client.cancel_order_by_id(first.id)
        finish_cancels(fake)
        clock.advance(3)
        with pytest.raises(APIError) as guarded_error:
            client.submit_order(bid("guarded-bid"))
    finally:
        client.close()
    expected = (on_alpaca.value.status_code, on_alpaca.value.code, on_alpaca.value.message)
    assert expected == (422, 40010001, "client_order_id must be unique")
    got = guarded_error.value
    assert (got.status_code, got.code, got.message) == expected
    assert posts(mocker) == 3  # plain's two (the second refused) and the guard's one


class CancelsLater(FakeAlpaca):
    """Alpaca finishing its cancels a moment after answering them: done at the second listing.

    A resting sell holds the position's shares (`qty_available` 0) until its cancel is done.
    """

    listings_after_cancel = 0

    def _list_orders(self, request: Any, context: Any) -> str:
        text = super()._list_orders(request, context)
        pending = [o for o in self.orders.values() if o["status"] == "pending_cancel"]
        if pending:
            self.listings_after_cancel += 1
            if self.listings_after_cancel >= 2:
                for order in pending:
                    order["status"] = "canceled"
                    held = self.positions[order["symbol"]]
                    held["qty_available"] = held["qty"]
        return text


def test_close_all_positions_with_cancel_orders_closes_a_position_its_canceled_exit_held(
    store_url: str, mocker: requests_mock.Mocker, clock: ManualClock
) -> None:
    """Alpaca's ``DELETE /v2/positions?cancel_orders=true`` cancels, then closes every position."""
    fake = CancelsLater(mocker)
    client = guarded(store_url, clock)
    try:
        entry = client.submit_order(
            LimitOrderRequest(
                symbol="TQQQ", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=76
            )
        )
        assert isinstance(entry, Order)
        fake.orders[entry.client_order_id].update(status="filled", filled_qty="10", filled_avg_price="75")
        fake.add_position("TQQQ", "10")
        clock.advance(60)
        take_profit = client.submit_order(
            LimitOrderRequest(
                symbol="TQQQ", qty=10, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, limit_price=90
            )
        )
        rest(fake, take_profit)
        fake.add_position("TQQQ", "10", qty_available="0")  # the resting sell holds every share
        clock.advance(60)
        [answer] = client.close_all_positions(cancel_orders=True)
        assert (answer.symbol, answer.status) == ("TQQQ", 200), answer
        assert isinstance(answer.body, Order) and float(answer.body.qty or 0) == 10
    finally:
        client.close()
    assert fake.orders[take_profit.client_order_id]["status"] == "canceled"
    [close] = [o for o in fake.orders.values() if o["side"] == "sell" and o["status"] == "pending_new"]
    assert close["qty"] == "10" and close["position_intent"] == "sell_to_close"
