"""G3/G4: an exit right after the agent's own fill is not refused because the positions endpoint lags.

Alpaca's positions endpoint trails fills by seconds (ALPACA.md). A scalper exiting a second after
its entry read a position without its fresh shares and was told "nothing to sell" (found by an
adversarial run; the drop-in answered 403 where Alpaca takes the sell_to_close). Alone in the
symbol the fresh shares are sized from the ledger; beside another agent the read stands. Real
parts: the paper broker, a claim store on SQLite and PostgreSQL.
"""

from __future__ import annotations

from tests.gateway_kit import MAY21_PRICES, LaggingPositions, broker_qty
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.store import ClaimStore

SETTINGS = Settings()


def test_an_exit_a_second_after_the_entry_sells_the_fresh_shares(
    store: ClaimStore, clock: ManualClock
) -> None:
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    lagging = LaggingPositions(paper)
    gw = OrderGateway(lagging, store, agent_id="scalper", settings=SETTINGS, clock=clock)
    gw.enter("TQQQ", qty=10, intent="09:42 in")
    lagging.hidden.add("TQQQ")  # the positions endpoint has not caught up with the fill
    clock.advance(1)
    out = gw.exit("TQQQ", intent="09:42 out")
    assert out.outcome is Outcome.SUBMITTED, out.reason
    assert out.order is not None and out.order.qty == 10
    assert broker_qty(paper, "TQQQ") == 0
    assert gw.exit("TQQQ", intent="09:42 out").outcome is Outcome.DUPLICATE  # once


def test_a_read_missing_shares_long_after_the_fill_still_means_nothing_to_sell(
    store: ClaimStore, clock: ManualClock
) -> None:
    """Past the settle horizon a flat read is believed (the position was closed outside)."""
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    lagging = LaggingPositions(paper)
    gw = OrderGateway(lagging, store, agent_id="bot", settings=SETTINGS, clock=clock)
    gw.enter("TQQQ", qty=10, intent="in")
    clock.advance(SETTINGS.position_settle_secs + 1)
    paper.close_position("TQQQ")  # behind the bot's back
    out = gw.exit("TQQQ", intent="out")
    assert out.outcome is Outcome.SKIPPED, out.reason
    assert len([o for o in paper.orders() if o.side.value == "sell"]) == 1  # the outside close only


def test_beside_another_agent_a_lagging_read_is_not_overridden(store: ClaimStore, clock: ManualClock) -> None:
    """Another agent's shares are on the account: the fresh ledger is not taken over the read."""
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    lagging = LaggingPositions(paper)
    a = OrderGateway(lagging, store, agent_id="bot-a", settings=SETTINGS, clock=clock)
    b = OrderGateway(paper, store, agent_id="bot-b", settings=SETTINGS, clock=clock)
    b.enter("TQQQ", qty=5, intent="b in")
    a.enter("TQQQ", qty=10, intent="a in")
    lagging.hidden.add("TQQQ")
    out = a.exit("TQQQ", intent="a out")
    assert out.outcome is Outcome.SKIPPED, out.reason
    assert broker_qty(paper, "TQQQ") == 15
