"""A closing order with nothing held to close: Alpaca's 422 "position intent mismatch", as before.

Audit 24: a bot that sends `sell_to_close` (or `buy_to_close`) for a symbol the broker holds
nothing of gets Alpaca's 422 42210000 "position intent mismatch, inferred: sell_to_open" from
plain alpaca-py (the May 21 SQQQ exit). Through the drop-in it got a 403 "insufficient qty
available", the answer Alpaca gives when the shares exist but are held by open orders: a bot
that handles the phantom on the 422 (or waits on the 403) took the other branch. The same holds
for an exit the guard classified from a phantom ledger (the broker flat): the order the guard
would send is `sell_to_close`, which Alpaca refuses with the 422. Each case runs the same calls
on plain alpaca-py and on the drop-in against the paper server over HTTP and compares.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, PositionIntent, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import GetOrdersRequest, LimitOrderRequest, MarketOrderRequest

from tests.dropin.bot import PRICES
from tests.dropin.kit import guarded_client, held, market, outcome_of, plain_client
from tradeguard import GuardedTradingClient, ManualClock
from tradeguard.paper.server import PaperServer
from tradeguard.testing import FixedPrices, orders_of, paper_server

BUY, SELL = OrderSide.BUY, OrderSide.SELL


def _closing(symbol: str, qty: float, side: OrderSide, intent: PositionIntent) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol=symbol, qty=qty, side=side, time_in_force=TimeInForce.DAY, position_intent=intent
    )


def _refusal(call: Callable[[], object]) -> tuple[int | None, int, str]:
    answer = outcome_of(call)
    assert isinstance(answer, APIError), f"expected a refusal, got {answer!r}"
    return answer.status_code, answer.code, answer.message


def _on_both(claims: str, clock: ManualClock, calls: Callable[[TradingClient], object]) -> list[object]:
    """Run `calls` on plain alpaca-py and on the drop-in, each on a fresh paper account."""
    answers = []
    for guarded in (False, True):
        with paper_server(prices=FixedPrices(PRICES), allow_short=True, clock=clock) as server:
            if guarded:
                with guarded_client(server, claims, clock=clock) as client:
                    answers.append(calls(client))
            else:
                with plain_client(server) as client:
                    answers.append(calls(client))
    return answers


@pytest.mark.parametrize(
    ("side", "intent", "inferred"),
    [(SELL, PositionIntent.SELL_TO_CLOSE, "sell_to_open"), (BUY, PositionIntent.BUY_TO_CLOSE, "buy_to_open")],
    ids=["sell_to_close", "buy_to_close"],
)
def test_a_closing_order_on_a_flat_symbol_is_alpacas_422_as_on_alpaca_py(
    claims: str, clock: ManualClock, side: OrderSide, intent: PositionIntent, inferred: str
) -> None:
    plain, guarded = _on_both(
        claims, clock, lambda c: _refusal(lambda: c.submit_order(_closing("SPY", 5, side, intent)))
    )
    assert plain == (422, 42210000, f"position intent mismatch, inferred: {inferred}")
    assert guarded == plain


@pytest.mark.parametrize(
    ("opening", "intent", "inferred"),
    [
        (SELL, PositionIntent.SELL_TO_CLOSE, "sell_to_open"),  # a sell_to_close of a short
        (BUY, PositionIntent.BUY_TO_CLOSE, "buy_to_open"),  # a buy_to_close of a long
    ],
    ids=["sell_to_close_of_a_short", "buy_to_close_of_a_long"],
)
def test_a_closing_order_that_adds_to_the_position_is_refused_never_sent_as_the_other_side(
    claims: str, clock: ManualClock, opening: OrderSide, intent: PositionIntent, inferred: str
) -> None:
    """Before: the drop-in sent the position's exit instead, on the other side (a sell_to_close
    of a short went out as a buy_to_close): a trade the bot never asked for."""
    after: list[tuple[Decimal, list[str]]] = []

    def calls(client: TradingClient) -> object:
        client.submit_order(market("QQQ", 3, opening))
        clock.advance(1)
        answer = _refusal(lambda: client.submit_order(_closing("QQQ", 3, opening, intent)))
        positions = client.get_all_positions()
        assert isinstance(positions, list)
        orders = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
        assert isinstance(orders, list)
        after.append((Decimal(positions[0].qty), [o.side.value for o in orders]))
        return answer

    plain, guarded = _on_both(claims, clock, calls)
    assert plain == (422, 42210000, f"position intent mismatch, inferred: {inferred}")
    assert guarded == plain
    assert after[1] == after[0]  # the position as opened, and nothing else sent


def test_a_closing_order_with_every_share_held_by_an_order_stays_alpacas_403(
    server: PaperServer, client: GuardedTradingClient, clock: ManualClock
) -> None:
    client.submit_order(market("SPY", 10, BUY))
    clock.advance(1)
    client.submit_order(
        LimitOrderRequest(symbol="SPY", qty=10, side=SELL, time_in_force=TimeInForce.GTC, limit_price=600)
    )
    clock.advance(1)
    status, code, message = _refusal(
        lambda: client.submit_order(_closing("SPY", 5, SELL, PositionIntent.SELL_TO_CLOSE))
    )
    assert (status, code) == (403, 40310000) and message.startswith("insufficient qty available for order")
    assert held(server, "SPY") == 10


def test_a_sell_of_a_phantom_long_sends_nothing_and_is_alpacas_422(
    server: PaperServer, client: GuardedTradingClient, clock: ManualClock
) -> None:
    client.submit_order(market("SPY", 10, BUY))
    clock.advance(1)
    server.broker.close_position("SPY")  # sold behind the bot's back: its ledger is a phantom
    clock.advance(1)
    assert client.gateway.store.position(client.gateway.agent_id, "SPY").qty == 10
    status, code, message = _refusal(lambda: client.submit_order(market("SPY", 10, SELL)))
    assert (status, code, message) == (422, 42210000, "position intent mismatch, inferred: sell_to_open")
    assert held(server, "SPY") == 0  # never a short sale (G3)
    assert len(orders_of(server.broker, symbol="SPY", side="sell")) == 1  # the one behind its back
