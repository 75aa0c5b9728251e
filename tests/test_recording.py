"""Recording: what the gateway sees is written live, replays to the same figures, and never fails an order."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from replay import Mode, replay_session
from tradeguard import (
    AnswerEvent,
    AttemptEvent,
    AuditAction,
    AuditQuery,
    GuardedTradingClient,
    ManualClock,
    MemoryClaimStore,
    OrderGateway,
    Outcome,
    PaperBroker,
    Recorder,
    open_session,
)
from tradeguard.testing import FaultPlan, FaultyBroker

ROOT = Path(__file__).resolve().parents[1]
MAY21 = ROOT / "sessions" / "2026-05-21-tqqq-sqqq.jsonl"


def figures(path: Path) -> dict[str, dict[str, object]]:
    result = replay_session(path, list(Mode))
    return {mode.value: {k: v for k, v in t.as_dict().items()} for mode, t in result.totals.items()}


def test_a_session_recorded_by_the_gateway_while_replaying_may21_replays_to_the_same_figures(
    tmp_path: Path,
) -> None:
    recorded = tmp_path / "recorded.jsonl"
    replay_session(MAY21, [Mode.FULL], record_to=recorded)
    with open_session(recorded) as session:
        assert session.header.start.isoformat() == "2026-05-21T09:30:00-04:00"
        events = [event for _, event in session]
    attempts = [e for e in events if isinstance(e, AttemptEvent)]
    assert len(attempts) == 23
    assert [a.attempt for a in attempts if a.decision.endswith("EXIT BULL TRAIL_EXIT TQQQ")] == [1, 2]
    lost = [e for e in events if isinstance(e, AnswerEvent) and e.result in {"timeout", "error"}]
    assert len(lost) == 7  # the six duplicates' lost first answers and the 11:26 reset
    assert figures(recorded) == figures(MAY21)


def test_the_gateway_records_attempts_answers_and_broker_reads_as_it_goes() -> None:
    clock = ManualClock()
    stream = io.StringIO()
    plan = FaultPlan.parse(
        "faults: [{route: POST /v2/orders, nth: 1, action: accept_then_timeout, delay_secs: 10}]"
    )
    broker = FaultyBroker(PaperBroker(clock=clock), plan, clock=clock)
    gateway = OrderGateway(
        broker, MemoryClaimStore(clock=clock), agent_id="bot", clock=clock, record_to=stream
    )
    assert gateway.enter("TQQQ", qty=6, intent="09:42 buy").outcome is Outcome.SUBMITTED
    assert gateway.enter("TQQQ", qty=6, intent="09:42 buy").outcome is Outcome.DUPLICATE
    gateway.exit("TQQQ", intent="11:26 exit")
    gateway.recorder.close()
    stream.seek(0)
    with open_session(stream, name="recorded") as session:
        assert session.header.agent_id == "bot"
        kinds = [(e.type, getattr(e, "result", None) or getattr(e, "view", None)) for _, e in session]
    assert kinds == [
        ("attempt", None),
        ("answer", "timeout"),  # the lost answer, recorded as the bot saw it
        ("attempt", None),  # the retry: no broker call, so no answer
        ("attempt", None),
        ("position", "broker"),  # the exit sized from the broker's position
        ("answer", "filled"),
        ("price", None),
    ]


class BrokenStream(io.StringIO):
    def write(self, text: str) -> int:
        if '"attempt"' in text:
            raise OSError(28, "No space left on device")
        return super().write(text)


def test_a_recording_failure_is_audited_and_the_order_goes_on() -> None:
    clock = ManualClock()
    store = MemoryClaimStore(clock=clock)
    recorder = Recorder(BrokenStream())
    gateway = OrderGateway(PaperBroker(clock=clock), store, agent_id="bot", clock=clock, record_to=recorder)
    result = gateway.enter("TQQQ", qty=6, intent="09:42 buy")
    assert result.outcome is Outcome.SUBMITTED and result.order is not None
    assert recorder.failure is not None and "No space left on device" in recorder.failure
    errors = store.audit_records(AuditQuery(actions=(AuditAction.ERROR,)))
    assert [r.reason for r in errors] == [
        f"session recording stopped, orders go on unrecorded: {recorder.failure}"
    ]
    assert (
        gateway.exit("TQQQ", intent="exit").outcome is Outcome.SUBMITTED
    )  # recording stays off, orders go on


def test_the_drop_in_client_passes_record_to_through(tmp_path: Path) -> None:
    alpaca = pytest.importorskip("alpaca.trading.requests")
    clock = ManualClock()
    path = tmp_path / "client.jsonl"
    client = GuardedTradingClient(
        "key", "secret", store=MemoryClaimStore(clock=clock), agent_id="bot", clock=clock,
        broker=PaperBroker(clock=clock), record_to=path,
    )  # fmt: skip
    order = alpaca.MarketOrderRequest(
        symbol="TQQQ", qty=6, side="buy", time_in_force="day", client_order_id="b-1"
    )
    client.submit_order(order)
    client.submit_order(order)
    client.gateway.recorder.close()
    with open_session(path) as session:
        attempts = [e for _, e in session if isinstance(e, AttemptEvent)]
    assert [(a.decision, a.attempt, a.client_order_id) for a in attempts] == [
        ("coid:b-1", 1, "b-1"),
        ("coid:b-1", 2, "b-1"),
    ]
