"""Positions opened or closed outside the guard, through alpaca-py's real wire (audit 7a D1, D4, D5).

A bot switched to the drop-in by one import must close what alpaca-py would close: shares held
before the bot started on top of the ones it buys through the guard (D1), a position opened
outside the guard with an explicit ``sell_to_close``/``buy_to_close`` (D5), and nothing that is
not there: a position closed behind the bot's back is Alpaca's 404, and `close_all_positions`
answers from the broker's positions (D4). Another agent's shares on the account are never sold.
Real parts: the paper server over HTTP, alpaca-py's `TradingClient`, claims on a SQLite file and
PostgreSQL.
"""

from __future__ import annotations

import logging

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, PositionIntent, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from tests.dropin.kit import as_order, claims_of, guarded_client, held, ledger_qty, market, num, plain_client
from tradeguard import GuardedTradingClient, ManualClock, Settings
from tradeguard.domain.intents import Kind
from tradeguard.paper.server import PaperServer
from tradeguard.testing import orders_of

BUY, SELL = OrderSide.BUY, OrderSide.SELL


def bot_settings() -> Settings:
    return Settings(request_timeout_secs=10)


def alpaca_py_answer(exc: APIError) -> tuple[int, int | None, str]:
    return exc.status_code, exc.code, exc.message


def test_close_position_closes_shares_held_before_the_bot_on_top_of_its_own(
    server: PaperServer, store_url: str, clock: ManualClock
) -> None:
    with plain_client(server) as person, guarded_client(server, store_url, clock=clock) as bot:
        person.submit_order(market("SPY", 5, BUY))  # on the account before the bot started
        bot.submit_order(market("SPY", 10, BUY, "entry-1"))  # seconds ago: its fill is fresh
        closed = as_order(bot.close_position("SPY"))
        assert num(closed.qty) == "15" and closed.position_intent is PositionIntent.SELL_TO_CLOSE
        assert held(server, "SPY") == 0 and ledger_qty(bot, "SPY") == 0
        with pytest.raises(APIError) as again, plain_client(server) as alpaca:
            bot.close_position("SPY")
        with pytest.raises(APIError) as expected:
            alpaca.close_position("SPY")
        assert alpaca_py_answer(again.value) == alpaca_py_answer(expected.value) == (
            404, 40410000, "position does not exist",
        )  # fmt: skip
        assert bot.close_all_positions() == []
        assert [num(o.qty) for o in orders_of(server.broker, symbol="SPY", side="sell")] == ["15"]


def test_a_sell_of_everything_the_broker_shows_sells_it_without_a_false_warning(
    server: PaperServer, store_url: str, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    with plain_client(server) as person, guarded_client(server, store_url, clock=clock) as bot:
        bot.submit_order(market("SPY", 10, BUY))
        person.submit_order(market("SPY", 5, BUY))  # bought outside the bot meanwhile
        seen = bot.get_open_position("SPY").qty
        with caplog.at_level(logging.WARNING, logger="tradeguard.client"):
            sold = as_order(bot.submit_order(market("SPY", float(seen), SELL)))
        assert num(sold.qty) == "15" and held(server, "SPY") == 0 and ledger_qty(bot, "SPY") == 0
        assert "closes a position" not in caplog.text
        assert [c.order_qty for c in claims_of(bot, "SPY", kind=Kind.EXIT)] == [15]


def test_a_trimmed_sell_says_alpaca_would_refuse_it_only_when_the_broker_would(
    server: PaperServer, store_url: str, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        guarded_client(server, store_url, clock=clock) as bot,
        GuardedTradingClient(
            "paper-key", "paper-secret", url_override=server.url, store=store_url, agent_id="other-bot",
            settings=bot_settings(), clock=clock,
        ) as other,
    ):  # fmt: skip
        bot.submit_order(market("SPY", 10, BUY, "bot-in"))
        with caplog.at_level(logging.WARNING, logger="tradeguard.client"):
            as_order(bot.submit_order(market("SPY", 4, SELL, "bot-part")))
            as_order(bot.submit_order(market("SPY", 8, SELL, "bot-rest")))  # 6 held: Alpaca refuses 8
        assert "sent 6" in caplog.text and "Alpaca would refuse 8 with 403 insufficient qty" in caplog.text
        caplog.clear()
        other.submit_order(market("SPY", 5, BUY, "other-in"))  # another agent on the account
        bot.submit_order(market("SPY", 2, BUY, "bot-again"))
        with caplog.at_level(logging.WARNING, logger="tradeguard.client"):
            out = as_order(bot.submit_order(market("SPY", 7, SELL, "bot-out")))  # the broker has 7
        assert num(out.qty) == "2" and "Alpaca would refuse" not in caplog.text
        assert "not this agent's to sell" in caplog.text
        assert held(server, "SPY") == 5 and ledger_qty(other, "SPY") == 5  # the other's shares stay


@pytest.mark.parametrize("raw", [False, True])
def test_an_explicit_close_intent_on_a_position_opened_outside_the_guard_adopts_and_closes_it(
    server: PaperServer, store_url: str, clock: ManualClock, raw: bool
) -> None:
    with plain_client(server) as person, guarded_client(server, store_url, clock=clock, raw_data=raw) as bot:
        person.submit_order(market("SPY", 10, BUY))
        person.submit_order(market("QQQ", 5, SELL))  # a short
        sell = MarketOrderRequest(
            symbol="SPY",
            qty=10,
            side=SELL,
            time_in_force=TimeInForce.DAY,
            position_intent=PositionIntent.SELL_TO_CLOSE,
        )
        cover = MarketOrderRequest(
            symbol="QQQ",
            qty=5,
            side=BUY,
            time_in_force=TimeInForce.DAY,
            position_intent=PositionIntent.BUY_TO_CLOSE,
        )
        sold, covered = bot.submit_order(sell), bot.submit_order(cover)
        qty = (lambda o: o["qty"]) if raw else (lambda o: o.qty)
        assert (num(qty(sold)), num(qty(covered))) == ("10", "5")
        assert server.broker.list_positions() == []
        assert ledger_qty(bot, "SPY") == 0 and ledger_qty(bot, "QQQ") == 0


def test_a_position_closed_behind_the_bots_back_is_alpacas_404_and_close_all_answers_from_the_broker(
    server: PaperServer, store_url: str, clock: ManualClock
) -> None:
    with plain_client(server) as person, guarded_client(server, store_url, clock=clock) as bot:
        bot.submit_order(market("SPY", 10, BUY, "entry-1"))
        person.close_position("SPY")  # a person closes it in the dashboard
        assert bot.close_all_positions(cancel_orders=True) == []  # as alpaca-py: nothing is held
        with pytest.raises(APIError) as closed:
            bot.close_position("SPY")
        assert alpaca_py_answer(closed.value) == (404, 40410000, "position does not exist")
        # Its own fill was too fresh to trust a read showing nothing (positions trail fills): the
        # close read again until that fill's horizon passed, then took the read as the truth and
        # the phantom cleared, nothing sold.
        assert ledger_qty(bot, "SPY") == 0
        assert bot.close_all_positions() == []
        assert len(orders_of(server.broker, symbol="SPY", side="sell")) == 1  # the person's only
