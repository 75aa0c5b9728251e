"""Record -> replay of lost answers: what the gateway later learns of a send is recorded and replayed.

A 5xx or a timeout leaves a send's fate unknown; the live gateway finds out later (the order found
by client_order_id, or absent on two probes after the grace period, or marked not sent by a
reconcile pass). The recording writes that as a `resolution` line and a replay places the order,
or not, as the broker did, so the replay's figures are the live run's.
"""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from replay import Mode, replay_session
from tradeguard import (
    AnswerEvent,
    AttemptEvent,
    ManualClock,
    MemoryClaimStore,
    OrderGateway,
    Outcome,
    PaperBroker,
    SessionFormatError,
    open_session,
)
from tradeguard.sessions.model import ResolutionEvent
from tradeguard.testing import FaultPlan, FaultyBroker, paper_server

ROOT = Path(__file__).resolve().parents[1]
MAY21 = ROOT / "sessions" / "2026-05-21-tqqq-sqqq.jsonl"


def figures(path: Path | io.StringIO, modes: list[Mode] | None = None) -> dict[str, dict[str, Any]]:
    result = replay_session(path, modes or list(Mode))
    return {mode.value: t.as_dict() for mode, t in result.totals.items()}


def counts(totals: dict[str, Any]) -> tuple[int, int, int]:
    """Orders placed, duplicate attempts, and those blocked."""
    return totals["orders_placed"], totals["duplicate_attempts"], totals["duplicate_attempts_blocked"]


def events_of(path: Path) -> list[Any]:
    with open_session(path) as session:
        return [event for _, event in session]


def gateway_with(plan: str, path: Path) -> tuple[OrderGateway, PaperBroker, ManualClock]:
    clock = ManualClock()
    paper = PaperBroker(clock=clock)
    broker = FaultyBroker(paper, FaultPlan.parse(plan), clock=clock)
    gateway = OrderGateway(broker, MemoryClaimStore(clock=clock), agent_id="bot", clock=clock, record_to=path)
    return gateway, paper, clock


def test_a_500_that_placed_nothing_replays_as_placed_by_the_resend_not_by_the_first_send(
    tmp_path: Path,
) -> None:
    path = tmp_path / "error-unplaced.jsonl"
    gateway, paper, clock = gateway_with(
        "faults: [{route: POST /v2/orders, nth: 1, action: error, status: 500}]", path
    )
    outcomes = []
    for wait in (0, 5, 5, 10):  # the bot retries every few seconds; the grace period is 15 s
        clock.advance(wait)
        outcomes.append(gateway.enter("TQQQ", qty=6, intent="10:07 entry").outcome)
    gateway.close()
    # Live: the 500 placed nothing; the guard said "not found yet" twice, then, the order absent
    # on two probes after the grace period, sent it again under its id: one order, no duplicate.
    assert outcomes == [Outcome.UNKNOWN, Outcome.UNKNOWN, Outcome.UNKNOWN, Outcome.SUBMITTED]
    assert len(paper.orders()) == 1

    full = figures(path)["full"]
    assert counts(full) == (1, 0, 0)  # the replay too

    events = events_of(path)
    (resolution,) = [e for e in events if isinstance(e, ResolutionEvent)]
    assert (resolution.decision, resolution.attempt, resolution.placed, resolution.by) == (
        "10:07 entry", 1, False, "probe",
    )  # fmt: skip
    answers = [(e.attempt, e.result, e.by) for e in events if isinstance(e, AnswerEvent)]
    assert answers == [(1, "error", None), (2, "blocked", "tradeguard"), (3, "blocked", "tradeguard"),
                       (4, "filled", None)]  # fmt: skip
    # Recorded again while replaying, it replays to the same figures.
    again = tmp_path / "again.jsonl"
    replay_session(path, [Mode.FULL], record_to=again)
    assert figures(again) == figures(path)


def test_a_500_after_the_order_was_placed_replays_as_placed(tmp_path: Path) -> None:
    path = tmp_path / "error-placed.jsonl"
    gateway, paper, clock = gateway_with(
        "faults: [{route: POST /v2/orders, nth: 1, action: accept_then_error, status: 500}]", path
    )
    first = gateway.enter("TQQQ", qty=6, intent="10:14 entry")
    clock.advance(3)
    retry = gateway.enter("TQQQ", qty=6, intent="10:14 entry")
    gateway.close()
    assert (first.outcome, retry.outcome) == (Outcome.SUBMITTED, Outcome.DUPLICATE)  # found by lookup
    assert len(paper.orders()) == 1

    events = events_of(path)
    (resolution,) = [e for e in events if isinstance(e, ResolutionEvent)]
    assert (resolution.attempt, resolution.placed, resolution.by) == (1, True, "lookup")
    assert resolution.order_id == paper.orders()[0].id

    full = figures(path)["full"]
    assert counts(full) == (1, 1, 1)
    assert figures(path)["none"]["duplicate_orders_executed"] == 1  # the bot alone sends its retry


def test_a_lost_answer_the_reconciler_marks_not_sent_replays_as_not_placed(tmp_path: Path) -> None:
    path = tmp_path / "reconciled.jsonl"
    gateway, paper, clock = gateway_with(
        "faults: [{route: POST /v2/orders, nth: 1, action: error, status: 503}]", path
    )
    assert gateway.enter("TQQQ", qty=6, intent="11:00 entry").outcome is Outcome.UNKNOWN
    clock.advance(60)  # the bot gives up; the reconciler's pass settles it
    gateway.reconcile()
    gateway.close()
    assert paper.orders() == []
    for mode, totals in figures(path).items():
        assert totals["orders_placed"] == 0, mode
    (resolution,) = [e for e in events_of(path) if isinstance(e, ResolutionEvent)]
    assert (resolution.placed, resolution.by) == (False, "reconcile")


def test_the_drop_in_client_over_http_records_a_500_that_placed_nothing(tmp_path: Path) -> None:
    # The audit's repro: alpaca-py's TradingClient swapped for the drop-in, the paper server over
    # HTTP, the first POST a 500 that places nothing; the bot retries d1 twice, then sends d2 and
    # retries it once. The broker ends with d2 only.
    requests = pytest.importorskip("alpaca.trading.requests")
    from alpaca.common.exceptions import APIError

    from tradeguard import GuardedTradingClient

    plan = FaultPlan.parse("faults: [{route: POST /v2/orders, nth: 1, action: error, status: 500}]")
    path = tmp_path / "client.jsonl"
    with paper_server(faults=plan) as server:
        client = GuardedTradingClient(
            "key", "secret", url_override=server.url, store=MemoryClaimStore(), record_to=path
        )
        d1 = requests.MarketOrderRequest(
            symbol="SPY", qty=5, side="buy", time_in_force="day", client_order_id="d1"
        )
        for _ in range(3):
            with pytest.raises(APIError):
                client.submit_order(d1)
        d2 = requests.MarketOrderRequest(
            symbol="SPY", qty=3, side="buy", time_in_force="day", client_order_id="d2"
        )
        client.submit_order(d2)
        client.submit_order(d2)
        client.close()
        at_broker = [o.client_order_id for o in server.broker.orders()]
    assert at_broker == ["d2"]

    full = figures(path)["full"]
    assert counts(full) == (1, 1, 1)
    assert full["duplicate_orders_executed"] == 0
    result = replay_session(path, [Mode.FULL], collect_rows=True)
    d1_outcomes = [row.outcomes[Mode.FULL] for row in result.rows if row.text.startswith("coid:d1")]
    assert [o.placed for o in d1_outcomes] == [False, False, False]  # type: ignore[union-attr]

    events = events_of(path)
    (resolution,) = [e for e in events if isinstance(e, ResolutionEvent)]
    assert (resolution.decision, resolution.attempt, resolution.placed) == ("coid:d1", 1, False)
    told = [(e.decision, e.attempt, e.result) for e in events if isinstance(e, AnswerEvent)]
    assert told == [  # the guard's own answers too: what the bot was told
        ("coid:d1", 1, "error"), ("coid:d1", 2, "blocked"), ("coid:d1", 3, "blocked"),
        ("coid:d2", 1, "filled"), ("coid:d2", 2, "blocked"),
    ]  # fmt: skip


def test_a_faulty_run_recorded_with_record_replays_to_the_runs_own_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `tradeguard run` on the May 21 fault plan: a 500 at 10:07 placed nothing, and the bot's
    # fourth attempt placed the order after the guard had waited out the grace period.
    from tradeguard.cli import main

    session = tmp_path / "run.jsonl"
    args = [
        "run", "strategies.momentum", "--faults", str(ROOT / "strategies" / "may21-faults.yaml"),
        "--close-outside", "SQQQ@11:44", "--view", "plain", "--record", str(session),
        "--store", f"sqlite:///{tmp_path / 'run.db'}",
    ]  # fmt: skip
    assert main(args) == 0
    summary = capsys.readouterr().out
    assert "orders sent: 102; retries and duplicates blocked: 4" in summary
    result = replay_session(session, [Mode.FULL], collect_rows=True)
    full = result.totals[Mode.FULL].as_dict()
    # Every order sent is at the replay's broker; of the four retries the guard held back, two were
    # duplicates (09:48, its order placed by the lost send) and two came before the 10:07 order,
    # which the 500 had not placed.
    assert full["orders_placed"] == 102
    held_back = [row.outcomes[Mode.FULL] for row in result.rows if row.kind == "attempt"]
    assert sum(not o.sent for o in held_back) == 4  # type: ignore[union-attr]
    assert (full["duplicate_attempts"], full["duplicate_attempts_blocked"]) == (2, 2)
    assert full["duplicate_orders_sent"] == 0
    at_1007 = [
        row.outcomes[Mode.FULL] for row in result.rows if row.text.startswith("2026-05-21 10:07 entry")
    ]
    assert [o.label for o in at_1007] == ["not placed (lost)", "not sent", "not sent", "placed"]  # type: ignore[union-attr]


def test_may21_replays_to_the_same_figures_and_its_recording_too(tmp_path: Path) -> None:
    recorded = tmp_path / "recorded.jsonl"
    replay_session(MAY21, [Mode.FULL], record_to=recorded)
    assert events_of(recorded)  # a version 2 file, read back
    with open_session(recorded) as session:
        assert session.header.version == 2
    assert figures(recorded) == figures(MAY21)


# -- the reader -------------------------------------------------------------------------------

HEADER = {"type": "session", "version": 2, "start": "2026-05-21T09:30:00-04:00"}


def attempt(t: str, n: int) -> dict[str, Any]:
    return {"type": "attempt", "t": f"2026-05-21T{t}-04:00", "decision": "d", "attempt": n,
            "kind": "entry", "symbol": "TQQQ", "side": "buy", "qty": "6"}  # fmt: skip


def answer(t: str, n: int, result: str, **extra: Any) -> dict[str, Any]:
    return {"type": "answer", "t": f"2026-05-21T{t}-04:00", "decision": "d", "attempt": n,
            "result": result, **extra}  # fmt: skip


def resolution(t: str, n: int, placed: bool) -> dict[str, Any]:
    return {"type": "resolution", "t": f"2026-05-21T{t}-04:00", "decision": "d", "attempt": n,
            "placed": placed}  # fmt: skip


def read(lines: list[dict[str, Any]]) -> list[tuple[int, Any]]:
    text = "".join(json.dumps(line) + "\n" for line in lines)
    with open_session(io.StringIO(text), name="s.jsonl") as session:
        return list(session)


def test_the_reader_hands_a_lost_answer_on_with_what_its_resolution_says() -> None:
    lines = [
        HEADER,
        attempt("10:07:00", 1),
        answer("10:07:00", 1, "error", status=500),
        attempt("10:07:05", 2),
        answer("10:07:05", 2, "blocked", by="tradeguard"),
        {"type": "note", "t": "2026-05-21T10:07:06-04:00", "text": "waiting"},
        resolution("10:07:20", 1, False),
        attempt("10:07:20", 3),
        answer("10:07:21", 3, "filled"),
    ]
    events = read(lines)
    assert [line for line, _ in events] == [2, 3, 4, 5, 6, 7, 8, 9]  # every line, in file order
    lost = events[1][1]
    assert isinstance(lost, AnswerEvent) and lost.placed is False
    assert isinstance(events[5][1], ResolutionEvent)
    # Unresolved, or in a version 1 file, placed stays unknown.
    assert read(lines[:4])[1][1].placed is None
    v1 = [{**HEADER, "version": 1}, attempt("10:07:00", 1), answer("10:07:00", 1, "timeout")]
    assert read(v1)[1][1].placed is None


@pytest.mark.parametrize(
    ("lines", "line", "expected"),
    [
        ([{**HEADER, "version": 1}, attempt("10:07:00", 1), answer("10:07:00", 1, "error"),
          resolution("10:07:20", 1, False)], 4, "a resolution event needs session format version 2"),
        ([HEADER, attempt("10:07:00", 1), answer("10:07:00", 1, "filled"), resolution("10:07:20", 1, True)],
         4, "resolves no lost answer"),
        ([HEADER, attempt("10:07:00", 1), answer("10:07:00", 1, "error"), resolution("10:17:01", 1, False)],
         4, "within 600 s, once"),
        ([HEADER, attempt("10:07:00", 1), answer("10:07:00", 1, "error"), resolution("10:07:20", 1, False),
          resolution("10:07:21", 1, True)], 5, "resolves no lost answer"),
        ([{**HEADER, "version": 3}], 1, "version 3 is not supported: this tradeguard reads 1 or 2"),
    ],
    ids=["version 1", "nothing lost", "too late", "twice", "version 3"],
)  # fmt: skip
def test_a_resolution_that_resolves_nothing_is_refused_naming_the_line(
    lines: list[dict[str, Any]], line: int, expected: str
) -> None:
    with pytest.raises(SessionFormatError) as caught:
        read(lines)
    assert caught.value.line == line
    assert expected in str(caught.value)


def test_a_lookup_failing_when_the_recording_ends_leaves_the_answer_unknown_and_raises_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "end.jsonl"
    gateway, _paper, _clock = gateway_with(
        "faults: [{route: POST /v2/orders, nth: 1, action: error, status: 500},"
        " {route: 'GET /v2/orders:by_client_order_id', nth: [1, 2], action: error, status: 503}]",
        path,
    )
    assert gateway.enter("TQQQ", qty=6, intent="e").outcome is Outcome.UNKNOWN
    gateway.close()  # its lookup is the plan's second 503
    events = events_of(path)
    assert not [e for e in events if isinstance(e, ResolutionEvent)]
    (lost,) = [e for e in events if isinstance(e, AnswerEvent)]
    assert (lost.result, lost.placed) == ("error", None)
    assert [e.type for e in events if isinstance(e, AttemptEvent)] == ["attempt"]
    assert gateway.recorder.failure is None


# -- the price a lost answer's fill tells ----------------------------------------------------


def test_a_lost_answer_found_filled_prices_the_retries_at_its_fill_not_the_paper_default(
    tmp_path: Path,
) -> None:
    # The audit's case: the first TQQQ order of the day times out although the broker filled it, the
    # first lookup fails, the retry finds it. No `price` line for TQQQ precedes it: the session
    # must carry the fill price the run looked up, or a replay values the blocked retries at $100.
    path = tmp_path / "lost-fill.jsonl"
    gateway, paper, clock = gateway_with(
        "faults: [{route: POST /v2/orders, nth: 1, action: accept_then_timeout},"
        " {route: 'GET /v2/orders:by_client_order_id', nth: 1, action: error, status: 503}]",
        path,
    )
    paper.set_price("TQQQ", "75.33")
    outcomes = []
    for wait in (0, 5, 5):
        clock.advance(wait)
        outcomes.append(gateway.enter("TQQQ", qty=6, intent="09:48 entry").outcome)
    gateway.close()
    assert outcomes[0] is Outcome.UNKNOWN and Outcome.DUPLICATE in outcomes[1:]
    assert len(paper.orders()) == 1

    written = [json.loads(line)["type"] for line in path.read_text().splitlines()]
    assert "price" not in written  # only the lookup learned the price: no fill was answered
    totals = figures(path)
    assert totals["full"]["duplicate_attempts_blocked"] == 2
    assert totals["full"]["exposure_blocked_usd"] == 903.96  # 2 x 6 x 75.33, not 2 x $600
    assert totals["none"]["duplicate_exposure_executed_usd"] == 903.96
    events = events_of(path)
    (resolution,) = [e for e in events if isinstance(e, ResolutionEvent)]
    assert (resolution.placed, resolution.by, resolution.symbol) == (True, "lookup", "TQQQ")
    assert (resolution.filled_qty, resolution.filled_avg_price) == (6, Decimal("75.33"))
    # Recorded again while replaying, it replays to the same figures.
    again = tmp_path / "again.jsonl"
    replay_session(path, [Mode.FULL], record_to=again)
    assert figures(again) == totals


def test_the_drop_in_client_records_the_fill_price_of_a_lost_answer_it_finds(tmp_path: Path) -> None:
    requests = pytest.importorskip("alpaca.trading.requests")
    from alpaca.common.exceptions import APIError

    from tradeguard import GuardedTradingClient

    plan = FaultPlan.parse(
        "faults: [{route: POST /v2/orders, nth: 1, action: accept_then_error, status: 502},"
        " {route: 'GET /v2/orders:by_client_order_id', nth: 1, action: error, status: 503}]"
    )
    path = tmp_path / "client-fill.jsonl"
    with paper_server(faults=plan) as server:
        server.broker.set_price("SPY", "512.40")
        client = GuardedTradingClient(
            "key", "secret", url_override=server.url, store=MemoryClaimStore(), record_to=path
        )
        order = requests.MarketOrderRequest(
            symbol="SPY", qty=5, side="buy", time_in_force="day", client_order_id="d1"
        )
        with pytest.raises(APIError):
            client.submit_order(order)
        client.submit_order(order)  # the guard finds d1 placed: the retry sends nothing
        client.close()
        assert [o.client_order_id for o in server.broker.orders()] == ["d1"]

    full = figures(path)["full"]
    assert full["duplicate_attempts_blocked"] == 1
    assert full["exposure_blocked_usd"] == 2562.0  # 5 x 512.40, not 5 x $100
    (resolution,) = [e for e in events_of(path) if isinstance(e, ResolutionEvent)]
    assert (resolution.placed, resolution.filled_avg_price) == (True, Decimal("512.40"))


def test_the_reader_prices_a_symbol_from_a_lost_answer_found_filled() -> None:
    filled = {
        **resolution("09:49:20", 1, True),
        "symbol": "TQQQ",
        "filled_qty": "6",
        "filled_avg_price": "75.33",
    }
    lines = [
        HEADER,
        attempt("09:49:00", 1),
        answer("09:49:10", 1, "timeout"),
        attempt("09:49:15", 2),
        answer("09:49:15", 2, "blocked", by="tradeguard"),
        filled,
    ]
    events = read(lines)
    assert [(line, e.type) for line, e in events] == [
        (2, "attempt"), (3, "answer"), (6, "price"), (4, "attempt"), (5, "answer"), (6, "resolution"),
    ]  # fmt: skip
    lost, price = events[1][1], events[2][1]
    assert (lost.placed, lost.filled_qty, lost.filled_avg_price) == (True, 6, Decimal("75.33"))
    assert (price.t, price.symbol, price.price) == (lost.t, "TQQQ", Decimal("75.33"))


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"placed": False, "symbol": "TQQQ", "filled_avg_price": "75.33"}, "go with placed true only"),
        ({"filled_avg_price": "75.33"}, "needs the symbol it prices"),
    ],
    ids=["not placed", "no symbol"],
)
def test_a_resolution_with_a_fill_that_cannot_be_is_refused(extra: dict[str, Any], expected: str) -> None:
    lines = [HEADER, attempt("09:49:00", 1), answer("09:49:10", 1, "timeout"),
             {**resolution("09:49:20", 1, True), **extra}]  # fmt: skip
    with pytest.raises(SessionFormatError) as caught:
        read(lines)
    assert caught.value.line == 4
    assert expected in str(caught.value)
