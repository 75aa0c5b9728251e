"""A claim store that stops taking writes right after the POST, and the retries made meanwhile.

Another process holds the store's write lock from the moment the broker answered (SQLite:
past the busy timeout; PostgreSQL: past the session's lock timeout); reads go on. The first call
gets `UnrecordedOrder`. A retry of the same decision made while the lock is still held finds
the order at the broker and cannot record it: it must say the order may be at the broker
(an `OutcomeUnknown`), never the plain `StoreError` "nothing was sent" a bot may take for "no
order" (and decide again: G1), nor, in the drop-in, Alpaca's 422 for an id that names another
order. Once the lock is gone the retry returns the one order and the ledger books its fill.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from decimal import Decimal

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide

import tradeguard
from tests.conftest import at_head
from tests.dropin.kit import as_order, guarded_client, ledger_qty, market
from tests.store_blocker import blocked_writes, with_lock_timeout
from tradeguard import crashpoints
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import AuditAction, OrderSpec, Side
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import OutcomeUnknown, StoreError, UnrecordedOrder
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.store import AuditQuery, ClaimStore
from tradeguard.testing import FixedPrices, RecordingBroker, orders_of, paper_server

PRICES = FixedPrices({"SPY": Decimal("500"), "QQQ": Decimal("400")})
SETTINGS = Settings(sqlite_busy_timeout_ms=200)


@pytest.fixture
def url(store_url: str) -> str:
    # Migrated first (`at_head`): the 300 ms lock wait bounds the writes the blocker holds up,
    # never the opening of a fresh schema behind another test's migration.
    return with_lock_timeout(at_head(store_url))


def _arm(url: str, held: ExitStack) -> Callable[[str], None]:
    def hook(point: str) -> None:
        if point == "after_post":
            crashpoints.set_hook(None)
            held.enter_context(blocked_writes(url))

    return hook


@pytest.fixture
def block_after_post(url: str) -> Iterator[ExitStack]:
    """Once armed (`crashpoints`), the store's write lock is taken by another process at `after_post`."""
    held = ExitStack()
    crashpoints.set_hook(_arm(url, held))
    try:
        yield held
    finally:
        crashpoints.set_hook(None)
        held.close()


def test_a_retry_while_the_store_takes_no_writes_says_the_order_may_exist(
    url: str, block_after_post: ExitStack
) -> None:
    clock = ManualClock()
    paper = PaperBroker(prices=PRICES, clock=clock)
    broker = RecordingBroker(paper)
    with ClaimStore(url, settings=SETTINGS, clock=clock) as store:
        gw = OrderGateway(broker, store, agent_id="bot", settings=SETTINGS, clock=clock)
        with pytest.raises(UnrecordedOrder):
            gw.enter("SPY", qty=3, intent="09:42 breakout")
        with pytest.raises(StoreError) as other:  # a new decision meanwhile: nothing claimed, nothing sent
            gw.enter("QQQ", qty=1, intent="09:43 breakout")
        assert not isinstance(other.value, OutcomeUnknown)
        with pytest.raises(OutcomeUnknown) as retried:
            gw.enter("SPY", qty=3, intent="09:42 breakout")
        assert not isinstance(retried.value, StoreError)
        assert "may be at the broker" in str(retried.value), retried.value
        assert "nothing was sent;" not in str(retried.value) and not str(retried.value).endswith(
            "nothing was sent"
        )
        block_after_post.close()
        again = gw.enter("SPY", qty=3, intent="09:42 breakout")
        assert again.outcome is Outcome.DUPLICATE and again.order is not None
        assert again.claim is not None and again.claim.state is ClaimState.FILLED
        assert len(broker.asked(symbol="SPY")) == 1 and len(orders_of(paper, symbol="SPY")) == 1
        assert broker.asked(symbol="QQQ") == []
        assert store.position("bot", "SPY").qty == 3
        records = list(store.audit_records(AuditQuery(client_order_id=again.claim.client_order_id)))
        moves = [(r.prev_state, r.state) for r in records if r.action is AuditAction.TRANSITION]
        assert moves == [("PENDING", "FILLED")], moves  # booked once, by the retry that found it
        skips = [r for r in records if r.action is AuditAction.SKIP]
        assert len(skips) == 1, [(r.action, r.state, r.reason) for r in records]


def test_a_drop_in_retry_while_the_store_takes_no_writes_is_an_unknown_outcome_not_a_reused_id(
    url: str, block_after_post: ExitStack
) -> None:
    clock = ManualClock()
    with (
        paper_server(prices=PRICES, clock=clock) as server,
        guarded_client(server, url, settings=SETTINGS, clock=clock) as client,
    ):
        request = market("SPY", 3, OrderSide.BUY, "bot-spy-0942-breakout")
        with pytest.raises(APIError) as first:
            client.submit_order(request)
        assert isinstance(first.value, tradeguard.OutcomeUnknown), first.value
        with pytest.raises(APIError) as retried:
            client.submit_order(request)
        assert isinstance(retried.value, tradeguard.OutcomeUnknown), retried.value
        assert retried.value.status_code == 504 and "must be unique" not in str(retried.value)
        block_after_post.close()
        placed = as_order(client.submit_order(request))
        [order] = orders_of(server.broker, symbol="SPY")
        assert str(placed.id) == order.id and placed.client_order_id == "bot-spy-0942-breakout"
        assert ledger_qty(client, "SPY") == 3


def test_a_drop_in_retry_without_an_id_while_the_store_takes_no_writes_is_an_unknown_outcome(
    url: str, block_after_post: ExitStack
) -> None:
    clock = ManualClock()
    with (
        paper_server(prices=PRICES, clock=clock) as server,
        guarded_client(server, url, settings=SETTINGS, clock=clock) as client,
    ):
        request = market("SPY", 3, OrderSide.BUY)
        with pytest.raises(APIError) as first:
            client.submit_order(request)
        assert isinstance(first.value, tradeguard.OutcomeUnknown), first.value
        with pytest.raises(APIError) as retried:
            client.submit_order(request)
        assert isinstance(retried.value, tradeguard.OutcomeUnknown), retried.value
        assert "not sent" not in str(retried.value), retried.value
        block_after_post.close()
        placed = as_order(client.submit_order(request))
        [order] = orders_of(server.broker, symbol="SPY")
        assert str(placed.id) == order.id
        assert ledger_qty(client, "SPY") == 3


def test_an_exit_retried_while_the_store_takes_no_writes_says_the_order_may_exist(
    url: str, block_after_post: ExitStack
) -> None:
    clock = ManualClock()
    paper = PaperBroker(prices=PRICES, clock=clock)
    broker = RecordingBroker(paper)
    with ClaimStore(url, settings=SETTINGS, clock=clock) as store:
        gw = OrderGateway(broker, store, agent_id="bot", settings=SETTINGS, clock=clock)
        crashpoints.set_hook(None)
        gw.enter("SPY", qty=3, intent="09:42 breakout")
        crashpoints.set_hook(_arm(url, block_after_post))
        with pytest.raises(UnrecordedOrder):
            gw.exit("SPY", intent="10:15 momentum lost")
        with pytest.raises(OutcomeUnknown) as retried:
            gw.exit("SPY", intent="10:15 momentum lost")
        assert not isinstance(retried.value, StoreError)
        assert "may be at the broker" in str(retried.value), retried.value
        block_after_post.close()
        again = gw.exit("SPY", intent="10:15 momentum lost")
        assert again.outcome is Outcome.DUPLICATE and again.order is not None
        assert len(broker.asked(symbol="SPY")) == 2 and len(orders_of(paper, symbol="SPY")) == 2
        assert store.position("bot", "SPY").is_flat


def test_an_order_without_a_name_retried_while_the_store_takes_no_writes_says_it_may_exist(
    url: str, block_after_post: ExitStack
) -> None:
    clock = ManualClock()
    paper = PaperBroker(prices=PRICES, clock=clock)
    broker = RecordingBroker(paper)
    spec = OrderSpec(qty=Decimal(3))
    with ClaimStore(url, settings=SETTINGS, clock=clock) as store:
        gw = OrderGateway(broker, store, agent_id="bot", settings=SETTINGS, clock=clock)
        with pytest.raises(UnrecordedOrder):
            gw.submit_by_content(Kind.ENTRY, "SPY", Side.BUY, spec)
        clock.advance(SETTINGS.dedup_window_secs + 1)  # the window is over; its order is unresolved
        with pytest.raises(OutcomeUnknown) as retried:
            gw.submit_by_content(Kind.ENTRY, "SPY", Side.BUY, spec)
        assert not isinstance(retried.value, StoreError)
        assert "may be at the broker" in str(retried.value), retried.value
        block_after_post.close()
        again = gw.submit_by_content(Kind.ENTRY, "SPY", Side.BUY, spec)
        assert again.outcome is Outcome.DUPLICATE and again.order is not None
        assert len(broker.asked(symbol="SPY")) == 1 and store.position("bot", "SPY").qty == 3
