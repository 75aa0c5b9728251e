"""review45: a bot that moves its bracket's stop (replaces the stop-loss leg) replays the move.

A leg is an order the broker made and named (a uuid, anew at each broker). A cancel or replace
of a leg was recorded under the leg's own client id and no decision, and every replay mode
answered "no order of it here": the stop stayed where the bracket first put it, so a fall between
the two stops sold in the run and not in the replay (or the other way round). The line now names
the parent's decision and the leg's role (`leg`), and each mode finds that leg of its own order.
"""

from __future__ import annotations

import io
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from replay import Mode, replay_session
from tradeguard import OrderType, ReplaceEvent, SessionFormatError, open_session
from tradeguard.cli import main
from tradeguard.run.barfile import shipped_day_path

ROOT = Path(__file__).resolve().parents[1]

STRATEGY = """
from alpaca.trading.enums import OrderClass, OrderSide, TimeInForce
from alpaca.trading.requests import (
    GetOrderByIdRequest, MarketOrderRequest, ReplaceOrderRequest, StopLossRequest, TakeProfitRequest,
)

from tradeguard import Bars, Strategy, StrategyContext


def cents(value):
    return round(float(value), 2)


class MovesItsStop(Strategy):
    \"\"\"Enters with a bracket, then moves its stop up twice (replacing the stop-loss leg).\"\"\"

    symbols = ("QQQ", "SQQQ", "TQQQ")

    def __init__(self):
        self.bars = 0
        self.parent = None

    def on_bar(self, bars: Bars, ctx: StrategyContext) -> None:
        self.bars += 1
        client = ctx.trading_client()
        close = bars.close("QQQ")
        if self.bars == 1:
            self.parent = client.submit_order(MarketOrderRequest(
                symbol="QQQ", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.GTC,
                order_class=OrderClass.BRACKET, take_profit=TakeProfitRequest(limit_price=cents(close + 20)),
                stop_loss=StopLossRequest(stop_price=cents(close - 20)),
            ))
        elif self.bars in (2, 3):
            order = client.get_order_by_id(self.parent.id, GetOrderByIdRequest(nested=True))
            stop = next(leg for leg in order.legs if leg.order_type.value == "stop")
            client.replace_order_by_id(stop.id, ReplaceOrderRequest(stop_price=cents(close - 12 + self.bars)))
"""


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "TRADEGUARD_CONFIG", "TRADEGUARD_MODE"):
        monkeypatch.delenv(name, raising=False)


def _stops(paper: object) -> list[tuple[str, Decimal | None]]:
    orders = paper.list_orders(status="all", limit=500)  # type: ignore[attr-defined]
    return sorted((o.status.value, o.stop_price) for o in orders if o.order_type is OrderType.STOP)


def test_a_replaced_bracket_leg_is_replaced_in_every_replay_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    strategy = tmp_path / "moves.py"
    strategy.write_text(textwrap.dedent(STRATEGY))
    bars = tmp_path / "bars.csv"
    bars.write_text("\n".join(shipped_day_path().read_text().splitlines()[: 1 + 3 * 6]) + "\n")
    session, store = tmp_path / "moves.jsonl", f"sqlite:///{tmp_path / 'run.db'}"
    args = ["run", str(strategy), "--bars", str(bars), "--record", str(session), "--view", "plain"]
    assert main([*args, "--store", store]) == 0
    capsys.readouterr()
    with open_session(session) as reading:
        events = [event for _, event in reading]
    entry = next(e for e in events if e.type == "attempt")
    moves = [e for e in events if isinstance(e, ReplaceEvent)]
    final = moves[-1].stop_price
    assert entry.stop_loss is not None and final is not None and final != entry.stop_loss.stop_price

    result = replay_session(session, list(Mode))
    for mode in Mode:
        # The stop rests where the bot last moved it; the bracket's first stop and the first move
        # were replaced, as in the run (before: "no order of it here", the first stop held).
        stops = _stops(result.simulations[mode].paper)
        assert stops == sorted(
            [("replaced", entry.stop_loss.stop_price), ("replaced", moves[0].stop_price), ("held", final)]
        ), mode
    # Both moves name the bracket's decision and its stop-loss leg, and were accepted.
    assert [(m.decision, m.leg, m.result) for m in moves] == [(entry.decision, "stop_loss", "accepted")] * 2

    # A replay that records keeps the moves as the run's recording has them (its own leg ids).
    again = io.StringIO()
    replay_session(session, [Mode.FULL], record_to=again)
    again.seek(0)
    with open_session(again, name="again") as reading:
        replayed = [e for _, e in reading if isinstance(e, ReplaceEvent)]
    assert [(e.decision, e.leg, e.result, e.stop_price) for e in replayed] == [
        (m.decision, m.leg, m.result, m.stop_price) for m in moves
    ]


def test_a_leg_without_its_decision_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"type":"session","version":2,"name":"bad","agent_id":"bot","start":"2026-05-21T13:30:00Z"}\n'
        '{"t":"2026-05-21T13:31:00Z","type":"cancel","leg":"stop_loss","order_id":"x","result":"accepted"}\n'
    )
    with pytest.raises(SessionFormatError) as info, open_session(path) as reading:
        list(reading)
    assert info.value.line == 2 and "leg" in str(info.value)
