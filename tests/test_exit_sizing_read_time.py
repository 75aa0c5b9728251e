"""An exit is sized from a broker read that knows which exits were acknowledged after it (G3).

Audit 14c D1: exit xa read `qty_available`; before xa was claimed, exit xb of the same agent
(another worker) was claimed, sent and acknowledged. Sizing counts an acknowledged exit's shares
as already out of `qty_available`, but xa's read came before xb's acknowledgement: xb's shares
were counted nowhere and xa asked for shares xb holds (Alpaca refused it: 403 insufficient qty).
An exit acknowledged at or after the read now counts as one the read may not show.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.gateway_kit import make_gateway
from tradeguard import crashpoints
from tradeguard.clock import ManualClock
from tradeguard.domain import OrderType, TimeInForce
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.execution import OrderResult, Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.testing import RecordingBroker, make_request


@pytest.fixture
def no_hook() -> Iterator[None]:
    yield
    crashpoints.set_hook(None)


def test_an_exit_acknowledged_between_another_exits_read_and_claim_is_not_counted_twice(
    store_url: str, no_hook: None
) -> None:
    clock = ManualClock()
    first, paper = make_gateway(store_url, clock=clock, agent_id="bot")
    second = OrderGateway(paper, first.store, agent_id="bot", settings=first.settings, clock=clock)
    try:
        _race(first, second, paper, clock)
    finally:
        first.store.close()


def _race(
    first: OrderGateway, second: OrderGateway, paper: RecordingBroker[PaperBroker], clock: ManualClock
) -> None:
    first.enter("SPY", 10, intent="e1")
    clock.advance(60)
    # Outside the guard: a resting sell holds 4 of the 10 shares.
    outside = make_request(
        "SPY", "sell", 4, client_order_id="outside", order_type=OrderType.LIMIT, limit_price=Decimal(900),
        time_in_force=TimeInForce.GTC,
    )  # fmt: skip
    paper.submit_order(outside)
    racing: list[OrderResult] = []

    def between_read_and_claim(point: str) -> None:
        if point == "exit_before_claim" and not racing:
            crashpoints.set_hook(None)  # xb's own sizing runs undisturbed
            clock.advance(0.25)  # time passes between xa's read and xb's acknowledgement
            racing.append(
                second.exit("SPY", intent="xb", order_type="limit", limit_price="800", time_in_force="gtc")
            )

    crashpoints.set_hook(between_read_and_claim)
    result = first.exit("SPY", intent="xa", order_type="limit", limit_price="800", time_in_force="gtc")
    crashpoints.set_hook(None)
    (xb,) = racing
    assert xb.claim is not None and xb.claim.state is ClaimState.SUBMITTED and xb.claim.order_qty == 6
    # 10 held, 4 by the outside order, 6 by xb: nothing left for xa, and nothing asked for.
    assert result.outcome is Outcome.SKIPPED, result.reason
    assert [o.client_order_id for o in paper.asked(side="sell")] == ["outside", xb.claim.client_order_id]
    held = paper.inner.get_position("SPY")
    assert held is not None and held.qty == 10


def test_a_reconcile_pass_dates_its_position_read_before_its_order_probes(store_url: str) -> None:
    # Review 15: a refused exit's release was sized with the snapshot's end time as its read time;
    # an exit acknowledged while the pass read orders and probed claims still counted as in the
    # positions read. The snapshot now notes when its positions read began.
    clock = ManualClock()
    gateway, spy = make_gateway(store_url, clock=clock, agent_id="bot")
    try:
        gateway.enter("SPY", 10, intent="e1")
        listing = spy.list_orders

        def slow_listing(**kwargs: object) -> object:
            clock.advance(2)  # the orders read (and each probe after it) takes time
            return listing(**kwargs)

        spy.list_orders = slow_listing  # type: ignore[method-assign,assignment]
        started = clock.now()
        report = gateway.reconcile()
        snapshot = report.snapshot
        assert snapshot is not None and snapshot.positions_read_at == started < snapshot.taken_at
    finally:
        gateway.store.close()
