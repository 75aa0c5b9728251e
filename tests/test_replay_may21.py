"""The May 21 session replayed in three guard modes gives its known figures (sessions/README.md).

`entry-only` is what happened that day (the published guard) and `full` is tradeguard; both give
MAY21.md's table. `none` gives what the paper broker, holding Alpaca's rules, makes of the
unguarded bot: the two duplicate sells that would cross through zero are refused there.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from replay import Mode, replay_session
from replay.cli import result_json
from replay.demo import may21_comparison
from tradeguard import SessionFormatError

ROOT = Path(__file__).resolve().parents[1]
MAY21 = ROOT / "sessions" / "2026-05-21-tqqq-sqqq.jsonl"
INTERVAL_SECS = 60  # the session header's reconcile_interval_secs

EXPECTED = {
    Mode.NONE: {
        "duplicate_attempts": 7,
        "duplicate_orders_sent": 7,  # every duplicate reached the broker: MAY21.md's 7
        "duplicate_exposure_sent_usd": 4560.22,  # MAY21.md's $3,653 plus the exit's $907.20
        "duplicate_orders_executed": 5,
        "duplicate_exposure_executed_usd": 2303.02,
        "duplicate_attempts_blocked": 0,
        "exposure_blocked_usd": 0.00,
        "duplicate_attempts_refused_by_broker": 2,
        "unintended_short_shares": 0,
        "untracked_shares_at_end": {"TQQQ": 6},
    },
    Mode.ENTRY_ONLY: {
        "duplicate_attempts": 7,
        "duplicate_orders_sent": 1,  # the exit
        "duplicate_exposure_sent_usd": 907.20,
        "duplicate_orders_executed": 1,  # the exit
        "duplicate_exposure_executed_usd": 907.20,  # 12 x 75.60, the exit's notional
        "duplicate_attempts_blocked": 6,
        "exposure_blocked_usd": 3653.02,  # MAY21.md's $3,653
        "duplicate_attempts_refused_by_broker": 0,
        "unintended_short_shares": -12,
        "untracked_shares_at_end": {"TQQQ": -12},
    },
    Mode.FULL: {
        "duplicate_attempts": 7,
        "duplicate_orders_sent": 0,
        "duplicate_exposure_sent_usd": 0.00,
        "duplicate_orders_executed": 0,
        "duplicate_exposure_executed_usd": 0.00,
        "duplicate_attempts_blocked": 7,
        "exposure_blocked_usd": 4560.22,  # the six and the exit
        "duplicate_attempts_refused_by_broker": 0,
        "unintended_short_shares": 0,
        "untracked_shares_at_end": {},
    },
}


@pytest.fixture(scope="module")
def may21() -> dict[Mode, dict[str, object]]:
    result = replay_session(MAY21, list(Mode), collect_rows=True)
    docs = result_json(result, list(Mode), compare=True)
    return {mode: docs[mode.value] for mode in Mode}


@pytest.mark.parametrize("mode", list(Mode))
def test_each_mode_gives_its_figures(may21: dict[Mode, dict[str, object]], mode: Mode) -> None:
    figures = may21[mode]
    assert {key: figures[key] for key in EXPECTED[mode]} == EXPECTED[mode]


@pytest.mark.parametrize("mode", list(Mode))
def test_sent_is_executed_plus_refused_and_every_duplicate_is_sent_or_blocked(
    may21: dict[Mode, dict[str, object]], mode: Mode
) -> None:
    f = {key: value for key, value in may21[mode].items() if isinstance(value, int)}
    assert (
        f["duplicate_orders_sent"]
        == f["duplicate_orders_executed"] + f["duplicate_attempts_refused_by_broker"]
    )
    assert f["duplicate_attempts"] == f["duplicate_orders_sent"] + f["duplicate_attempts_blocked"]


def test_the_demo_says_what_reached_the_broker_beside_what_executed() -> None:
    lines = may21_comparison()
    none = next(line for line in lines if "without a guard" in line)
    assert "7 duplicate orders reached the broker, 5 executed (32 shares, $2,303.02 traded twice)" in none
    assert "2 refused by the broker itself" in none
    entry_only = next(line for line in lines if "entry guard of May 21" in line)
    assert "1 duplicate order reached the broker, 1 executed" in entry_only
    assert "a 12-share short opened" in entry_only
    full = next(line for line in lines if "with tradeguard" in line)
    assert "nothing went out twice" in full and "7 retries held back ($4,560.22)" in full


def test_the_phantom_lasts_three_hours_without_reconciliation_and_under_one_interval_with_it(
    may21: dict[Mode, dict[str, object]],
) -> None:
    for mode in (Mode.NONE, Mode.ENTRY_ONLY):
        assert 10_800 - 60 <= float(may21[mode]["phantom_entry_block_secs"]) <= 10_800 + 60  # type: ignore[arg-type]
    full = float(may21[Mode.FULL]["phantom_entry_block_secs"])  # type: ignore[arg-type]
    assert 0 < full <= INTERVAL_SECS
    assert [s["symbol"] for s in may21[Mode.FULL]["phantom_spans"]] == ["SQQQ"]  # type: ignore[attr-defined]


def test_every_attempt_has_its_outcome_per_event(may21: dict[Mode, dict[str, object]]) -> None:
    events = may21[Mode.FULL]["events"]
    assert isinstance(events, list)
    attempts = [e for e in events if e["kind"] == "attempt"]
    assert len(attempts) == 23
    exit_retry = next(e for e in attempts if e["t"].endswith("11:26:28-04:00"))
    assert exit_retry["result"] == "blocked" and exit_retry["recorded"] == "filled"
    entry_only = {e["t"]: e for e in may21[Mode.ENTRY_ONLY]["events"]}  # type: ignore[union-attr]
    assert entry_only[exit_retry["t"]]["result"] == "DUPLICATE EXECUTED"
    none = {e["t"]: e for e in may21[Mode.NONE]["events"]}  # type: ignore[union-attr]
    refused = none["2026-05-21T10:14:04-04:00"]
    assert refused["result"] == "refused by broker"
    assert "insufficient qty available for order (requested: 18, available: 6)" in refused["detail"]
    json.dumps(may21)  # the whole document is JSON


def test_full_mode_reconciles_the_outside_close_before_the_bot_exits(tmp_path: Path) -> None:
    result = replay_session(MAY21, [Mode.FULL])
    gateway = result.simulations[Mode.FULL].gateway  # type: ignore[attr-defined]
    assert gateway.position("SQQQ").qty == 0
    orders = gateway.broker.paper.orders()
    coids = [o.client_order_id for o in orders]
    assert len(coids) == len(set(coids))
    sells = [o for o in orders if o.symbol == "TQQQ" and o.side == "sell"]
    assert all(o.position_intent == "sell_to_close" for o in sells)
    assert sum(o.filled_qty for o in sells) == Decimal(12 + 18 + 12)


def test_an_answer_without_its_attempt_is_a_format_error(tmp_path: Path) -> None:
    lines = MAY21.read_text().splitlines()
    stray = json.loads(next(line for line in lines if '"type": "answer"' in line))
    stray["decision"] = "a decision nobody took"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([*lines[:5], json.dumps(stray), *lines[5:]]) + "\n")
    with pytest.raises(SessionFormatError, match=r"bad\.jsonl:6: answer to decision .* has no attempt"):
        replay_session(bad, [Mode.NONE])


@pytest.mark.parametrize("close_at", ["11:43:01", "11:44:00.500", "11:44:30", "11:44:59"])
def test_full_mode_clears_the_phantom_within_one_interval_wherever_the_outside_close_falls(
    tmp_path: Path, close_at: str
) -> None:
    # G4: a close just after a pass read the broker used to cost interval + settle delay (61.5 s).
    at = '"t": "2026-05-21T11:44:30-04:00"'
    text = MAY21.read_text().replace(at, f'"t": "2026-05-21T{close_at}-04:00"')
    shifted = tmp_path / "may21-shifted.jsonl"
    shifted.write_text(text)
    full = result_json(replay_session(shifted, [Mode.FULL]), [Mode.FULL], compare=False)
    assert 0 < float(full["phantom_entry_block_secs"]) <= INTERVAL_SECS


def test_an_outside_close_that_meets_the_bots_resting_order_is_replayed_in_every_mode(tmp_path: Path) -> None:
    # The paper broker refuses a market close against the account's own resting buy (Alpaca's
    # "potential wash trade"); the session says the position was closed, so the resting order is
    # cancelled first, as whoever closed it by hand did. The replay used to stop with an error.
    t = "2026-05-21T10:{}:00-04:00"
    lines = [
        {"type": "session", "version": 2, "name": "resting buy", "agent_id": "bot", "start": t.format("00"),
         "reconcile_interval_secs": 60, "cash": "100000", "allow_short": False},
        {"type": "price", "t": t.format("00"), "symbol": "SPY", "price": "500"},
        {"type": "attempt", "t": t.format("01"), "decision": "in", "attempt": 1, "kind": "entry",
         "symbol": "SPY", "side": "buy", "qty": "10"},
        {"type": "attempt", "t": t.format("02"), "decision": "dip", "attempt": 1, "kind": "entry",
         "symbol": "SPY", "side": "buy", "qty": "5", "order_type": "limit", "limit_price": "400"},
        {"type": "external", "t": t.format("03"), "event": "position_closed", "symbol": "SPY",
         "reason": "closed by hand"},
        {"type": "price", "t": t.format("10"), "symbol": "SPY", "price": "501"},
    ]  # fmt: skip
    path = tmp_path / "resting.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = replay_session(path, list(Mode), collect_rows=True)
    [row] = [r for r in result.rows if r.kind == "external"]
    for mode in Mode:
        outcome = row.outcomes[mode]
        assert isinstance(outcome, str) and "cancelled first" in outcome
