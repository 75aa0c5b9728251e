"""A paper account whose positions endpoint trails its fills, served over HTTP (audit 32).

Alpaca's orders and positions endpoints can disagree for a few seconds after a fill (ALPACA.md):
`TrailingPaper` answers `GET /v2/positions` and `GET /v2/positions/{symbol}` with the positions
as they were `lag_secs` ago on its clock, while orders, `DELETE /v2/positions...` and the order
checks see the account as it is (Alpaca's trading engine is not behind its positions read). The
guard and the account share one `ManualClock`, so the guard's settle sleeps let the read catch up
without wall time passing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from tests.dropin.bot import PRICES
from tradeguard import ManualClock
from tradeguard.domain import BrokerOrder, BrokerPosition, OrderRequest, ReplaceRequest
from tradeguard.paper import PaperBroker
from tradeguard.paper.server import PaperServer
from tradeguard.testing import FixedPrices, paper_server

__all__ = ["LAG_SECS", "TrailingPaper", "trailing_server"]

LAG_SECS = 1.5  # within Alpaca's "a few seconds", above the guard's settle delay


class TrailingPaper(PaperBroker):
    """Positions reads as they were `lag_secs` ago on the clock; everything else as it is."""

    def __init__(self, clock: ManualClock, *, lag_secs: float = LAG_SECS, **options: Any) -> None:
        super().__init__(clock=clock, **options)
        self.lag = timedelta(seconds=lag_secs)
        self._shown: list[tuple[datetime, dict[str, BrokerPosition]]] = [(clock.now() - self.lag, {})]

    def _note(self) -> None:
        self._shown.append((self.clock.now(), {p.symbol: p for p in super().list_positions()}))

    def _seen(self) -> dict[str, BrokerPosition]:
        horizon = self.clock.now() - self.lag
        return [positions for at, positions in self._shown if at <= horizon][-1]

    def submit_order(self, request: OrderRequest) -> BrokerOrder:  # close_position's too
        with self._lock:
            try:
                return super().submit_order(request)
            finally:
                self._note()

    def replace_order(self, order_id: str, request: ReplaceRequest) -> BrokerOrder:
        with self._lock:
            try:
                return super().replace_order(order_id, request)
            finally:
                self._note()

    def cancel_order(self, order_id: str) -> None:
        with self._lock:
            try:
                super().cancel_order(order_id)
            finally:
                self._note()

    def cancel_all_orders(self) -> list[str]:
        with self._lock:
            try:
                return super().cancel_all_orders()
            finally:
                self._note()

    def list_positions(self) -> list[BrokerPosition]:
        """The positions as they were `lag_secs` ago."""
        with self._lock:
            return list(self._seen().values())

    def get_position(self, symbol: str) -> BrokerPosition | None:
        """The position in `symbol` as it was `lag_secs` ago."""
        with self._lock:
            return self._seen().get(self._held_symbol(symbol))


@contextmanager
def trailing_server(clock: ManualClock, **options: Any) -> Iterator[PaperServer]:
    """A trailing paper account that may short, at the drop-in bot's prices, over HTTP."""
    account = TrailingPaper(clock, prices=FixedPrices(PRICES), allow_short=True, **options)
    with paper_server(account) as server:
        yield server
