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

from alpaca.trading.enums import OrderSide

from tests.dropin.kit import as_order, held, ledger_qty, market, plain_client
from tradeguard import GuardedTradingClient, ManualClock
from tradeguard.paper.server import PaperServer

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


def test_the_same_buy_after_a_partial_sell_is_a_new_entry(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock
) -> None:
    client.submit_order(market("SPY", 10, BUY))
    clock.advance(5)
    client.submit_order(market("SPY", 4, SELL))
    clock.advance(5)
    client.submit_order(market("SPY", 10, BUY))
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
    from tests.dropin.kit import guarded_client

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
