"""The legs of one bracket or OCO are one exit in flight, and a leg the broker shrank stays its own.

Alpaca holds a group's shares once: a bracket's take-profit and stop-loss legs (or an OCO's
limit order and its stop-loss leg) are alternatives, one fills and the others are canceled, so
`held_for_orders` counts the group's quantity once. The guard tracks each leg as an exit claim of
its own; exit sizing (G3) counts a group once, at its largest unfilled quantity, for the agent's
own exits and for other agents' acknowledged ones. When one leg partly fills, Alpaca adjusts the
other "to the remaining quantity" under the same ids: that order is still the leg's claim's, and
its fills reach the ledger (G4).

Real parts: the real `PaperBroker` (Alpaca's group rules: `paper.matching`), claim stores on a
SQLite file, on PostgreSQL and in memory, each gateway on a store of its own (processes sharing one
database; the memory store is one object both agents share).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from tradeguard import ManualClock, OrderGateway, PaperBroker
from tradeguard.config import Settings
from tradeguard.domain import (
    ClaimState,
    OrderClass,
    OrderRequest,
    OrderType,
    ReplaceRequest,
    Side,
    TimeInForce,
)
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.ledger import size_exit
from tradeguard.execution import Outcome
from tradeguard.paper.prices import FixedPrices
from tradeguard.ports import ClaimLedger
from tradeguard.store import ClaimStore, MemoryClaimStore

SETTINGS = Settings(recent_activity_secs=0, position_settle_secs=0, settle_delay_secs=1)
GTC = TimeInForce.GTC


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "memory"])
def ledger_url(request: pytest.FixtureRequest) -> str:
    """A SQLite file, a PostgreSQL schema, or "memory" (one in-memory store the agents share)."""
    if request.param == "memory":
        return "memory"
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


_OPENED: list[ClaimStore] = []


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    yield
    while _OPENED:
        _OPENED.pop().close()


class Account:
    """One paper account and the gateways of the agents trading it, on one claim database."""

    def __init__(self, url: str, *, max_fill_qty: int | None = None) -> None:
        self.clock = ManualClock()
        self.url = url
        self.broker = PaperBroker(
            prices=FixedPrices({"SPY": "500"}), clock=self.clock, max_fill_qty=max_fill_qty
        )
        self._memory = MemoryClaimStore(settings=SETTINGS, clock=self.clock) if url == "memory" else None

    def agent(self, agent_id: str) -> OrderGateway:
        store: ClaimLedger
        if self._memory is not None:
            store = self._memory
        else:
            opened = ClaimStore(self.url, settings=SETTINGS, clock=self.clock)
            _OPENED.append(opened)
            store = opened
        return OrderGateway(self.broker, store, agent_id=agent_id, settings=SETTINGS, clock=self.clock)

    def price(self, value: str) -> None:
        self.broker.set_price("SPY", value)

    def held(self) -> Decimal:
        position = self.broker.get_position("SPY")
        return Decimal(0) if position is None else position.qty

    def available(self) -> Decimal:
        position = self.broker.get_position("SPY")
        return Decimal(0) if position is None else position.qty_available


def bracket_entry(gw: OrderGateway, qty: int = 5, name: str = "bracket") -> None:
    """Buy `qty` SPY at market with a take-profit at 550 and a stop-loss at 450."""
    spec = OrderSpec(
        qty=Decimal(qty), time_in_force=GTC, order_class=OrderClass.BRACKET,
        take_profit_limit_price=Decimal(550), stop_loss_stop_price=Decimal(450),
    )  # fmt: skip
    result = gw.submit(Intent(gw.agent_id, Kind.ENTRY, "SPY", Side.BUY, name), spec)
    assert result.outcome is Outcome.SUBMITTED, result.reason


def oco_exit(gw: OrderGateway, qty: int = 5) -> None:
    """Sell `qty` SPY at 550 or, failing that, at a stop of 450 (an OCO on the held position)."""
    spec = OrderSpec(
        qty=Decimal(qty), order_type=OrderType.LIMIT, limit_price=Decimal(550), time_in_force=GTC,
        order_class=OrderClass.OCO, take_profit_limit_price=Decimal(550),
        stop_loss_stop_price=Decimal(450),
    )  # fmt: skip
    assert gw.exit_order("SPY", spec, intent="oco").outcome is Outcome.SUBMITTED


def leg_claims(gw: OrderGateway) -> list[tuple[ClaimState, Decimal | None, Decimal]]:
    exits = gw.store.list_claims(agent_id=gw.agent_id, symbol="SPY", kind=Kind.EXIT)
    return sorted((c.state, c.order_qty, c.filled_qty) for c in exits if c.intent.startswith("leg:"))


# ---- D1: a group's legs are one exit in flight ---------------------------------------------------


def test_another_agents_phantom_exit_leaves_shares_behind_a_bracket_alone(ledger_url: str) -> None:
    account = Account(ledger_url)
    b = account.agent("b")
    assert b.enter("SPY", 5, intent="b in").outcome is Outcome.SUBMITTED
    a = account.agent("a")
    assert a.enter("SPY", 5, intent="a in").outcome is Outcome.SUBMITTED
    bracket_entry(a)  # 5 more, protected by a take-profit and a stop-loss leg
    assert len(leg_claims(a)) == 2
    # B's shares are sold outside the bots: B's ledger still shows 5 (a phantom).
    account.broker.submit_order(OrderRequest("SPY", Side.SELL, "outside-close", qty=Decimal(5)))
    assert (account.held(), account.available()) == (10, 5)  # the bracket holds its 5 once

    result = b.exit("SPY", intent="b out")

    assert result.outcome is Outcome.SKIPPED, result.reason  # the 5 free shares are A's
    assert account.held() == 10


def test_an_agent_sells_its_free_shares_beside_its_own_bracket(ledger_url: str) -> None:
    account = Account(ledger_url)
    a = account.agent("a")
    assert a.enter("SPY", 5, intent="a in").outcome is Outcome.SUBMITTED
    bracket_entry(a)

    result = a.exit("SPY", qty=5, intent="free five")

    assert result.outcome is Outcome.SUBMITTED, result.reason
    assert result.claim is not None and result.claim.order_qty == 5
    assert account.held() == 5 and a.position("SPY").qty == 5


def test_an_agent_sells_its_free_shares_beside_its_own_oco(ledger_url: str) -> None:
    account = Account(ledger_url)
    a = account.agent("a")
    assert a.enter("SPY", 10, intent="a in").outcome is Outcome.SUBMITTED
    oco_exit(a)  # the OCO's own claim and its stop-loss leg's: one group of 5
    assert len(leg_claims(a)) == 1

    result = a.exit("SPY", qty=5, intent="free five")

    assert result.outcome is Outcome.SUBMITTED, result.reason
    assert account.held() == 5
    # and nothing beyond: the OCO still holds the other 5
    assert a.exit("SPY", intent="the rest").outcome is Outcome.SKIPPED


def test_an_exit_may_grow_into_the_shares_beside_a_bracket(ledger_url: str) -> None:
    account = Account(ledger_url)
    a = account.agent("a")
    assert a.enter("SPY", 5, intent="a in").outcome is Outcome.SUBMITTED
    result = a.exit("SPY", qty=2, intent="target", order_type="limit", limit_price=600, time_in_force="gtc")
    assert result.outcome is Outcome.SUBMITTED and result.order is not None
    bracket_entry(a)

    new = a.replace(result.order.id, ReplaceRequest(qty=Decimal(5)))  # held 10 - the bracket's 5

    assert new.qty == 5
    assert a.store.get(result.claim.key).order_qty == 5  # type: ignore[union-attr]


def test_size_exit_counts_a_group_once_and_as_acknowledged_only_when_all_of_it_is() -> None:
    # A holds 10; its bracket's two legs (group "br") hold the same 5; B holds 5 with an OCO
    # of 5 whose stop-loss leg is not acknowledged yet (a claim the broker may not show).
    holders = {"a": Decimal(10), "b": Decimal(5)}
    exits = [
        ("a", True, Decimal(5), "br"),
        ("a", True, Decimal(5), "br"),
        ("b", True, Decimal(5), "oco"),
        ("b", False, Decimal(4), "oco"),
    ]
    room = size_exit("a", holders, exits, broker_available=Decimal(5), requested=None)
    assert (room.open_exits, room.unacknowledged_exits) == (5, 0)
    assert room.reserved_by_others == 5  # B's OCO may not be out of qty_available yet
    assert room.qty == 0
    room = size_exit("b", holders, exits, broker_available=Decimal(5), requested=None)
    assert (room.open_exits, room.unacknowledged_exits, room.reserved_by_others) == (5, 5, 5)


# ---- D2: a leg the broker shrank after its sibling's partial fill is still its claim's ------------


def bracket_filled_then_take_profit_fills_3_of_5(account: Account, a: OrderGateway) -> None:
    """A's 5-share bracket fills (3 at a time); then its take-profit fills 3 of 5."""
    bracket_entry(a)
    account.price("501")  # the rest of the entry fills
    account.price("551")  # the take-profit fills 3 of 5; Alpaca adjusts the stop-loss leg to 2
    a.refresh("SPY")


def test_a_stop_loss_leg_cut_to_what_its_take_profit_left_stays_its_claim_and_books_its_fill(
    ledger_url: str,
) -> None:
    account = Account(ledger_url, max_fill_qty=3)
    a = account.agent("a")
    bracket_filled_then_take_profit_fills_3_of_5(account, a)
    assert leg_claims(a) == [
        (ClaimState.PARTIALLY_FILLED, Decimal(5), Decimal(3)),  # the take-profit
        (ClaimState.SUBMITTED, Decimal(2), Decimal(0)),  # the stop-loss leg, now for 2
    ]
    assert account.held() == 2 and a.position("SPY").qty == 2

    account.price("440")  # the stop sells the other 2; the take-profit is canceled
    a.refresh("SPY")

    assert account.held() == 0
    assert a.position("SPY").qty == 0  # booked from the stop's fill, no phantom to clear
    assert leg_claims(a) == [
        (ClaimState.CANCELED, Decimal(5), Decimal(3)),
        (ClaimState.FILLED, Decimal(2), Decimal(2)),
    ]


def test_an_oco_cut_by_its_stop_loss_legs_partial_fill_stays_the_oco_claim(ledger_url: str) -> None:
    account = Account(ledger_url, max_fill_qty=3)
    a = account.agent("a")
    a.enter("SPY", 5, intent="a in")
    account.price("501")  # the rest of the entry fills
    assert a.position("SPY").qty == 5
    oco_exit(a)
    account.price("440")  # the stop-loss leg fills 3 of 5; the OCO's own limit order is cut to 2
    a.refresh("SPY")
    [oco] = [c for c in a.store.list_claims(agent_id="a", kind=Kind.EXIT) if c.intent == "oco"]
    assert (oco.state, oco.order_qty, oco.filled_qty) == (ClaimState.SUBMITTED, 2, 0)
    assert a.position("SPY").qty == 2

    account.price("551")  # the cut limit order sells the other 2 (the stop leg is canceled)
    a.refresh("SPY")

    assert account.held() == 0 and a.position("SPY").qty == 0


def test_another_agent_sells_all_its_shares_after_a_bracket_leg_was_cut(ledger_url: str) -> None:
    account = Account(ledger_url, max_fill_qty=3)
    b = account.agent("b")
    assert b.enter("SPY", 3, intent="b in").outcome is Outcome.SUBMITTED
    a = account.agent("a")
    bracket_filled_then_take_profit_fills_3_of_5(account, a)
    account.price("440")  # A's stop sells its last 2
    a.refresh("SPY")
    assert account.held() == 3 and a.position("SPY").qty == 0 and b.position("SPY").qty == 3
    assert not a.reconcile().actions and not b.reconcile().actions  # no drift to report

    result = b.exit("SPY", intent="b out")

    assert result.outcome is Outcome.SUBMITTED and result.claim is not None, result.reason
    assert result.claim.order_qty == 3 and account.held() == 0
