"""Recording: what the gateway sees is written live, replays to the same figures, and never fails an order."""

from __future__ import annotations

import io
import json
import logging
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
    SessionFormatError,
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
        ("price", None),  # its fill's price, handed on by the reader from the resolution
        ("resolution", None),  # then found by client_order_id: placed after all
        ("attempt", None),  # the retry: no broker call, so the guard's own answer
        ("answer", "blocked"),
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


def record_a_drop_in_retry(path: Path) -> None:
    """A drop-in bot sends one order with its own client_order_id twice, recorded to `path`."""
    alpaca = pytest.importorskip("alpaca.trading.requests")
    clock = ManualClock()
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


def test_the_drop_in_client_passes_record_to_through(tmp_path: Path) -> None:
    path = tmp_path / "client.jsonl"
    record_a_drop_in_retry(path)
    with open_session(path) as session:
        attempts = [e for _, e in session if isinstance(e, AttemptEvent)]
    assert [(a.decision, a.attempt, a.client_order_id) for a in attempts] == [
        ("coid:b-1", 1, "b-1"),
        ("coid:b-1", 2, "b-1"),
    ]


def test_re_recording_a_drop_in_session_keeps_the_bots_own_client_order_ids(tmp_path: Path) -> None:
    first = tmp_path / "client.jsonl"
    record_a_drop_in_retry(first)
    again = tmp_path / "again.jsonl"
    replay_session(first, [Mode.FULL], record_to=again)
    with open_session(again) as session:
        attempts = [e for _, e in session if isinstance(e, AttemptEvent)]
    assert [a.client_order_id for a in attempts] == ["b-1", "b-1"]
    assert figures(again) == figures(first)


def test_an_exit_the_gateway_re_sends_after_a_422_is_one_attempt_and_replays(tmp_path: Path) -> None:
    # The gateway answers an exit refused for its position by reconciling at once and re-sending
    # it: two broker answers inside one bot attempt. The first is the attempt's answer; the
    # re-send is the guard's own, kept as a note (an `attempt` line would replay as a retry the
    # bot never made, a duplicate in the unguarded modes).
    clock = ManualClock()
    plan = FaultPlan.parse(
        "faults: [{route: POST /v2/orders, match: {side: sell}, nth: 1, action: reject, status: 422,"
        " body: {code: 42210000, message: 'position intent mismatch, inferred: sell_to_open'}}]"
    )
    path = tmp_path / "resend.jsonl"
    broker = FaultyBroker(PaperBroker(clock=clock), plan, clock=clock)
    gateway = OrderGateway(broker, MemoryClaimStore(clock=clock), agent_id="bot", clock=clock, record_to=path)
    assert gateway.enter("TQQQ", qty=6, intent="e1").outcome is Outcome.SUBMITTED
    assert gateway.exit("TQQQ", intent="x1").outcome is Outcome.SUBMITTED
    gateway.close()
    with open_session(path) as session:
        events = [event for _, event in session]
    assert [(e.decision, e.attempt, e.result) for e in events if isinstance(e, AnswerEvent)] == [
        ("e1", 1, "filled"),
        ("x1", 1, "rejected"),
    ]
    (note,) = [e for e in events if e.type == "note"]
    assert note.tag == "guard_resend" and note.symbol == "TQQQ"
    assert note.text.startswith("tradeguard re-sent decision 'x1' attempt 1 itself") and "filled" in note.text
    result = replay_session(path, list(Mode))
    for totals in result.totals.values():
        assert (totals.attempts, totals.orders_placed, totals.duplicate_attempts) == (2, 2, 0)
    # Recorded again while replaying, it replays to the same figures.
    again = tmp_path / "again.jsonl"
    replay_session(path, [Mode.FULL], record_to=again)
    assert figures(again) == figures(path)


def test_a_faulty_run_recorded_with_record_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tradeguard.cli import main

    session = tmp_path / "run.jsonl"
    args = [
        "run", "strategies.momentum", "--faults", str(ROOT / "strategies" / "may21-faults.yaml"),
        "--close-outside", "SQQQ@11:44", "--view", "plain", "--record", str(session),
        "--store", f"sqlite:///{tmp_path / 'run.db'}",
    ]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    assert '"guard_resend"' in session.read_text()  # the 10:09 exit refused with 422, re-sent
    assert main(["replay", str(session), "--compare", "--json"]) == 0
    figures_ = json.loads(capsys.readouterr().out)
    # The guard sent nothing twice in the run, and replays so; the bot's own retries after lost
    # answers are duplicates only where nothing guards them (more of them alone: its retry after
    # the 500 that placed nothing, which the guard held back until the order was proven absent,
    # places the order, and the retries after it are duplicates).
    assert figures_["full"]["duplicate_orders_sent"] == 0
    assert figures_["entry-only"]["duplicate_orders_sent"] == 0
    assert figures_["full"]["duplicate_attempts_blocked"] == figures_["full"]["duplicate_attempts"] == 2
    assert figures_["none"]["duplicate_attempts"] == figures_["none"]["duplicate_orders_executed"] == 4


def test_claims_that_share_an_intent_name_are_recorded_as_separate_decisions(tmp_path: Path) -> None:
    # A flip names its exit and its entry on the other symbol alike: two claims, two decisions.
    clock = ManualClock()
    path = tmp_path / "flip.jsonl"
    gateway = OrderGateway(
        PaperBroker(clock=clock), MemoryClaimStore(clock=clock), agent_id="bot", clock=clock, record_to=path
    )
    gateway.enter("TQQQ", qty=12, intent="09:42 buy")
    gateway.exit("TQQQ", intent="09:49 flip")
    gateway.exit("TQQQ", intent="09:49 flip")  # a retry of the exit
    gateway.enter("SQQQ", qty=2, intent="09:49 flip")
    gateway.close()
    with open_session(path) as session:
        attempts = [(e.decision, e.attempt) for _, e in session if isinstance(e, AttemptEvent)]
    assert attempts == [
        ("09:42 buy", 1),
        ("09:49 flip", 1),
        ("09:49 flip", 2),
        ("09:49 flip (entry buy SQQQ)", 1),
    ]
    totals = replay_session(path, [Mode.NONE, Mode.FULL]).totals
    assert totals[Mode.NONE].duplicate_attempts == totals[Mode.FULL].duplicate_attempts_blocked == 1


def test_a_restart_recording_to_the_same_path_keeps_the_first_recording(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Audit 18 #6: the second run opened the path for writing and wiped the morning's record.
    path, state = tmp_path / "today.jsonl", tmp_path / "account.json"
    store = MemoryClaimStore()
    first = OrderGateway(PaperBroker(state_path=state), store, agent_id="bot", record_to=path)
    first.enter("SPY", qty=1, intent="09:42 breakout")
    first.close()
    morning = path.read_text()
    with caplog.at_level(logging.WARNING, logger="tradeguard.sessions.recorder"):
        again = OrderGateway(PaperBroker(state_path=state), store, agent_id="bot", record_to=path)
        again.enter("SPY", qty=1, intent="10:00 add")
        again.close()
    assert path.read_text() == morning
    later = tmp_path / "today.1.jsonl"
    assert "10:00 add" in later.read_text() and "09:42 breakout" not in later.read_text()
    assert f"recording to {later}: {path} already holds a recording" in caplog.text
    for recorded in (path, later):
        with open_session(recorded) as session:
            assert sum(1 for _ in session) >= 1


def test_two_bots_starting_at_once_never_record_to_the_same_file(tmp_path: Path) -> None:
    # Audit 18 (left then): the free name was checked, then opened later, so two bots started
    # together both chose today.1.jsonl and truncated and interleaved each other's lines. A name
    # chosen is now created at once: whoever chooses next gets the next one.
    from tradeguard.sessions.recorder import _free_path

    path = tmp_path / "today.jsonl"
    assert _free_path(path) == path and path.exists()  # taken by the first
    assert _free_path(path) == path  # still empty: a file made for recording, written as given
    path.write_text('{"version": 2}\n')
    assert Path(_free_path(path)) == tmp_path / "today.1.jsonl"
    assert Path(_free_path(path)) == tmp_path / "today.2.jsonl"
    assert Path(_free_path(path)) == tmp_path / "today.3.jsonl"


def test_a_recording_names_the_settings_it_ran_with_and_a_full_replay_uses_them(tmp_path: Path) -> None:
    # Audit 18 #7: only reconcile_interval_secs was written; a recording made with a 2 s grace
    # replayed under the 15 s default and decided otherwise than the live run.
    from replay.modes import FullGuard
    from tradeguard.config import Settings

    path = tmp_path / "live.jsonl"
    settings = Settings(unknown_grace_secs=2.0, unknown_probe_gap_secs=0.5, sqlite_busy_timeout_ms=5)
    gateway = OrderGateway(
        PaperBroker(), MemoryClaimStore(), agent_id="bot", settings=settings, record_to=path
    )
    gateway.enter("SPY", qty=1, intent="09:42 breakout")
    gateway.close()
    with open_session(path) as session:
        header = session.header
    assert header.settings == {"unknown_grace_secs": 2.0, "unknown_probe_gap_secs": 0.5}  # not the store's
    replayed = FullGuard(header).settings
    assert (replayed.unknown_grace_secs, replayed.unknown_probe_gap_secs) == (2.0, 0.5)
    assert replayed.reconcile_interval_secs == header.reconcile_interval_secs


@pytest.mark.parametrize(
    "settings",
    [
        '{"no_such_setting": 1}',
        '{"dedup_window_secs": 0.5}',
        '{"unknown_grace_secs": "2"}',  # review: a string crashed the full replay later
        '{"lease_secs": true}',
        '{"sqlite_busy_timeout_ms": 1.5}',
    ],
)
def test_a_header_with_settings_tradeguard_refuses_names_line_1(tmp_path: Path, settings: str) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(
        '{"type": "session", "version": 2, "start": "2026-05-21T09:30:00-04:00", "settings": '
        + settings
        + "}\n"
    )
    with pytest.raises(SessionFormatError, match=r"s\.jsonl:1: .*settings"):
        open_session(path).close()
