"""`tradeguard run` in sim: a whole day of bars through the guard, with May 21's failures injected.

The run is the real thing (`prepare` builds what the command builds): the shipped day, the
momentum strategy, a SQLite file, the in-process paper account as a margin account (a sell with
nothing held would open a short, as at Alpaca), the fault plan of `strategies/may21-faults.yaml`
and an SQQQ position closed outside the bot.
"""

from __future__ import annotations

import io
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from tradeguard import ClaimState, ClaimStore, PaperBroker, Side
from tradeguard.cli import main
from tradeguard.faults import FaultPlan
from tradeguard.run.command import prepare
from tradeguard.run.settings import RunSettings, ViewKind

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "strategies" / "may21-faults.yaml"


def signed(side: Side, qty: Decimal) -> Decimal:
    return qty if side is Side.BUY else -qty


def test_a_faulted_day_ends_with_one_order_per_decision_no_short_and_the_ledger_equal_to_the_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    settings = RunSettings(
        strategy="strategies.momentum",
        store_url=url,
        faults=str(PLAN),
        close_outside=("SQQQ@11:44",),
        view=ViewKind.PLAIN,
    )
    out = io.StringIO()
    prepared = prepare(settings, environ={}, out=out)
    paper = prepared.venue.paper
    assert isinstance(paper, PaperBroker)

    report = prepared.run()

    assert report.exit_status == 0 and report.bars == 390 and report.stopped_by == "end of bars"
    assert report.faults_fired == sum(
        len(f.nth) if isinstance(f.nth, tuple) else 1 for f in FaultPlan.load(PLAN).faults
    )  # every scripted failure happened
    orders = paper.orders()
    coids = [o.client_order_id for o in orders]
    with ClaimStore(url) as store:
        claims = {c.client_order_id: c for c in store.list_claims(agent_id="momentum")}
        audit = list(store.audit_records())
    # Zero duplicate orders: each order at the broker is one claimed decision, each decision one
    # order; the only other order is the drill's close outside the bot.
    outside = [o for o in orders if o.client_order_id not in claims]
    assert [(o.symbol, o.side) for o in outside] == [("SQQQ", Side.SELL)]
    ours = [c for c in coids if c in claims]
    assert len(ours) == len(set(ours)) == report.status.orders_sent
    # The bot did retry (a timeout's lookup failed; a 500): the guard answered without sending.
    assert report.status.blocked >= 3
    # The 500: the same client_order_id resent once absence was proven, never a new id.
    resent = [r for r in audit if "resending the same id" in r.reason]
    assert len(resent) == 1 and ours.count(resent[0].client_order_id or "") == 1
    # The 422 exit: refused, reconciled at once, re-sized and sent under its own id.
    refused = [r for r in audit if r.state == "REJECTED" and "position intent mismatch" in r.reason]
    assert len(refused) == 1 and claims[refused[0].client_order_id or ""].state is ClaimState.FILLED
    # The SQQQ closed outside the bot: a phantom, cleared by reconciliation.
    assert "drill: SQQQ closed outside the bot at 11:44" in out.getvalue()
    assert any("phantom cleared" in r.reason and r.symbol == "SQQQ" for r in audit)
    # No short, ever: replay the fills on the account, which would have let a double exit short.
    held: dict[str, Decimal] = defaultdict(Decimal)
    for order in orders:
        held[order.symbol] += signed(order.side, order.filled_qty)
        assert held[order.symbol] >= 0, f"short in {order.symbol} after {order.client_order_id}"
    # The ledger equals the broker's positions, and every decision is final.
    assert report.status.positions and all(row.agrees for row in report.status.positions)
    assert all(c.state in (ClaimState.FILLED, ClaimState.NOT_SENT) for c in claims.values())
    assert not report.unresolved
    assert "summary: strategies.momentum:MomentumStrategy in sim" in out.getvalue()


def test_the_command_runs_the_plain_alpaca_py_bot_over_the_real_trading_client_in_sim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # In sim the bot's own alpaca-py calls (get_open_position) go to the simulated account
    # served on 127.0.0.1; its orders go through the run's gateway.
    monkeypatch.chdir(ROOT)
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    assert main(["run", "strategies/plain_alpaca.py", "--store", url, "--view", "plain"]) == 0
    out = capsys.readouterr().out
    assert "stopped by: end of bars after 390 bar(s)" in out
    assert "claim      entry TQQQ buy 10" in out and "coid:xover-20260521-" in out
    with ClaimStore(url) as store:
        claims = store.list_claims(agent_id="crossover")
        assert claims and all(c.state is ClaimState.FILLED for c in claims)
        assert {c.kind.value for c in claims} == {"entry", "exit"}  # plain sells became guarded exits


def test_the_live_view_draws_positions_progress_and_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    settings = RunSettings(
        strategy="strategies.momentum",
        bars="seed:3",
        store_url=f"sqlite:///{tmp_path / 'claims.db'}",
        view=ViewKind.LIVE,
    )
    out = io.StringIO()
    report = prepare(settings, environ={}, out=out).run()
    text = out.getvalue()
    assert report.exit_status == 0
    assert "\x1b[" in text  # drawn for a terminal
    for piece in ("positions: guard vs broker", "390/390 bars", "last decisions:", "reconcile:", "summary:"):
        assert piece in text


def test_a_strategy_that_raises_stops_the_run_cleanly_with_exit_status_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bot = tmp_path / "clumsy.py"
    bot.write_text(
        "from tradeguard import Strategy\n\n"
        "class Clumsy(Strategy):\n"
        "    symbols = ('QQQ', 'TQQQ')\n\n"
        "    def on_bar(self, bars, ctx):\n"
        "        if ctx.gateway.position('TQQQ').is_flat:\n"
        "            ctx.gateway.enter('TQQQ', qty=6, intent=f'{bars.local:%H:%M} entry')\n"
        "        if bars.local.minute == 35:\n"
        "            raise RuntimeError('divided by a zero spread')\n"
    )
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    assert main(["run", str(bot), "--store", url, "--view", "plain"]) == 1
    captured = capsys.readouterr()
    assert "RuntimeError: divided by a zero spread" in captured.err  # the traceback, for the bot's author
    assert "stopped by: error: RuntimeError: divided by a zero spread after 5 bar(s)" in captured.out
    assert "TQQQ   guard 6 / broker 6  ok" in captured.out  # the position it took is still accounted for


def test_at_the_stop_an_order_still_unknown_is_looked_up_once_more(tmp_path: Path) -> None:
    from tradeguard import ManualClock, OrderGateway, Outcome
    from tradeguard.run.runner import settle_in_flight
    from tradeguard.testing import FaultyBroker

    clock = ManualClock()
    plan = FaultPlan.parse(
        "faults:\n"
        "  - {route: POST /v2/orders, nth: 1, action: accept_then_timeout, delay_secs: 1}\n"
        "  - {route: 'GET /v2/orders:by_client_order_id', nth: 1, action: error}\n"
    )
    broker = FaultyBroker(PaperBroker(clock=clock), plan, clock=clock)
    with ClaimStore(f"sqlite:///{tmp_path / 'claims.db'}", clock=clock) as store:
        gateway = OrderGateway(broker, store, agent_id="bot", clock=clock, reconcile_on_start=False)
        assert gateway.enter("TQQQ", qty=6, intent="09:42 buy").outcome is Outcome.UNKNOWN
        assert settle_in_flight(gateway) == 1
        (claim,) = store.list_claims(agent_id="bot")
        assert claim.state is ClaimState.FILLED and store.position("bot", "TQQQ").qty == 6


def test_a_recorded_run_keeps_the_drills_outside_close_for_its_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record -> replay keeps what happened outside the bot (found by an adversarial run: the
    recording had no `external` event, so its replay never closed the position)."""
    from replay import Mode, replay_session
    from tradeguard import open_session
    from tradeguard.sessions.model import ExternalEvent

    monkeypatch.chdir(ROOT)
    session = tmp_path / "run.jsonl"
    settings = RunSettings(
        strategy="strategies.momentum",
        store_url=f"sqlite:///{tmp_path / 'claims.db'}",
        close_outside=("SQQQ@11:44",),
        record=str(session),
        view=ViewKind.PLAIN,
    )
    report = prepare(settings, environ={}, out=io.StringIO()).run()
    assert report.exit_status == 0
    with open_session(session) as events:
        external = [e for _, e in events if isinstance(e, ExternalEvent)]
    assert [(e.symbol, e.event) for e in external] == [("SQQQ", "position_closed")]
    result = replay_session(session, [Mode.FULL], collect_rows=True)
    closes = [r for r in result.rows if r.kind == "external"]
    assert [(r.symbol, r.t) for r in closes] == [(external[0].symbol, external[0].t)]
    assert result.totals[Mode.FULL].untracked_shares_at_end == {}
