"""G3 beside another agent's bracket entry that has not filled yet (audit 33).

Sizing counts another agent's acknowledged exits as already out of the broker's `qty_available`
(`domain.ledger.size_exit`), so their shares are not reserved again. The legs of a bracket (or
OTO) entry are acknowledged exit claims from the moment the entry is accepted, but Alpaca holds
nothing for legs that wait for their entry: the other agent's shares they were credited with
stayed in `qty_available`, and an agent whose ledger is partly a phantom sold them. Real parts: the
paper broker (legs held until their entry fills, as at Alpaca), stores on SQLite, PostgreSQL and
in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.gateway_kit import broker_qty
from tradeguard import ManualClock, OrderGateway, PaperBroker
from tradeguard.config import Settings
from tradeguard.domain import OrderClass, OrderType, Side, TimeInForce
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.execution import Outcome
from tradeguard.paper.prices import FixedPrices
from tradeguard.ports import ClaimLedger
from tradeguard.store import ClaimStore, MemoryClaimStore

SETTINGS = Settings(recent_activity_secs=0)
# Buy 5 SPY at 400 (the price is 500: it rests) with a take-profit at 600 and a stop-loss at 300.
_RESTING_BRACKET = OrderSpec(
    qty=Decimal(5), order_type=OrderType.LIMIT, limit_price=Decimal(400), time_in_force=TimeInForce.GTC,
    order_class=OrderClass.BRACKET, take_profit_limit_price=Decimal(600), stop_loss_stop_price=Decimal(300),
)  # fmt: skip


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[ClaimLedger]:
    clock = ManualClock()
    made: ClaimLedger
    if request.param == "memory":
        made = MemoryClaimStore(settings=SETTINGS, clock=clock)
    else:
        url = str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))
        made = ClaimStore(url, settings=SETTINGS, clock=clock)
    yield made
    made.close()


def test_a_phantom_agent_never_sells_the_shares_of_another_agent_whose_bracket_entry_rests(
    store: ClaimLedger,
) -> None:
    clock = store.clock  # type: ignore[attr-defined]
    account = PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock)
    a, b = (OrderGateway(account, store, agent_id=n, settings=SETTINGS, clock=clock) for n in "ab")
    assert a.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    assert b.enter("SPY", qty=10, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    account.close_position("SPY", qty=Decimal(5))  # by hand: A's ledger 10, A truly holds 5
    entry = b.submit(Intent("b", Kind.ENTRY, "SPY", Side.BUY, "b-more"), _RESTING_BRACKET)
    assert entry.outcome is Outcome.SUBMITTED, entry.reason  # rests below the price; legs held
    clock.advance(60)

    # A limit above B's resting buy (Alpaca refuses a sell that could trade against it).
    result = a.exit("SPY", intent="a-out", order_type="limit", limit_price=450)

    assert result.claim is None or result.claim.order_qty <= 5, result.reason
    assert broker_qty(account, "SPY") >= 10  # B's 10 are still there


def test_an_agents_own_resting_bracket_entry_leaves_all_it_holds_exitable(store: ClaimLedger) -> None:
    """A holds 10 and rests a bracket entry for 5 more: its legs wait for it and hold nothing, so
    they are no exit in flight of the 10 it holds; A's exit of everything sells the 10."""
    clock = store.clock  # type: ignore[attr-defined]
    account = PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock)
    a = OrderGateway(account, store, agent_id="a", settings=SETTINGS, clock=clock)
    assert a.enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    entry = a.submit(Intent("a", Kind.ENTRY, "SPY", Side.BUY, "a-more"), _RESTING_BRACKET)
    assert entry.outcome is Outcome.SUBMITTED, entry.reason
    clock.advance(60)

    result = a.exit("SPY", intent="a-out", order_type="limit", limit_price=450)

    assert result.claim is not None and result.claim.order_qty == 10, result.reason
    assert broker_qty(account, "SPY") == 0
