"""A refused exit whose follow-up pass resent it, then met a dead store, is never "nothing was sent".

Audit 23 (left open there): an exit refused for a position reason (403 insufficient qty: shares
sold by hand between the guard's read and its POST) is re-sized and resent by the reconcile pass
the gateway runs at once. If the store fails after that resend went out, the pass raised the
store's `StoreError`, whose words end "nothing was sent", and `exit()` passed it on: the bot,
told its exit placed nothing, would exit again while the resent order sat at the broker.
Real parts: the paper broker, SQLite and PostgreSQL stores; the store's failure is raised at the
end of the pass (the narrow window audit 23 could not time: a later action of the pass failing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tradeguard import crashpoints
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import ClaimState, OrderRequest, Side
from tradeguard.errors import OutcomeUnknown, StoreError, UnrecordedOrder
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore


@contextmanager
def _holding_5(store_url: str) -> Iterator[tuple[ManualClock, PaperBroker, ClaimStore, OrderGateway]]:
    """A bot holding 5 TQQQ for 90 s, on `store_url`."""
    clock = ManualClock(datetime(2026, 5, 21, 14, 0, tzinfo=UTC))
    paper = PaperBroker(prices=FixedPrices({"TQQQ": "75.00"}), clock=clock)
    settings = Settings()
    with ClaimStore(store_url, settings=settings, clock=clock) as store:
        gateway = OrderGateway(paper, store, agent_id="bot", settings=settings, clock=clock)
        gateway.enter("TQQQ", qty=5, intent="entry")
        clock.advance(90)
        yield clock, paper, store, gateway


def _a_person_sells_3(paper: PaperBroker) -> Callable[[str], None]:
    """A crash-point hook: 3 shares sold by hand right after the guard read the position."""

    def hook(point: str) -> None:
        if point == "exit_before_claim":
            crashpoints.set_hook(None)
            paper.submit_order(OrderRequest("TQQQ", Side.SELL, "ui-1", qty=Decimal(3)))

    return hook


def test_a_refused_exit_resent_by_its_pass_before_the_store_died_is_an_unknown_outcome(
    store_url: str,
) -> None:
    with _holding_5(store_url) as (clock, paper, store, gateway):
        # The pass after the refusal resends the exit (re-sized to 2), then the store fails on
        # a later action of the same pass (here: at its end).
        run = gateway.reconciler.run

        def pass_then_store_dies(*args: Any, **kwargs: Any) -> Any:
            report = run(*args, **kwargs)
            assert report.sent, "the pass resent the refused exit"
            raise StoreError("recording a reconcile note failed: database is locked; nothing was sent")

        gateway.reconciler.run = pass_then_store_dies  # type: ignore[method-assign]
        crashpoints.set_hook(_a_person_sells_3(paper))
        try:
            with pytest.raises(OutcomeUnknown) as caught:
                gateway.exit("TQQQ", intent="exit-1")
        finally:
            crashpoints.set_hook(None)
            gateway.reconciler.run = run  # type: ignore[method-assign]
        assert isinstance(caught.value, UnrecordedOrder) and not isinstance(caught.value, StoreError)
        assert "nothing was sent" not in str(caught.value)
        # The resend is at the broker: 2 shares, under the exit's own id.
        exits = [
            o for o in paper.list_orders(status="all") if o.client_order_id != "ui-1" and o.side is Side.SELL
        ]
        assert [o.qty for o in exits] == [Decimal(2)]
        # The same decision answers from that order; nothing more is sent.
        again = gateway.exit("TQQQ", intent="exit-1")
        assert again.order is not None and again.order.id == exits[0].id
        for _ in range(5):  # the 3 sold by hand leave the ledger by the reconciler's rules (G4)
            clock.advance(60)
            gateway.reconcile()
        assert paper.position_qty("TQQQ") == 0 == gateway.position("TQQQ").qty
        claim = store.get_by_client_order_id(exits[0].client_order_id)
        assert claim is not None and claim.state is ClaimState.FILLED


def test_a_pass_that_failed_before_resending_keeps_the_stores_own_error(store_url: str) -> None:
    """The store failed before the pass resent anything: the exit is still REJECTED, nothing
    went, and "nothing was sent" is the truth."""
    with _holding_5(store_url) as (_clock, paper, _store, gateway):

        def store_dies(*args: Any, **kwargs: Any) -> Any:
            raise StoreError("reading claims failed: database is locked; nothing was sent")

        run = gateway.reconciler.run
        gateway.reconciler.run = store_dies  # type: ignore[method-assign]
        crashpoints.set_hook(_a_person_sells_3(paper))
        try:
            with pytest.raises(StoreError, match="nothing was sent"):
                gateway.exit("TQQQ", intent="exit-1")
        finally:
            crashpoints.set_hook(None)
            gateway.reconciler.run = run  # type: ignore[method-assign]
        assert [o.client_order_id for o in paper.list_orders(status="all") if o.side is Side.SELL] == ["ui-1"]
