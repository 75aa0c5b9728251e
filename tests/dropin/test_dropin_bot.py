"""The drop-in, proven with a whole bot (issue 10).

One ordinary alpaca-py bot (`tests/dropin_bot.py`) trades one session on the paper server twice:
with alpaca-py's `TradingClient` and with the one-import `GuardedTradingClient`. Both runs must
end with the same orders (symbol, side, qty, type, class, status, prices, fills: no ids) and the
same positions after every step. Then the paper server loses answers to order POSTs
(`accept_then_timeout`, `accept_then_error` 500 and 504) and the bot retries the way real bots
do: the guarded run still ends with exactly the orders of the clean run, one per decision, while
the unguarded run shows the duplicates (by the bot's own retry, or by alpaca-py's hidden retry of
a 504).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dropin.bot import PRICES, SessionLog, run_session
from tests.dropin.kit import (
    OrderRow,
    broker_positions,
    guarded_client,
    num,
    order_rows,
    plain_client,
    store_url,
)
from tradeguard.faults import Fault, FaultAction, FaultPlan
from tradeguard.testing import FixedPrices, paper_server

# The server holds a lost answer this long; the clients give up after READ_TIMEOUT_SECS.
LOST_ANSWER_SECS = 0.9
READ_TIMEOUT_SECS = 0.5


@dataclass(frozen=True, slots=True)
class BotRun:
    """What one run of the bot left behind."""

    log: SessionLog
    orders: Counter[OrderRow]
    positions: dict[str, str]  # the broker's, at the end
    ledger: dict[str, str]  # the guard's view at the end ({} for an unguarded run)
    faults_fired: int

    def decisions(self) -> Counter[tuple[str, str, str | None, str, str]]:
        """How many orders the broker holds of each content (symbol, side, qty, type, class)."""
        counts: Counter[tuple[str, str, str | None, str, str]] = Counter()
        for row, n in self.orders.items():
            counts[row.decision] += n
        return counts


def run_unguarded(plan: FaultPlan | None = None) -> BotRun:
    """Run the bot on alpaca-py's own TradingClient against a fresh paper server."""
    timeout = READ_TIMEOUT_SECS if plan is not None else 10.0
    with (
        paper_server(prices=FixedPrices(PRICES), allow_short=True, faults=plan) as server,
        plain_client(server, timeout_secs=timeout) as client,
        plain_client(server, raw_data=True, timeout_secs=timeout) as raw_client,
    ):
        log = run_session(client, raw_client)
        return BotRun(log, order_rows(server), broker_positions(server), {}, len(server.fired_faults()))


def run_guarded(tmp_path: Path, plan: FaultPlan | None = None) -> BotRun:
    """Run the bot on GuardedTradingClient (SQLite claims in tmp_path) against a fresh paper server."""
    timeout = READ_TIMEOUT_SECS if plan is not None else 10.0
    claims = store_url(tmp_path)
    with ExitStack() as stack:
        server = stack.enter_context(paper_server(prices=FixedPrices(PRICES), allow_short=True, faults=plan))
        client = stack.enter_context(guarded_client(server, claims, timeout_secs=timeout))
        raw_client = stack.enter_context(guarded_client(server, claims, raw_data=True, timeout_secs=timeout))
        log = run_session(client, raw_client)
        ledger = {p.symbol: num(p.qty) or "0" for p in client.gateway.positions()}
        return BotRun(log, order_rows(server), broker_positions(server), ledger, len(server.fired_faults()))


@pytest.fixture(scope="module")
def baseline() -> BotRun:
    """The bot's clean run on alpaca-py's TradingClient: the behaviour the guard must keep."""
    return run_unguarded()


# ---- the clean runs -----------------------------------------------------------------------------


def test_the_bot_runs_clean_on_alpaca_py_against_the_paper_server(baseline: BotRun) -> None:
    # The paper server must answer this ordinary session as Alpaca would: assets, brackets,
    # replace, close_position/close_all_positions, raw reads.
    assert baseline.log.errors == []
    after = dict(baseline.log.positions)
    assert after["SPY partial exit, plain sell"]["SPY"] == "6"
    assert "DIA" not in after["DIA exit, plain sell"]
    assert after["AAPL short"]["AAPL"] == "-6"
    assert "AAPL" not in after["AAPL cover, plain buy"]
    assert after["TQQQ partial close"]["TQQQ"] == "8"
    assert "TQQQ" not in after["TQQQ full close"]
    assert after["MSFT bracket entry"]["MSFT"] == "5"
    assert baseline.positions == {} and after["close all"] == {}
    rows = list(baseline.orders.elements())
    brackets = [r for r in rows if r.symbol == "MSFT" and r.order_class == "bracket" and r.side == "buy"]
    assert [(r.qty, r.status) for r in brackets] == [("5", "filled")]
    legs = sorted(
        (r.type, r.limit_price, r.stop_price, r.status)
        for r in rows
        if r.symbol == "MSFT" and r.side == "sell" and r.status == "canceled"
    )
    assert legs == [("limit", "440", None, "canceled"), ("stop", None, "400", "canceled")]
    spy_bids = sorted(
        (r.qty, r.limit_price, r.status) for r in rows if r.symbol == "SPY" and r.type == "limit"
    )
    assert spy_bids == [("2", "450", "replaced"), ("3", "455", "canceled")]
    assert baseline.log.raw_orders_read > 0


def test_the_same_bot_on_guarded_trading_client_ends_with_the_same_orders_and_positions(
    baseline: BotRun, tmp_path: Path
) -> None:
    guarded = run_guarded(tmp_path)
    assert guarded.log.errors == baseline.log.errors == []
    assert guarded.log.positions == baseline.log.positions  # after every step, not just at the end
    assert guarded.orders == baseline.orders
    assert guarded.positions == baseline.positions == {}
    assert guarded.ledger == {}  # the guard's view agrees with the broker without a reconcile
    assert guarded.log.raw_orders_read == baseline.log.raw_orders_read


# ---- lost answers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LostAnswers:
    """A fault plan on order POSTs and what it does to the unguarded bot."""

    plan: FaultPlan
    duplicated: tuple[tuple[str, str, str | None, str, str], ...]  # decisions without client_order_id
    bot_attempts: dict[str, int]  # the unguarded bot's sends of those decisions
    refused_retry_step: str  # the decision with a client_order_id: its retry meets Alpaca's 422


def _lost(
    action: FaultAction,
    match: dict[str, str | int | float | bool],
    *,
    delay_secs: float | None = None,
    status: int | None = None,
) -> Fault:
    """Lose the answer to the first order POST that matches `match`."""
    return Fault(
        route="POST /v2/orders", action=action, match=match, nth=1, delay_secs=delay_secs, status=status
    )


TIMEOUT, ERROR = FaultAction.ACCEPT_THEN_TIMEOUT, FaultAction.ACCEPT_THEN_ERROR

PLANS = {
    "accept_then_timeout": LostAnswers(
        FaultPlan(
            (
                _lost(
                    TIMEOUT, {"symbol": "SPY", "side": "buy", "type": "market"}, delay_secs=LOST_ANSWER_SECS
                ),
                _lost(TIMEOUT, {"symbol": "DIA", "side": "buy"}, delay_secs=LOST_ANSWER_SECS),
            ),
            seed=10,
        ),
        duplicated=(("SPY", "buy", "10", "market", "simple"),),
        bot_attempts={"spy-entry": 2},
        refused_retry_step="DIA market entry",
    ),
    "accept_then_error 500": LostAnswers(
        FaultPlan(
            (
                _lost(ERROR, {"symbol": "AAPL", "side": "sell"}, status=500),
                _lost(ERROR, {"symbol": "QQQ", "side": "buy", "type": "limit"}, status=500),
            ),
            seed=10,
        ),
        duplicated=(("AAPL", "sell", "6", "market", "simple"),),
        bot_attempts={"aapl-short": 2},
        refused_retry_step="QQQ limit entry",
    ),
    "accept_then_error 504": LostAnswers(
        # alpaca-py itself re-POSTs after a 504: the duplicate needs no retry by the bot. (The lost
        # bracket answer is for the guarded run; unguarded, its re-POST may meet its own legs.)
        FaultPlan(
            (
                _lost(ERROR, {"symbol": "SPY", "side": "sell"}, status=504),
                _lost(ERROR, {"symbol": "MSFT", "side": "buy"}, status=504),
                _lost(ERROR, {"symbol": "TQQQ", "side": "buy"}, status=504),
            ),
            seed=10,
        ),
        duplicated=(("SPY", "sell", "4", "market", "simple"),),
        bot_attempts={"spy-trim": 1},
        refused_retry_step="TQQQ entry",
    ),
}


@pytest.fixture(params=list(PLANS))
def lost(request: pytest.FixtureRequest) -> Iterator[LostAnswers]:
    yield PLANS[request.param]


def test_guarded_bot_survives_lost_answers_with_one_order_per_decision(
    baseline: BotRun, lost: LostAnswers, tmp_path: Path
) -> None:
    guarded = run_guarded(tmp_path, lost.plan)
    assert guarded.faults_fired == len(lost.plan.faults)  # every answer in the plan was lost
    assert guarded.log.errors == []  # the bot's retries were answered with the one order
    assert guarded.orders == baseline.orders  # exactly the clean run's orders: no duplicate
    assert guarded.log.positions == baseline.log.positions
    assert guarded.positions == {} and guarded.ledger == {}


def test_unguarded_bot_under_the_same_lost_answers_places_duplicates(
    baseline: BotRun, lost: LostAnswers
) -> None:
    unguarded = run_unguarded(lost.plan)
    assert unguarded.faults_fired == len(lost.plan.faults)
    clean, faulted = baseline.decisions(), unguarded.decisions()
    for decision in lost.duplicated:
        assert clean[decision] == 1, decision
        assert faulted[decision] == 2, decision  # one decision, two orders
    for name, sends in lost.bot_attempts.items():
        assert unguarded.log.attempts[name] == sends, name
    # With a client_order_id Alpaca refuses the second copy, and the bot gets an error for an
    # order that exists.
    refusals = [e for e in unguarded.log.errors if e.startswith(f"{lost.refused_retry_step}: APIError 422")]
    assert len(refusals) == 1 and "client_order_id must be unique" in refusals[0]
