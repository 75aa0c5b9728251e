"""paper-server --bars: a clean exit leaves the state file one snapshot, also after the ticker's last pass.

`serve` folds the journal into one fsynced snapshot when it stops (SIGTERM, Ctrl-C), but the
ticker that trades resting orders on the replayed prices was stopped only after that: a pass in
between (a resting limit reached) wrote a journal line, not fsynced, behind the "clean" snapshot.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tradeguard.cli import main
from tradeguard.domain.orders import OrderRequest, OrderType, Side
from tradeguard.paper import PaperBroker
from tradeguard.paper import server as server_module
from tradeguard.run.barfile import shipped_day_path

SPEED = "3600"  # the shipped day's TQQQ first closes below 74.90 at 09:42: 0.2 s after the start


def test_a_resting_order_that_trades_while_the_server_stops_ends_in_the_final_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "paper.json"
    filled_after_close = threading.Event()

    def serve(server: Any, *, on_ready: Any = None) -> None:
        if on_ready is not None:
            on_ready(server)
        broker: PaperBroker = server.broker
        real_step = broker.step
        closed = threading.Event()

        def step() -> Any:
            changed = real_step()
            if changed and closed.is_set():
                filled_after_close.set()
            return changed

        broker.step = step  # type: ignore[method-assign]  # the ticker's passes from now on
        price = Decimal("74.90")
        kind = OrderType.LIMIT
        limit = OrderRequest("TQQQ", Side.BUY, "rests", qty=Decimal(2), order_type=kind, limit_price=price)
        assert broker.submit_order(limit).filled_qty == 0  # the day opens near 75.49
        # What `serve` does on SIGTERM: stop answering, fold the state file into one snapshot.
        server.stop()
        broker.close()
        closed.set()
        assert filled_after_close.wait(120)  # the ticker, still running, fills the limit now

    monkeypatch.setattr(server_module, "serve", serve)
    args = ["paper-server", "--port", "0", "--state", str(state), "--bars", str(shipped_day_path())]
    assert main([*args, "--speed", SPEED]) == 0

    lines = state.read_text().splitlines()
    assert len(lines) == 1  # one snapshot: no journal line written after it
    reopened = PaperBroker(state_path=state)
    try:
        order = reopened.get_order_by_client_id("rests")
        assert order is not None and order.filled_qty == 2
        assert reopened.position_qty("TQQQ") == 2
    finally:
        reopened.close()
