"""Issue 8, reconciliation defects: stale position reads, clears racing entries, shared accounts.

Real claim stores (a SQLite file and PostgreSQL), the in-process paper account, one manual clock
(the reconciler's settle delay advances it instead of sleeping). The positions endpoint trails
fills at Alpaca; `LaggingPositions` reproduces that by hiding a symbol's position while its
orders already show the fill.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.gateway_kit import (
    MAY21_PRICES,
    LaggingPositions,
    OnSleepClock,
    audit_of,
    broker_qty,
    run_cli,
)
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import AuditAction
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.ports import ClaimLedger
from tradeguard.store import ClaimStore
from tradeguard.testing import FaultPlan, FaultyBroker, PaperBroker, RecordingBroker, make_request

AGENT = "may21-bot"


@dataclass
class World:
    clock: ManualClock
    paper: PaperBroker
    lag: LaggingPositions  # records the orders asked of the account
    store: ClaimStore
    gw: OrderGateway


@pytest.fixture
def world(store_url: str) -> Iterator[World]:
    """Default settings (2 s settle delay, 5 s recent activity); positions may lag."""
    clock = OnSleepClock()
    settings = Settings()
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    lag = LaggingPositions(paper)
    store = ClaimStore(store_url, settings=settings, clock=clock)
    gw = OrderGateway(lag, store, agent_id=AGENT, settings=settings, clock=clock)
    yield World(clock, paper, lag, store, gw)
    store.close()


# -- defect 2: a stale positions read clears a real position ----------------------------------


def test_position_read_lagging_a_fill_does_not_clear_the_position(world: World) -> None:
    """Defect 2: an entry fills; a pass 0.5 s later reads flat twice (the positions endpoint
    trails fills). The position must survive, and the exit sells all 10 once reads catch up."""
    w = world
    assert w.gw.enter("TQQQ", qty=10, intent="11:26 breakout").outcome is Outcome.SUBMITTED
    w.lag.hidden.add("TQQQ")
    w.clock.advance(0.5)
    w.gw.reconcile()
    assert w.gw.position("TQQQ").qty == 10, "a lagging positions read cleared a real position"
    w.lag.hidden.clear()
    result = w.gw.exit("TQQQ", intent="11:40 momentum lost")
    assert result.outcome is Outcome.SUBMITTED, result.reason
    assert [a.qty for a in w.lag.asked(symbol="TQQQ", side="sell")] == [10]
    assert broker_qty(w.paper, "TQQQ") == 0
    assert w.gw.position("TQQQ").is_flat


def test_orphan_matching_a_recently_cleared_position_is_readopted(world: World) -> None:
    """Defect 2: a position cleared on stale reads comes back at the broker as an orphan of the
    same size; the reconciler takes it back into the agent's ledger instead of reporting it."""
    w = world
    w.gw.enter("TQQQ", qty=10, intent="11:26 breakout")
    w.clock.advance(120)  # long after the fill: a flat read now looks like a phantom
    w.lag.hidden.add("TQQQ")
    w.gw.reconcile()  # may clear (indistinguishable from a phantom)
    w.lag.hidden.clear()
    w.clock.advance(60)
    w.gw.reconcile()
    assert w.store.position(AGENT, "TQQQ").qty == 10, "the agent's own shares were left as an orphan"
    assert w.gw.reconcile().changes == []  # converged


def _phantom_cleared_by_a_dashboard_close(w: World) -> None:
    """The bot holds 12 TQQQ; someone closes them outside the guard; a pass clears the phantom."""
    assert w.gw.enter("TQQQ", qty=12, intent="09:42 breakout").outcome is Outcome.SUBMITTED
    w.paper.submit_order(make_request("TQQQ", "sell", 12, client_order_id="dashboard-close"))
    w.clock.advance(120)
    assert [a.kind.value for a in w.gw.reconcile().applied] == ["clear_phantom"]
    assert w.gw.position("TQQQ").is_flat


@pytest.mark.parametrize("later_secs", [20 * 60, 1])
def test_a_same_size_buy_outside_the_guard_after_a_clear_is_not_readopted(
    world: World, later_secs: int
) -> None:
    """Audit D4: a manual buy of the cleared size on the account, 20 minutes after the clear
    (past the re-adoption window) or at once (an order outside the bot's claims filled since the
    clear), is an orphan: reported, never booked into the bot, and never sold by its exit."""
    w = world
    _phantom_cleared_by_a_dashboard_close(w)
    w.clock.advance(later_secs)
    w.paper.submit_order(make_request("TQQQ", "buy", 12, client_order_id="human-buy"))
    w.clock.advance(60)

    report = w.gw.reconcile()

    assert [a.kind.value for a in report.actions] == ["report_orphan"], [a.reason for a in report.actions]
    assert w.gw.position("TQQQ").is_flat, "a trade outside the guard was booked into the bot"
    assert w.gw.exit("TQQQ", intent="10:30 momentum lost").outcome is not Outcome.SUBMITTED
    assert w.lag.asked(symbol="TQQQ", side="sell") == []
    assert broker_qty(w.paper, "TQQQ") == 12


def test_a_lagging_read_after_another_agents_exit_is_not_booked_as_a_missed_fill(shared: ClaimLedger) -> None:
    """Audit D6: A holds 10 SPY, B 5. The positions endpoint still shows 15 after B's exit of 5
    filled; A's pass must not book B's sold shares into A ("missed fill adopted"): the symbol
    waits `position_settle_secs` after B's turn moved, then agrees with the broker."""
    clock = shared.clock
    assert isinstance(clock, ManualClock)
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    lag = LaggingPositions(paper)
    a = OrderGateway(lag, shared, agent_id="agent-a", clock=clock)
    b = OrderGateway(lag, shared, agent_id="agent-b", clock=clock)
    a.enter("SPY", qty=10, intent="a in")
    b.enter("SPY", qty=5, intent="b in")
    clock.advance(120)
    lag.freeze()  # the positions endpoint trails the fill that follows
    assert b.exit("SPY", intent="b out").outcome is Outcome.SUBMITTED
    assert (broker_qty(paper, "SPY"), lag.get_position("SPY").qty) == (10, 15)  # type: ignore[union-attr]
    clock.advance(1)

    report = a.reconcile()

    assert report.changes == [], [x.reason for x in report.changes]
    assert [p.symbol for p in report.put_off] == ["SPY"]
    assert shared.position("agent-a", "SPY").qty == 10, "B's sold shares were booked into A"
    lag.frozen = None
    clock.advance(60)
    assert a.reconcile().changes == []
    sold = a.exit("SPY", intent="a out")
    assert sold.outcome is Outcome.SUBMITTED and sold.claim is not None and sold.claim.order_qty == 10
    assert broker_qty(paper, "SPY") == 0 and shared.position("agent-a", "SPY").is_flat


def test_a_phantom_two_agents_hold_clears_in_one_round_of_one_agent_passes(shared: ClaimLedger) -> None:
    """Audit D6's rule leaves phantom clears out: one agent's clear moves no shares at the broker,
    so it does not hold back the other agent's clear of the same phantom (G4 within an interval)."""
    clock = shared.clock
    assert isinstance(clock, ManualClock)
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    a = OrderGateway(paper, shared, agent_id="agent-a", clock=clock)
    b = OrderGateway(paper, shared, agent_id="agent-b", clock=clock)
    a.enter("TQQQ", qty=10, intent="a in")
    b.enter("TQQQ", qty=10, intent="b in")
    paper.close_position("TQQQ")  # behind both bots' backs
    clock.advance(120)

    passes = [a.reconcile(), b.reconcile()]

    assert [[x.kind.value for x in r.applied] for r in passes] == [["clear_phantom"], ["clear_phantom"]]
    assert shared.position("agent-a", "TQQQ").is_flat and shared.position("agent-b", "TQQQ").is_flat


def test_a_phantom_clears_while_another_agent_keeps_an_order_resting_there(shared: ClaimLedger) -> None:
    """Audit 7 D1: A's 5 TQQQ are sold outside the guard while B keeps a GTC buy limit far below
    the market (no fill). A never-filled resting order moves no shares: A's phantom clears in the
    first pass after one reconcile interval, and B's order and claim are left as they are."""
    clock = shared.clock
    assert isinstance(clock, ManualClock)
    settings = Settings()
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    a = OrderGateway(paper, shared, agent_id="agent-a", settings=settings, clock=clock)
    b = OrderGateway(paper, shared, agent_id="agent-b", settings=settings, clock=clock)
    assert a.enter("TQQQ", qty=5, intent="a in").outcome is Outcome.SUBMITTED
    paper.close_position("TQQQ")  # a person in the dashboard
    rest = b.enter("TQQQ", qty=1, intent="b dip", order_type="limit", limit_price="50", time_in_force="gtc")
    assert rest.outcome is Outcome.SUBMITTED and rest.claim is not None
    clock.advance(settings.reconcile_interval_secs)

    report = a.reconcile()

    assert [x.kind.value for x in report.applied] == ["clear_phantom"], [x.reason for x in report.actions]
    assert shared.position("agent-a", "TQQQ").is_flat and broker_qty(paper, "TQQQ") == 0
    resting = [o.client_order_id for o in paper.orders() if o.status.value == "new"]
    assert resting == [rest.claim.client_order_id]
    assert shared.get(rest.claim.key).state is ClaimState.SUBMITTED  # type: ignore[union-attr]
    assert a.enter("TQQQ", qty=5, intent="a in again").outcome is Outcome.SUBMITTED  # entries not blocked


def test_a_phantom_is_kept_while_a_resting_order_in_the_symbol_has_a_fill(shared: ClaimLedger) -> None:
    """The relaxed rule still refuses on an order that filled: B's resting buy fills 1 share (now
    booked in B's ledger) and the broker holds B's share; A's 5 sold outside are trimmed to none
    only by evidence naming A (not here): the drift is reported, nothing cleared or adopted."""
    clock = shared.clock
    assert isinstance(clock, ManualClock)
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    a = OrderGateway(paper, shared, agent_id="agent-a", clock=clock)
    b = OrderGateway(paper, shared, agent_id="agent-b", clock=clock)
    a.enter("TQQQ", qty=5, intent="a in")
    paper.close_position("TQQQ")
    b.enter("TQQQ", qty=1, intent="b dip", order_type="limit", limit_price="70", time_in_force="gtc")
    paper.set_price("TQQQ", "69")  # B's buy fills: the broker now holds B's 1
    clock.advance(120)
    b.reconcile()
    assert shared.position("agent-b", "TQQQ").qty == 1

    report = a.reconcile()

    assert report.changes == [], [x.reason for x in report.changes]
    assert shared.position("agent-a", "TQQQ").qty == 5 and broker_qty(paper, "TQQQ") == 1


def test_a_phantom_clears_beside_the_holders_own_resting_add_and_the_add_books_later(world: World) -> None:
    """The holder's own resting limit add (never filled) does not keep its phantom either; when
    the add fills after the clear it opens a new turn of its own size, equal to the broker's."""
    w = world
    w.gw.enter("TQQQ", qty=5, intent="09:42 base")
    w.paper.close_position("TQQQ")
    add = w.gw.enter(
        "TQQQ", qty=2, intent="09:47 add", order_type="limit", limit_price="70", time_in_force="gtc"
    )
    assert add.outcome is Outcome.SUBMITTED
    w.clock.advance(120)

    assert [x.kind.value for x in w.gw.reconcile().applied] == ["clear_phantom"]
    assert w.gw.position("TQQQ").is_flat
    w.paper.set_price("TQQQ", "69")
    w.clock.advance(120)

    assert w.gw.position("TQQQ").qty == 2 == broker_qty(w.paper, "TQQQ")
    assert w.gw.reconcile().changes == []


# -- defect 1 (second part): a ledger below the broker converges --------------------------------


def test_ledger_holding_less_than_the_broker_converges_for_one_agent(world: World) -> None:
    """Defect 1: one agent's ledger holds 10 while the broker holds 15 (a fill the ledger missed).
    After a pass with two steady reads and no recent activity the ledger holds 15, like a
    ledger holding more is trimmed."""
    w = world
    w.gw.enter("TQQQ", qty=10, intent="11:26 breakout")
    w.paper.submit_order(make_request("TQQQ", "buy", 5, client_order_id="lost-fill-1"))
    w.clock.advance(120)
    w.gw.reconcile()
    assert w.store.position(AGENT, "TQQQ").qty == 15
    assert w.gw.reconcile().changes == []


# -- defect 4: an entry during a phantom clear wipes real shares ---------------------------------


def test_scale_in_between_the_two_reads_of_a_phantom_clear_is_not_wiped(world: World) -> None:
    """Defect 4: the reconciler confirms a 10-share phantom; between its two reads the bot
    scales in 5 (the positions endpoint does not show them yet). The clear must be dropped for
    this pass: the ledger keeps 15, and the real 5 are never wiped."""
    w = world
    w.gw.enter("TQQQ", qty=10, intent="11:06 entry")
    w.paper.close_position("TQQQ")  # closed outside the guard: the 10 are a phantom
    w.clock.advance(120)
    clock = w.clock
    assert isinstance(clock, OnSleepClock)

    def scale_in() -> None:
        w.lag.hidden.add("TQQQ")
        assert w.gw.enter("TQQQ", qty=5, intent="11:08 scale in").outcome is Outcome.SUBMITTED

    clock.on_next_sleep = scale_in
    w.gw.reconcile()
    assert clock.on_next_sleep is None, "the pass took no second read"
    assert broker_qty(w.paper, "TQQQ") == 5
    assert w.store.position(AGENT, "TQQQ").qty == 15, "the phantom clear wiped the scale-in"
    # Once the positions endpoint catches up, the excess 10 goes and the real 5 stay.
    w.lag.hidden.clear()
    w.clock.advance(120)
    w.gw.reconcile()
    assert w.store.position(AGENT, "TQQQ").qty == 5
    assert w.gw.exit("TQQQ", intent="11:30 stop").outcome is Outcome.SUBMITTED
    assert broker_qty(w.paper, "TQQQ") == 0


# -- defect 10: a phantom behind an UNKNOWN exit outlives one reconcile interval -----------------

EXIT_503 = """
faults:
  - route: POST /v2/orders
    match: {symbol: TQQQ, side: sell}
    nth: 1
    action: error
    status: 503
"""


def test_one_pass_marks_the_unknown_exit_not_sent_and_clears_the_phantom(store_url: str) -> None:
    """Defect 10: an exit answered 503 (never placed) stays UNKNOWN; the position is closed
    outside the guard. A bot calling reconcile_if_due() every 60 s: ONE pass both marks the
    exit NOT_SENT and clears the phantom."""
    clock = ManualClock()
    settings = Settings()
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    broker = FaultyBroker(paper, FaultPlan.parse(EXIT_503, source="exit-503.yaml"), clock=clock)
    with ClaimStore(store_url, settings=settings, clock=clock) as store:
        gw = OrderGateway(broker, store, agent_id=AGENT, settings=settings, clock=clock)
        gw.enter("TQQQ", qty=10, intent="11:06 entry")
        result = gw.exit("TQQQ", intent="11:26 momentum lost")
        assert result.outcome is Outcome.UNKNOWN and result.claim is not None
        paper.close_position("TQQQ")
        clock.advance(60)
        report = gw.reconcile_if_due()
        assert report is not None, "no pass was due after one reconcile interval"
        claim = store.get(result.claim.key)
        assert claim is not None and claim.state is ClaimState.NOT_SENT
        assert store.position(AGENT, "TQQQ").is_flat, "the phantom outlived the pass that resolved its exit"


# -- defect 6: two agents on one account ----------------------------------------------------------


def test_phantom_of_one_agent_never_sells_the_other_agents_shares(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 6: agent A's 10 were closed outside the guard (a phantom), agent B really holds 5,
    the broker holds 5. A's exit must not sell B's shares; the drift is reported naming both
    agents, `tradeguard reconcile` exits 1, and `tradeguard settle` settles it (audited)."""
    monkeypatch.setenv("TRADEGUARD_SETTLE_DELAY_SECS", "0")
    monkeypatch.setenv("TRADEGUARD_UNKNOWN_PROBE_GAP_SECS", "0")
    # Timestamps near the real time: the command line runs on the system clock.
    clock = ManualClock(datetime.now(UTC) - timedelta(hours=1))
    settings = Settings()
    state = tmp_path / "paper.json"
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock, state_path=state)
    port = RecordingBroker(paper)
    with ClaimStore(store_url, settings=settings, clock=clock) as store:
        gw_a = OrderGateway(port, store, agent_id="agent-a", settings=settings, clock=clock)
        gw_b = OrderGateway(port, store, agent_id="agent-b", settings=settings, clock=clock)
        gw_a.enter("TQQQ", qty=10, intent="a 11:06 entry")
        paper.close_position("TQQQ")
        gw_b.enter("TQQQ", qty=5, intent="b 11:10 entry")
        clock.advance(120)
        asked_before = len(port.requests)
        gw_a.exit("TQQQ", intent="a 11:26 stop")
        sells = [a for a in port.requests[asked_before:] if a.side == "sell"]
        assert broker_qty(paper, "TQQQ") == 5, f"agent A's exit sold agent B's shares: {sells}"
        assert store.position("agent-b", "TQQQ").qty == 5
        if store.position("agent-a", "TQQQ").is_flat:
            return  # A's exit was refused as position-related and the phantom cleared
        gw_a.reconcile()
        drift = [
            r
            for r in audit_of(store, AuditAction.RECONCILE, symbol="TQQQ")
            if "agent-a" in r.reason and "agent-b" in r.reason
        ]
        assert drift, "no audit record names both agents of the drift"
    url = store_url
    assert run_cli(["reconcile", "--store", url, "--paper-state", str(state)]) == 1
    settle = [
        "settle", "--store", url, "--agent-id", "agent-a", "--symbol", "TQQQ", "--qty", "0",
        "--reason", "agent A's shares were closed outside the guard",
    ]  # fmt: skip
    assert run_cli(settle) == 0
    with ClaimStore(url) as store:
        assert store.position("agent-a", "TQQQ").is_flat
        assert store.position("agent-b", "TQQQ").qty == 5
        settled = [
            r
            for r in audit_of(store, AuditAction.RECONCILE, agent_id="agent-a", symbol="TQQQ")
            if "closed outside the guard" in r.reason
        ]
        assert len(settled) == 1
    assert run_cli(["reconcile", "--store", url, "--paper-state", str(state)]) == 0
