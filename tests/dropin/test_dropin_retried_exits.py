"""A retried exit stays one order when the position moved since its first attempt (G1, G3).

The May 21 failure through the drop-in: a bot's closing sell fills, its answer is lost or slow,
and the bot sends the very same sell again. By then the guard knows the position is flat, so
classified afresh the retry would be a short sale; it is the same decision, and answers from the
first order. Also: a close that finds every share held by resting orders answers as Alpaca does
(403, not 404) and does not jam the next close, and a close of a position opened since the last
close is a new decision. Each test runs the plain alpaca-py client beside the guarded one where
the point is "behaves as before".
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide

from tests.dropin.kit import (
    as_order,
    claims_of,
    guarded_client,
    held,
    ledger_qty,
    limit,
    market,
    outcome_of,
    plain_client,
)
from tests.gateway_kit import LaggingPositions
from tradeguard import GuardedTradingClient, ManualClock, Settings
from tradeguard.broker.alpaca import AlpacaBroker
from tradeguard.paper.server import PaperServer

BUY, SELL = OrderSide.BUY, OrderSide.SELL


def _orders(server: PaperServer, side: OrderSide) -> int:
    return sum(1 for o in server.broker.orders() if o.side.value == side.value)


@pytest.mark.parametrize("coid", [None, "close-1"], ids=["no-client-order-id", "own-client-order-id"])
def test_a_closing_sell_retried_after_it_filled_is_not_a_short_sale(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock, coid: str | None
) -> None:
    client.submit_order(market("SPY", 5, BUY))
    first = as_order(client.submit_order(market("SPY", 5, SELL, client_order_id=coid)))
    assert ledger_qty(client, "SPY") == 0  # the guard knows the sell filled
    clock.advance(2)
    again = as_order(client.submit_order(market("SPY", 5, SELL, client_order_id=coid)))
    assert again.id == first.id
    assert _orders(server, SELL) == 1
    assert held(server, "SPY") == 0
    assert sorted(c.kind.value for c in claims_of(client, "SPY")) == ["entry", "exit"]


def test_a_cover_retried_after_it_filled_is_not_a_new_long(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock
) -> None:
    client.submit_order(market("SPY", 5, SELL))  # a short sale
    first = as_order(client.submit_order(market("SPY", 5, BUY)))  # its cover
    clock.advance(2)
    again = as_order(client.submit_order(market("SPY", 5, BUY)))
    assert again.id == first.id
    assert _orders(server, BUY) == 1
    assert held(server, "SPY") == 0


def test_a_retry_after_a_reconcile_pass_still_meets_its_first_order(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock
) -> None:
    client.submit_order(market("SPY", 5, BUY))
    first = as_order(client.submit_order(market("SPY", 5, SELL)))
    client.gateway.reconcile()
    clock.advance(5)
    again = as_order(client.submit_order(market("SPY", 5, SELL)))
    assert again.id == first.id
    assert held(server, "SPY") == 0


def test_a_close_with_every_share_held_by_a_resting_order_answers_403_and_the_next_close_works(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock
) -> None:
    client.submit_order(market("SPY", 10, BUY))
    resting = as_order(client.submit_order(limit("SPY", 10, SELL, 10_000)))
    refused = outcome_of(lambda: client.close_position("SPY"))
    assert isinstance(refused, APIError) and refused.status_code == 403
    assert "insufficient qty available" in refused.message
    body = json.loads(refused._error)  # alpaca-py keeps the JSON text
    assert body["existing_qty"] == "10" and body["held_for_orders"] == "10"
    assert held(server, "SPY") == 10  # a bot that read 404 as "flat" would forget these

    client.cancel_order_by_id(resting.id)
    clock.advance(1)
    closed = as_order(client.close_position("SPY"))  # same call, inside the window
    assert closed.qty == "10" and held(server, "SPY") == 0
    assert ledger_qty(client, "SPY") == 0


def test_a_plain_sell_refused_for_held_shares_can_be_sent_again_once_they_are_free(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock
) -> None:
    client.submit_order(market("SPY", 10, BUY))
    resting = as_order(client.submit_order(limit("SPY", 10, SELL, 10_000)))
    refused = outcome_of(lambda: client.submit_order(market("SPY", 10, SELL)))
    assert isinstance(refused, APIError) and refused.status_code == 403
    client.cancel_order_by_id(resting.id)
    clock.advance(1)
    sold = as_order(client.submit_order(market("SPY", 10, SELL)))
    assert sold.qty == "10" and held(server, "SPY") == 0


def test_a_close_of_a_position_opened_since_the_last_close_is_a_new_decision(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock
) -> None:
    client.submit_order(market("SPY", 10, BUY, client_order_id="in-1"))
    first = as_order(client.close_position("SPY"))
    client.submit_order(market("SPY", 5, BUY, client_order_id="in-2"))
    clock.advance(1)
    second = as_order(client.close_position("SPY"))
    assert second.id != first.id and second.qty == "5"
    client.submit_order(market("SPY", 3, BUY, client_order_id="in-3"))
    clock.advance(1)
    answers = client.close_all_positions()
    assert [a.symbol for a in answers] == ["SPY"] and answers[0].status == 200
    assert held(server, "SPY") == 0 and ledger_qty(client, "SPY") == 0


def test_the_same_sell_without_an_id_exits_a_position_opened_since_inside_the_window(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock
) -> None:
    """Audit 7a D6: two round trips inside one dedup window, no client_order_ids, the second
    entry a different order. The second sell is the new position's exit, not a retry of the
    first: it is sent, the account ends flat, and its own retry sends nothing more."""
    client.submit_order(market("SPY", 10, BUY))
    clock.advance(15)
    first = as_order(client.submit_order(market("SPY", 10, SELL)))
    clock.advance(15)
    client.submit_order(limit("SPY", 10, BUY, 600))  # marketable: a new position of 10
    clock.advance(15)
    assert held(server, "SPY") == 10 == ledger_qty(client, "SPY")

    second = as_order(client.submit_order(market("SPY", 10, SELL)))
    clock.advance(2)
    retry = as_order(client.submit_order(market("SPY", 10, SELL)))

    assert second.id != first.id and retry.id == second.id
    assert _orders(server, SELL) == 2
    assert held(server, "SPY") == 0 == ledger_qty(client, "SPY")


def test_a_retried_sell_is_not_sent_again_after_shares_were_bought_outside_the_guard(
    server: PaperServer, store_url: str, clock: ManualClock
) -> None:
    """Audit 8 D1: the bot sells its 10, a person buys 5 outside the guard, and the bot's retry of
    the same sell (no client_order_id) comes inside the window. It is the first sell's retry:
    answered from it, nothing sent, the person's shares neither sold nor adopted."""
    with plain_client(server) as person, guarded_client(server, store_url, clock=clock) as bot:
        bot.submit_order(market("SPY", 10, BUY, client_order_id="bot-in-1"))
        clock.advance(31)
        first = as_order(bot.submit_order(market("SPY", 10, SELL)))
        clock.advance(5)
        person.submit_order(market("SPY", 5, BUY))
        clock.advance(30)
        again = as_order(bot.submit_order(market("SPY", 10, SELL)))
        assert again.id == first.id
        assert _orders(server, SELL) == 1
        assert held(server, "SPY") == 5 and ledger_qty(bot, "SPY") == 0
        assert sorted(c.kind.value for c in claims_of(bot, "SPY")) == ["entry", "exit"]


def test_a_retried_sell_stays_a_retry_when_outside_shares_were_adopted_meanwhile(
    server: PaperServer, store_url: str, clock: ManualClock
) -> None:
    """Audit 8 D1, the window's side: the person's shares were adopted into a new turn before the
    retry (as another order's classification or a close would). That turn is no decision of the
    bot's, so the first sell still holds the window: the retry sends nothing."""
    with plain_client(server) as person, guarded_client(server, store_url, clock=clock) as bot:
        bot.submit_order(market("SPY", 10, BUY, client_order_id="bot-in-1"))
        clock.advance(31)
        first = as_order(bot.submit_order(market("SPY", 10, SELL)))
        clock.advance(5)
        person.submit_order(market("SPY", 5, BUY))
        clock.advance(30)
        assert bot.gateway.adopt_broker_position("SPY", why="test", top_up=True).qty == 5
        again = as_order(bot.submit_order(market("SPY", 10, SELL)))
        assert again.id == first.id
        assert _orders(server, SELL) == 1
        assert held(server, "SPY") == 5 == ledger_qty(bot, "SPY")


def test_a_retried_sell_is_answered_from_the_first_while_the_positions_read_lags(
    server: PaperServer, claims: str, clock: ManualClock
) -> None:
    """Audit 8 D3: the sell fills while the broker's positions endpoint still shows the shares;
    the bot's retry of it (no client_order_id) is recognised before it is classified: the first
    order, not a 403 "not this agent's to sell yet"."""
    settings = Settings(request_timeout_secs=10)
    inner = TradingClient("paper-key", "paper-secret", url_override=server.url)
    lagging = LaggingPositions(AlpacaBroker(inner, settings=settings))
    with guarded_client(server, claims, clock=clock, settings=settings, broker=lagging) as bot:
        bot.submit_order(market("SPY", 10, BUY, client_order_id="bot-in-1"))
        clock.advance(31)
        lagging.freeze()  # the positions endpoint trails the sell's fill
        first = as_order(bot.submit_order(market("SPY", 10, SELL)))
        assert held(server, "SPY") == 0 and lagging.get_position("SPY") is not None
        clock.advance(2)
        again = outcome_of(lambda: bot.submit_order(market("SPY", 10, SELL)))
        assert not isinstance(again, APIError), again
        assert as_order(again).id == first.id
        assert _orders(server, SELL) == 1
    inner._session.close()


def test_the_same_calls_on_plain_alpaca_py_end_where_the_guard_ends(server: PaperServer) -> None:
    """The baseline of the tests above: plain alpaca-py's client, no retries (so no duplicates)."""
    with plain_client(server) as plain:
        plain.submit_order(market("QQQ", 10, BUY))
        plain.close_position("QQQ")
        plain.submit_order(market("QQQ", 5, BUY))
        plain.close_all_positions()
    assert held(server, "QQQ") == Decimal(0)


@pytest.mark.parametrize("how", ["cancel_order_by_id", "cancel_orders"])
def test_an_order_the_bot_canceled_ends_its_decision_and_the_same_order_again_is_new(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock, how: str
) -> None:
    first = as_order(client.submit_order(limit("SPY", 2, BUY, 100)))  # rests
    if how == "cancel_order_by_id":
        client.cancel_order_by_id(first.id)
    else:
        client.cancel_orders()
    clock.advance(1)
    second = as_order(client.submit_order(limit("SPY", 2, BUY, 100)))  # re-placed, inside the window
    assert second.id != first.id and second.status.value == "new"
    clock.advance(1)
    retry = as_order(client.submit_order(limit("SPY", 2, BUY, 100)))  # its retry: no third order
    assert retry.id == second.id
    client.cancel_order_by_id(second.id)
    third = as_order(client.submit_order(limit("SPY", 2, BUY, 100)))  # and again after a second cancel
    assert third.id not in {first.id, second.id}
    assert _orders(server, BUY) == 3
    assert [o.id for o in server.broker.orders() if not o.status.is_terminal] == [str(third.id)]
