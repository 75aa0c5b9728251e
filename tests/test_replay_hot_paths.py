"""The shortcuts a replay's hot path takes answer what the long way answers (issue 11, speed).

`MemoryClaimStore.position_qty` is `position(...).qty` without building a position; a flat
position is one frozen value handed out again; `PaperBroker.set_price` pins a Decimal as
`to_price` would and still trades the open orders that cross; a replay trims its audit log
even while its claims and orders are under the bound. The replay's broker spends an armed
fault on the first send only and reads straight from the paper account; a replay runs the
cycle collector's youngest generation less often and puts the process's threshold back.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from replay import Mode, replay_session
from replay.broker import ReplayBroker, plan_for
from replay.engine import GC_YOUNG_THRESHOLD, EventRow
from replay.generate import generate_session
from replay.modes import FullGuard
from tradeguard import (
    AnswerEvent,
    ManualClock,
    MemoryClaimStore,
    OrderGateway,
    OrderRequest,
    OrderStatus,
    OrderType,
    OutcomeUnknown,
    PaperBroker,
    SessionFormatError,
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


def _lost_answer(result: str = "timeout", **more: object) -> AnswerEvent:
    t = "2026-05-21T11:26:26-04:00"
    fields = {"type": "answer", "t": t, "decision": "d", "attempt": 1, "result": result, **more}
    return AnswerEvent.model_validate(fields)


def test_an_armed_fault_is_spent_on_the_first_send_and_reads_go_straight_to_the_account() -> None:
    clock = ManualClock()
    paper = PaperBroker(clock=clock, cash=Decimal(100_000))
    paper.set_price("TQQQ", Decimal("75.25"))
    broker = ReplayBroker(paper, clock)
    started = clock.now()
    broker.arm(plan_for(_lost_answer(after_secs=7)))
    with pytest.raises(OutcomeUnknown, match="no response within 7 s"):
        broker.submit_order(OrderRequest("TQQQ", Side.BUY, "lost-1", qty=Decimal(6)))
    assert (clock.now() - started).total_seconds() == 7  # the timeout ran on the replay's clock
    placed = broker.get_order_by_client_id("lost-1")  # placed anyway: the answer was lost
    assert placed is not None and placed.status is OrderStatus.FILLED
    again = broker.submit_order(OrderRequest("TQQQ", Side.BUY, "next-1", qty=Decimal(1)))  # still armed
    assert again.status is OrderStatus.FILLED
    position = broker.get_position("TQQQ")
    assert position is not None and position.qty == 7
    broker.disarm()
    broker.arm(plan_for(_lost_answer("dropped", placed=False)))
    with pytest.raises(OutcomeUnknown, match="connection closed"):
        broker.submit_order(OrderRequest("TQQQ", Side.BUY, "dropped-1", qty=Decimal(1)))
    broker.disarm()
    assert broker.get_order_by_client_id("dropped-1") is None  # never reached the account
    assert broker.submit_order(OrderRequest("TQQQ", Side.BUY, "after-1", qty=Decimal(1))).filled_qty == 1
    assert broker.sends == 4 and paper.position_qty("TQQQ") == 8


@pytest.fixture
def default_threshold() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*before)


def test_a_replay_collects_young_objects_less_often_and_puts_the_threshold_back(
    tmp_path: Path, default_threshold: tuple[int, int, int]
) -> None:
    path = tmp_path / "session.jsonl"
    generate_session(path, 200)
    seen: set[tuple[int, int, int]] = set()

    def on_row(row: EventRow) -> None:
        seen.add(gc.get_threshold())

    replay_session(path, list(Mode), on_row=on_row)
    assert seen == {(GC_YOUNG_THRESHOLD, 10, 10)}
    assert gc.get_threshold() == default_threshold
    # Put back however the replay ends, a bad line included.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(path.read_text(encoding="utf-8") + "{not json\n", encoding="utf-8")
    with pytest.raises(SessionFormatError):
        replay_session(bad, [Mode.FULL])
    assert gc.get_threshold() == default_threshold
    # A caller's own higher threshold (or collection turned off) is left as it is.
    for mine in ((GC_YOUNG_THRESHOLD * 5, 10, 10), (0, 10, 10)):
        gc.set_threshold(*mine)
        seen.clear()
        replay_session(path, [Mode.FULL], on_row=on_row)
        assert seen == {mine} and gc.get_threshold() == mine


def _session(tmp_path: Path, *lines: dict[str, object]) -> Path:
    header = {"type": "session", "version": 1, "start": "2026-05-21T09:30:00-04:00", "cash": "100000"}
    path = tmp_path / "offsets.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in (header, *lines)), encoding="utf-8")
    return path


def test_times_in_other_offsets_meet_the_answer_horizon_and_the_clock_as_the_same_instants(
    tmp_path: Path,
) -> None:
    price = {"type": "price", "t": "2026-05-21T09:59:00-04:00", "symbol": "TQQQ", "price": "75.25"}
    attempt = {
        "type": "attempt", "t": "2026-05-21T10:00:00-04:00", "decision": "d1", "attempt": 1,
        "kind": "entry", "symbol": "TQQQ", "side": "buy", "qty": 6,
    }  # fmt: skip
    # 16:09:59+02:00 is 10:09:59-04:00, within the 600 s horizon; 16:10:01+02:00 is past it.
    within = {"type": "answer", "t": "2026-05-21T16:09:59+02:00", "decision": "d1", "attempt": 1,
              "result": "timeout", "placed": True}  # fmt: skip
    late = {**within, "t": "2026-05-21T16:10:01+02:00"}
    retry = {**attempt, "t": "2026-05-21T14:10:30+00:00", "attempt": 2}  # 10:10:30-04:00
    result = replay_session(_session(tmp_path, price, attempt, within, retry), list(Mode), collect_rows=True)
    recorded = [row.recorded for row in result.rows if row.kind == "attempt"]
    assert recorded == ["timeout", None]  # paired across offsets
    assert result.totals[Mode.NONE].duplicate_orders_executed == 1
    assert result.totals[Mode.FULL].duplicate_attempts_blocked == 1
    assert result.end.isoformat() == "2026-05-21T14:10:30+00:00"
    with pytest.raises(
        SessionFormatError, match=r"offsets\.jsonl:4: answer to decision 'd1' attempt 1 has no attempt"
    ):
        replay_session(_session(tmp_path, price, attempt, late, retry), [Mode.FULL])
