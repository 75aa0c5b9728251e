"""A re-entry after the bot's own exit is a new decision, inside the dedup window too (G1, G4).

Audit 10a D1: a bot with no client_order_ids buys 10, sells them, and buys 10 again within the
60 s window. The guard answered the second buy with the first (filled) order and sent nothing;
the bot believed it held 10 while the account was flat, and its next "sell 5" opened a short.
A bot that sent an exit after an entry filled knew of that entry, so the same entry after it
is the next decision. A retry of an entry with no exit of the bot's in between stays a retry,
and so does the re-entry's own retry. Each test compares with plain alpaca-py where the point
is "behaves as before".
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderClass, OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest, StopLossRequest, StopOrderRequest, TakeProfitRequest

from tests.dropin.bot import PRICES
from tests.dropin.kit import (
    as_order,
    guarded_client,
    held,
    ledger_qty,
    limit,
    lost_answer,
    market,
    plain_client,
)
from tradeguard import GuardedTradingClient, ManualClock
from tradeguard.paper.server import PaperServer
from tradeguard.testing import FixedPrices, paper_server

BUY, SELL = OrderSide.BUY, OrderSide.SELL


def _sent(server: PaperServer, side: OrderSide) -> int:
    return sum(1 for o in server.broker.orders() if o.side.value == side.value)


def test_the_same_buy_after_the_bots_own_sell_is_a_new_entry(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock
) -> None:
    first = as_order(client.submit_order(market("SPY", 10, BUY)))
    clock.advance(5)
    client.submit_order(market("SPY", 10, SELL))
    clock.advance(5)
    again = as_order(client.submit_order(market("SPY", 10, BUY)))
    assert again.id != first.id
    assert held(server, "SPY") == 10 == ledger_qty(client, "SPY")

    clock.advance(2)
    retry = as_order(client.submit_order(market("SPY", 10, BUY)))  # the re-entry's own retry
    assert retry.id == again.id and _sent(server, BUY) == 2

    client.submit_order(market("SPY", 5, SELL))
    assert held(server, "SPY") == 5 == ledger_qty(client, "SPY")  # not short 5


def test_round_trips_inside_one_window_end_where_plain_alpaca_py_ends(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock
) -> None:
    for _ in range(3):
        client.submit_order(market("SPY", 10, BUY))
        clock.advance(3)
        client.submit_order(market("SPY", 10, SELL))
        clock.advance(3)
    client.submit_order(market("SPY", 10, BUY))
    assert _sent(server, BUY) == 4 and _sent(server, SELL) == 3
    assert held(server, "SPY") == 10 == ledger_qty(client, "SPY")
    with plain_client(server) as plain:  # the same calls on the plain client, another symbol
        for _ in range(3):
            plain.submit_order(market("QQQ", 10, BUY))
            plain.submit_order(market("QQQ", 10, SELL))
        plain.submit_order(market("QQQ", 10, BUY))
    assert held(server, "QQQ") == held(server, "SPY")


def test_the_same_buy_after_a_partial_sell_stays_a_retry(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock
) -> None:
    """A sell that leaves the entry's position open does not show the bot saw the entry (audit
    11a D1: it may have sold older shares while the entry's answer was lost): the same buy inside
    the window is still its retry. A deliberate scale-in passes `new_decision=True`."""
    first = as_order(client.submit_order(market("SPY", 10, BUY)))
    clock.advance(5)
    client.submit_order(market("SPY", 4, SELL))
    clock.advance(5)
    again = as_order(client.submit_order(market("SPY", 10, BUY)))
    assert again.id == first.id and held(server, "SPY") == 6 == ledger_qty(client, "SPY")
    client.submit_order(market("SPY", 10, BUY), new_decision=True)
    assert held(server, "SPY") == 16 == ledger_qty(client, "SPY")


def test_a_short_covered_then_sold_again_is_a_new_short(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock
) -> None:
    client.submit_order(market("SPY", 5, SELL))
    clock.advance(5)
    client.submit_order(market("SPY", 5, BUY))
    clock.advance(5)
    client.submit_order(market("SPY", 5, SELL))
    assert held(server, "SPY") == -5 == ledger_qty(client, "SPY")


def test_a_retried_buy_with_no_exit_between_stays_one_order(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock
) -> None:
    first = as_order(client.submit_order(market("SPY", 10, BUY)))
    clock.advance(20)
    again = as_order(client.submit_order(market("SPY", 10, BUY)))
    assert again.id == first.id and _sent(server, BUY) == 1
    assert held(server, "SPY") == Decimal(10)


def test_another_agents_sell_does_not_turn_a_retry_into_a_new_entry(
    server: PaperServer, claims: str, clock: ManualClock
) -> None:
    with (
        guarded_client(server, claims, clock=clock) as bot,
        guarded_client(server, claims, clock=clock, agent_id="other-bot") as other,
    ):
        other.submit_order(market("SPY", 7, BUY))
        first = as_order(bot.submit_order(market("SPY", 10, BUY)))
        clock.advance(5)
        other.submit_order(market("SPY", 7, SELL))
        clock.advance(5)
        again = as_order(bot.submit_order(market("SPY", 10, BUY)))
        assert again.id == first.id
        assert held(server, "SPY") == 10 == ledger_qty(bot, "SPY")


# ---- retries whose answer was lost: the guard must not take them for re-entries (audit 11a) ----


def test_a_lost_buy_retried_after_a_pass_and_a_sale_of_older_shares_stays_one_order(
    claims: str, clock: ManualClock
) -> None:
    """The bot holds 5; its buy of 10 is accepted and the answer lost; a due reconcile pass
    resolves it, the bot's stop routine sells the 5 it knows of, then it retries the buy. The
    sale left the entry's turn open: no proof the bot saw the entry, so the retry is one."""
    plan = lost_answer("{side: buy}", nth=2)  # the first buy goes through
    with (
        paper_server(prices=FixedPrices(PRICES), clock=clock, faults=plan) as server,
        guarded_client(server, claims, clock=clock) as bot,
    ):
        bot.submit_order(market("SPY", 5, BUY))
        clock.advance(50)
        with pytest.raises(APIError):
            bot.submit_order(market("SPY", 10, BUY))
        server.injector = None
        clock.advance(9)
        bot.submit_order(market("SPY", 5, SELL))  # a pass is due first (it resolves the buy)
        clock.advance(2)
        bot.submit_order(market("SPY", 10, BUY))
        assert _sent(server, BUY) == 2 and held(server, "SPY") == 10 == ledger_qty(bot, "SPY")


def test_a_lost_bracket_retried_after_its_take_profit_filled_stays_one_bracket(
    claims: str, clock: ManualClock
) -> None:
    """The bracket's own take-profit leg closed its position: part of the same decision, no
    proof the bot saw it; the retry is answered from the first bracket."""
    bracket = MarketOrderRequest(
        symbol="MSFT", qty=10, side=BUY, time_in_force=TimeInForce.DAY, order_class=OrderClass.BRACKET,
        take_profit=TakeProfitRequest(limit_price=421.00), stop_loss=StopLossRequest(stop_price=400.00),
    )  # fmt: skip
    with (
        paper_server(prices=FixedPrices(PRICES), clock=clock, faults=lost_answer("{symbol: MSFT}")) as server,
        guarded_client(server, claims, clock=clock) as bot,
    ):
        bot.submit_order(market("QQQ", 1, BUY))
        clock.advance(50)
        with pytest.raises(APIError):
            bot.submit_order(bracket)
        server.injector = None
        server.broker.set_price("MSFT", "421.50")  # the take-profit leg fills
        server.broker.set_price("MSFT", "420.00")
        clock.advance(9)
        bot.submit_order(market("QQQ", 1, SELL))  # any call: the due pass runs first
        clock.advance(2)
        bot.submit_order(bracket)
        parents = [o for o in server.broker.orders() if o.symbol == "MSFT" and o.side.value == "buy"]
        assert len(parents) == 1 and held(server, "MSFT") == 0


def test_a_short_sale_again_after_the_bot_went_long_is_that_longs_exit_sized_by_the_exit_rule(
    server: PaperServer, claims: str, clock: ManualClock
) -> None:
    """Audit 12a D1 / 13 D2: the bot shorts 3, covers them, buys 2; another agent holds 4. The
    same sell of 3 again, inside the window, now closes the bot's long: it is that position's
    exit, sized by the exit rule (2, never the other agent's shares: sent unsized as a new entry
    it sold them), and its own retry sends nothing more."""
    with (
        guarded_client(server, claims, clock=clock) as bot,
        guarded_client(server, claims, clock=clock, agent_id="other-bot") as other,
    ):
        first = as_order(bot.submit_order(market("SPY", 3, SELL)))  # a short of 3
        clock.advance(0.5)
        bot.submit_order(market("SPY", 3, BUY))  # covered
        clock.advance(0.5)
        bot.submit_order(market("SPY", 2, BUY))  # long 2
        other.submit_order(market("SPY", 4, BUY))
        exit_ = as_order(bot.submit_order(market("SPY", 3, SELL)))
        assert exit_.id != first.id and exit_.qty == "2"
        assert held(server, "SPY") == 4 == ledger_qty(other, "SPY") and ledger_qty(bot, "SPY") == 0
        clock.advance(2)
        retry = as_order(bot.submit_order(market("SPY", 3, SELL)))
        assert retry.id == exit_.id and held(server, "SPY") == 4 and _sent(server, SELL) == 2


def test_a_closing_sell_after_a_covered_short_and_a_new_long_is_sent_not_swallowed(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock
) -> None:
    """Audit 13 D2: short 3, cover, long 3, then the same sell of 3 inside the window: the bot's
    close of its long. It was answered from the first short's order with nothing sent (the bot
    believed it was flat while holding 3)."""
    first = as_order(client.submit_order(market("SPY", 3, SELL)))
    clock.advance(1)
    client.submit_order(market("SPY", 3, BUY))  # the cover
    clock.advance(1)
    client.submit_order(limit("SPY", 3, BUY, 600))  # marketable: a new long of 3
    clock.advance(1)
    assert held(server, "SPY") == 3
    closing = as_order(client.submit_order(market("SPY", 3, SELL)))
    assert closing.id != first.id and held(server, "SPY") == 0 == ledger_qty(client, "SPY")
    assert _sent(server, SELL) == 2


@pytest.mark.parametrize("exit_kind", ["stop", "take-profit"])
def test_the_same_buy_after_a_resting_exit_filled_at_the_broker_is_a_new_entry(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock, exit_kind: str
) -> None:
    # Audit 16 #3: the protective stop (or take-profit) fills at the broker, unseen by the
    # guard; the same buy seconds later is a re-entry, as on plain alpaca-py, not a retry.
    price = server.broker.price("SPY")
    assert price is not None
    first = as_order(client.submit_order(market("SPY", 10, BUY)))
    clock.advance(3)
    if exit_kind == "stop":
        client.submit_order(
            StopOrderRequest(
                symbol="SPY", qty=10, side=SELL, time_in_force=TimeInForce.GTC,
                stop_price=round(float(price) * 0.95, 2),
            )
        )  # fmt: skip
        server.broker.set_price("SPY", price * Decimal("0.94"))
    else:
        client.submit_order(limit("SPY", 10, SELL, round(float(price) * 1.05, 2)))
        server.broker.set_price("SPY", price * Decimal("1.06"))
    assert held(server, "SPY") == 0  # the exit filled at the broker
    clock.advance(3)
    again = as_order(client.submit_order(market("SPY", 10, BUY)))
    assert again.id != first.id
    assert held(server, "SPY") == 10 == ledger_qty(client, "SPY")
    clock.advance(2)
    retry = as_order(client.submit_order(market("SPY", 10, BUY)))  # the re-entry's own retry
    assert retry.id == again.id and _sent(server, BUY) == 2


def test_the_same_sell_after_a_resting_reentry_filled_at_the_broker_is_that_positions_exit(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock
) -> None:
    # Audit 16 #2: buy, sell, a resting limit buy that fills later at the broker, then the same
    # sell as before: plain alpaca-py sells the new 10; answered as a retry, the bot would
    # believe it is flat while the account holds 10.
    price = server.broker.price("SPY")
    assert price is not None
    client.submit_order(market("SPY", 10, BUY))
    clock.advance(3)
    first = as_order(client.submit_order(market("SPY", 10, SELL)))
    clock.advance(3)
    client.submit_order(limit("SPY", 10, BUY, round(float(price) * 0.99, 2)))
    server.broker.set_price("SPY", price * Decimal("0.98"))
    assert held(server, "SPY") == 10  # the re-entry filled at the broker
    clock.advance(3)
    again = as_order(client.submit_order(market("SPY", 10, SELL)))
    assert again.id != first.id
    assert held(server, "SPY") == 0 == ledger_qty(client, "SPY")
    clock.advance(2)
    retry = as_order(client.submit_order(market("SPY", 10, SELL)))  # its own retry: no short sale
    assert retry.id == again.id and _sent(server, SELL) == 2
    assert held(server, "SPY") == 0
