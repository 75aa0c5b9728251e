"""A bot's own unresolved entry never makes its real position un-exitable (audit 7a D2).

The bot dies right after its buy was POSTed, or the buy's answer is lost and the lookups fail:
its claim is PENDING or UNKNOWN while the broker holds the shares. An exit of them looks the
bot's own unresolved orders up first and books what the broker shows, and the drop-in runs the
gateway's reconcile pass on its interval. Time alone never resolves UNKNOWN (G2): while the
broker cannot be asked, an exit is Alpaca's 403 "insufficient qty available" (never a 404 while
the broker holds a position). Real parts: the paper server over HTTP with a fault plan, alpaca-py's
`TradingClient`, claims on a SQLite file and PostgreSQL, a manual clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, PositionIntent

from tests.dropin.bot import PRICES
from tests.dropin.kit import as_order, claims_of, guarded_client, held, ledger_qty, lost_answer, market, num
from tradeguard import ManualClock, crashpoints
from tradeguard.domain import Claim
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.paper.server import PaperServer
from tradeguard.testing import FixedPrices, paper_server

BUY, SELL = OrderSide.BUY, OrderSide.SELL

LOST_ANSWERS = lost_answer("{side: buy}")


class Died(BaseException):
    """The bot process dies here (not an Exception: nothing in the bot catches it)."""


def die_after_post(point: str) -> None:
    if point == "after_post":
        raise Died(point)


@pytest.fixture
def crash_after_post() -> Iterator[None]:
    crashpoints.set_hook(die_after_post)
    try:
        yield
    finally:
        crashpoints.set_hook(None)


def buy_and_die(server: PaperServer, store_url: str, clock: ManualClock) -> None:
    with pytest.raises(Died), guarded_client(server, store_url, clock=clock) as bot:
        bot.submit_order(market("SPY", 10, BUY, "entry-1"))
    crashpoints.set_hook(None)
    [entry] = [c for c in claims_of_store(server, store_url, clock) if c.client_order_id == "entry-1"]
    assert entry.state is ClaimState.PENDING and held(server, "SPY") == 10


def claims_of_store(server: PaperServer, store_url: str, clock: ManualClock) -> list[Claim]:
    with guarded_client(server, store_url, clock=clock) as look:  # reads the store only
        return look.gateway.store.list_claims()


@pytest.mark.usefixtures("crash_after_post")
def test_a_bot_restarted_right_after_its_buy_was_posted_sells_the_shares(
    server: PaperServer, store_url: str, clock: ManualClock
) -> None:
    buy_and_die(server, store_url, clock)
    with guarded_client(server, store_url, clock=clock) as bot:  # restarted at once, same store
        sold = as_order(bot.submit_order(market("SPY", 10, SELL, "exit-1")))
        assert num(sold.qty) == "10" and sold.position_intent is PositionIntent.SELL_TO_CLOSE
        [entry] = [c for c in claims_of(bot, "SPY") if c.client_order_id == "entry-1"]
        assert (entry.state, entry.filled_qty) == (ClaimState.FILLED, 10)
        assert held(server, "SPY") == 0 and ledger_qty(bot, "SPY") == 0


@pytest.mark.usefixtures("crash_after_post")
def test_close_position_right_after_the_restart_closes_them(
    server: PaperServer, store_url: str, clock: ManualClock
) -> None:
    buy_and_die(server, store_url, clock)
    with guarded_client(server, store_url, clock=clock) as bot:
        closed = as_order(bot.close_position("SPY"))
        assert num(closed.qty) == "10" and held(server, "SPY") == 0 and ledger_qty(bot, "SPY") == 0


@pytest.mark.usefixtures("crash_after_post")
def test_the_drop_in_reconciles_on_its_interval_without_a_call_in_the_symbol(
    server: PaperServer, store_url: str, clock: ManualClock
) -> None:
    buy_and_die(server, store_url, clock)
    with guarded_client(server, store_url, clock=clock) as bot:
        bot.submit_order(market("QQQ", 1, BUY, "other-1"))  # its start pass: the claim is too fresh
        assert [c.state for c in claims_of(bot, "SPY")] == [ClaimState.PENDING]
        clock.advance(bot.settings.reconcile_every_secs)
        bot.submit_order(market("QQQ", 1, SELL, "other-2"))  # a pass is due: it runs first
        [entry] = claims_of(bot, "SPY")
        assert entry.state is ClaimState.FILLED
        assert bot.gateway.store.position(bot.gateway.agent_id, "SPY").qty == 10


def test_an_unknown_entry_holds_an_exit_back_only_until_the_broker_answers(
    store_url: str, clock: ManualClock
) -> None:
    with (
        paper_server(prices=FixedPrices(PRICES), clock=clock, faults=LOST_ANSWERS) as server,
        guarded_client(server, store_url, clock=clock) as bot,
    ):
        with pytest.raises(APIError) as lost:
            bot.submit_order(market("SPY", 10, BUY))
        assert lost.value.status_code == 504 and held(server, "SPY") == 10
        clock.advance(3600)  # an hour of failed lookups: still UNKNOWN, nothing guessed (G2)
        with pytest.raises(APIError) as sell:
            bot.submit_order(market("SPY", 10, SELL, "exit-1"))
        with pytest.raises(APIError) as close:
            bot.close_position("SPY")
        for refused in (sell.value, close.value):
            assert (refused.status_code, refused.code) == (403, 40310000), refused
            # Alpaca's words exactly (a bot may compare them); the guard's reason beside them.
            assert refused.message == "insufficient qty available for order (requested: 10, available: 0)"
            assert "unresolved" in json.loads(str(refused))["detail"]
        [entry] = claims_of(bot, "SPY")  # the exits claimed nothing
        assert entry.state is ClaimState.UNKNOWN and ledger_qty(bot, "SPY") == 0
        assert held(server, "SPY") == 10
        server.injector = None  # the broker answers lookups again
        sold = as_order(bot.submit_order(market("SPY", 10, SELL, "exit-2")))
        assert num(sold.qty) == "10" and held(server, "SPY") == 0 and ledger_qty(bot, "SPY") == 0
        after = bot.gateway.store.get(entry.key)
        assert after is not None and after.state is ClaimState.FILLED
