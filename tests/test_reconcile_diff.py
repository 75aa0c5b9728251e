"""The pure reconcile diff: table-driven cases and a convergence property (G2, G4)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tests.mothers import NOW, held, make_claim, order_for, snap
from tradeguard.config import Settings
from tradeguard.domain import (
    BrokerOrder,
    OrderStatus,
    RejectKind,
    Side,
)
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.reconcile import ActionKind, diff, plan

SETTINGS = Settings()


def kinds(actions: list) -> list[ActionKind]:  # type: ignore[type-arg]
    return [a.kind for a in actions]


def test_found_order_is_adopted() -> None:
    claim = make_claim()
    actions = diff([claim], [], snap(lookups={claim.client_order_id: order_for(claim)}), NOW, SETTINGS)
    assert kinds(actions) == [ActionKind.ADOPT_ORDER]


def test_absent_claim_needs_two_probes_after_the_grace() -> None:
    claim = make_claim(age_secs=60)
    lookups: dict[str, BrokerOrder | None] = {claim.client_order_id: None}
    actions, wait = plan([claim], [], snap(lookups=lookups), NOW, SETTINGS)
    assert actions == [] and wait
    actions = diff([claim], [], snap(lookups=lookups, earlier_gap=2), NOW, SETTINGS)
    assert kinds(actions) == [ActionKind.MARK_NOT_SENT]


def test_absent_claim_inside_the_grace_is_left_unknown() -> None:
    claim = make_claim(age_secs=SETTINGS.unknown_grace_secs - 1)
    actions = diff([claim], [], snap(lookups={claim.client_order_id: None}, earlier_gap=2), NOW, SETTINGS)
    assert actions == []


def test_recent_and_leased_claims_are_left_alone() -> None:
    recent = make_claim(age_secs=1)
    leased = make_claim(ClaimState.PENDING, lease_left_secs=20)
    lookups = {c.client_order_id: None for c in (recent, leased)}
    assert diff([recent, leased], [], snap(lookups=lookups, earlier_gap=2), NOW, SETTINGS) == []


def test_phantom_needs_flat_twice_a_settle_delay_apart_with_no_order_filling_between() -> None:
    ledger = [held("SQQQ", 2)]
    assert plan([], ledger, snap(), NOW, SETTINGS) == ([], True)
    assert kinds(diff([], ledger, snap(earlier_gap=2), NOW, SETTINGS)) == [ActionKind.CLEAR_PHANTOM]
    assert diff([], ledger, snap(earlier_gap=0.5), NOW, SETTINGS) == []
    assert diff([], ledger, snap(earlier_gap=2, complete=False), NOW, SETTINGS) == []
    resting = BrokerOrder("o", "c", "SQQQ", Side.BUY, OrderStatus.NEW, qty=Decimal(2))
    part = replace(resting, status=OrderStatus.PARTIALLY_FILLED, filled_qty=Decimal(1))
    # Audit 7 D1: an order resting in both reads with nothing filled moved no shares.
    steady = snap(earlier_gap=2, open_orders=(resting,))
    assert kinds(diff([], ledger, steady, NOW, SETTINGS)) == [ActionKind.CLEAR_PHANTOM]
    # Anything that may have filled between the reads still holds the clear back.
    for later, before in [((part,), (part,)), ((resting,), (part,)), ((resting,), ()), ((), (resting,))]:
        moving = snap(earlier_gap=2, open_orders=later, earlier_orders=before)
        assert diff([], ledger, moving, NOW, SETTINGS) == [], (later, before)


def test_a_resting_order_that_filled_in_part_long_before_both_reads_does_not_hold_a_correction() -> None:
    """Audit 12a D3: a person's order that filled 3 of 10 and rests kept every correction in its
    symbol off for as long as it stayed open. Its fills the same in both reads and older than
    `position_settle_secs` are in both position reads; a fill newer than that, or of unknown
    age, still holds the correction back (the positions endpoint may not show it yet)."""
    ledger = [held("SQQQ", 6)]
    settle = timedelta(seconds=SETTINGS.position_settle_secs)
    old = BrokerOrder("o", "ui", "SQQQ", Side.BUY, OrderStatus.PARTIALLY_FILLED, qty=Decimal(10),
                      filled_qty=Decimal(3), updated_at=NOW - 2 * settle)  # fmt: skip
    [trim] = diff([], ledger, snap({"SQQQ": 3}, earlier_gap=2, open_orders=(old,)), NOW, SETTINGS)
    assert (trim.kind, trim.qty) == (ActionKind.TRIM_PHANTOM, -3)
    recent = replace(old, updated_at=NOW - settle / 2)
    unknown = replace(old, updated_at=None)
    more = replace(old, filled_qty=Decimal(4))
    for later, before in [((recent,), (recent,)), ((unknown,), (unknown,)), ((more,), (old,))]:
        moving = snap({"SQQQ": 3}, earlier_gap=2, open_orders=later, earlier_orders=before)
        assert diff([], ledger, moving, NOW, SETTINGS) == [], (later, before)


def test_a_crypto_pair_matches_its_position_under_either_name() -> None:
    """D3: Alpaca lists "BTC/USD" as "BTCUSD": no phantom, no orphan; a clear still needs no
    order filling in the pair, whatever the order calls it; a drift names the ledger's symbol."""
    ledger = [held("BTC/USD", 2)]
    assert plan([], ledger, snap({"BTCUSD": 2}), NOW, SETTINGS) == ([], False)
    order = BrokerOrder("o", "c", "BTC/USD", Side.SELL, OrderStatus.PARTIALLY_FILLED, qty=Decimal(2),
                        filled_qty=Decimal(1))  # fmt: skip
    assert diff([], [held("BTCUSD", 2)], snap(earlier_gap=2, open_orders=(order,)), NOW, SETTINGS) == []
    [trim] = diff([], ledger, snap({"BTCUSD": 1}, earlier_gap=2), NOW, SETTINGS)
    assert (trim.kind, trim.symbol, trim.qty) == (ActionKind.TRIM_PHANTOM, "BTC/USD", -1)
    [clear] = diff([], ledger, snap(earlier_gap=2), NOW, SETTINGS, symbols=["BTCUSD"])
    assert (clear.kind, clear.symbol) == (ActionKind.CLEAR_PHANTOM, "BTC/USD")


def test_orphan_and_drift_are_reported_not_fixed() -> None:
    assert kinds(diff([], [], snap({"QQQ": 3}), NOW, SETTINGS)) == [ActionKind.REPORT_ORPHAN]
    assert kinds(diff([], [], snap({"QQQ": 3}), NOW, SETTINGS, adopt_orphans_to="bot")) == [
        ActionKind.ADOPT_ORPHAN
    ]
    assert kinds(diff([], [held("TQQQ", 12)], snap({"TQQQ": -12}), NOW, SETTINGS)) == [
        ActionKind.REPORT_DRIFT
    ]


def test_ledgers_on_both_sides_that_sum_to_the_broker_are_still_compared() -> None:
    """Audit 10b D4: agent A long 10 (a phantom), agent B short 10 (its exit, replaced by hand to a
    larger size, filled beyond its ledger): the sum is the broker's flat position, yet both are
    wrong. Flat twice with nothing filling, both are cleared; on a broker that holds, a ledger on
    the other side is drift to report."""
    ledger = [held("TQQQ", 10, agent="a"), held("TQQQ", -10, turn_id=2, agent="b")]
    assert plan([], ledger, snap(), NOW, SETTINGS) == ([], True)
    cleared = diff([], ledger, snap(earlier_gap=2), NOW, SETTINGS)
    assert sorted((a.kind, a.agent_id, a.qty) for a in cleared) == [
        (ActionKind.CLEAR_PHANTOM, "a", 10),
        (ActionKind.CLEAR_PHANTOM, "b", -10),
    ]
    both_sides = [held("TQQQ", 15, agent="a"), held("TQQQ", -5, turn_id=2, agent="b")]
    assert kinds(diff([], both_sides, snap({"TQQQ": 10}, earlier_gap=2), NOW, SETTINGS)) == [
        ActionKind.REPORT_DRIFT
    ]
    agreeing = [held("TQQQ", 6, agent="a"), held("TQQQ", 4, turn_id=2, agent="b")]
    assert diff([], agreeing, snap({"TQQQ": 10}, earlier_gap=2), NOW, SETTINGS) == []


def test_refused_exit_is_released_resized_when_the_broker_still_holds() -> None:
    claim = make_claim(
        ClaimState.REJECTED,
        kind=Kind.EXIT,
        side="sell",
        qty=10,
        turn_id=1,
        symbol="SQQQ",
        reason="rejected (position): insufficient qty available for order (requested: 10, available: 6)",
    )
    claim = replace(claim, reject_kind=RejectKind.POSITION)
    actions = diff([claim], [held("SQQQ", 10)], snap({"SQQQ": 6}), NOW, SETTINGS)
    assert kinds(actions) == [ActionKind.RELEASE_EXIT] and actions[0].qty == 6


def test_unknown_order_status_is_adopted_as_open() -> None:
    claim = make_claim(ClaimState.SUBMITTED)
    order = order_for(claim, OrderStatus.parse("some_new_status"), filled=0)
    actions = diff([claim], [], snap(lookups={claim.client_order_id: order}), NOW, SETTINGS)
    # OTHER maps to SUBMITTED: only the missing broker order id is adopted, never a guess.
    assert kinds(actions) == [ActionKind.ADOPT_ORDER]


@given(
    ledger_qty=st.dictionaries(st.sampled_from(["TQQQ", "SQQQ", "QQQ"]), st.integers(-20, 20), max_size=3),
    broker_qty=st.dictionaries(st.sampled_from(["TQQQ", "SQQQ", "QQQ"]), st.integers(-20, 20), max_size=3),
)
def test_applying_the_actions_converges(ledger_qty: dict[str, int], broker_qty: dict[str, int]) -> None:
    ledger = [held(s, q) for s, q in ledger_qty.items() if q]
    snapshot = snap(broker_qty, earlier_gap=5)
    actions = diff([], ledger, snapshot, NOW, SETTINGS, adopt_orphans_to="bot")
    model = {p.symbol: p.qty for p in ledger}
    for action in actions:
        if action.kind is ActionKind.CLEAR_PHANTOM:
            model[action.symbol] = Decimal(0)
        elif action.kind in (ActionKind.TRIM_PHANTOM, ActionKind.ADOPT_DRIFT):
            assert action.qty is not None
            model[action.symbol] += action.qty
        elif action.kind is ActionKind.ADOPT_ORPHAN:
            assert action.qty is not None
            model[action.symbol] = model.get(action.symbol, Decimal(0)) + action.qty
        # G4: the ledger never claims a position on a symbol the broker is flat in.
    after = [held(s, int(q)) for s, q in model.items() if q]
    for symbol, qty in model.items():
        if snapshot.qty(symbol) == 0:
            assert qty == 0
    again = diff([], after, snapshot, NOW, SETTINGS, adopt_orphans_to="bot")
    assert [a for a in again if not a.kind.is_report] == []
