"""A bot process for crash tests: it enters one position and is killed at a chosen point.

Run as `python -m tests.crash_worker STORE_URL STATE_PATH READY_FILE POINT`. POINT is
`after_claim` (the claim is durable, nothing sent) or `after_accept` (the broker accepted the
order, the claim was not updated yet). At that point the worker writes READY_FILE and blocks
until the parent kills it with SIGKILL.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tradeguard.domain import BrokerOrder, OrderRequest
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore


class _Hang(PaperBroker):
    point = "after_accept"
    ready = Path()

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        if self.point == "after_claim":
            self._block()
        order = super().submit_order(request)
        self._block()
        return order

    def _block(self) -> None:
        self.ready.write_text("ready")
        while True:  # the parent kills us here
            time.sleep(0.05)


def main() -> None:
    store_url, state_path, ready, point = sys.argv[1:5]
    _Hang.point, _Hang.ready = point, Path(ready)
    broker = _Hang(prices=FixedPrices({"TQQQ": "75.33"}), state_path=state_path)
    gateway = OrderGateway(broker, ClaimStore(store_url), agent_id="crash-bot", reconcile_on_start=False)
    gateway.enter("TQQQ", qty=6, intent="09:42 breakout")


if __name__ == "__main__":
    main()
