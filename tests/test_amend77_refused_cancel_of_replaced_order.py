"""A cancel Alpaca refuses because the order was replaced does not make the replacement "canceled by the bot".

The drop-in's content window ends a decision when the bot canceled its order through the guard
unfilled: the same order sent again is a new order (audit 56). An order canceled by anyone else
keeps answering a retry, as the design's G1 asks (one decision, one order). After a replace whose
answer was lost (or a replace made outside the guard), the bot knows only the old order id; its
cancel of that id is refused 422 ('order is already in "replaced" state') while the replacement
rests. The claim followed the chain to the replacement under the bot's cancel as its reason
(`amend.cancel_asked` true of a live order). When a person then canceled the replacement, the
same bid sent again inside the dedup window was placed anew: a second order for one decision
(plain alpaca-py, which has no window, places it too; the guard answers a retry from its order);
and a client_order_id sent again was refused as one "the bot canceled". Real alpaca-py
`TradingClient`s over requests-mock (`FakeAlpaca`); stores on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

import pytest
import requests
import requests_mock
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import LimitOrderRequest, ReplaceOrderRequest

from tests.alpaca_bodies import ORDERS_URL, PAPER_URL, FakeAlpaca
from tradeguard import GuardedTradingClient, ManualClock, Settings
from tradeguard.amend import CANCELED_BY_THE_BOT, cancel_asked
from tradeguard.client.errors import OrderOutcomeUnknown
from tradeguard.domain.lifecycle import ClaimState


def bid(client_order_id: str | None = None) -> LimitOrderRequest:
    return LimitOrderRequest(
        symbol="TQQQ", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=70,
        client_order_id=client_order_id,
    )  # fmt: skip


def posts(mocker: requests_mock.Mocker) -> int:
    return sum(1 for r in mocker.request_history if r.method == "POST" and r.url == ORDERS_URL)


def replaced_unseen(how: str, client: GuardedTradingClient, mocker: requests_mock.Mocker, fake: FakeAlpaca,
                    order_id: UUID) -> dict[str, Any]:  # fmt: skip
    """Replace the bid so that the guard's claim does not record it; return the replacement."""
    change = ReplaceOrderRequest(limit_price=71)
    if how == "answer lost":

        def accept_then_time_out(request: Any, context: Any) -> str:
            fake._replace(request, context)
            raise requests.exceptions.ReadTimeout("read timed out")

        mocker.patch(re.compile(re.escape(f"{PAPER_URL}/v2") + r"/orders/[^/?]+$"), text=accept_then_time_out)
        with pytest.raises(OrderOutcomeUnknown):
            client.replace_order_by_id(order_id, change)
        mocker.patch(re.compile(re.escape(f"{PAPER_URL}/v2") + r"/orders/[^/?]+$"), text=fake._replace)
    else:  # by hand, with plain alpaca-py (a dashboard, another tool)
        TradingClient("key", "secret").replace_order_by_id(order_id, change)
    [replacement] = [o for o in fake.orders.values() if o.get("replaces") == str(order_id)]
    return replacement


@pytest.mark.parametrize("how", ["answer lost", "replaced outside the guard"])
def test_an_identical_bid_after_a_person_canceled_the_replacement_is_answered_as_a_retry(
    store_url: str, mocker: requests_mock.Mocker, fake: FakeAlpaca, clock: ManualClock, how: str
) -> None:
    client = GuardedTradingClient(
        "key", "secret", store=store_url, agent_id="bidder", clock=clock,
        settings=Settings(recent_activity_secs=0),
    )  # fmt: skip
    try:
        first = client.submit_order(bid())
        assert isinstance(first, Order)
        fake.orders[first.client_order_id]["status"] = "new"
        replacement = replaced_unseen(how, client, mocker, fake, first.id)
        with pytest.raises(APIError) as refused:
            client.cancel_order_by_id(first.id)  # the bot gives up on the order it knows
        assert refused.value.status_code == 422
        claim = client.gateway.store.get_by_client_order_id(first.client_order_id)
        assert claim is not None and claim.broker_order_id == replacement["id"]
        rests = cancel_asked(claim)  # the replacement rests: the bot canceled nothing

        replacement["status"] = "canceled"  # a person cancels it on Alpaca's dashboard
        clock.advance(3)  # well inside the 60 s dedup window
        again = client.submit_order(bid())

        assert isinstance(again, Order) and str(again.id) == replacement["id"], again
        assert posts(mocker) == 1 and len(fake.orders) == 2  # the bid and its replacement only
        claim = client.gateway.store.get_by_client_order_id(first.client_order_id)
        assert claim is not None and claim.state is ClaimState.CANCELED
        assert not claim.reason.startswith(CANCELED_BY_THE_BOT) and not rests, claim.reason
    finally:
        client.close()


def test_a_client_order_id_sent_again_after_a_person_canceled_its_replacement_is_answered_with_it(
    store_url: str, mocker: requests_mock.Mocker, fake: FakeAlpaca, clock: ManualClock
) -> None:
    client = GuardedTradingClient(
        "key", "secret", store=store_url, agent_id="bidder", clock=clock,
        settings=Settings(recent_activity_secs=0),
    )  # fmt: skip
    try:
        first = client.submit_order(bid("bot-bid-1"))
        assert isinstance(first, Order)
        fake.orders["bot-bid-1"]["status"] = "new"
        replacement = replaced_unseen("answer lost", client, mocker, fake, first.id)
        with pytest.raises(APIError):
            client.cancel_order_by_id(first.id)
        replacement["status"] = "canceled"
        clock.advance(3)

        again = client.submit_order(bid("bot-bid-1"))  # not "client_order_id must be unique"

        assert isinstance(again, Order) and str(again.id) == replacement["id"], again
        assert posts(mocker) == 1
    finally:
        client.close()


def test_a_bid_whose_cancel_met_it_canceled_already_is_placed_again_as_a_new_decision(
    store_url: str, mocker: requests_mock.Mocker, fake: FakeAlpaca, clock: ManualClock
) -> None:
    """Kept: the refusal told the bot its order is gone (as plain alpaca-py, which places it again)."""
    client = GuardedTradingClient(
        "key", "secret", store=store_url, agent_id="bidder", clock=clock,
        settings=Settings(recent_activity_secs=0),
    )  # fmt: skip
    try:
        first = client.submit_order(bid())
        assert isinstance(first, Order)
        fake.orders[first.client_order_id]["status"] = "canceled"  # a person canceled it first
        with pytest.raises(APIError) as refused:
            client.cancel_order_by_id(first.id)
        assert refused.value.status_code == 422
        clock.advance(3)

        again = client.submit_order(bid())

        assert isinstance(again, Order) and again.id != first.id
        assert posts(mocker) == 2
    finally:
        client.close()
