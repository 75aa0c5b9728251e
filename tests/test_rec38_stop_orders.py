"""rec38: stop, stop-limit and trailing-stop orders are recorded, replayed, and never end a recording.

The session model allowed only `market` and `limit` attempts, and the recorder stopped at its
first refused event: a bot whose exits were stops kept two attempt lines of a day's decisions,
and a replay had no stop prices to send (`tradeguard replay` refused the stop or sent it bare).
"""

from __future__ import annotations

import io
import json
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from replay import Mode, replay_session
from tradeguard import (
    AnswerEvent,
    AttemptEvent,
    AuditAction,
    AuditQuery,
    ManualClock,
    MemoryClaimStore,
    NoteEvent,
    OrderGateway,
    Outcome,
    PaperBroker,
    Recorder,
    open_session,
)
from tradeguard.cli import main
from tradeguard.run.barfile import shipped_day_path

ROOT = Path(__file__).resolve().parents[1]
MINUTES = 12

STRATEGY = '''
from decimal import Decimal

from tradeguard import Bars, OrderSpec, OrderType, Strategy, StrategyContext, TimeInForce

CENT = Decimal("0.01")


class StopExits(Strategy):
    """Enters three symbols on the first bar; leaves each with a stop order on the second."""

    symbols = ("QQQ", "SQQQ", "TQQQ")

    def __init__(self) -> None:
        self.bars = 0

    def on_bar(self, bars: Bars, ctx: StrategyContext) -> None:
        self.bars += 1
        gw = ctx.gateway
        if self.bars == 1:
            gw.enter("TQQQ", qty=6, intent="entry TQQQ")
            gw.enter("SQQQ", qty=20, intent="entry SQQQ")
            gw.enter("QQQ", qty=2, intent="entry QQQ")
        elif self.bars == 2:
            stop = (bars.close("TQQQ") - 2).quantize(CENT)
            gw.exit("TQQQ", intent="stop TQQQ", order_type="stop", stop_price=stop)
            gw.exit("TQQQ", intent="stop TQQQ", order_type="stop", stop_price=stop)  # a retry
            trail = OrderSpec(
                order_type=OrderType.TRAILING_STOP, time_in_force=TimeInForce.DAY,
                trail_percent=Decimal("1.5"),
            )
            gw.exit_order("SQQQ", trail, intent="trail SQQQ")
            stop = (bars.close("QQQ") - 5).quantize(CENT)
            gw.exit(
                "QQQ", intent="stop-limit QQQ", order_type="stop_limit", stop_price=stop,
                limit_price=stop - 1,
            )
        elif self.bars == 4:
            spec = OrderSpec(
                qty=Decimal(5), order_type=OrderType.TRAILING_STOP, time_in_force=TimeInForce.GTC,
                trail_price=Decimal("0.75"),
            )
            gw.exit_order("SQQQ", spec, intent="trail SQQQ again")  # nothing left to sell: skipped
            gw.enter("TQQQ", qty=3, intent="add TQQQ")  # refused: a wash trade against the stop
'''


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "TRADEGUARD_CONFIG", "TRADEGUARD_MODE"):
        monkeypatch.delenv(name, raising=False)


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, list[dict[str, str]]]:
    """Run the strategy in sim with --record; return the session and the run's claims."""
    strategy = tmp_path / "stop_exits.py"
    strategy.write_text(textwrap.dedent(STRATEGY))
    bars = tmp_path / "bars.csv"
    bars.write_text("\n".join(shipped_day_path().read_text().splitlines()[: 1 + 3 * MINUTES]) + "\n")
    session, store = tmp_path / "sl.jsonl", f"sqlite:///{tmp_path / 'run.db'}"
    args = ["run", str(strategy), "--bars", str(bars), "--record", str(session), "--view", "plain"]
    assert main([*args, "--store", store]) == 0
    capsys.readouterr()
    assert main(["claims", "list", "--all", "--store", store, "--format", "json"]) == 0
    return session, json.loads(capsys.readouterr().out)


def test_a_run_with_stop_exits_records_every_attempt_and_replays_to_its_own_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session, claims = _run(tmp_path, capsys)
    with open_session(session) as reading:
        events = [event for _, event in reading]
    attempts = [e for e in events if isinstance(e, AttemptEvent)]
    # Every call the strategy made, its stops with their prices (the recording went on past them).
    assert [(a.decision, a.attempt, a.order_type) for a in attempts] == [
        ("entry TQQQ", 1, "market"),
        ("entry SQQQ", 1, "market"),
        ("entry QQQ", 1, "market"),
        ("stop TQQQ", 1, "stop"),
        ("stop TQQQ", 2, "stop"),
        ("trail SQQQ", 1, "trailing_stop"),
        ("stop-limit QQQ", 1, "stop_limit"),
        ("trail SQQQ again", 1, "trailing_stop"),
        ("add TQQQ", 1, "market"),
    ]
    by_name = {a.decision: a for a in attempts}
    assert by_name["stop TQQQ"].stop_price is not None and by_name["stop TQQQ"].limit_price is None
    assert by_name["trail SQQQ"].trail_percent == Decimal("1.5") and by_name["trail SQQQ"].trail_price is None
    assert by_name["trail SQQQ again"].trail_price == Decimal("0.75")
    assert by_name["trail SQQQ again"].time_in_force == "gtc"
    stop_limit = by_name["stop-limit QQQ"]
    assert stop_limit.stop_price is not None and stop_limit.limit_price == stop_limit.stop_price - 1
    answers = {(e.decision, e.attempt): e.result for e in events if isinstance(e, AnswerEvent)}
    placed = [answers[(name, 1)] for name in ("stop TQQQ", "trail SQQQ", "stop-limit QQQ")]
    assert placed == ["accepted"] * 3  # resting at the broker
    assert answers[("stop TQQQ", 2)] == answers[("trail SQQQ again", 1)] == "blocked"
    assert not [e for e in events if isinstance(e, NoteEvent) and e.tag == "unrecorded"]

    result = replay_session(session, list(Mode))
    full = result.totals[Mode.FULL]
    sent = [c for c in claims if c["broker_order_id"]]
    # Six orders placed; the add was refused by the broker (a buy against the resting sell stop:
    # Alpaca's "potential wash trade"), in the run as in the replay.
    assert full.attempts == len(attempts) and full.orders_placed == len(sent) == 6
    assert (full.duplicate_attempts, full.duplicate_attempts_blocked, full.duplicate_orders_sent) == (1, 1, 0)
    assert full.untracked_shares_at_end == {}
    # The replay's guard made the run's decisions, each to the run's state, under the run's ids.
    simulation = result.simulations[Mode.FULL]
    replayed = simulation.gateway.store.list_claims(agent_id=result.header.agent_id)  # type: ignore[attr-defined]
    assert sorted((c.client_order_id, c.intent, c.state.value) for c in replayed) == sorted(
        (c["client_order_id"], c["intent"], c["state"]) for c in claims
    )
    # Every mode sent the stops as recorded: resting at the broker with their prices and trails.
    for mode in Mode:
        paper = result.simulations[mode].paper
        resting = {
            (o.symbol, o.order_type.value, o.stop_price, o.limit_price, o.trail_percent)
            for o in paper.list_orders(status="open")
        }
        trail_stop = next(o.stop_price for o in paper.list_orders(status="open") if o.symbol == "SQQQ")
        assert resting == {
            ("TQQQ", "stop", by_name["stop TQQQ"].stop_price, None, None),
            ("SQQQ", "trailing_stop", trail_stop, None, Decimal("1.5")),
            ("QQQ", "stop_limit", stop_limit.stop_price, stop_limit.limit_price, None),
        }, mode
    # And the command line replays it too (exit 0).
    assert main(["replay", str(session), "--json"]) == 0


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"order_type": "stop"}, "stop_price goes with order_type stop or stop_limit"),
        ({"order_type": "stop_limit", "stop_price": "70"}, "limit_price goes with order_type limit or"),
        ({"order_type": "limit", "limit_price": "70", "stop_price": "69"}, "stop_price goes with"),
        ({"order_type": "trailing_stop"}, "a trailing_stop needs trail_price or trail_percent"),
        ({"order_type": "trailing_stop", "trail_price": "1", "trail_percent": "2"}, "a trailing_stop needs"),
        ({"order_type": "market", "trail_percent": "2"}, "trail_price and trail_percent go with"),
        ({"order_type": "trailing_stop", "trail_percent": "100"}, "trail_percent"),
    ],
    ids=[
        "stop-no-price",
        "stop-limit-no-limit",
        "limit-with-stop",
        "trail-none",
        "trail-both",
        "market-trail",
        "pct-100",
    ],
)
def test_a_stop_attempt_without_its_fields_is_refused_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fields: dict[str, str], expected: str
) -> None:
    header = {"type": "session", "version": 2, "start": "2026-05-21T09:30:00-04:00"}
    entry = {
        "type": "attempt", "t": "2026-05-21T09:31:00-04:00", "decision": "d1", "attempt": 1,
        "kind": "entry", "symbol": "TQQQ", "side": "buy", "qty": "6",
    }  # fmt: skip
    exit_ = {**entry, "t": "2026-05-21T09:32:00-04:00", "decision": "d2", "kind": "exit", "side": "sell"}
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in (header, entry, exit_ | fields)) + "\n")
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3: invalid attempt event: " in err and expected in err


def test_an_event_the_format_refuses_is_noted_and_the_recording_goes_on() -> None:
    # A bot's annotation the format refuses (a `path` that is neither `order` nor `exit`) made
    # this attempt unrecordable; the recorder used to stop there for the rest of the run.
    clock = ManualClock()
    store = MemoryClaimStore(clock=clock)
    stream = io.StringIO()
    recorder = Recorder(stream)
    paper = PaperBroker(clock=clock)
    gateway = OrderGateway(paper, store, agent_id="bot", clock=clock, record_to=recorder)
    with recorder.annotate(path="entries"):
        assert gateway.enter("TQQQ", qty=6, intent="e1").outcome is Outcome.SUBMITTED
    clock.advance(60)
    assert gateway.exit("TQQQ", intent="x1", order_type="stop", stop_price="90").outcome is Outcome.SUBMITTED
    assert gateway.enter("SQQQ", qty=5, intent="e2").outcome is Outcome.SUBMITTED
    recorder.close()
    # Every order went out; the recording kept going.
    assert sorted(o.client_order_id for o in paper.list_orders(status="all")) == sorted(
        c.client_order_id for c in store.list_claims()
    )
    assert recorder.failure is None and recorder.unrecorded == 1
    stream.seek(0)
    with open_session(stream, name="recorded") as reading:
        events = [event for _, event in reading]
    assert [(e.decision, e.attempt) for e in events if isinstance(e, AttemptEvent)] == [("x1", 1), ("e2", 1)]
    assert [(e.decision, e.result) for e in events if isinstance(e, AnswerEvent)] == [
        ("x1", "accepted"),
        ("e2", "filled"),
    ]
    notes = [e for e in events if isinstance(e, NoteEvent)]
    assert [n.tag for n in notes] == ["unrecorded", "unrecorded"]
    assert notes[0].text.startswith("tradeguard could not record attempt 1 of decision 'e1': ")
    assert "path: Input should be 'order' or 'exit'" in notes[0].text
    assert notes[1].text.startswith("answer to decision 'e1' attempt 1 (its attempt unrecorded): filled")
    errors = store.audit_records(AuditQuery(actions=(AuditAction.ERROR,)))
    assert [r.reason for r in errors] == [notes[0].text]
    # The file reads and replays; the hole is where the note says: the replay never entered e1,
    # so its stop exit has nothing to sell.
    stream.seek(0)
    full = replay_session(stream, [Mode.FULL]).totals[Mode.FULL]
    assert (full.attempts, full.orders_placed) == (2, 1)
