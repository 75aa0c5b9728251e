"""An alpaca-py bot switched by one import, against an account whose positions read trails fills.

Audit 32: Alpaca's positions endpoint trails fills by seconds while its order checks and
`DELETE /v2/positions` see the account as it is (ALPACA.md). Each test runs the same alpaca-py
calls on plain alpaca-py and on the drop-in, each against a fresh `TrailingPaper` account over
HTTP, and compares: the drop-in must take every exit Alpaca takes (the bot holds the shares),
never sell twice, never go short, and answer refusals with Alpaca's status, code and message.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide

from tests.dropin.kit import guarded_client, market, plain_client, store_url
from tests.dropin.trailing import trailing_server
from tradeguard import ManualClock
from tradeguard.paper.server import PaperServer

BUY, SELL = OrderSide.BUY, OrderSide.SELL


def _held(server: PaperServer) -> dict[str, Decimal]:
    """What the account truly holds (not its trailing positions read)."""
    return {o.symbol: server.broker.position_qty(o.symbol) for o in server.broker.orders()}


def _on_both(
    tmp_path: Path, calls: Callable[[TradingClient], Any], **guard: Any
) -> list[tuple[Any, dict[str, Decimal], int]]:
    """Run `calls` on plain alpaca-py, then on the drop-in, each on a fresh trailing account.

    Returns, for each, what `calls` returned, what the account then truly holds, and how many
    orders it took.
    """
    runs = []
    for guarded in (False, True):
        clock = ManualClock()
        with trailing_server(clock) as server:
            if guarded:
                with guarded_client(server, store_url(tmp_path), clock=clock, **guard) as client:
                    answer = calls(client)
            else:
                with plain_client(server) as client:
                    answer = calls(client)
            runs.append((answer, _held(server), len(server.broker.orders())))
    return runs


def _refusal(exc: APIError) -> tuple[int | None, int, str]:
    return exc.status_code, exc.code, exc.message


def test_close_all_positions_right_after_the_fills_closes_them_as_alpaca_does(tmp_path: Path) -> None:
    def bot(client: TradingClient) -> list[tuple[str, int]]:
        client.submit_order(market("SPY", 10, BUY))
        client.submit_order(market("QQQ", 3, BUY))
        closed = client.close_all_positions(cancel_orders=True)  # the read shows nothing yet
        return sorted((c.symbol, c.status) for c in closed)

    plain, guarded = _on_both(tmp_path, bot)
    assert plain == ([("QQQ", 200), ("SPY", 200)], {"SPY": 0, "QQQ": 0}, 4)
    assert guarded == plain


class _OversleepingClock(ManualClock):
    """A manual clock whose sleeps overshoot a little, as `time.sleep` and the reads after it do."""

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds + 0.05)


def test_an_exit_right_after_another_bots_fill_is_sent_after_its_wait_not_refused(tmp_path: Path) -> None:
    """Two bots on one account: b buys moments after a; a's plain sell (no client_order_id) of
    its own 10 waits for b's fill to show in the positions read, then sells. It was refused 503
    "not sent: 30.0s passed between opening the dedup window and writing this claim": the wait
    ran with the content window open and counted as the sender being held up."""
    runs: list[tuple[Any, Decimal]] = []
    for guarded in (False, True):
        clock = _OversleepingClock()
        with trailing_server(clock) as server:
            if guarded:
                claims = store_url(tmp_path, "two-bots.db")
                with (
                    guarded_client(server, claims, clock=clock, agent_id="a") as a,
                    guarded_client(server, claims, clock=clock, agent_id="b") as b,
                ):
                    answers = _two_bots(a, b)
            else:
                with plain_client(server) as a, plain_client(server) as b:
                    answers = _two_bots(a, b)
            runs.append((answers, server.broker.position_qty("SPY")))
    plain, guarded_run = runs
    assert plain == ([("sell", "10", "filled"), ("sell", "5", "filled")], 0)
    assert guarded_run == plain


def _two_bots(a: TradingClient, b: TradingClient) -> list[Any]:
    a.submit_order(market("SPY", 10, BUY))
    b.submit_order(market("SPY", 5, BUY))
    answers = []
    for bot, qty in ((a, 10), (b, 5)):
        try:
            order = bot.submit_order(market("SPY", qty, SELL))
            answers.append((order.side.value, order.qty, order.status.value))
        except APIError as exc:
            answers.append(_refusal(exc))
    return answers


def test_close_position_right_after_the_bots_own_sale_is_alpacas_404(tmp_path: Path) -> None:
    """The bot sold all it held and closes again at once (a duplicate exit): Alpaca answers 404
    "position does not exist"; the drop-in answered 403 "insufficient qty available" because the
    trailing read still showed the sold shares, which a bot takes for "held, try again"."""

    def bot(client: TradingClient) -> Any:
        client.submit_order(market("SPY", 10, BUY))
        client.submit_order(market("SPY", 10, SELL))
        try:
            client.close_position("SPY")
        except APIError as exc:
            return _refusal(exc), client.close_all_positions()  # nothing to close either
        return "closed"

    plain, guarded = _on_both(tmp_path, bot)
    assert plain == (((404, 40410000, "position does not exist"), []), {"SPY": 0}, 2)
    assert guarded == plain
