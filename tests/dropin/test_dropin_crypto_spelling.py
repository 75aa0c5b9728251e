"""A crypto pair has two legal spellings at Alpaca ("BTC/USD" and "BTCUSD"); the guard has one.

A bot that buys under one spelling and sells under the other holds one position: one ledger
turn opened and closed, one decision key per decision, nothing for the reconciler to mend. Before
the guard keyed by one spelling, the sell adopted the broker's coins into a second turn and the
first turn was left showing a phantom. The drop-in client over the paper server, claims in a
SQLite file, one manual clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from alpaca.trading.enums import TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from tests.dropin.kit import as_order, claims_of, guarded_client, held
from tradeguard import GuardedTradingClient, ManualClock
from tradeguard.domain import LedgerPosition, Side
from tradeguard.domain.intents import Intent, Kind
from tradeguard.paper.server import PaperServer
from tradeguard.testing import FixedPrices, paper_server

PRICES = {"BTC/USD": "60000", "ETH/USD": "3000", "SPY": "500"}


@pytest.fixture
def server(clock: ManualClock) -> Iterator[PaperServer]:
    with paper_server(prices=FixedPrices(PRICES), clock=clock) as s:
        yield s


@pytest.fixture
def client(server: PaperServer, claims: str, clock: ManualClock) -> Iterator[GuardedTradingClient]:
    with guarded_client(server, claims, clock=clock) as c:
        yield c


def order(symbol: str, side: str, qty: str = "0.5") -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=float(qty), side=side, time_in_force=TimeInForce.GTC)


def turns(client: GuardedTradingClient) -> list[LedgerPosition]:
    """Every ledger turn the client's agent ever had, open or closed (a closed one reads flat)."""
    return client.gateway.store.moved_turns(datetime(2000, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(("bought_as", "sold_as"), [("BTC/USD", "BTCUSD"), ("BTCUSD", "BTC/USD")])
def test_a_pair_bought_under_one_spelling_and_sold_under_the_other_is_one_turn(
    client: GuardedTradingClient, server: PaperServer, clock: ManualClock, bought_as: str, sold_as: str
) -> None:
    bought = as_order(client.submit_order(order(bought_as, "buy")))
    assert bought.symbol == "BTC/USD" and held(server, "BTC/USD") == Decimal("0.5")
    gw = client.gateway
    assert gw.position("BTCUSD") == gw.position("BTC/USD")
    assert gw.position("BTCUSD").qty == Decimal("0.5")

    sold = as_order(client.submit_order(order(sold_as, "sell")))

    assert sold.symbol == "BTC/USD" and sold.position_intent is not None
    assert sold.position_intent.value == "sell_to_close"  # an exit of the position held, not a new one
    assert held(server, "BTC/USD") == 0 and client.get_all_positions() == []
    assert gw.position("BTC/USD").is_flat and gw.position("BTCUSD").is_flat
    [turn] = turns(client)
    assert (turn.symbol, turn.qty) == ("BTC/USD", 0)  # opened by the buy, closed by the sell
    # One entry claim and one exit claim, both under the one spelling (same clock time: unordered).
    assert sorted((c.symbol, c.kind.value) for c in claims_of(client)) == [
        ("BTC/USD", "entry"),
        ("BTC/USD", "exit"),
    ]
    clock.advance(120)  # long after the fills: a leftover turn would be a phantom by now
    report = gw.reconcile()
    assert report.aborted is None and report.actions == [] and report.changes == []
    assert len(turns(client)) == 1


def test_one_decision_under_both_spellings_is_one_order(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    """The same order inside the dedup window is one decision whichever way the pair is spelt."""
    first = as_order(client.submit_order(order("BTC/USD", "buy")))
    again = as_order(client.submit_order(order("BTCUSD", "buy")))
    assert again.id == first.id and held(server, "BTC/USD") == Decimal("0.5")
    assert len(server.broker.orders()) == 1


def test_the_claim_key_and_the_ledger_name_a_pair_one_way_and_leave_equities_alone() -> None:
    slash = Intent("bot", Kind.ENTRY, "BTC/USD", Side.BUY, "10:00 breakout")
    plain = Intent("bot", Kind.ENTRY, "BTCUSD", Side.BUY, "10:00 breakout")
    assert plain == slash and plain.key == slash.key and plain.symbol == "BTC/USD"
    assert Intent("bot", Kind.ENTRY, "GOOGL", Side.BUY, "x").symbol == "GOOGL"
    assert Intent("bot", Kind.ENTRY, "BRK.B", Side.BUY, "x").symbol == "BRK.B"


@pytest.mark.parametrize("bought_as", ["BTC/USD", "BTCUSD"])
def test_close_all_positions_names_a_pair_as_the_broker_lists_it_like_alpaca_py(
    client: GuardedTradingClient, server: PaperServer, bought_as: str
) -> None:
    """Audit 10a D4: the answer named the pair as the ledger spells it ("BTC/USD"); the plain
    client's answer (Alpaca's) names it as the positions endpoint lists it."""
    from tests.dropin.kit import plain_client

    client.submit_order(order(bought_as, "buy"))
    with plain_client(server) as plain:
        listed = [p.symbol for p in plain.get_all_positions()]
    answers = client.close_all_positions()
    assert [a.symbol for a in answers] == listed == ["BTCUSD"]
    assert answers[0].status == 200 and held(server, "BTC/USD") == 0
