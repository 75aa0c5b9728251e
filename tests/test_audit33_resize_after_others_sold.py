"""G3 when another agent sells between an exit's re-size read and its sizing (audit 33).

A new exit whose position read is followed, before its sizing under the symbol's lock, by another
agent's booked sell on its side is settled NOT_SENT and sized again (`OrderGateway._others_sold_since`,
soak seed 19): the sell lowered that agent's ledger (the shares sizing reserves for it) while the
read still counted its shares. The two other paths that re-size an exit from a read did not check:
the resend of an exit that placed nothing (`RetryAnswers._retry_exit`, here after a 503 proven
absent) and a reconcile pass's release of a refused exit (`Reconciler._release`, here after a 403
while a person's order held the shares). Agent A's ledger is partly a phantom (shares closed by
hand), B holds real shares and sells half right then: A's whole-position exit sold B's other half.
No lagging read is needed. Real parts: the paper broker (strict: a sell beyond `qty_available` is
refused 403), scripted faults, stores on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.gateway_kit import broker_qty
from tradeguard import ManualClock, OrderGateway, PaperBroker, crashpoints
from tradeguard.config import Settings
from tradeguard.domain import BrokerPosition, OrderRequest, OrderType, Side
from tradeguard.execution import Outcome
from tradeguard.faults import FaultPlan, FaultyBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.ports import ForwardingBroker
from tradeguard.store import ClaimStore

SETTINGS = Settings(recent_activity_secs=0)


class Hooked(ForwardingBroker):
    """The account as it is; `before_listing` runs (once) right before the next positions listing."""

    before_listing: Callable[[], None] | None = None

    def list_positions(self) -> list[BrokerPosition]:
        hook, self.before_listing = self.before_listing, None
        if hook is not None:
            hook()
        return super().list_positions()


World = tuple[ManualClock, PaperBroker, Hooked, OrderGateway, OrderGateway, ClaimStore]


@pytest.fixture
def make_world(store_url: str) -> Iterator[Callable[[list[dict[str, Any]]], World]]:
    """A (behind `faults`) and B on one account; A's ledger partly a phantom: A's ledger 10, A
    truly holds 5, B holds 10."""
    stores: list[ClaimStore] = []

    def make(faults: list[dict[str, Any]]) -> World:
        clock = ManualClock()
        paper = PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock)
        hooked = Hooked(paper)
        a_broker = FaultyBroker(hooked, FaultPlan.parse(json.dumps({"faults": faults})), clock=clock)
        stores.extend(ClaimStore(store_url, settings=SETTINGS, clock=clock) for _ in range(2))
        a = OrderGateway(a_broker, stores[-2], agent_id="a", settings=SETTINGS, clock=clock)
        b = OrderGateway(paper, stores[-1], agent_id="b", settings=SETTINGS, clock=clock)
        assert a.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
        assert b.enter("SPY", qty=10, intent="b-in").outcome is Outcome.SUBMITTED
        clock.advance(60)
        paper.close_position("SPY", qty=Decimal(5))
        clock.advance(60)
        return clock, paper, hooked, a, b, stores[-2]

    yield make
    crashpoints.set_hook(None)
    for store in stores:
        store.close()


def _before_resizing(store: ClaimStore, monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
    """Run `action` once, right before A's next re-sizing under the symbol's lock (its read done)."""
    real = store.resend_exit

    def resend_exit(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(store, "resend_exit", real)
        action()
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "resend_exit", resend_exit)


def _b_sells_half(b: OrderGateway) -> Callable[[], None]:
    def sell() -> None:
        assert b.exit("SPY", qty=5, intent="b-half").outcome is Outcome.SUBMITTED

    return sell


def test_a_resent_absent_exit_re_sized_after_another_agent_sold_does_not_sell_its_shares(
    make_world: Callable[[list[dict[str, Any]]], World], monkeypatch: pytest.MonkeyPatch
) -> None:
    unanswered = {"route": "POST /v2/orders", "match": {"side": "sell"}, "nth": 1, "action": "error"}
    clock, paper, _hooked, a, b, store = make_world([unanswered])
    first = a.exit("SPY", intent="a-out")
    assert first.outcome is Outcome.UNKNOWN, first.reason
    clock.advance(SETTINGS.unknown_grace_secs + 1)
    _before_resizing(store, monkeypatch, _b_sells_half(b))

    again = a.exit("SPY", intent="a-out")  # absent on two probes: re-sized (B holds SPY) and resent

    assert b.position("SPY").qty == 5, "B's sell ran"
    assert broker_qty(paper, "SPY") >= 5, again.reason  # B's other 5 are still there
    # Not un-exitable: once B's sale is past the positions lag, a retry sells A's own 5.
    clock.advance(SETTINGS.position_settle_secs + 1)
    later = a.exit("SPY", intent="a-out")
    assert broker_qty(paper, "SPY") == 5, later.reason
    assert b.position("SPY").qty == 5


def test_a_released_exit_re_sized_after_another_agent_sold_does_not_sell_its_shares(
    make_world: Callable[[list[dict[str, Any]]], World], monkeypatch: pytest.MonkeyPatch
) -> None:
    _clock, paper, hooked, a, b, store = make_world([])
    assert a.position("SPY").qty == 10  # A started (its start-up pass done)
    person = OrderRequest(
        "SPY", Side.SELL, "by-hand", qty=Decimal(15), order_type=OrderType.LIMIT, limit_price=Decimal(900)
    )
    placed: list[str] = []

    def hold_everything(name: str) -> None:  # right before A's POST: a person's order holds all 15
        if name == "before_post":
            crashpoints.set_hook(None)
            placed.append(paper.submit_order(person).id)

    crashpoints.set_hook(hold_everything)
    hooked.before_listing = lambda: paper.cancel_order(placed[0])  # gone before the pass reads
    _before_resizing(store, monkeypatch, _b_sells_half(b))

    result = a.exit("SPY", intent="a-out")  # 403, then the pass re-sizes and resends it

    assert placed and b.position("SPY").qty == 5, "the person's order and B's sell ran"
    assert broker_qty(paper, "SPY") >= 5, result.reason  # B's other 5 are still there
