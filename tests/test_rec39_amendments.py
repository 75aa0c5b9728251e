"""rec39: a recording keeps the bot's cancels, replaces and order classes, and a replay does them.

Cancels and replaces (`cancel_order_by_id`, `cancel_orders`, `replace_order_by_id`, and the
gateway's `cancel`, `cancel_all`, `replace` under them) were not recorded, and an attempt kept no
order class: a canceled buy limit replayed as still resting (the exit after it refused 403
"potential wash trade" in every mode), a replaced limit as its first price, a bracket entry
without its legs and an OCO exit as a plain limit.
"""

from __future__ import annotations

import io
import json
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from replay import Mode, replay_session
from tradeguard import (
    AttemptEvent,
    CancelEvent,
    ManualClock,
    MemoryClaimStore,
    OrderGateway,
    OrderRejected,
    PaperBroker,
    Recorder,
    ReplaceEvent,
    ReplaceRequest,
    open_session,
)
from tradeguard.cli import main
from tradeguard.run.barfile import shipped_day_path

ROOT = Path(__file__).resolve().parents[1]
MINUTES = 12

STRATEGY = '''
from alpaca.trading.enums import OrderClass, OrderSide, TimeInForce
from alpaca.trading.requests import (
    LimitOrderRequest, MarketOrderRequest, ReplaceOrderRequest, StopLossRequest, TakeProfitRequest,
)

from tradeguard import Bars, Strategy, StrategyContext


def cents(value):
    return round(float(value), 2)


class Amends(Strategy):
    """Rests two buy limits, cancels one, replaces the other, enters with a bracket, exits with an OCO."""

    symbols = ("QQQ", "SQQQ", "TQQQ")

    def __init__(self):
        self.bars = 0
        self.ids = {}

    def on_bar(self, bars: Bars, ctx: StrategyContext) -> None:
        self.bars += 1
        client = ctx.trading_client()
        day, buy, sell = TimeInForce.DAY, OrderSide.BUY, OrderSide.SELL
        if self.bars == 1:
            client.submit_order(MarketOrderRequest(symbol="TQQQ", qty=6, side=buy, time_in_force=day))
            below = cents(bars.close("TQQQ") - 5)
            self.ids["tqqq"] = client.submit_order(
                LimitOrderRequest(symbol="TQQQ", qty=10, side=buy, time_in_force=day, limit_price=below)
            ).id
            low = cents(bars.close("SQQQ") - 2)
            self.ids["sqqq"] = client.submit_order(
                LimitOrderRequest(symbol="SQQQ", qty=10, side=buy, time_in_force=day, limit_price=low)
            ).id
        elif self.bars == 2:
            client.cancel_order_by_id(self.ids["tqqq"])
            high = cents(bars.close("SQQQ") + 1)
            client.replace_order_by_id(self.ids["sqqq"], ReplaceOrderRequest(limit_price=high))
            close = bars.close("QQQ")
            client.submit_order(MarketOrderRequest(
                symbol="QQQ", qty=2, side=buy, time_in_force=TimeInForce.GTC, order_class=OrderClass.BRACKET,
                take_profit=TakeProfitRequest(limit_price=cents(close + 20)),
                stop_loss=StopLossRequest(stop_price=cents(close - 20), limit_price=cents(close - 21)),
            ))
        elif self.bars == 4:
            client.close_position("TQQQ")  # a sell: a wash trade had the canceled buy limit rested on
            close = bars.close("SQQQ")
            client.submit_order(LimitOrderRequest(
                symbol="SQQQ", qty=10, side=sell, time_in_force=day, limit_price=cents(close + 2),
                order_class=OrderClass.OCO, take_profit=TakeProfitRequest(limit_price=cents(close + 2)),
                stop_loss=StopLossRequest(stop_price=cents(close - 2)),
            ))
        elif self.bars == 6:
            client.cancel_orders()  # the OCO and the bracket's legs
            client.close_position("QQQ")
            client.close_position("SQQQ")
'''


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "TRADEGUARD_CONFIG", "TRADEGUARD_MODE"):
        monkeypatch.delenv(name, raising=False)


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, list[dict[str, Any]]]:
    """Run the strategy in sim with --record; return the session and the run's claims."""
    strategy = tmp_path / "amends.py"
    strategy.write_text(textwrap.dedent(STRATEGY))
    bars = tmp_path / "bars.csv"
    bars.write_text("\n".join(shipped_day_path().read_text().splitlines()[: 1 + 3 * MINUTES]) + "\n")
    session, store = tmp_path / "mixed.jsonl", f"sqlite:///{tmp_path / 'run.db'}"
    args = ["run", str(strategy), "--bars", str(bars), "--record", str(session), "--view", "plain"]
    assert main([*args, "--store", store]) == 0
    capsys.readouterr()
    assert main(["claims", "list", "--all", "--store", store, "--format", "json"]) == 0
    return session, json.loads(capsys.readouterr().out)


def _leg_free(coid: str, intent: str) -> tuple[str, str]:
    """A claim's id and name with a leg's broker-made id left out (each broker names legs anew)."""
    if intent.startswith("leg:"):
        return "leg", intent.rsplit(":", 1)[0]
    return coid, intent


def test_a_run_that_cancels_replaces_and_brackets_replays_to_its_own_claims_and_orders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session, claims = _run(tmp_path, capsys)
    with open_session(session) as reading:
        events = [event for _, event in reading]
    attempts = [e for e in events if isinstance(e, AttemptEvent)]
    amendments = [e for e in events if isinstance(e, CancelEvent | ReplaceEvent)]
    # Every call the bot made: its orders with their classes and legs, its cancels and replace.
    assert [(a.symbol, a.kind, a.order_type, a.order_class) for a in attempts] == [
        ("TQQQ", "entry", "market", None),
        ("TQQQ", "entry", "limit", None),
        ("SQQQ", "entry", "limit", None),
        ("QQQ", "entry", "market", "bracket"),
        ("TQQQ", "exit", "market", None),
        ("SQQQ", "exit", "limit", "oco"),
        ("QQQ", "exit", "market", None),
        ("SQQQ", "exit", "market", None),
    ]
    bracket, oco = attempts[3], attempts[5]
    assert bracket.take_profit is not None and bracket.stop_loss is not None
    assert bracket.stop_loss.limit_price == bracket.stop_loss.stop_price - 1
    assert oco.take_profit is not None and oco.take_profit.limit_price == oco.limit_price
    assert oco.stop_loss is not None and oco.stop_loss.limit_price is None
    canceled, replaced, everything = amendments
    assert isinstance(canceled, CancelEvent) and canceled.scope == "order"
    assert (canceled.decision, canceled.symbol, canceled.result) == (attempts[1].decision, "TQQQ", "accepted")
    assert isinstance(replaced, ReplaceEvent) and replaced.decision == attempts[2].decision
    assert attempts[2].limit_price is not None and replaced.limit_price == attempts[2].limit_price + 3
    assert replaced.result == "accepted" and replaced.new_order_id is not None
    assert isinstance(everything, CancelEvent) and (everything.scope, everything.canceled) == ("all", 4)

    result = replay_session(session, list(Mode))
    # The replay's guard made the run's decisions, each to the run's state, under the run's ids.
    simulation = result.simulations[Mode.FULL]
    replayed = simulation.gateway.store.list_claims(agent_id=result.header.agent_id)  # type: ignore[attr-defined]
    assert sorted((*_leg_free(c.client_order_id, c.intent), c.state.value) for c in replayed) == sorted(
        (*_leg_free(c["client_order_id"], c["intent"]), c["state"]) for c in claims
    )
    states = sorted(c["state"] for c in claims)
    assert states == ["CANCELED"] * 5 + ["FILLED"] * 6
    # Every mode's broker did what the run's did: the buy limit canceled (so the exit after it was
    # no wash trade), the other replaced and filled, the bracket's and the OCO's legs canceled.
    expected = sorted([
        ("TQQQ", "buy", "market", "filled"), ("TQQQ", "buy", "limit", "canceled"),
        ("SQQQ", "buy", "limit", "replaced"), ("SQQQ", "buy", "limit", "filled"),
        ("QQQ", "buy", "market", "filled"), ("QQQ", "sell", "limit", "canceled"),
        ("QQQ", "sell", "stop_limit", "canceled"), ("TQQQ", "sell", "market", "filled"),
        ("SQQQ", "sell", "limit", "canceled"), ("SQQQ", "sell", "stop", "canceled"),
        ("QQQ", "sell", "market", "filled"), ("SQQQ", "sell", "market", "filled"),
    ])  # fmt: skip
    for mode in Mode:
        paper = result.simulations[mode].paper
        orders = paper.list_orders(status="all", limit=500)
        assert (
            sorted((o.symbol, o.side.value, o.order_type.value, o.status.value) for o in orders) == expected
        )
        assert all(paper.position_qty(s) == 0 for s in ("QQQ", "SQQQ", "TQQQ")), mode
        totals = result.totals[mode]
        assert (totals.attempts, totals.orders_placed, totals.untracked_shares_at_end) == (8, 8, {}), mode
    full = result.simulations[Mode.FULL].paper
    legs = [
        o for o in full.list_orders(status="all", limit=500) if o.symbol == "QQQ" and o.side.value == "sell"
    ]
    assert {o.limit_price for o in legs if o.order_type.value != "market"} == {
        bracket.take_profit.limit_price,
        bracket.stop_loss.limit_price,
    }
    # And the command line replays it too (exit 0), every mode placing the exit the run placed.
    assert main(["replay", str(session), "--compare", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for mode in ("none", "entry-only", "full"):
        rows = out[mode]["events"]
        exit_row = next(r for r in rows if r["kind"] == "attempt" and r["text"] == attempts[4].decision)
        assert exit_row["result"] == "placed", (mode, exit_row)
        assert [r["kind"] for r in rows if r["kind"] in {"cancel", "replace"}] == [
            "cancel",
            "replace",
            "cancel",
        ]


def test_a_replay_recording_keeps_the_cancels_and_replaces_its_gateway_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session, _ = _run(tmp_path, capsys)
    again = io.StringIO()
    replay_session(session, [Mode.FULL], record_to=again)
    again.seek(0)
    with open_session(again, name="again") as reading:
        events = [event for _, event in reading]
    with open_session(session) as reading:
        first = [event for _, event in reading]

    def amends(evs: list[Any]) -> list[tuple[Any, ...]]:
        return [
            (e.type, getattr(e, "scope", None), e.decision, e.result, getattr(e, "limit_price", None))
            for e in evs
            if isinstance(e, CancelEvent | ReplaceEvent)
        ]

    assert amends(events) == amends(first)  # once each: the session's own lines are not copied in


def test_a_refused_cancel_and_a_guarded_replace_are_recorded_with_their_answers() -> None:
    clock = ManualClock()
    store = MemoryClaimStore(clock=clock)
    stream = io.StringIO()
    paper = PaperBroker(clock=clock)
    paper.set_price("TQQQ", Decimal("75"))
    gateway = OrderGateway(paper, store, agent_id="bot", clock=clock, record_to=Recorder(stream))
    entry = gateway.enter("TQQQ", qty=6, intent="e1")
    assert entry.order is not None
    clock.advance(60)
    with pytest.raises(OrderRejected):
        gateway.cancel(entry.order.id)  # filled already: 422
    exit_ = gateway.exit("TQQQ", intent="x1", order_type="limit", limit_price="90")
    assert exit_.order is not None
    with pytest.raises(Exception, match="would sell more than is held"):
        gateway.replace(exit_.order.id, ReplaceRequest(qty=Decimal(9)))
    gateway.recorder.close()
    stream.seek(0)
    with open_session(stream, name="recorded") as reading:
        amendments = [e for _, e in reading if isinstance(e, CancelEvent | ReplaceEvent)]
    refused, blocked = amendments
    assert (refused.type, refused.decision, refused.result, refused.status) == (
        "cancel",
        "e1",
        "rejected",
        422,
    )
    assert (blocked.type, blocked.decision, blocked.result, blocked.qty) == ("replace", "x1", "blocked", 9)
    assert blocked.reason is not None and "would sell more than is held" in blocked.reason
    # The exit's limit still rests at the broker: the replace never reached it.
    assert [(o.symbol, o.qty, o.limit_price) for o in paper.list_orders(status="open")] == [
        ("TQQQ", Decimal(6), Decimal(90))
    ]


_ENTRY = {
    "type": "attempt", "t": "2026-05-21T09:31:00-04:00", "decision": "d1", "attempt": 1,
    "kind": "entry", "symbol": "TQQQ", "side": "buy", "qty": "6", "order_type": "limit", "limit_price": "70",
}  # fmt: skip
_AT = {"t": "2026-05-21T09:32:00-04:00"}
_OK = {"result": "accepted", **_AT}
_NAMES = "names its decision, client_order_id or order_id"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ({"type": "cancel", **_OK}, f"a cancel of one order {_NAMES}"),
        ({"type": "cancel", "scope": "all", "decision": "d1", **_OK}, "names no decision"),
        ({"type": "cancel", "decision": "d1", "canceled": 1, **_OK}, "canceled goes with"),
        ({"type": "cancel", "decision": "d1", **_AT}, "result: Field required"),
        ({"type": "replace", "limit_price": "71", **_OK}, "a replace names the decision, client_order_id or"),
        ({"type": "replace", "decision": "d1", "qty": "-1", **_OK}, "qty: Input should be"),
        ({**_ENTRY, **_AT, "decision": "d2", "order_class": "bracket", "take_profit": {"limit_price": "80"}},
         "order_class bracket needs both take_profit and stop_loss"),
        ({**_ENTRY, **_AT, "decision": "d2", "take_profit": {"limit_price": "80"}},
         "take_profit and stop_loss need order_class bracket, oto or oco"),
        ({**_ENTRY, **_AT, "decision": "d2", "order_class": "oco", "take_profit": {"limit_price": "80"},
          "stop_loss": {"stop_price": "60"}}, "order_class oco is an exit's limit order"),
        ({**_ENTRY, **_AT, "decision": "d2", "order_class": "oto", "take_profit": {"limit_price": "80"},
          "stop_loss": {"stop_price": "60"}}, "order_class oto needs either take_profit or stop_loss"),
        ({**_ENTRY, **_AT, "decision": "d2", "order_class": "bracket", "take_profit": {},
          "stop_loss": {"stop_price": "60"}}, "take_profit.limit_price: Field required"),
    ],
    ids=[
        "cancel-names-nothing", "cancel-all-names-one", "canceled-count-on-one", "cancel-no-result",
        "replace-names-nothing", "replace-bad-qty", "bracket-one-leg", "legs-without-class",
        "oco-entry", "oto-both-legs", "leg-without-price",
    ],
)  # fmt: skip
def test_a_bad_cancel_replace_or_order_class_line_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: dict[str, Any], expected: str
) -> None:
    header = {"type": "session", "version": 2, "start": "2026-05-21T09:30:00-04:00"}
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(obj) for obj in (header, _ENTRY, line)) + "\n")
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3: invalid {line['type']} event: " in err and expected in err


def test_a_cancel_in_a_version_1_file_is_refused_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = {"type": "session", "version": 1, "start": "2026-05-21T09:30:00-04:00"}
    cancel = {"type": "cancel", "decision": "d1", "result": "accepted", **_AT}
    path = tmp_path / "v1.jsonl"
    path.write_text("\n".join(json.dumps(obj) for obj in (header, _ENTRY, cancel)) + "\n")
    assert main(["replay", str(path)]) == 2
    assert f"{path}:3: a cancel event needs session format version 2" in capsys.readouterr().err


def test_a_cancel_or_replace_that_never_left_the_bot_is_not_done_by_the_replay(tmp_path: Path) -> None:
    """`dropped`: the broker was unreachable, the order rested all day; no mode may cancel it (review40)."""
    at = "2026-05-21T09:3{}:00-04:00".format
    unreachable = {"result": "dropped", "reason": "BrokerUnavailable: connection refused"}
    lines = [
        {"type": "session", "version": 2, "start": at(0), "agent_id": "bot"},
        {"type": "price", "t": at(1), "symbol": "TQQQ", "price": "75.00"},
        {"type": "attempt", "t": at(1), "decision": "bid", "attempt": 1, "kind": "entry",
         "symbol": "TQQQ", "side": "buy", "qty": "3", "order_type": "limit", "limit_price": "70.00"},
        {"type": "answer", "t": at(1), "decision": "bid", "attempt": 1, "result": "accepted"},
        {"type": "replace", "t": at(2), "decision": "bid", "symbol": "TQQQ", "limit_price": "74",
         **unreachable},
        {"type": "cancel", "t": at(3), "decision": "bid", "symbol": "TQQQ", **unreachable},
        {"type": "end", "t": at(9)},
    ]  # fmt: skip
    session = tmp_path / "dropped.jsonl"
    session.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = replay_session(session, list(Mode))
    for mode in Mode:
        resting = result.simulations[mode].paper.list_orders(status="open")
        assert [(o.symbol, o.qty, o.limit_price, o.status.value) for o in resting] == [
            ("TQQQ", 3, 70, "new")
        ], mode
