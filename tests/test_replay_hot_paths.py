"""The shortcuts a replay's hot path takes answer what the long way answers (issue 11, speed).

`MemoryClaimStore.position_qty` is `position(...).qty` without building a position; a flat
position is one frozen value handed out again; `PaperBroker.set_price` pins a Decimal as
`to_price` would and still trades the open orders that cross; a replay trims its audit log
even while its claims and orders are under the bound.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from replay import Mode, replay_session
from replay.generate import generate_session
from replay.modes import FullGuard
from tradeguard import (
    ManualClock,
    MemoryClaimStore,
    OrderGateway,
    OrderRequest,
    OrderStatus,
    OrderType,
    PaperBroker,
    Side,
)
from tradeguard.paper.prices import to_price


def _gateway() -> tuple[OrderGateway, MemoryClaimStore, PaperBroker]:
    clock = ManualClock()
    paper = PaperBroker(clock=clock, cash=Decimal(100_000))
    paper.set_price("TQQQ", Decimal("75.25"))
    store = MemoryClaimStore(clock=clock)
    return OrderGateway(paper, store, agent_id="bot", clock=clock), store, paper


def test_position_qty_is_the_ledger_position_qty_through_a_whole_turn() -> None:
    gateway, store, paper = _gateway()
    assert store.position_qty("bot", "TQQQ") == store.position("bot", "TQQQ").qty == 0
    gateway.enter("TQQQ", qty=6, intent="entry 1")
    gateway.enter("TQQQ", qty=4, intent="entry 2")
    assert store.position_qty("bot", "TQQQ") == store.position("bot", "TQQQ").qty == 10
    assert paper.position_qty("TQQQ") == 10
    gateway.exit("TQQQ", intent="exit 1")
    assert store.position_qty("bot", "TQQQ") == store.position("bot", "TQQQ").qty == 0
    assert paper.position_qty("TQQQ") == 0


def test_a_flat_position_read_again_is_the_same_flat_value() -> None:
    gateway, store, _ = _gateway()
    first = store.position("bot", "TQQQ")
    gateway.enter("TQQQ", qty=6, intent="entry 1")
    held = store.position("bot", "TQQQ")
    gateway.exit("TQQQ", intent="exit 1")
    again = store.position("bot", "TQQQ")
    assert first == again
    assert (again.qty, again.turn_id, again.is_flat) == (0, None, True)
    assert (held.qty, held.is_flat) == (6, False)
    assert store.position("other-bot", "TQQQ").agent_id == "other-bot"  # its own flat value


def test_set_price_pins_a_decimal_as_to_price_would_and_trades_what_crosses() -> None:
    paper = PaperBroker(clock=ManualClock(), cash=Decimal(100_000))
    paper.set_price("SQQQ", Decimal("22.40"))
    resting = paper.submit_order(
        OrderRequest(
            "SQQQ",
            Side.BUY,
            "limit-1",
            qty=Decimal(5),
            order_type=OrderType.LIMIT,
            limit_price=Decimal("21.00"),
        )
    )
    assert resting.status is OrderStatus.NEW
    for price in (Decimal("21.50"), Decimal("2.15E+1")):
        assert paper.set_price("SQQQ", price) == []  # above the limit: nothing crosses
        pinned = paper.price("SQQQ")
        assert pinned == to_price(price, "test") and str(pinned) == str(to_price(price, "test"))
    changed = paper.set_price("SQQQ", Decimal("20.90"))
    assert [o.client_order_id for o in changed] == ["limit-1"]
    filled = paper.get_order_by_client_id("limit-1")
    assert filled is not None and filled.status is OrderStatus.FILLED
    assert paper.position_qty("SQQQ") == 5


def test_a_replay_trims_its_audit_log_while_claims_and_orders_are_under_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    generate_session(path, 1_500)
    bound = 2_000  # 1,500 attempts make about 1,250 claims and orders and 3,700 audit records
    every = replay_session(path, [Mode.FULL], forget_above=None)
    bounded = replay_session(path, [Mode.FULL], forget_above=bound)
    sims = [r.simulations[Mode.FULL] for r in (every, bounded)]
    assert all(isinstance(sim, FullGuard) for sim in sims)
    stores = [sim.gateway.store for sim in sims]  # type: ignore[attr-defined]
    assert all(isinstance(store, MemoryClaimStore) for store in stores)
    assert stores[0].audit_kept() > bound  # the log outgrew the bound ...
    assert stores[1].claim_count() <= bound and sims[1].paper.order_count() <= bound
    assert stores[1].audit_kept() <= bound  # ... and the bounded replay kept only its tail
    assert bounded.totals[Mode.FULL] == every.totals[Mode.FULL]
