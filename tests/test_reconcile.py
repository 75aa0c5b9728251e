"""Reconciler against a real store and paper broker: phantoms, unknown claims, crashes (G2, G4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests.gateway_kit import MAY21_PRICES, broker_qty, make_gateway
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import BrokerPosition
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import OutcomeUnknown
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.reconcile import ActionKind
from tradeguard.store import AuditQuery, ClaimStore
from tradeguard.testing import RecordingBroker

ROOT = Path(__file__).resolve().parents[1]


class StalePositions(RecordingBroker[PaperBroker]):
    """Alpaca's positions endpoint lags fills by seconds: serve one stale read per symbol."""

    stale: dict[str, BrokerPosition]

    def get_position(self, symbol: str) -> BrokerPosition | None:
        current = super().get_position(symbol)
        return self.stale.pop(symbol, current)


class FailingPositions(RecordingBroker[PaperBroker]):
    """A positions read that times out."""

    def list_positions(self) -> list[BrokerPosition]:
        raise OutcomeUnknown("GET /v2/positions timed out", status_code=None)


def test_may21_phantom_sqqq_exit_rejected_422_is_cleared_in_one_pass(store_url: str) -> None:
    gw, spy = make_gateway(store_url)
    gw.enter("SQQQ", qty=2, intent="11:06 add")
    spy.inner.close_position("SQQQ")  # closed outside the bot: the broker is flat now
    stale = StalePositions(spy.inner)
    stale.stale = {"SQQQ": BrokerPosition("SQQQ", Decimal(2), Decimal(2))}
    gw.broker = stale
    gw.reconciler.broker = stale
    result = gw.exit("SQQQ", intent="11:40 exit")
    assert result.outcome is Outcome.REJECTED
    assert result.error is not None and result.error.status_code == 422
    assert "position intent mismatch" in result.error.message
    assert gw.position("SQQQ").qty == 0
    cleared = gw.store.audit_count(AuditQuery(actions=("reconcile",), symbol="SQQQ"))
    assert cleared == 1
    entry = gw.enter("SQQQ", qty=2, intent="11:45 entry")
    assert entry.outcome is Outcome.SUBMITTED and broker_qty(spy, "SQQQ") == 2
    gw.store.close()


def test_exit_refused_while_broker_still_holds_goes_through_resized(store_url: str) -> None:
    gw, spy = make_gateway(store_url)
    gw.enter("SQQQ", qty=10, intent="entry")
    spy.inner.close_position("SQQQ", qty=Decimal(4))  # 6 left at the broker, ledger says 10
    stale = StalePositions(spy.inner)
    stale.stale = {"SQQQ": BrokerPosition("SQQQ", Decimal(10), Decimal(10))}
    gw.broker = stale
    gw.reconciler.broker = stale
    result = gw.exit("SQQQ", intent="exit all")
    assert result.outcome is Outcome.SUBMITTED, result.reason
    assert stale.requests[-1].qty == 6 and stale.requests[-1].position_intent == "sell_to_close"
    assert broker_qty(spy, "SQQQ") == 0
    gw.store.close()


def test_failed_positions_read_aborts_the_pass_and_changes_nothing(store_url: str) -> None:
    gw, spy = make_gateway(store_url)
    gw.enter("SQQQ", qty=2, intent="entry")
    spy.inner.close_position("SQQQ")
    failing = FailingPositions(spy.inner)
    gw.reconciler.broker = failing
    before = gw.store.positions(gw.agent_id)
    report = gw.reconcile()
    assert report.aborted is not None and report.applied == []
    assert gw.store.positions(gw.agent_id) == before
    assert gw.store.audit_count(AuditQuery(actions=("error",))) == 1
    gw.store.close()


def test_a_second_pass_right_after_the_first_finds_nothing(store_url: str) -> None:
    gw, spy = make_gateway(store_url)
    gw.enter("SQQQ", qty=2, intent="entry")
    gw.enter("TQQQ", qty=3, intent="entry")
    spy.inner.close_position("SQQQ")
    first = gw.reconcile()
    assert [a.kind for a in first.changes] == [ActionKind.CLEAR_PHANTOM]
    second = gw.reconcile()
    assert second.changes == [] and second.actions == []
    gw.store.close()


def test_dry_run_changes_nothing(store_url: str) -> None:
    gw, spy = make_gateway(store_url)
    gw.enter("SQQQ", qty=2, intent="entry")
    spy.inner.close_position("SQQQ")
    report = gw.reconcile(dry_run=True)
    assert [a.kind for a in report.actions] == [ActionKind.CLEAR_PHANTOM]
    assert gw.store.position(gw.agent_id, "SQQQ").qty == 2
    gw.store.close()


def test_orphans_are_reported_and_adopted_only_when_asked(store_url: str) -> None:
    gw, spy = make_gateway(store_url)
    from tradeguard.domain import OrderRequest, Side

    spy.inner.submit_order(OrderRequest("QQQ", Side.BUY, "manual-1", qty=Decimal(3)))
    report = gw.reconcile()
    assert [a.kind for a in report.actions] == [ActionKind.REPORT_ORPHAN]
    assert gw.store.position(gw.agent_id, "QQQ").qty == 0
    adopted = gw.reconciler.run(adopt_orphans_to=gw.agent_id)
    assert [a.kind for a in adopted.changes] == [ActionKind.ADOPT_ORPHAN]
    assert gw.store.position(gw.agent_id, "QQQ").qty == 3
    gw.store.close()


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_accept", "after_claim"])
def test_crash_around_the_send_is_resolved_by_one_pass_and_never_sends_twice(
    store_url: str, tmp_path: Path, point: str
) -> None:
    state, ready = tmp_path / "paper.json", tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_worker", store_url, str(state), str(ready), point],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None, "worker died before reaching the crash point"
        assert time.monotonic() < deadline, "worker never reached the crash point"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    clock = ManualClock(start=ManualClock().now().replace(year=2030))  # far past the worker's lease
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock, state_path=state)
    store = ClaimStore(store_url, clock=clock)
    (claim,) = store.list_claims()
    assert claim.state is ClaimState.PENDING
    spy = RecordingBroker(paper)
    gw = OrderGateway(spy, store, agent_id="crash-bot", clock=clock)
    retry = gw.enter("TQQQ", qty=6, intent="09:42 breakout")
    orders = paper.orders()
    if point == "after_accept":
        # The start-up pass adopted the accepted order; the retry is a duplicate.
        assert retry.outcome is Outcome.DUPLICATE
        assert gw.store.get(claim.key).state is ClaimState.FILLED  # type: ignore[union-attr]
        assert spy.requests == []
    else:
        # Never sent: the start-up pass proves it absent (after the grace) and marks it NOT_SENT;
        # the retry sends it with the same client_order_id.
        assert retry.outcome is Outcome.SUBMITTED
        assert [r.client_order_id for r in spy.requests] == [claim.client_order_id]
    assert len(orders) == 1 and orders[0].client_order_id == claim.client_order_id
    assert gw.position("TQQQ").qty == 6
    store.close()


def test_unknown_claim_stays_unknown_until_broker_evidence(store_url: str) -> None:
    clock = ManualClock()
    gw, spy = make_gateway(store_url, clock=clock)

    class LostResponse(RecordingBroker[PaperBroker]):
        def submit_order(self, request):  # type: ignore[no-untyped-def]
            super().submit_order(request)
            raise OutcomeUnknown("read timed out", status_code=None)

        def get_order_by_client_id(self, client_order_id):  # type: ignore[no-untyped-def]
            raise OutcomeUnknown("lookup timed out", status_code=None)

    lost = LostResponse(spy.inner)
    gw.broker = lost
    gw.reconciler.broker = lost
    first = gw.enter("TQQQ", qty=6, intent="09:42 buy")
    assert first.outcome is Outcome.UNKNOWN
    clock.advance(timedelta(hours=3).total_seconds())  # time alone resolves nothing (G2)
    report = gw.reconcile()
    assert report.aborted is not None
    assert gw.store.get(first.claim.key).state is ClaimState.UNKNOWN  # type: ignore[union-attr]
    gw.broker = spy
    gw.reconciler.broker = spy
    gw.reconcile()
    assert gw.store.get(first.claim.key).state is ClaimState.FILLED  # type: ignore[union-attr]
    assert len(spy.inner.orders()) == 1
    gw.store.close()


def test_reconcile_if_due_runs_once_per_interval_in_the_callers_loop(sqlite_url: str) -> None:
    clock = ManualClock()
    gw, spy = make_gateway(sqlite_url, clock=clock)
    gw.enter("SQQQ", qty=2, intent="entry")  # the start-up pass runs here
    spy.inner.close_position("SQQQ")
    assert gw.reconcile_if_due() is None  # not due yet: the phantom waits for the interval
    assert gw.store.position(gw.agent_id, "SQQQ").qty == 2
    clock.advance(gw.settings.reconcile_interval_secs)
    report = gw.reconcile_if_due()
    assert report is not None and [a.kind for a in report.changes] == [ActionKind.CLEAR_PHANTOM]
    assert gw.reconcile_if_due() is None
    gw.store.close()


def test_background_reconciler_clears_a_phantom_from_its_thread(sqlite_url: str) -> None:
    from tradeguard.reconcile import BackgroundReconciler

    settings = Settings(
        recent_activity_secs=0, settle_delay_secs=0, unknown_probe_gap_secs=0, position_settle_secs=0
    )
    gw, spy = make_gateway(sqlite_url, settings=settings)
    gw.enter("SQQQ", qty=2, intent="entry")
    spy.inner.close_position("SQQQ")
    with BackgroundReconciler(gw.reconciler, agent_id=gw.agent_id, interval_secs=0.01) as loop:
        deadline = time.monotonic() + 30
        while gw.store.position(gw.agent_id, "SQQQ").qty != 0:
            assert time.monotonic() < deadline, "the background pass never ran"
            time.sleep(0.01)
    assert loop.last_report is not None
    gw.store.close()


def _seconds_until_flat(gw: OrderGateway, clock: ManualClock, symbol: str, *, limit: int = 600) -> float:
    """Drive a bot loop calling `reconcile_if_due` once a second; return when the ledger went flat."""
    start = clock.now()
    for _ in range(limit):
        if gw.store.position(gw.agent_id, symbol).is_flat:
            return (clock.now() - start).total_seconds()
        clock.advance(1)
        gw.reconcile_if_due()
    raise AssertionError(f"{symbol} never converged")


G4_SETTINGS = Settings(
    recent_activity_secs=0, position_settle_secs=30, settle_delay_secs=2, reconcile_interval_secs=60
)


def test_a_phantom_appearing_just_after_a_pass_is_cleared_within_one_interval(sqlite_url: str) -> None:
    # G4: the pass that reads it confirms it a settle delay later; passes start that much sooner.
    clock = ManualClock()
    gw, spy = make_gateway(sqlite_url, clock=clock, settings=G4_SETTINGS)
    gw.enter("SQQQ", qty=2, intent="entry")
    clock.advance(G4_SETTINGS.position_settle_secs)
    gw.reconcile()  # a full pass, as a bot's loop runs them
    spy.inner.close_position("SQQQ")  # just after that pass read the broker

    assert _seconds_until_flat(gw, clock, "SQQQ") <= G4_SETTINGS.reconcile_interval_secs
    gw.store.close()


def test_a_phantom_put_off_by_a_recent_fill_is_looked_at_again_when_its_wait_ends(sqlite_url: str) -> None:
    clock = ManualClock()
    gw, spy = make_gateway(sqlite_url, clock=clock, settings=G4_SETTINGS)
    gw.enter("QQQ", qty=1, intent="other")  # the start-up pass runs here
    clock.advance(G4_SETTINGS.reconcile_every_secs - 5)
    gw.enter("SQQQ", qty=2, intent="entry")
    spy.inner.close_position("SQQQ")  # the next pass (in 5 s) puts SQQQ off: its fill is recent

    assert _seconds_until_flat(gw, clock, "SQQQ") <= G4_SETTINGS.reconcile_interval_secs
    gw.store.close()
