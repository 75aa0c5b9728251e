"""The drop-in contract, defect by defect (issue 10, points 1-4), through alpaca-py's real wire.

Every test talks to the paper server over HTTP with the one-import `GuardedTradingClient`, the way
a new user's alpaca-py bot would, and checks real outcomes: the orders the broker holds, its
positions, the guard's ledger, claims and audit. Where the guard must answer as alpaca-py does,
alpaca-py's own `TradingClient` on the same server gives the expected answer. Adversarial angles
(racing decisions, a late retry after a re-entry, oversized exits) close the module. Point 5
(errors and return types) is in test_dropin_errors.py, points 6-7 in test_dropin_contract_orders.py.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.models import ClosePositionResponse, Order
from alpaca.trading.requests import ClosePositionRequest, StopOrderRequest, TrailingStopOrderRequest

from tests.dropin.kit import (
    AGENT,
    as_order,
    audit_records,
    claims_of,
    guarded_client,
    held,
    ledger_qty,
    limit,
    market,
    num,
    outcome_of,
    plain_client,
)
from tradeguard import GuardedTradingClient, ManualClock
from tradeguard.domain import OrderStatus, PositionIntent
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.paper.server import PaperServer
from tradeguard.testing import orders_of

BUY, SELL = OrderSide.BUY, OrderSide.SELL


# ---- 1. an order without position_intent is classified the way Alpaca infers it ---------------


def test_plain_sell_of_a_held_long_is_an_exit_sent_as_sell_to_close(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    client.submit_order(market("DIA", 4, BUY))
    sold = as_order(client.submit_order(market("DIA", 4, SELL)))  # the example: no position_intent
    [sell] = orders_of(server.broker, symbol="DIA", side="sell")
    assert (str(sold.id), num(sell.qty), sell.status) == (sell.id, "4", OrderStatus.FILLED)
    assert sell.position_intent is PositionIntent.SELL_TO_CLOSE
    assert held(server, "DIA") == 0 and ledger_qty(client, "DIA") == 0
    assert [c.client_order_id for c in claims_of(client, "DIA", Kind.EXIT)] == [sell.client_order_id]


def test_plain_buy_against_a_short_is_a_cover_sent_as_buy_to_close(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    client.submit_order(market("AAPL", 6, SELL))  # flat: a plain sell opens a short
    assert held(server, "AAPL") == -6 and ledger_qty(client, "AAPL") == -6
    as_order(client.submit_order(market("AAPL", 6, BUY)))
    [cover] = orders_of(server.broker, symbol="AAPL", side="buy")
    assert cover.position_intent is PositionIntent.BUY_TO_CLOSE and cover.status is OrderStatus.FILLED
    assert held(server, "AAPL") == 0 and ledger_qty(client, "AAPL") == 0
    assert [c.client_order_id for c in claims_of(client, "AAPL", Kind.EXIT)] == [cover.client_order_id]


def test_stop_and_trailing_stop_sells_of_a_long_are_exits(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    client.submit_order(market("SPY", 10, BUY))
    client.submit_order(market("QQQ", 5, BUY))
    stop = StopOrderRequest(symbol="SPY", qty=10, side=SELL, time_in_force=TimeInForce.DAY, stop_price=480.00)
    trail = TrailingStopOrderRequest(
        symbol="QQQ", qty=5, side=SELL, time_in_force=TimeInForce.DAY, trail_price=10.00
    )
    as_order(client.submit_order(stop))
    as_order(client.submit_order(trail))
    for symbol, kind in (("SPY", "stop"), ("QQQ", "trailing_stop")):
        [resting] = orders_of(server.broker, symbol=symbol, side="sell")
        assert resting.order_type.value == kind and resting.status.is_open, resting
        assert resting.position_intent is PositionIntent.SELL_TO_CLOSE, symbol
        exits = claims_of(client, symbol, Kind.EXIT)
        assert [c.client_order_id for c in exits] == [resting.client_order_id], symbol  # audited as an exit
    assert (held(server, "SPY"), held(server, "QQQ")) == (Decimal(10), Decimal(5))


def test_plain_sell_larger_than_the_long_never_opens_a_short(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    client.submit_order(market("DIA", 4, BUY))
    answer = outcome_of(lambda: client.submit_order(market("DIA", 10, SELL)))
    sells = orders_of(server.broker, symbol="DIA", side="sell")
    assert held(server, "DIA") >= 0, "a plain sell of a long opened a short"
    assert ledger_qty(client, "DIA") == held(server, "DIA")
    if isinstance(answer, APIError):  # refused as Alpaca refuses it: nothing sold
        assert answer.status_code == 403 and "insufficient qty" in answer.message, answer
        assert sells == []
    else:  # or sized down to what is held, as a guarded exit
        assert [(num(s.qty), s.position_intent) for s in sells] == [("4", PositionIntent.SELL_TO_CLOSE)]
        assert num(as_order(answer).qty) == "4"


@pytest.mark.parametrize("cover_qty", [4, 10], ids=["smaller", "larger"])
def test_plain_buy_against_a_short_of_another_size_covers_and_never_turns_long(
    client: GuardedTradingClient, server: PaperServer, cover_qty: int
) -> None:
    client.submit_order(market("AAPL", 6, SELL))
    answer = outcome_of(lambda: client.submit_order(market("AAPL", cover_qty, BUY)))
    covers = orders_of(server.broker, symbol="AAPL", side="buy")
    assert held(server, "AAPL") <= 0, "a plain buy against a short turned the account long"
    assert ledger_qty(client, "AAPL") == held(server, "AAPL")
    assert all(c.position_intent is PositionIntent.BUY_TO_CLOSE for c in covers), covers
    if cover_qty < 6:
        assert num(as_order(answer).qty) == "4" and held(server, "AAPL") == -2
    elif isinstance(answer, APIError):
        assert answer.status_code == 403 and "insufficient qty" in answer.message and covers == []
    else:
        assert [num(c.qty) for c in covers] == ["6"] and held(server, "AAPL") == 0


# ---- 2. close_all_positions is a set of guarded exits -------------------------------------------


def test_close_all_positions_is_a_set_of_guarded_exits_and_the_ledger_agrees(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    client.submit_order(market("SPY", 10, BUY))
    client.submit_order(market("QQQ", 5, BUY, "bot-qqq-1"))
    client.submit_order(market("AAPL", 6, SELL))
    client.submit_order(limit("DIA", 2, BUY, 300.00, "bot-dia-bid"))  # rests below the market
    before = {o.id for o in server.broker.orders()}
    answers = client.close_all_positions(cancel_orders=True)
    assert isinstance(answers, list) and all(isinstance(a, ClosePositionResponse) for a in answers), answers
    assert sorted((a.symbol, a.status) for a in answers) == [("AAPL", 200), ("QQQ", 200), ("SPY", 200)]
    assert server.broker.list_positions() == [] and server.broker.list_orders(status="open") == []
    assert client.gateway.positions() == []  # no phantom: no reconcile needed
    closing = [o for o in server.broker.orders() if o.id not in before]
    exit_ids = {c.client_order_id for c in claims_of(client, kind=Kind.EXIT)}
    assert sorted((o.symbol, o.side.value, num(o.qty)) for o in closing) == [
        ("AAPL", "buy", "6"),
        ("QQQ", "sell", "5"),
        ("SPY", "sell", "10"),
    ]
    assert {o.client_order_id for o in closing} <= exit_ids  # each close went through the guard
    [bid] = claims_of(client, "DIA")
    assert bid.state is ClaimState.CANCELED  # cancel_orders=True, recorded against the claim
    assert client.close_all_positions(cancel_orders=True) == []  # nothing left: nothing sent
    assert len(server.broker.orders()) == len(before) + 3


# ---- 3. close_position: each call its own decision -----------------------------------------------


def test_partial_then_full_close_position_closes_every_share(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    client.submit_order(market("TQQQ", 12, BUY, "bot-tqqq-1"))
    part = as_order(client.close_position("TQQQ", ClosePositionRequest(qty="4")))
    rest = as_order(client.close_position("TQQQ"))
    assert (num(part.qty), num(rest.qty)) == ("4", "8") and part.id != rest.id
    sells = orders_of(server.broker, symbol="TQQQ", side="sell")
    assert [(num(s.qty), s.position_intent) for s in sells] == [
        ("4", PositionIntent.SELL_TO_CLOSE),
        ("8", PositionIntent.SELL_TO_CLOSE),
    ]
    assert held(server, "TQQQ") == 0 and ledger_qty(client, "TQQQ") == 0


def test_a_repeated_partial_close_is_a_retry_inside_the_window_and_a_new_decision_otherwise(
    server: PaperServer, claims: str, clock: ManualClock
) -> None:
    with guarded_client(server, claims, clock=clock, dedup_window_secs=30) as client:
        client.submit_order(market("TQQQ", 16, BUY, "bot-tqqq-1"))
        four = ClosePositionRequest(qty="4")
        first = as_order(client.close_position("TQQQ", four))
        clock.advance(1)
        retry = as_order(client.close_position("TQQQ", four))  # a retry of the same call
        assert retry.id == first.id and held(server, "TQQQ") == 12
        again = as_order(client.close_position("TQQQ", four, new_decision=True))  # the bot says: new
        assert again.id != first.id and held(server, "TQQQ") == 8
        clock.advance(31)  # past the window: the same call is a new decision
        later = as_order(client.close_position("TQQQ", four))
        assert later.id not in (first.id, again.id) and held(server, "TQQQ") == 4
        last = as_order(client.close_position("TQQQ"))  # and the remaining shares can always be closed
        assert num(last.qty) == "4" and held(server, "TQQQ") == 0
        assert [num(s.qty) for s in orders_of(server.broker, symbol="TQQQ", side="sell")] == ["4"] * 4
        assert ledger_qty(client, "TQQQ") == 0


def test_percentage_close_sells_that_share_of_the_position(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    client.submit_order(market("TQQQ", 10, BUY, "bot-tqqq-1"))
    half = as_order(client.close_position("TQQQ", ClosePositionRequest(percentage="50")))
    assert num(half.qty) == "5" and half.side is OrderSide.SELL
    assert held(server, "TQQQ") == 5 and ledger_qty(client, "TQQQ") == 5
    as_order(client.close_position("TQQQ"))
    assert [num(s.qty) for s in orders_of(server.broker, symbol="TQQQ", side="sell")] == ["5", "5"]
    assert held(server, "TQQQ") == 0 and ledger_qty(client, "TQQQ") == 0


def test_percentage_close_of_a_whole_share_position_sells_whole_shares_as_alpaca_does(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    # Audit 19: Alpaca "would only sell fractional if position is originally fractional"; the
    # guarded close asked for 3.5 of 7, which Alpaca refuses for an asset not fractionable.
    client.submit_order(market("TQQQ", 7, BUY, "bot-tqqq-1"))
    half = as_order(client.close_position("TQQQ", ClosePositionRequest(percentage="50")))
    assert num(half.qty) == "3"
    assert held(server, "TQQQ") == 4 and ledger_qty(client, "TQQQ") == 4


def test_close_position_of_a_flat_symbol_is_alpacas_404(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    with plain_client(server) as plain, pytest.raises(APIError) as alpaca:
        plain.close_position("SPY")
    with pytest.raises(APIError) as guarded:
        client.close_position("SPY")
    expected = (alpaca.value.status_code, alpaca.value.code, alpaca.value.message)
    assert expected == (404, 40410000, "position does not exist")
    assert (guarded.value.status_code, guarded.value.code, guarded.value.message) == expected
    assert server.broker.orders() == []


# ---- 4. the content window is visible, and a new decision can say so -----------------------------


def test_an_identical_order_inside_the_window_is_one_order_with_a_warning_and_an_audit_record(
    server: PaperServer, claims: str, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tradeguard.gateway")
    window = re.compile(r"(?<![\w.])45(?:\.0+)?(?!\d)")  # the window's length, not a digit of an id
    with guarded_client(server, claims, clock=clock, dedup_window_secs=45) as client:
        first = as_order(client.submit_order(market("SPY", 2, BUY)))
        clock.advance(1)  # a scale-in one second later, or a retry: the guard cannot tell
        second = as_order(client.submit_order(market("SPY", 2, BUY)))
        assert second.id == first.id and len(orders_of(server.broker, symbol="SPY")) == 1
        warnings = [
            r.getMessage()
            for r in caplog.records
            if r.name == "tradeguard.gateway" and r.levelno == logging.WARNING
        ]
        repeats = [w for w in warnings if "window" in w.lower() and window.search(w)]
        assert len(repeats) == 1, warnings  # one repeat, one warning naming the window
        named = [r for r in audit_records(client) if "window" in r.reason.lower() and window.search(r.reason)]
        assert len(named) == 1 and named[0].symbol == "SPY" and named[0].agent_id == AGENT, named


def test_new_decision_places_an_identical_order_again(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    request = market("SPY", 2, BUY)
    first = as_order(client.submit_order(request))
    second = as_order(client.submit_order(request, new_decision=True))
    assert second.id != first.id and len(orders_of(server.broker, symbol="SPY")) == 2
    retry = as_order(client.submit_order(request))  # a retry inside the window sends nothing
    assert retry.id in (first.id, second.id) and len(orders_of(server.broker, symbol="SPY")) == 2
    assert held(server, "SPY") == 4 and ledger_qty(client, "SPY") == 4


def test_readme_tells_drop_in_users_to_set_client_order_id_and_how_to_mark_a_new_decision() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    sections = [s for s in re.split(r"\n#+ ", readme) if "new_decision" in s]
    assert sections, "the README does not mention new_decision"
    assert any("client_order_id" in s and "dedup_window_secs" in s for s in sections), sections


# ---- adversarial -------------------------------------------------------------------------------


def _race(*calls: Callable[[], object]) -> list[object]:
    """Run `calls` at once on threads; return each one's answer or APIError."""
    start = threading.Barrier(len(calls))
    answers: list[object] = [None] * len(calls)
    failures: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            answers[i] = outcome_of(calls[i])
        except BaseException as exc:  # re-raised below: a thread must not swallow it
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    return answers


def test_two_entries_racing_in_one_symbol_are_two_decisions(
    server: PaperServer, claims: str, clock: ManualClock
) -> None:
    with (
        guarded_client(server, claims, clock=clock) as one,
        guarded_client(server, claims, clock=clock) as two,
    ):
        answers = _race(
            lambda: one.submit_order(market("SPY", 3, BUY)), lambda: two.submit_order(market("SPY", 4, BUY))
        )
        assert all(isinstance(a, Order) for a in answers), answers
        assert sorted(num(o.qty) or "" for o in orders_of(server.broker, symbol="SPY")) == ["3", "4"]
        assert held(server, "SPY") == 7 and ledger_qty(one, "SPY") == 7


def test_two_exits_racing_in_one_symbol_never_oversell(
    server: PaperServer, claims: str, clock: ManualClock
) -> None:
    with (
        guarded_client(server, claims, clock=clock) as one,
        guarded_client(server, claims, clock=clock) as two,
    ):
        one.submit_order(market("SPY", 10, BUY))
        answers = _race(
            lambda: one.submit_order(market("SPY", 6, SELL)), lambda: two.submit_order(market("SPY", 7, SELL))
        )
        assert all(isinstance(a, Order | APIError) for a in answers), answers
        left = held(server, "SPY")
        assert 0 <= left <= 4, f"sold {10 - left} of 10"  # one exit went, and nothing was shorted
        assert ledger_qty(one, "SPY") == left
        sells = orders_of(server.broker, symbol="SPY", side="sell")
        assert all(s.position_intent is PositionIntent.SELL_TO_CLOSE for s in sells), sells


def test_a_retried_exit_arriving_after_a_re_entry_sells_nothing(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    # With its client_order_id: the id names the exit for good. (Without one, the same sell
    # after a re-entry of the bot's own is the new position's exit, as the README says and
    # `test_the_same_sell_without_an_id_exits_a_position_opened_since_inside_the_window` holds;
    # a "content" case here passed only while this test's clock stood still, audit 24.)
    client.submit_order(market("SPY", 10, BUY, "bot-spy-entry-1"))
    exit_request = market("SPY", 10, SELL, "bot-spy-exit-1")
    first_exit = as_order(client.submit_order(exit_request))
    assert held(server, "SPY") == 0
    client.submit_order(market("SPY", 10, BUY, "bot-spy-entry-2"))  # the bot re-enters
    late = as_order(client.submit_order(exit_request))  # ...and the first exit's retry arrives late
    assert late.id == first_exit.id
    assert len(orders_of(server.broker, symbol="SPY", side="sell")) == 1
    assert held(server, "SPY") == 10 and ledger_qty(client, "SPY") == 10
