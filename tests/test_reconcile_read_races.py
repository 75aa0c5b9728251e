"""Audit 21: orders claimed and placed between a reconcile pass's store load and its broker read.

A pass loads claims, busy symbols and moved turns, then reads the broker. Another thread's or
process's order claimed in between (its answer still on its way) shows in the read but in no
loaded claim; the pass must not book its shares into a ledger nor clear the turn it sells.
Real parts: a SQLite file, PostgreSQL or the memory store, the in-process paper account, threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tests.gateway_kit import MAY21_PRICES, OnSleepClock
from tradeguard.domain import BrokerOrder, BrokerPosition, OrderRequest
from tradeguard.gateway import OrderGateway
from tradeguard.ports import ClaimLedger, ForwardingBroker
from tradeguard.testing import PaperBroker


class SlowAnswer(ForwardingBroker):
    """A line whose orders land at once while their answers come back only when `answer` is set."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.placed, self.answer = threading.Event(), threading.Event()

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        order = self.inner.submit_order(request)
        self.placed.set()
        assert self.answer.wait(10)
        return order


class BeforeRead(ForwardingBroker):
    """A line that runs `then` in a thread just before its next positions read, once it placed."""

    def __init__(self, inner: Any, line: SlowAnswer) -> None:
        super().__init__(inner)
        self.line = line
        self.then: Callable[[], object] | None = None
        self.thread: threading.Thread | None = None

    def list_positions(self) -> list[BrokerPosition]:
        then, self.then = self.then, None
        if then is not None:
            self.thread = threading.Thread(target=then)
            self.thread.start()
            assert self.line.placed.wait(10)
        return self.inner.list_positions()  # type: ignore[no-any-return]

    def finish(self) -> None:
        self.line.answer.set()
        assert self.thread is not None
        self.thread.join(10)


def _world(store: ClaimLedger) -> tuple[PaperBroker, SlowAnswer, BeforeRead]:
    paper = PaperBroker(prices=MAY21_PRICES, clock=store.clock)
    slow = SlowAnswer(paper)
    return paper, slow, BeforeRead(paper, slow)


def test_another_agents_entry_placed_during_a_pass_is_not_booked_into_this_agent(shared: ClaimLedger) -> None:
    """A holds 10 SPY; B's entry of 5 lands after A's pass loaded the store, its answer late.
    A's pass reads 15 twice and must not adopt B's 5 as A's missed fill: the ledgers would hold
    20 against 15, drift between two holders that no pass can settle."""
    clock = shared.clock
    assert isinstance(clock, OnSleepClock)
    _paper, slow, hooked = _world(shared)
    a = OrderGateway(hooked, shared, agent_id="agent-a", clock=clock)
    b = OrderGateway(slow, shared, agent_id="agent-b", clock=clock)
    a.enter("SPY", qty=10, intent="a in")
    b.position("SPY")
    clock.advance(120)
    hooked.then = lambda: b.enter("SPY", qty=5, intent="b in")

    report = a.reconcile()
    hooked.finish()

    assert report.changes == [], [x.reason for x in report.changes]
    assert shared.position("agent-a", "SPY").qty == 10, "B's shares were booked into A"
    assert shared.position("agent-b", "SPY").qty == 5
    clock.advance(600)
    assert a.reconcile().actions == []


def test_an_exit_placed_during_a_pass_does_not_have_its_turn_cleared(shared: ClaimLedger) -> None:
    """A holds 10 SPY; another process of A sells them after the pass loaded the store and its
    answer comes late. The pass reads flat twice; clearing the turn would make the exit's fill
    book a 10 share short into A's ledger."""
    clock = shared.clock
    assert isinstance(clock, OnSleepClock)
    paper, slow, hooked = _world(shared)
    a = OrderGateway(hooked, shared, agent_id="agent-a", clock=clock)
    other = OrderGateway(slow, shared, agent_id="agent-a", clock=clock, reconcile_on_start=False)
    a.enter("SPY", qty=10, intent="a in")
    clock.advance(120)
    hooked.then = lambda: other.exit("SPY", intent="a out")

    report = a.reconcile()
    hooked.finish()

    assert report.changes == [], [x.reason for x in report.changes]
    assert paper.get_position("SPY") is None
    assert shared.position("agent-a", "SPY").is_flat, "the exit's fill booked a short"
    clock.advance(600)
    assert a.reconcile().actions == []
