"""Audit 44: an exit whose sender froze between its position read and its sizing (G3).

An exit reads the broker's position, then sizes and claims under the symbol's lock
(`exit_before_claim` lies between the two). A sender held up there (SIGSTOP, a debugger, a VM
paused, a swap storm) sizes from a read that is as old as the hold-up: meanwhile a person closed
the account's whole position and another agent bought again. Agent A's ledger is then a phantom,
yet the old read still showed the shares, and sized against the other agents' ledgers the
difference was the new buyer's shares: A sold them. The exit path re-sizes an exit held up
*after* its sizing (`exit_resize_after_secs`, `RetryAnswers._resize_if_held_up`), but measured the
hold-up from the sizing, so a freeze before it went unseen. It is now measured from the end of
the position read the size came from (a new exit's and a resend's alike).

The first test is deterministic: the freeze is the `exit_before_claim` crash point advancing a
manual clock while the world moves (SQLite and PostgreSQL). The second freezes a real process
with SIGSTOP at that point, on the paper server over HTTP and PostgreSQL (an `audit44_` schema).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests import audit44_workers as workers
from tests.forks import FORKS
from tests.gateway_kit import broker_qty
from tests.test_hardening_races import _wait_for
from tradeguard import ManualClock, OrderGateway, PaperBroker, crashpoints
from tradeguard.config import Settings
from tradeguard.domain import OrderRequest, OrderType, ReplaceRequest, Side
from tradeguard.errors import ConfigError
from tradeguard.execution import Outcome
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore
from tradeguard.testing import FaultPlan, FaultyBroker, paper_server

CTX = FORKS
SETTINGS = Settings(recent_activity_secs=0)  # position_settle_secs 30 s, exit_resize_after_secs 0.5 s


@pytest.fixture
def freeze_before_sizing() -> Iterator[list[Callable[[], None]]]:
    """Run the callables put in the list (once each) at `exit_before_claim`; the hook is removed after."""
    pending: list[Callable[[], None]] = []

    def hook(point: str) -> None:
        if point == "exit_before_claim":
            while pending:
                pending.pop(0)()

    crashpoints.set_hook(hook)
    yield pending
    crashpoints.set_hook(None)


@contextlib.contextmanager
def _three_agents(store_url: str, broker: Any, clock: ManualClock) -> Iterator[dict[str, OrderGateway]]:
    """Agents a, b and c on one account, each on its own store; a and b hold 10 SPY a minute old."""
    stores = [ClaimStore(store_url, settings=SETTINGS, clock=clock) for _ in range(3)]
    try:
        bots = {
            agent: OrderGateway(broker, s, agent_id=agent, settings=SETTINGS, clock=clock)
            for s, agent in zip(stores, "abc", strict=True)
        }
        assert bots["a"].enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
        assert bots["b"].enter("SPY", qty=10, intent="b-in").outcome is Outcome.SUBMITTED
        clock.advance(60)
        yield bots
    finally:
        for s in stores:
            s.close()


def test_an_exit_held_up_between_its_read_and_its_sizing_does_not_sell_another_agents_new_shares(
    store_url: str, freeze_before_sizing: list[Callable[[], None]]
) -> None:
    clock = ManualClock()
    account = PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock)
    with _three_agents(store_url, account, clock) as bots:

        def frozen_while_the_account_moved() -> None:
            clock.advance(60)
            account.close_position("SPY")  # a person closes the account's whole position
            assert bots["c"].enter("SPY", qty=5, intent="c-in").outcome is Outcome.SUBMITTED
            clock.advance(60)  # the sender is still frozen; C's fill is long settled

        freeze_before_sizing.append(frozen_while_the_account_moved)

        result = bots["a"].exit("SPY", intent="a-out")

        assert broker_qty(account, "SPY") == 5, result  # C's 5 are still there
        assert result.outcome is not Outcome.SUBMITTED, result.reason


def test_a_resend_held_up_between_its_read_and_its_sizing_does_not_sell_another_agents_new_shares(
    store_url: str, freeze_before_sizing: list[Callable[[], None]]
) -> None:
    """The same on the resend of an exit that placed nothing (`RetryAnswers._retry_exit`): its
    first POST was answered 429 (never sent: NOT_SENT); the bot's retry re-sizes it from a read."""
    clock = ManualClock()
    paper = PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock)
    plan = FaultPlan.parse("faults: [{route: POST /v2/orders, nth: 3, action: rate_limit}]")
    account = FaultyBroker(paper, plan, clock=clock)
    with _three_agents(store_url, account, clock) as bots:
        first = bots["a"].exit("SPY", intent="a-out")
        assert first.outcome is Outcome.NOT_SENT, first  # the 429: nothing placed
        clock.advance(60)

        def frozen_while_the_account_moved() -> None:
            clock.advance(60)
            paper.close_position("SPY")  # a person closes the account's whole position
            assert bots["c"].enter("SPY", qty=5, intent="c-in").outcome is Outcome.SUBMITTED
            clock.advance(60)

        freeze_before_sizing.append(frozen_while_the_account_moved)

        retry = bots["a"].exit("SPY", intent="a-out")

        assert paper.position_qty("SPY") == 5, retry  # C's 5 are still there
        assert retry.outcome is not Outcome.SUBMITTED, retry.reason


@pytest.fixture
def audit_pg(pg_url: str) -> str:
    """A store URL on the real PostgreSQL server, in a fresh schema dropped afterwards (conftest)."""
    return pg_url


def _stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.slow
@pytest.mark.postgres
def test_a_process_frozen_between_its_exit_read_and_its_sizing_does_not_sell_another_agents_shares(
    audit_pg: str, tmp_path: Path
) -> None:
    settings = Settings(position_settle_secs=0.5)
    paper = PaperBroker(prices=FixedPrices({"SPY": "500"}))
    with paper_server(paper) as server, ClaimStore(audit_pg, settings=settings) as store:
        bots = {
            agent: OrderGateway(
                workers.broker(server.url),
                store,
                agent_id=agent,
                settings=settings,
                reconcile_on_start=False,
            )
            for agent in "abc"
        }
        assert bots["a"].enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
        assert bots["b"].enter("SPY", qty=10, intent="b-in").outcome is Outcome.SUBMITTED
        marker, result = tmp_path / "frozen", tmp_path / "result"
        proc = CTX.Process(
            target=workers.exit_frozen_after_read,
            args=(audit_pg, server.url, "a", "a-out", str(marker), str(result), 0.5),
        )
        proc.start()
        try:
            _wait_for(
                lambda: not proc.is_alive() or (marker.exists() and _stopped(proc.pid or 0)),
                60,
                "A's exit to freeze after its position read",
            )
            assert marker.exists(), result.read_text() if result.exists() else "no result"
            paper.close_position("SPY")  # by hand, while A is frozen
            assert bots["c"].enter("SPY", qty=5, intent="c-in").outcome is Outcome.SUBMITTED
            # Frozen longer than a healthy sender ever takes from its read to its POST (a
            # hold-up within `exit_resize_after_secs` is tolerated by design).
            thawed = time.monotonic() + 2 * settings.exit_resize_after_secs
            _wait_for(lambda: time.monotonic() > thawed, 30, "the freeze to outlast the tolerance")
        finally:
            os.kill(proc.pid or 0, signal.SIGCONT)
            proc.join(60)
        outcome = json.loads(result.read_text())
        assert paper.position_qty("SPY") == 5, outcome  # C's 5 are still there
        assert outcome.get("outcome") != "submitted", outcome


def test_a_released_exit_held_up_before_its_send_does_not_sell_another_agents_new_shares(
    store_url: str,
) -> None:
    """The same on a reconcile pass's release of a refused exit (`Reconciler._release`): A's exit
    was refused 403 (a person's order held every share for a moment); the pass that follows
    re-sizes it from its read and resends it, and is held up right before that POST."""
    clock = ManualClock()
    paper = PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock)
    person = OrderRequest(
        "SPY", Side.SELL, "by-hand", qty=Decimal(20), order_type=OrderType.LIMIT, limit_price=Decimal(900)
    )
    sends: list[str] = []

    def world(point: str) -> None:
        sends.append(point)
        if point == "before_post" and sends.count("before_post") == 1:
            paper.submit_order(person)  # right before A's POST: a person's order holds all 20
        if point == "after_post" and sends.count("after_post") == 1:
            [held] = [o for o in paper.orders() if o.client_order_id == "by-hand"]
            paper.cancel_order(held.id)  # the person's order is gone before the pass reads
        if point == "after_claim" and sends.count("after_claim") == 2:
            # The pass's resend of A's exit, held up: the account closed by hand, C bought again.
            clock.advance(60)
            paper.close_position("SPY")
            assert bots["c"].enter("SPY", qty=10, intent="c-in").outcome is Outcome.SUBMITTED
            clock.advance(60)

    with _three_agents(store_url, paper, clock) as bots:
        crashpoints.set_hook(world)
        try:
            result = bots["a"].exit("SPY", intent="a-out")  # 403, then the pass re-sizes and resends it
        finally:
            crashpoints.set_hook(None)
        assert sends.count("after_claim") >= 2, (sends, result.reason)
        assert paper.position_qty("SPY") == 10, result  # C's 10 are still there
        assert result.outcome is not Outcome.SUBMITTED, result.reason


def test_an_exit_grown_by_a_replace_held_up_after_its_read_does_not_hold_another_agents_shares(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same on `OrderGateway.replace` growing a resting exit: the room it may grow into is
    sized from a position read, and a bot held up between that read and the PATCH (here right
    after the sizing returned) replaced its exit on the old room."""
    clock = ManualClock()
    paper = PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock)
    with _three_agents(store_url, paper, clock) as bots:
        resting = bots["a"].exit("SPY", qty=5, intent="a-out", order_type="limit", limit_price=900)
        assert resting.outcome is Outcome.SUBMITTED and resting.order is not None, resting.reason
        real = bots["a"]._room_beside

        def held_up_after_sizing(claim: Any) -> Any:
            monkeypatch.setattr(bots["a"], "_room_beside", real)
            sized = real(claim)
            clock.advance(60)
            # A person sells every share not held by A's resting exit, and C buys 10 again.
            by_hand = OrderRequest("SPY", Side.SELL, "by-hand", qty=Decimal(15))
            paper.submit_order(by_hand)
            # (a limit below A's resting sell: a market buy would be refused as a wash trade)
            bought = bots["c"].enter("SPY", qty=10, intent="c-in", order_type="limit", limit_price=500)
            assert bought.outcome is Outcome.SUBMITTED, bought.reason
            clock.advance(60)
            return sized

        monkeypatch.setattr(bots["a"], "_room_beside", held_up_after_sizing)

        with pytest.raises(ConfigError, match="would sell more than is held"):
            bots["a"].replace(resting.order.id, ReplaceRequest(qty=Decimal(10)))

        [open_exit] = [o for o in paper.orders() if o.side is Side.SELL and o.status.value == "new"]
        assert open_exit.qty == 5  # A's 5 only; C's 10 stay free
