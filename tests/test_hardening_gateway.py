"""Issue 8, send-path defects: taken ids, store failures after the POST, drop-in retries,
retried exits after re-entry, unaudited blocked retries.

Real claim stores (a SQLite file and PostgreSQL); the paper account in process, or served over
HTTP to the real alpaca-py TradingClient where the scenario is about HTTP; manual clocks.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from tests.gateway_kit import MAY21_PRICES, audit_of, broker_qty, make_gateway
from tradeguard import crashpoints
from tradeguard.client import GuardedTradingClient
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import AuditAction, BrokerOrder, OrderRequest, RejectKind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import OrderRejected, OutcomeUnknown, StoreError, UnrecordedOrder
from tradeguard.execution import Outcome
from tradeguard.faults import Fault, FaultAction
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.store import ClaimStore
from tradeguard.testing import (
    FaultPlan,
    FaultyBroker,
    RecordingBroker,
    alpaca_client,
    orders_of,
    paper_server,
)

AGENT = "may21-bot"


def _market(symbol: str, qty: int, client_order_id: str | None = None) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol=symbol, qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
        client_order_id=client_order_id,
    )  # fmt: skip


# -- defect 7: a client_order_id already used by another order is adopted -------------------------


def test_client_order_id_taken_by_an_outside_order_is_refused_not_adopted(store_url: str) -> None:
    """Defect 7: the account already holds order X for SPY, placed outside the guard; a guarded
    TQQQ order with client_order_id=X must fail clearly, its claim REJECTED as ID_TAKEN, and
    the ledger must not book the SPY order's fill as TQQQ shares."""
    coid = "bot-0930-breakout"
    with paper_server(prices=MAY21_PRICES) as server:
        with alpaca_client(server.url) as outside:
            outside.submit_order(_market("SPY", 1, coid))
        client = GuardedTradingClient(
            "paper-key", "paper-secret", url_override=server.url, store=store_url, agent_id="id-bot"
        )
        try:
            with pytest.raises((APIError, OrderRejected)):
                client.submit_order(_market("TQQQ", 10, coid))
            store = client.gateway.store
            claim = store.get_by_client_order_id(coid)
            assert claim is not None and claim.symbol == "TQQQ"
            assert claim.state is ClaimState.REJECTED, claim.reason
            assert claim.reject_kind is RejectKind.ID_TAKEN
            assert store.position("id-bot", "TQQQ").is_flat
            assert store.position("id-bot", "SPY").is_flat
            assert broker_qty(server.broker, "TQQQ") == 0
            assert len(orders_of(server.broker, client_order_id=coid)) == 1
        finally:
            client.close()


# -- defect 8: StoreError says "nothing was sent" after the order was placed ----------------------


def _table_renamer(url: str) -> Callable[[str, str], None]:
    """Return rename(old, new) acting on the store's own database (a real failure of the store)."""
    engine = sa.create_engine(url)

    def rename(old: str, new: str) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {old} RENAME TO {new}"))

    rename.dispose = engine.dispose  # type: ignore[attr-defined]
    return rename


class _BreaksStoreAfterSubmit(RecordingBroker[Any]):
    """A broker that, once, makes the store unusable right after the broker accepted the order."""

    def __init__(self, inner: Any, brk: Callable[[], None]) -> None:
        super().__init__(inner)
        self._break: Callable[[], None] | None = brk

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        order = super().submit_order(request)
        brk, self._break = self._break, None
        if brk is not None:
            brk()
        return order


def test_store_failure_after_the_post_raises_unrecorded_order_then_adopts_it(store_url: str) -> None:
    """Defect 8: the store fails after the POST (its audit table vanishes). The caller must get
    UnrecordedOrder, not StoreError ("nothing was sent" is false). Once the store works again,
    the same decision and a reconcile pass leave exactly one order, adopted by the claim."""
    clock = ManualClock()
    settings = Settings()
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    rename = _table_renamer(store_url)
    broker = _BreaksStoreAfterSubmit(paper, lambda: rename("tg_audit", "tg_audit_away"))
    with ClaimStore(store_url, settings=settings, clock=clock) as store:
        gw = OrderGateway(broker, store, agent_id=AGENT, settings=settings, clock=clock)
        try:
            with pytest.raises(UnrecordedOrder) as caught:
                gw.enter("TQQQ", qty=10, intent="09:42 breakout")
            assert not isinstance(caught.value, StoreError)
            assert "nothing was sent" not in str(caught.value)
        finally:
            if broker._break is None:
                rename("tg_audit_away", "tg_audit")
            rename.dispose()  # type: ignore[attr-defined]
        (ask,) = broker.asked(symbol="TQQQ")
        clock.advance(settings.lease_secs + settings.unknown_grace_secs + 1)
        gw.enter("TQQQ", qty=10, intent="09:42 breakout")
        gw.reconcile()
        assert len(orders_of(paper, client_order_id=ask.client_order_id)) == 1
        assert len(broker.asked(symbol="TQQQ")) == 1
        claim = store.get_by_client_order_id(ask.client_order_id)
        assert claim is not None and claim.state is ClaimState.FILLED
        assert store.position(AGENT, "TQQQ").qty == 10


# -- defect 9: drop-in retry of an UNKNOWN order after the content window -------------------------

LOST_ANSWER = """
faults:
  - route: POST /v2/orders
    nth: 1
    action: accept_then_timeout
    delay_secs: 10
  - route: GET /v2/orders:by_client_order_id
    nth: 1
    action: reject
    status: 404
    body: {code: 40410000, message: order not found}
"""


def test_drop_in_retry_after_the_content_window_resolves_the_unknown_order(store_url: str) -> None:
    """Defect 9: an order without client_order_id is accepted but its answer is lost and the
    first lookup misses; the bot retries 61 s later (past the 60 s content window). No second
    order may be sent; the retry resolves the first claim and returns its order."""
    clock = ManualClock()
    paper = RecordingBroker(PaperBroker(prices=MAY21_PRICES, clock=clock))
    broker = FaultyBroker(paper, FaultPlan.parse(LOST_ANSWER, source="lost-answer.yaml"), clock=clock)
    client = GuardedTradingClient(
        "paper-key", "paper-secret", store=store_url, agent_id=AGENT, clock=clock, broker=broker
    )
    try:
        with pytest.raises(OutcomeUnknown):
            client.submit_order(_market("TQQQ", 10))
        (first,) = client.gateway.store.list_claims(agent_id=AGENT)
        assert first.state is ClaimState.UNKNOWN
        clock.advance(61)
        order = client.submit_order(_market("TQQQ", 10))
        assert len(paper.asked(symbol="TQQQ")) == 1, "the retry sent a second order"
        assert order.client_order_id == first.client_order_id
        resolved = client.gateway.store.get(first.key)
        assert resolved is not None and resolved.state is ClaimState.FILLED
        assert client.gateway.store.position(AGENT, "TQQQ").qty == 10
    finally:
        client.close()


# -- defect 11: a retried exit after re-entry sells the new position ------------------------------


def test_retried_exit_after_re_entry_is_a_duplicate_and_keeps_the_new_position(store_url: str) -> None:
    """Defect 11: exit "2026-05-21 11:26 momentum lost" filled; the bot re-entered; a retry of
    that same exit decision is answered as a duplicate, sends nothing, and the new position
    stays intact."""
    gw, spy = make_gateway(store_url)
    try:
        gw.enter("TQQQ", qty=10, intent="2026-05-21 11:06 breakout")
        exit_intent = "2026-05-21 11:26 momentum lost"
        assert gw.exit("TQQQ", intent=exit_intent).outcome is Outcome.SUBMITTED
        gw.enter("TQQQ", qty=8, intent="2026-05-21 11:40 re-entry")
        sent = len(spy.requests)
        retry = gw.exit("TQQQ", intent=exit_intent)
        assert retry.outcome is Outcome.DUPLICATE, retry.reason
        assert len(spy.requests) == sent, "the retried exit reached the broker"
        assert spy.inner.get_position("TQQQ").qty == 8
        assert gw.position("TQQQ").qty == 8
    finally:
        gw.store.close()


# -- defect 12: blocked retries of an UNKNOWN claim leave no audit record -------------------------

ENTRY_503 = """
faults:
  - route: POST /v2/orders
    nth: 1
    action: error
    status: 503
"""


def test_each_blocked_retry_of_an_unknown_claim_writes_a_skip_record(store_url: str) -> None:
    """Defect 12: five blocked retries of an UNKNOWN claim write five SKIP audit records, as
    retries of a FILLED claim do."""
    clock = ManualClock()
    paper = RecordingBroker(PaperBroker(prices=MAY21_PRICES, clock=clock))
    faulty = FaultyBroker(paper, FaultPlan.parse(ENTRY_503, source="entry-503.yaml"), clock=clock)
    gw, _ = make_gateway(store_url, clock=clock, broker=RecordingBroker(faulty), settings=Settings())
    try:
        first = gw.enter("TQQQ", qty=10, intent="09:42 breakout")
        assert first.outcome is Outcome.UNKNOWN and first.claim is not None
        coid = first.claim.client_order_id
        before = len(audit_of(gw.store, AuditAction.SKIP, client_order_id=coid))
        for _ in range(5):
            assert gw.enter("TQQQ", qty=10, intent="09:42 breakout").outcome is Outcome.UNKNOWN
        skips = audit_of(gw.store, AuditAction.SKIP, client_order_id=coid)
        assert len(skips) - before == 5
        assert all(s.agent_id == AGENT and s.symbol == "TQQQ" for s in skips)
        assert paper.asked(symbol="TQQQ") == [], "a blocked retry reached the broker"
        assert broker_qty(paper, "TQQQ") == Decimal(0)
    finally:
        gw.store.close()


def test_a_lost_answer_after_another_worker_marked_the_claim_not_sent_is_never_reported_not_sent(
    store_url: str,
) -> None:
    # A sender passes its lease check; before its POST leaves, another worker (the reconciler)
    # marks its claim NOT_SENT. The POST lands, its answer is lost: the order exists, so the
    # caller must hear "submitted" or "unknown", and the claim must adopt the order.
    clock = ManualClock()
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    lost = FaultPlan([Fault(route="POST /v2/orders", action=FaultAction.ACCEPT_THEN_TIMEOUT, delay_secs=1)])
    gateway, _ = make_gateway(store_url, clock=clock, broker=FaultyBroker(paper, lost, clock=clock))
    gateway.reconcile()  # start-up pass now, not inside the hook

    def mark_not_sent(point: str) -> None:
        if point != "before_post":
            return
        (pending,) = gateway.store.list_claims(states=[ClaimState.PENDING])
        gateway.store.transition(pending, ClaimState.NOT_SENT, reason="reconcile: absent (test)")

    crashpoints.set_hook(mark_not_sent)
    try:
        result = gateway.enter("TQQQ", qty=6, intent="09:42 buy")
    finally:
        crashpoints.set_hook(None)
    assert len(paper.orders()) == 1
    assert result.outcome in (Outcome.SUBMITTED, Outcome.UNKNOWN), result
    claim = gateway.store.get(result.claim.key) if result.claim else None
    assert claim is not None and claim.state is ClaimState.FILLED  # the order was adopted
    assert gateway.store.position("may21-bot", "TQQQ").qty == 6
    gateway.store.close()
