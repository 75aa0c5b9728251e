"""G3 across agents: an exit whose sender froze between sizing and POST is re-sized before it sends.

A sender frozen right after its exit's claim (SIGSTOP, a GC pause, a swapped-out VM) passes its
lease check on waking if the lease still runs. Meanwhile the account may have been closed behind
the bots' backs and another agent on it may have re-entered: the exit's old size would sell that
agent's shares. These tests park the sender in a thread at the `after_claim` crash point (where
a real freeze would stop it), change the world, and resume it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest

from tests.gateway_kit import MAY21_PRICES, broker_qty
from tradeguard import crashpoints
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.execution import OrderResult, Outcome
from tradeguard.faults import FaultPlan, FaultyBroker
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.ports import Broker
from tradeguard.store import AuditQuery, ClaimStore

SETTINGS = Settings()


class Frozen:
    """A call running in its own thread, parked at crash point `point` until `resume()`."""

    def __init__(self, call: Callable[[], OrderResult], point: str = "after_claim") -> None:
        self._call = call
        self._point = point
        self._parked = threading.Event()
        self._go = threading.Event()
        self.result: OrderResult | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self._call()
        except BaseException as exc:  # handed to the test thread by resume()
            self.error = exc
        finally:
            self._parked.set()

    def hook(self, name: str) -> None:
        if name == self._point and threading.current_thread() is self._thread:
            self._parked.set()
            assert self._go.wait(timeout=60), "never resumed"

    def start(self) -> None:
        self._thread.start()
        assert self._parked.wait(timeout=60), "the sender neither froze nor finished"

    def resume(self) -> OrderResult:
        self._go.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the resumed sender hangs"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@contextmanager
def frozen(call: Callable[[], OrderResult], point: str = "after_claim") -> Iterator[Frozen]:
    sender = Frozen(call, point)
    crashpoints.set_hook(sender.hook)
    try:
        sender.start()
        yield sender
    finally:
        crashpoints.set_hook(None)


def _two_agents(
    store_url: str, *, a_faults: str | None = None
) -> tuple[ManualClock, PaperBroker, ClaimStore, OrderGateway, OrderGateway]:
    """Agents A and B on one paper account and one store; A's broker calls meet `a_faults`."""
    clock = ManualClock()
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock, cash=1_000_000)
    store = ClaimStore(store_url, settings=SETTINGS, clock=clock)
    a_broker: Broker = paper
    if a_faults is not None:
        a_broker = FaultyBroker(paper, FaultPlan.parse(a_faults, source="a-faults.yaml"), clock=clock)
    a = OrderGateway(a_broker, store, agent_id="bot-a", settings=SETTINGS, clock=clock)
    b = OrderGateway(paper, store, agent_id="bot-b", settings=SETTINGS, clock=clock)
    return clock, paper, store, a, b


@pytest.mark.parametrize("point", ["after_claim", "before_post"])
def test_a_frozen_exit_never_sells_another_agents_reentry(store_url: str, point: str) -> None:
    """A freezes after claiming its exit of 10 (before or after its lease check); the account is
    closed outside; B buys 10; A wakes."""
    clock, paper, store, a, b = _two_agents(store_url)
    try:
        a.enter("TQQQ", qty=10, intent="a open")
        with frozen(lambda: a.exit("TQQQ", intent="a out"), point) as sender:
            claimed = store.list_claims(states=[ClaimState.PENDING], agent_id="bot-a")
            assert [c.order_qty for c in claimed] == [Decimal(10)]
            paper.close_position("TQQQ")  # behind the bots' backs: A's ledger is a phantom now
            b.enter("TQQQ", qty=10, intent="b open")  # the account's 10 are B's
            clock.advance(5)  # the freeze lasted (well within the 30 s lease)
            result = sender.resume()
        assert result.outcome is Outcome.SKIPPED, result.reason
        assert broker_qty(paper, "TQQQ") == 10  # before the fix: 0, A's old 10 sold B's shares
        sells = [o for o in paper.orders() if o.symbol == "TQQQ" and o.side.value == "sell"]
        assert len(sells) == 1  # the outside close only
        exit_claim = store.get(claimed[0].key)
        assert exit_claim is not None and exit_claim.state is ClaimState.NOT_SENT
        coid = exit_claim.client_order_id
        reasons = [
            r.reason
            for r in store.audit_page(AuditQuery(), after_id=0, limit=1000)
            if r.client_order_id == coid
        ]
        assert any("held up" in r for r in reasons), reasons
    finally:
        store.close()


def test_a_held_up_exit_whose_world_did_not_change_still_sells_its_position(store_url: str) -> None:
    """Re-sizing changes nothing when nothing changed: the same decision sells the same 10, once."""
    clock, paper, store, a, b = _two_agents(store_url)
    try:
        a.enter("TQQQ", qty=10, intent="a open")
        b.enter("TQQQ", qty=7, intent="b open")
        with frozen(lambda: a.exit("TQQQ", intent="a out")) as sender:
            clock.advance(5)
            result = sender.resume()
        assert result.outcome is Outcome.SUBMITTED, result.reason
        assert result.order is not None and result.order.qty == 10
        assert broker_qty(paper, "TQQQ") == 7  # B's 7 untouched
        again = a.exit("TQQQ", intent="a out")  # the bot's retry is a duplicate, not a second sell
        assert again.outcome is Outcome.DUPLICATE
        assert len([o for o in paper.orders() if o.side.value == "sell"]) == 1
    finally:
        store.close()


def test_an_exit_sent_promptly_is_not_read_twice(store_url: str) -> None:
    """The fresh position read is only for a sender held up past `exit_resize_after_secs`."""
    clock, paper, store, a, _b = _two_agents(store_url)
    reads: list[str] = []
    real = paper.get_position

    def counting(symbol: str):  # type: ignore[no-untyped-def]
        reads.append(symbol)
        return real(symbol)

    try:
        a.enter("TQQQ", qty=10, intent="a open")
        paper.get_position = counting  # type: ignore[method-assign]
        with frozen(lambda: a.exit("TQQQ", intent="a out")) as sender:
            clock.advance(SETTINGS.exit_resize_after_secs)  # exactly the bound: still prompt
            result = sender.resume()
        assert result.outcome is Outcome.SUBMITTED, result.reason
        assert reads == ["TQQQ"]  # the sizing read only
    finally:
        store.close()


REFUSED_EXIT_PLAN = """
faults:
  - route: POST /v2/orders
    match: {side: sell}
    nth: 1
    action: reject
    status: 403
    body: {code: 40310000, message: "insufficient qty available for order (requested: 10, available: 0)"}
"""


class FrozenPass(Frozen):
    """Like `Frozen`, parked where a reconcile pass has read the broker and applies nothing yet."""

    def hook(self, name: str) -> None:
        if name == "reconcile_after_read" and threading.current_thread() is self._thread:
            self._parked.set()
            assert self._go.wait(timeout=60), "never resumed"


def test_a_reconcile_pass_held_up_after_its_read_resizes_a_refused_exit_from_a_fresh_read(
    store_url: str,
) -> None:
    """A's refused exit is released by a pass that froze after reading 20 shares; meanwhile the
    account was closed outside, B cleared its phantom and bought 10 again: A sells none of them."""
    clock, paper, store, a, b = _two_agents(store_url, a_faults=REFUSED_EXIT_PLAN)
    try:
        a.enter("TQQQ", qty=10, intent="a open")
        b.enter("TQQQ", qty=10, intent="b open")
        pass_ = FrozenPass(lambda: a.exit("TQQQ", intent="a out"))  # refused, then a pass releases it
        crashpoints.set_hook(pass_.hook)
        try:
            pass_.start()
            paper.close_position("TQQQ")  # behind both bots' backs
            clock.advance(SETTINGS.position_settle_secs + 1)
            b.reconcile()  # B's 10 were a phantom: cleared
            assert store.position("bot-b", "TQQQ").is_flat
            b.enter("TQQQ", qty=10, intent="b again")  # the account's 10 are B's
            result = pass_.resume()
        finally:
            crashpoints.set_hook(None)
        assert result.outcome is not Outcome.SUBMITTED, result.reason
        assert broker_qty(paper, "TQQQ") == 10  # before the fix: 0 (A's release sold B's 10)
    finally:
        store.close()


LOST_EXIT_PLAN = """
faults:
  - {route: POST /v2/orders, match: {side: sell}, nth: 1, action: drop}
"""


def test_a_lost_exit_is_resent_as_it_was_when_only_another_accounts_agent_holds_the_symbol(
    store_url: str,
) -> None:
    """Re-sizing a lost exit guards the agents of its own account; one on another account holds
    nothing A could sell, so A's exit proven absent goes out again as it was, same id and size."""
    clock = ManualClock()
    mine = PaperBroker(prices=MAY21_PRICES, clock=clock, cash=1_000_000)
    theirs = PaperBroker(prices=MAY21_PRICES, clock=clock, cash=1_000_000)
    assert mine.account_key != theirs.account_key
    store = ClaimStore(store_url, settings=SETTINGS, clock=clock)
    try:
        lossy = FaultyBroker(mine, FaultPlan.parse(LOST_EXIT_PLAN, source="lost-exit.yaml"), clock=clock)
        a = OrderGateway(lossy, store, agent_id="bot-a", settings=SETTINGS, clock=clock)
        c = OrderGateway(theirs, store, agent_id="bot-c", settings=SETTINGS, clock=clock)
        a.enter("TQQQ", qty=10, intent="a open")
        c.enter("TQQQ", qty=10, intent="c open")
        lost = a.exit("TQQQ", intent="a out")
        assert lost.outcome is Outcome.UNKNOWN and lost.claim is not None
        clock.advance(SETTINGS.unknown_grace_secs + 1)
        again = a.exit("TQQQ", intent="a out")
        assert again.outcome is Outcome.SUBMITTED, again.reason
        assert broker_qty(mine, "TQQQ") == 0 and broker_qty(theirs, "TQQQ") == 10
        coid = lost.claim.client_order_id
        reasons = [
            r.reason
            for r in store.audit_page(AuditQuery(), after_id=0, limit=1000)
            if r.client_order_id == coid
        ]
        assert any("resending the same id" in r for r in reasons), reasons
        assert not any("re-sizing" in r for r in reasons), reasons
    finally:
        store.close()


def test_an_entry_frozen_past_its_lease_check_and_its_lease_sends_nothing_once_taken_over(
    store_url: str,
) -> None:
    """Frozen right before its POST for longer than its lease; a reconcile pass found no order and
    marked the claim NOT_SENT; the bot's retry sent it again. The woken sender must not send."""
    clock, paper, store, a, _b = _two_agents(store_url)
    try:
        with frozen(lambda: a.enter("TQQQ", qty=10, intent="a open"), "before_post") as sender:
            clock.advance(SETTINGS.lease_secs + SETTINGS.unknown_grace_secs + 5)
            restarted = OrderGateway(paper, store, agent_id="bot-a", settings=SETTINGS, clock=clock)
            restarted.reconcile()
            clock.advance(SETTINGS.recent_activity_secs + 1)
            restarted.reconcile()
            again = restarted.enter("TQQQ", qty=10, intent="a open")  # sent once, same id
            assert again.order is not None, again.reason
            result = sender.resume()
        buys = [o for o in paper.orders() if o.side.value == "buy"]
        assert len(buys) == 1, (result.outcome, result.reason)
        assert broker_qty(paper, "TQQQ") == 10
    finally:
        store.close()


def test_a_sender_held_up_past_its_dedup_window_before_writing_its_claim_sends_nothing(
    store_url: str,
) -> None:
    """G1 for orders without a name: P1 opens the content window, then stalls before writing its
    claim; the window expires and P2 (the same bot, restarted) sends the identical order; P1 wakes.
    Found by an adversarial run (SIGSTOP there, `dedup_window_secs` later SIGCONT): two orders."""
    from tradeguard.domain import Side
    from tradeguard.domain.intents import Kind, OrderSpec

    clock = ManualClock()
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock, cash=1_000_000)
    stalled, fresh = (ClaimStore(store_url, settings=SETTINGS, clock=clock) for _ in range(2))
    p1 = OrderGateway(paper, stalled, agent_id="bot", settings=SETTINGS, clock=clock)
    p2 = OrderGateway(paper, fresh, agent_id="bot", settings=SETTINGS, clock=clock)
    spec = OrderSpec(qty=Decimal(10))
    second: list[OrderResult] = []
    write_claim = stalled.claim

    def claim_after_a_stall(*args: object, **kwargs: object) -> object:
        clock.advance(SETTINGS.dedup_window_secs + 1)  # frozen between the window and the claim
        second.append(p2.submit_by_content(Kind.ENTRY, "TQQQ", Side.BUY, spec))
        return write_claim(*args, **kwargs)  # type: ignore[arg-type]

    try:
        p2.position("TQQQ")  # started
        stalled.claim = claim_after_a_stall  # type: ignore[method-assign]
        first = p1.submit_by_content(Kind.ENTRY, "TQQQ", Side.BUY, spec)
        assert second and second[0].order is not None, second  # P2's order went out
        assert first.outcome is Outcome.NOT_SENT, first.reason
        assert len(paper.orders()) == 1  # before the fix: 2
        assert broker_qty(paper, "TQQQ") == 10
    finally:
        stalled.close()
        fresh.close()
