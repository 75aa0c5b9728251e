"""Write a paper state file (snapshot and journal lines) and the account it holds, as JSON.

Run with the tradeguard whose file format is to be kept readable first on the path:

    PYTHONPATH=/path/to/that/tree python tests/data/make_paper_journal_fixture.py NAME

It writes tests/data/NAME.state (the state file as that tree left it, never compacted after its
first change) and tests/data/NAME.expected.json (each order's state document, as that tree
renders it, and the cash, positions and prices), which tests/test_paper_journal_formats.py
replays and compares. The orders cover every field a state document holds.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from tradeguard.clock import ManualClock
from tradeguard.domain import OrderClass, OrderType, PositionIntent, ReplaceRequest, TimeInForce
from tradeguard.errors import OrderRejected
from tradeguard.paper import PaperBroker
from tradeguard.testing import make_request

T0 = datetime(2026, 5, 21, 13, 30, 0, 250000, tzinfo=UTC)


def run(broker: PaperBroker, clock: ManualClock) -> None:
    broker.set_price("SPY", 100)
    broker.set_price("QQQ", "450.25")
    steps = [
        lambda: broker.submit_order(make_request("SPY", "buy", 6, client_order_id='market-é"1')),
        lambda: broker.submit_order(make_request("SPY", "sell", 2, client_order_id="market-2")),
        lambda: broker.submit_order(
            make_request("QQQ", "buy", None, client_order_id="notional", notional=Decimal("1000.5"))
        ),
        lambda: broker.submit_order(
            make_request(
                "QQQ",
                "buy",
                3,
                client_order_id="limit",
                order_type=OrderType.LIMIT,
                limit_price=Decimal("440"),
                time_in_force=TimeInForce.GTC,
                extended_hours=True,
                position_intent=PositionIntent.BUY_TO_OPEN,
            )
        ),
        lambda: broker.submit_order(
            make_request(
                "SPY",
                "buy",
                4,
                client_order_id="bracket",
                order_class=OrderClass.BRACKET,
                time_in_force=TimeInForce.GTC,
                take_profit_limit_price=Decimal(110),
                stop_loss_stop_price=Decimal(90),
            )
        ),
        lambda: broker.submit_order(
            make_request(
                "SPY",
                "sell",
                1,
                client_order_id="oco",
                order_class=OrderClass.OCO,
                order_type=OrderType.LIMIT,
                time_in_force=TimeInForce.GTC,
                limit_price=Decimal(120),
                take_profit_limit_price=Decimal(120),
                stop_loss_stop_price=Decimal(80),
            )
        ),
        lambda: broker.submit_order(
            make_request(
                "SPY",
                "sell",
                1,
                client_order_id="trail",
                order_type=OrderType.TRAILING_STOP,
                time_in_force=TimeInForce.GTC,
                trail_percent=Decimal("2.5"),
            )
        ),
        lambda: broker.submit_order(
            make_request(
                "SPY",
                "sell",
                1,
                client_order_id="stop",
                order_type=OrderType.STOP,
                stop_price=Decimal(85),
                time_in_force=TimeInForce.GTC,
            )
        ),
        lambda: broker.set_price("SPY", "103.37"),  # the trailing stop's high-water mark moves
        lambda: broker.submit_order(
            make_request(
                "SPY",
                "sell",
                1,
                client_order_id="stop-limit",
                order_type=OrderType.STOP_LIMIT,
                stop_price=Decimal(102),
                limit_price=Decimal(104),
                time_in_force=TimeInForce.GTC,
            )
        ),
        lambda: broker.set_price("SPY", "101.5"),  # triggers the stop limit, which does not fill
        lambda: broker.replace_order(
            _open(broker, "limit"), ReplaceRequest(limit_price=Decimal(441), qty=Decimal(2))
        ),
        lambda: broker.replace_order(
            _leg(broker, "bracket", OrderType.LIMIT), ReplaceRequest(limit_price=Decimal(111))
        ),
        lambda: broker.cancel_order(_open(broker, "stop")),
        lambda: broker.set_price("QQQ", "440.5"),  # the limit's replacement fills
        lambda: broker.set_price("QQQ", None),  # back to the price source
        lambda: broker.close_position("QQQ"),
        broker.step,
    ]
    for number, step in enumerate(steps):
        clock.advance(1.5)
        try:
            step()
        except OrderRejected as exc:  # the fixture should have none: say so
            raise SystemExit(f"step {number} refused: {exc}") from exc


def _open(broker: PaperBroker, client_order_id: str) -> str:
    order = broker.get_order_by_client_id(client_order_id)
    assert order is not None
    return order.id


def _leg(broker: PaperBroker, client_order_id: str, kind: OrderType) -> str:
    order = broker.get_order_by_client_id(client_order_id)
    assert order is not None
    return next(leg.id for leg in order.legs if leg.order_type is kind)


def main() -> None:
    name = sys.argv[1]
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "paper.json"
        clock = ManualClock(T0)
        broker = PaperBroker(state_path=path, clock=clock, cash=100_000)
        run(broker, clock)
        shutil.copyfile(path, here / f"{name}.state")
        state = broker._venue.state  # what the live account holds, not what the file says
        expected = {
            "orders": [order.to_state() for order in state.orders.values()],
            "cash": str(state.cash),
            "qty": {s: str(v) for s, v in state.qty.items()},
            "avg_price": {s: str(v) for s, v in state.avg_price.items()},
            "last_price": {s: str(v) for s, v in state.last_price.items()},
            "set_prices": {s: str(v) for s, v in state.set_prices.items()},
            "account_key": state.account_key,
        }
        (here / f"{name}.expected.json").write_text(json.dumps(expected, indent=1) + "\n")
        lines = path.read_text().split("\n")
        print(f"{name}: a snapshot and {len(lines) - 2} journal lines, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
