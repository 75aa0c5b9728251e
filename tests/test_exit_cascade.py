"""The May 21 SQQQ exit cascade under a fault plan (issue 5): 503, flat broker, 422, phantom.

A real claim store (SQLite and PostgreSQL), the in-process PaperBroker behind `FaultyBroker`,
and one manual clock. Exit attempt 1 gets a 503 (not placed); the position is closed at the
broker meanwhile; after the grace period the retry resends the same client_order_id, the paper
broker answers 422 "position intent mismatch", and within that call the reconciler clears the
phantom. A third identical exit never reaches the broker; a new entry does. The same cascade
with shares still held goes through re-sized to qty_available; a second exit while the first is
unknown sells only what is not in flight; the same exit intent for another order is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest

from tests.gateway_kit import MAY21_PRICES
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, OrderRequest, OrderType, Side
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import IntentMismatch
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.store import AuditQuery, ClaimStore
from tradeguard.testing import FaultPlan, FaultyBroker, PaperBroker, RecordingBroker

AGENT = "may21-bot"

# Exit attempt 1 (the first SQQQ sell) is answered 503 and never reaches the account.
EXIT_503_PLAN = """
seed: 521
faults:
  - route: POST /v2/orders
    match: {symbol: SQQQ, side: sell}
    nth: 1
    action: error
    status: 503
"""


@dataclass
class Cascade:
    """One bot's world: clock, paper account, fault layer, port log, store and gateway."""

    clock: ManualClock
    paper: PaperBroker
    faulty: FaultyBroker
    port: RecordingBroker[FaultyBroker]
    store: ClaimStore
    gw: OrderGateway

    def broker_qty(self, symbol: str) -> Decimal:
        pos = self.paper.get_position(symbol)
        return Decimal(0) if pos is None else pos.qty

    def orders(self, symbol: str) -> list[BrokerOrder]:
        return [o for o in self.paper.orders() if o.symbol == symbol]


@pytest.fixture
def cascade(store_url: str) -> Iterator[Cascade]:
    clock = ManualClock()
    settings = Settings()  # the defaults: 15 s grace, 2 s probe gap, 2 s settle delay
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    faulty = FaultyBroker(paper, FaultPlan.parse(EXIT_503_PLAN, source="exit-503.yaml"), clock=clock)
    port = RecordingBroker(faulty)
    store = ClaimStore(store_url, settings=settings, clock=clock)
    gw = OrderGateway(port, store, agent_id=AGENT, settings=settings, clock=clock)
    yield Cascade(clock, paper, faulty, port, store, gw)
    store.close()


def _hold_then_exit_with_a_503(c: Cascade, qty: int) -> str:
    """Hold `qty` SQQQ, fail exit attempt 1 with a 503; return the exit's client_order_id."""
    entry = c.gw.enter("SQQQ", qty=qty, intent="11:06 add")
    assert entry.outcome is Outcome.SUBMITTED
    assert c.gw.position("SQQQ").qty == qty and c.broker_qty("SQQQ") == qty

    first = c.gw.exit("SQQQ", intent="11:40 exit")
    assert first.outcome is Outcome.UNKNOWN, first.reason
    assert first.error is not None and first.error.status_code == 503
    assert first.claim is not None and first.claim.state is ClaimState.UNKNOWN
    assert [f.fault.effective_status for f in c.faulty.injector.fired()] == [503]
    assert len(c.orders("SQQQ")) == 1  # the 503 placed nothing: only the entry is at the broker
    return first.claim.client_order_id


def test_exit_503_flat_broker_422_clears_the_phantom_blocks_the_third_exit_and_reenters(
    cascade: Cascade,
) -> None:
    c = cascade
    coid = _hold_then_exit_with_a_503(c, qty=2)
    c.paper.close_position("SQQQ")  # closed outside the bot meanwhile: the broker is flat
    assert c.broker_qty("SQQQ") == 0 and c.store.position(AGENT, "SQQQ").qty == 2
    c.clock.advance(c.gw.settings.unknown_grace_secs + 1)

    second = c.gw.exit("SQQQ", intent="11:40 exit")

    # The retry proved the first attempt absent and resent it under the same client_order_id.
    assert c.port.submitted(coid) == 2
    assert second.outcome is Outcome.REJECTED, second.reason
    assert second.error is not None and second.error.status_code == 422
    assert "position intent mismatch" in second.error.message
    # Within that call the reconciler read the broker flat twice and cleared the phantom.
    assert c.store.position(AGENT, "SQQQ").is_flat
    assert c.gw.position("SQQQ").qty == 0
    cleared = list(c.store.audit_records(AuditQuery(actions=("reconcile",), symbol="SQQQ")))
    assert [r.detail["action"] for r in cleared] == ["clear_phantom"]
    assert cleared[0].agent_id == AGENT and "phantom cleared" in cleared[0].reason
    (exit_claim,) = c.store.list_claims(agent_id=AGENT, symbol="SQQQ", kind=Kind.EXIT)
    assert exit_claim.client_order_id == coid and exit_claim.state is ClaimState.REJECTED
    assert exit_claim.reason.startswith("rejected (position): position intent mismatch")
    assert not [o for o in c.orders("SQQQ") if o.client_order_id == coid]  # a 422 places nothing

    calls_before = len(c.port.calls)
    skips_before = c.store.audit_count(AuditQuery(actions=("skip",), symbol="SQQQ"))
    third = c.gw.exit("SQQQ", intent="11:40 exit")
    assert third.outcome is Outcome.SKIPPED, third.reason
    assert c.port.calls[calls_before:] == []  # blocked without a single broker call
    skips = list(c.store.audit_records(AuditQuery(actions=("skip",), symbol="SQQQ")))
    assert len(skips) == skips_before + 1 and skips[-1].client_order_id == coid
    assert c.port.submitted(coid) == 2

    orders_before = c.orders("SQQQ")
    reentry = c.gw.enter("SQQQ", qty=2, intent="11:45 entry")
    assert reentry.outcome is Outcome.SUBMITTED, reentry.reason
    assert reentry.claim is not None
    new_orders = c.orders("SQQQ")[len(orders_before) :]
    assert [(o.client_order_id, o.side, o.position_intent) for o in new_orders] == [
        (reentry.claim.client_order_id, Side.BUY, "buy_to_open")
    ]
    position = c.gw.position("SQQQ")
    assert position.qty == 2 == c.broker_qty("SQQQ")
    assert position.turn_id is not None and position.turn_id != exit_claim.turn_id
    report = c.gw.reconcile()
    assert report.aborted is None and report.changes == []


@pytest.mark.parametrize("held_by", ["partial_close", "resting_order"])
def test_same_cascade_with_shares_still_held_resends_the_exit_resized(cascade: Cascade, held_by: str) -> None:
    c = cascade
    coid = _hold_then_exit_with_a_503(c, qty=10)
    if held_by == "partial_close":
        c.paper.close_position("SQQQ", qty=Decimal(4))  # 6 left at the broker, ledger says 10
    else:
        # Someone else's resting sell holds 4 shares: the broker has 10, qty_available 6.
        c.paper.submit_order(
            OrderRequest(
                "SQQQ",
                Side.SELL,
                "manual-limit",
                qty=Decimal(4),
                order_type=OrderType.LIMIT,
                limit_price=Decimal(99),
            )
        )
    c.clock.advance(c.gw.settings.unknown_grace_secs + 1)

    second = c.gw.exit("SQQQ", intent="11:40 exit")

    assert second.outcome is Outcome.SUBMITTED, second.reason
    assert second.order is not None and second.order.client_order_id == coid
    assert second.order.qty == 6 and second.order.position_intent == "sell_to_close"
    # The same id three times: the 503, the resend (403 insufficient qty), the re-sized release.
    assert c.port.submitted(coid) == 3
    (placed,) = [o for o in c.orders("SQQQ") if o.client_order_id == coid]
    assert placed.qty == 6 and placed.filled_qty == 6
    claim = c.store.get_by_client_order_id(coid)
    assert claim is not None and claim.state is ClaimState.FILLED and claim.order_qty == 6
    released = list(c.store.audit_records(AuditQuery(client_order_id=coid, state="PENDING")))
    assert any("re-sized to 6" in r.reason for r in released)
    assert c.store.audit_count(AuditQuery(actions=("reconcile",), symbol="SQQQ")) == 0  # no phantom

    expected = 0 if held_by == "partial_close" else 4
    assert c.broker_qty("SQQQ") == expected
    if held_by == "partial_close":
        # The 4 shares sold behind the bot's back are a phantom now; one pass clears them (G4)
        # once the position has settled (a positions read right after a fill may trail it).
        assert c.store.position(AGENT, "SQQQ").qty == 4
        c.clock.advance(c.gw.settings.position_settle_secs + 1)
        report = c.gw.reconcile(["SQQQ"])
        assert [a.kind.value for a in report.changes] == ["clear_phantom"]
    assert c.gw.position("SQQQ").qty == expected
    # Never made un-exitable: a retry of the same exit is a plain duplicate, nothing sent.
    again = c.gw.exit("SQQQ", intent="11:40 exit")
    assert again.outcome is Outcome.DUPLICATE, again.reason
    assert c.port.submitted(coid) == 3


def test_second_exit_while_the_first_is_unknown_sells_only_what_is_not_in_flight(cascade: Cascade) -> None:
    c = cascade
    c.gw.enter("SQQQ", qty=10, intent="11:06 add")
    first = c.gw.exit("SQQQ", qty=6, intent="11:40 exit")  # the 503: 6 shares may be in flight
    assert first.outcome is Outcome.UNKNOWN and first.claim is not None

    second = c.gw.exit("SQQQ", intent="11:41 stop")  # "sell everything" meanwhile
    assert second.outcome is Outcome.SUBMITTED, second.reason
    assert second.order is not None and second.order.qty == 4  # 10 available - 6 in flight

    c.clock.advance(c.gw.settings.unknown_grace_secs + 1)
    again = c.gw.exit("SQQQ", qty=6, intent="11:40 exit")  # absent on two probes: resent, same id
    assert again.outcome is Outcome.SUBMITTED, again.reason
    assert again.order is not None and again.order.client_order_id == first.claim.client_order_id
    sells = [(o.qty, o.position_intent) for o in c.orders("SQQQ") if o.side is Side.SELL]
    assert sells == [(4, "sell_to_close"), (6, "sell_to_close")]
    assert c.broker_qty("SQQQ") == 0 == c.gw.position("SQQQ").qty  # never short, no phantom


def test_same_exit_intent_with_a_different_order_is_loud(cascade: Cascade) -> None:
    """This used to answer as a silent DUPLICATE of the first exit."""
    c = cascade
    c.gw.enter("TQQQ", qty=10, intent="11:20 entry")
    first = c.gw.exit("TQQQ", qty=5, intent="11:26 exit")
    assert first.outcome is Outcome.SUBMITTED
    calls_before = len(c.port.calls)
    with pytest.raises(IntentMismatch, match="qty"):
        c.gw.exit("TQQQ", qty=3, intent="11:26 exit")
    with pytest.raises(IntentMismatch, match="order_type"):
        c.gw.exit("TQQQ", qty=5, intent="11:26 exit", order_type="limit", limit_price=70)
    assert not [name for name, _ in c.port.calls[calls_before:] if name == "submit_order"]
    assert len(c.store.list_claims(kind=Kind.EXIT)) == 1
