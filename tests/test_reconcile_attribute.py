"""The pure attribution of a close by hand among several agents (G4 without guessing).

`reconcile.attribute.attribute_close` decides from the account's order history whose shares a
close outside the bots took. Each case here is a history that must NOT be attributed (a wrong
clear would leave a real position unguarded, G3/G4) or the edge of one that must. The end-to-end
cases, with real stores, the paper broker and a trailing positions read, are in
`test_shared_account_closed_by_hand.py`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from tests.mothers import NOW, held, make_claim
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, Claim, OrderStatus, Side
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.reconcile import ActionKind
from tradeguard.reconcile.attribute import Filled, attribute_close

SETTINGS = Settings()  # position_settle_secs 30
T0 = NOW - timedelta(minutes=50)  # after both turns opened (an hour before NOW)


def _order(
    coid: str, side: Side, qty: int, at: datetime, status: OrderStatus = OrderStatus.FILLED
) -> BrokerOrder:
    return BrokerOrder(
        id=f"o-{coid}", client_order_id=coid, symbol="SPY", side=side, status=status,
        qty=Decimal(qty), filled_qty=Decimal(qty), created_at=at, updated_at=at,
    )  # fmt: skip


def _claimed(agent: str, turn: int | None, side: Side, qty: int, at: datetime) -> Filled:
    claim: Claim = replace(
        make_claim(ClaimState.FILLED, symbol="SPY", side=side.value, qty=qty, turn_id=turn, filled=qty),
        agent_id=agent,
        client_order_id=f"{agent}-{turn}-{at.isoformat()}",
    )
    return Filled(_order(claim.client_order_id, side, qty, at), claim)


def _by_hand(side: Side, qty: int, at: datetime) -> Filled:
    return Filled(_order(f"hand-{at.isoformat()}", side, qty, at), None)


def _closed_then_a_buys_again() -> list[Filled]:
    return [
        _claimed("a", 1, Side.BUY, 10, T0),
        _claimed("b", 2, Side.BUY, 10, T0 + timedelta(seconds=1)),
        _by_hand(Side.SELL, 20, T0 + timedelta(minutes=1)),
        _claimed("a", 1, Side.BUY, 5, T0 + timedelta(minutes=2)),
    ]


HOLDERS = [held("SPY", 15, turn_id=1, agent="a"), held("SPY", 10, turn_id=2, agent="b")]


def _attribute(
    filled: list[Filled], broker_qty: int = 5
) -> list[tuple[ActionKind, str, Decimal | None]] | None:
    actions = attribute_close("SPY", HOLDERS, filled, Decimal(broker_qty), read_at=NOW, settings=SETTINGS)
    return None if actions is None else [(a.kind, a.agent_id or "", a.qty) for a in actions]


def test_a_close_by_hand_then_a_buy_keeps_only_the_buy() -> None:
    assert _attribute(_closed_then_a_buys_again()) == [
        (ActionKind.TRIM_PHANTOM, "a", Decimal(-10)),
        (ActionKind.CLEAR_PHANTOM, "b", Decimal(10)),
    ]


def test_a_partial_close_is_not_attributed() -> None:
    filled = _closed_then_a_buys_again()
    filled[2] = _by_hand(Side.SELL, 10, T0 + timedelta(minutes=1))
    assert _attribute(filled, broker_qty=15) is None


def test_an_order_by_hand_after_the_close_is_not_attributed() -> None:
    filled = [*_closed_then_a_buys_again(), _by_hand(Side.BUY, 3, T0 + timedelta(minutes=3))]
    assert _attribute(filled, broker_qty=8) is None


def test_a_fill_the_positions_read_may_not_show_yet_is_not_attributed() -> None:
    filled = _closed_then_a_buys_again()
    filled[3] = _claimed("a", 1, Side.BUY, 5, NOW - timedelta(seconds=10))  # within the 30 s lag
    assert _attribute(filled) is None


@pytest.mark.parametrize("status", [OrderStatus.PARTIALLY_FILLED, OrderStatus.NEW])
def test_an_order_still_filling_is_not_attributed(status: OrderStatus) -> None:
    filled = _closed_then_a_buys_again()
    buy = filled[3]
    filled[3] = Filled(replace(buy.order, status=status), buy.claim)
    assert _attribute(filled) is None


def test_a_fill_its_ledger_has_not_booked_is_not_attributed() -> None:
    filled = _closed_then_a_buys_again()
    buy = filled[3]
    assert buy.claim is not None
    filled[3] = Filled(buy.order, replace(buy.claim, filled_qty=Decimal(0), state=ClaimState.SUBMITTED))
    assert _attribute(filled) is None


def test_a_claimed_fill_at_the_same_instant_as_the_close_is_not_attributed() -> None:
    filled = _closed_then_a_buys_again()
    filled[3] = _claimed("a", 1, Side.BUY, 5, T0 + timedelta(minutes=1))  # which came first?
    assert _attribute(filled, broker_qty=0) is None  # counted before the close, the sums would agree


def test_a_turn_closed_since_that_kept_fills_after_the_close_is_not_attributed() -> None:
    filled = [*_closed_then_a_buys_again(), _claimed("c", 3, Side.BUY, 4, T0 + timedelta(minutes=3))]
    assert _attribute(filled, broker_qty=9) is None  # c's ledger is flat: its 4 are unexplained


def test_a_close_before_every_holders_turn_opened_is_not_attributed() -> None:
    old = _by_hand(Side.SELL, 20, NOW - timedelta(hours=2))
    assert _attribute([old, *_closed_then_a_buys_again()[:2]], broker_qty=20) is None


def test_a_buy_by_hand_is_not_a_close_of_a_long_position() -> None:
    filled = _closed_then_a_buys_again()
    filled[2] = _by_hand(Side.BUY, 20, T0 + timedelta(minutes=1))
    assert _attribute(filled, broker_qty=45) is None


def test_a_fill_in_no_turn_after_the_close_is_not_attributed() -> None:
    filled = [*_closed_then_a_buys_again()[:3], _claimed("a", None, Side.BUY, 5, T0 + timedelta(minutes=2))]
    assert _attribute(filled) is None
