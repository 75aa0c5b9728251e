"""Crypto pairs have two names at Alpaca: orders say "BTC/USD", positions say "BTCUSD"
(alpaca-py issue #490). The reconciler must never read a real crypto holding as flat because
of how it is spelt (G4 the wrong way round: a real position cleared, the bot buys again).

The real AlpacaBroker over requests-mock at the HTTP edge (`FakeAlpaca`), and the paper broker,
which lists a crypto position as Alpaca does; real claim stores (a SQLite file and PostgreSQL).
"""

from __future__ import annotations

from decimal import Decimal

from alpaca.trading.client import TradingClient

from tests.alpaca_bodies import FakeAlpaca, position_body
from tests.gateway_kit import LaggingPositions, broker_qty
from tradeguard import GuardedTradingClient
from tradeguard.broker.alpaca import AlpacaBroker
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import OrderRequest, Side, TimeInForce
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.reconcile import ActionKind
from tradeguard.store import ClaimStore
from tradeguard.testing import FixedPrices

AGENT = "crypto-bot"
PAIR = "BTC/USD"
SETTINGS = Settings()


def _fill(fake: FakeAlpaca, client_order_id: str, qty: str) -> None:
    """The fake fills an order in full and lists the position as Alpaca does: "BTCUSD"."""
    fake.orders[client_order_id].update(
        status="filled", filled_qty=qty, filled_avg_price="60000", filled_at="2026-12-06T10:00:01Z"
    )
    fake.positions["BTCUSD"] = position_body(
        "BTCUSD", qty, qty, asset_class="crypto", exchange="CRYPTO", asset_marginable=False
    )


def test_alpaca_crypto_position_listed_without_the_slash_is_kept_and_sold_once(
    store_url: str, fake: FakeAlpaca, trading_client: TradingClient, clock: ManualClock
) -> None:
    """D3: the ledger holds 0.5 BTC/USD, Alpaca lists 0.5 BTCUSD. Long after the fill, a pass
    finds nothing to do (no phantom clear, no orphan), and the exit sells the 0.5 once."""
    store = ClaimStore(store_url, settings=SETTINGS, clock=clock)
    gw = OrderGateway(AlpacaBroker(trading_client), store, agent_id=AGENT, settings=SETTINGS, clock=clock)
    entry = gw.enter(PAIR, qty="0.5", time_in_force="gtc", intent="10:00 breakout")
    assert entry.outcome is Outcome.SUBMITTED and entry.claim is not None
    _fill(fake, entry.claim.client_order_id, "0.5")
    gw.refresh(PAIR)
    assert gw.position(PAIR).qty == Decimal("0.5")
    clock.advance(120)  # long after the fill: a flat read here would look like a phantom

    report = gw.reconcile()

    assert report.aborted is None and report.actions == [], [a.reason for a in report.actions]
    assert gw.position(PAIR).qty == Decimal("0.5"), "a real crypto holding was cleared as a phantom"
    sold = gw.exit(PAIR, intent="10:30 stop")
    assert sold.outcome is Outcome.SUBMITTED, sold.reason
    assert sold.claim is not None and sold.claim.order_qty == Decimal("0.5")
    assert [o["side"] for o in fake.orders.values()] == ["buy", "sell"]
    store.close()


def test_crypto_position_cleared_on_a_lagging_read_is_readopted_under_the_ledgers_name(
    store_url: str, clock: ManualClock
) -> None:
    """D3: a "BTC/USD" turn cleared while the positions read lagged comes back listed as
    "BTCUSD"; it is the cleared turn's, re-adopted as "BTC/USD", not reported as an orphan."""
    paper = PaperBroker(prices=FixedPrices({PAIR: "20000"}), clock=clock)
    lag = LaggingPositions(paper)
    store = ClaimStore(store_url, settings=SETTINGS, clock=clock)
    gw = OrderGateway(lag, store, agent_id=AGENT, settings=SETTINGS, clock=clock)
    gw.enter(PAIR, qty=2, time_in_force="gtc", intent="10:00 breakout")
    clock.advance(120)
    lag.hidden.add("BTCUSD")  # the positions endpoint trails (indistinguishable from a phantom)
    cleared = gw.reconcile()
    assert [(a.kind, a.symbol) for a in cleared.applied] == [(ActionKind.CLEAR_PHANTOM, PAIR)]
    lag.hidden.clear()
    clock.advance(60)

    back = gw.reconcile()

    assert [(a.kind, a.symbol) for a in back.applied] == [(ActionKind.ADOPT_ORPHAN, PAIR)]
    assert gw.position(PAIR).qty == 2
    assert gw.reconcile().changes == []
    store.close()


def test_paper_lists_a_crypto_position_as_alpaca_does_and_the_guard_keeps_it(
    store_url: str, clock: ManualClock
) -> None:
    """D3 on the paper account: it lists "BTCUSD" (as Alpaca), answers for either name, and a
    guarded bot's holding survives the reconciler and is sold once."""
    paper = PaperBroker(prices=FixedPrices({PAIR: "20000"}), clock=clock)
    store = ClaimStore(store_url, settings=SETTINGS, clock=clock)
    gw = OrderGateway(paper, store, agent_id=AGENT, settings=SETTINGS, clock=clock)
    assert gw.enter(PAIR, qty=2, time_in_force="gtc", intent="10:00 breakout").outcome is Outcome.SUBMITTED
    assert [(p.symbol, p.qty) for p in paper.list_positions()] == [("BTCUSD", 2)]
    assert paper.get_position(PAIR) == paper.get_position("BTCUSD") == paper.list_positions()[0]
    clock.advance(120)

    report = gw.reconcile()

    assert report.actions == [], [a.reason for a in report.actions]
    assert gw.position(PAIR).qty == 2
    sold = gw.exit(PAIR, intent="10:30 stop")
    assert sold.outcome is Outcome.SUBMITTED and sold.claim is not None and sold.claim.order_qty == 2
    assert broker_qty(paper, PAIR) == 0 and gw.position(PAIR).is_flat
    store.close()


def test_dropin_close_all_positions_closes_a_crypto_pair_once(store_url: str, clock: ManualClock) -> None:
    """D3 in the drop-in client: the broker's "BTCUSD" and the ledger's "BTC/USD" are one
    position, closed by one guarded exit (answered under the broker's name, as alpaca-py has it);
    `close_position("BTCUSD")` closes the ledger's turn."""
    paper = PaperBroker(prices=FixedPrices({PAIR: "20000"}), clock=clock)
    client = GuardedTradingClient(
        broker=paper, store=store_url, agent_id=AGENT, settings=SETTINGS, clock=clock
    )
    with client as c:
        gw = c.gateway
        gw.enter(PAIR, qty=3, time_in_force="gtc", intent="10:00 breakout")
        answers = c.close_all_positions()
        assert [(a.symbol, a.status) for a in answers] == [("BTCUSD", 200)]  # as the broker lists it
        assert broker_qty(paper, PAIR) == 0 and gw.position(PAIR).is_flat
        gw.enter(PAIR, qty=1, time_in_force="gtc", intent="10:05 breakout")
        c.close_position("BTCUSD")
        assert broker_qty(paper, PAIR) == 0 and gw.position(PAIR).is_flat
        assert gw.position("BTCUSD").is_flat


def test_an_adopted_crypto_orphan_is_booked_under_the_pairs_one_spelling(
    store_url: str, clock: ManualClock
) -> None:
    """The broker lists a pair bought outside the guard as "BTCUSD"; adopted, it is the ledger's
    "BTC/USD", the position the bot asks for under either name and sells once."""
    paper = PaperBroker(prices=FixedPrices({PAIR: "20000"}), clock=clock)
    paper.submit_order(
        OrderRequest("BTCUSD", Side.BUY, "manual-1", qty=Decimal("0.5"), time_in_force=TimeInForce.GTC)
    )
    store = ClaimStore(store_url, settings=SETTINGS, clock=clock)
    gw = OrderGateway(paper, store, agent_id=AGENT, settings=SETTINGS, clock=clock)
    clock.advance(120)

    adopted = gw.reconciler.run(adopt_orphans_to=AGENT)

    assert [(a.kind, a.symbol) for a in adopted.changes] == [(ActionKind.ADOPT_ORPHAN, PAIR)]
    assert [p.symbol for p in store.positions(AGENT)] == [PAIR]
    assert gw.position("BTCUSD") == gw.position(PAIR) and gw.position(PAIR).qty == Decimal("0.5")
    sold = gw.exit("BTCUSD", intent="10:30 stop")
    assert sold.outcome is Outcome.SUBMITTED and sold.claim is not None and sold.claim.symbol == PAIR
    assert broker_qty(paper, PAIR) == 0 and gw.position(PAIR).is_flat
    clock.advance(120)
    assert gw.reconcile().changes == []
    store.close()
