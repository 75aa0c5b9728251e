"""Shared helpers of the issue 8 hardening tests (defects found by attacking the guarantees).

- `AskLog` / `RecordingPaper`: a paper account that records every order *asked* of it (refused
  ones included), so a test counts what reached the broker, not only what it accepted.
- `LaggingPositions`: a broker wrapper whose positions endpoint trails fills (Alpaca's does, for
  seconds): positions of hidden symbols read as flat while orders show them filled.
- `OnSleepClock`: a ManualClock whose next `sleep` first runs a callback (something the bot does
  while the reconciler waits between its two reads).
- `audit_of`, `claim_of`, `run_cli`: reading the store and running the `tradeguard` command.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from tradeguard.cli import main as cli_main
from tradeguard.clock import ManualClock
from tradeguard.domain import AuditAction, AuditRecord, BrokerOrder, BrokerPosition, OrderRequest
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import AuditQuery, ClaimStore

PRICES = FixedPrices({"TQQQ": "75.33", "SQQQ": "21.50", "QQQ": "530.00", "SPY": "590.00"})


@dataclass(frozen=True)
class Ask:
    """One order request that reached the broker, accepted or not."""

    symbol: str
    side: str
    qty: Decimal
    client_order_id: str


class RecordingPaper(PaperBroker):
    """A PaperBroker that logs every submit before deciding on it (served or in process)."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("prices", PRICES)
        super().__init__(**options)
        self.asks: list[Ask] = []
        self._ask_lock = threading.Lock()

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        with self._ask_lock:
            self.asks.append(
                Ask(request.symbol, request.side.value, request.qty or Decimal(0), request.client_order_id)
            )
        return super().submit_order(request)

    def asked(self, *, symbol: str | None = None, side: str | None = None) -> list[Ask]:
        """Return the asks, optionally filtered."""
        with self._ask_lock:
            return [
                a
                for a in self.asks
                if (symbol is None or a.symbol == symbol) and (side is None or a.side == side)
            ]


@dataclass
class LaggingPositions:
    """A broker whose positions endpoint does not show `hidden` symbols yet (orders are current)."""

    inner: Any
    hidden: set[str] = field(default_factory=set)

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        return self.inner.submit_order(request)  # type: ignore[no-any-return]

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        return self.inner.get_order_by_client_id(client_order_id)  # type: ignore[no-any-return]

    def list_orders(
        self,
        *,
        status: str = "open",
        symbols: list[str] | None = None,
        after: datetime | None = None,
        limit: int = 500,
    ) -> list[BrokerOrder]:
        return self.inner.list_orders(status=status, symbols=symbols, after=after, limit=limit)  # type: ignore[no-any-return]

    def list_positions(self) -> list[BrokerPosition]:
        return [p for p in self.inner.list_positions() if p.symbol not in self.hidden]

    def get_position(self, symbol: str) -> BrokerPosition | None:
        return None if symbol in self.hidden else self.inner.get_position(symbol)

    def cancel_order(self, order_id: str) -> None:
        self.inner.cancel_order(order_id)


class OnSleepClock(ManualClock):
    """A manual clock whose next `sleep` runs `on_next_sleep` first (once), then advances."""

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__(start)
        self.on_next_sleep: Callable[[], None] | None = None

    def sleep(self, seconds: float) -> None:
        hook, self.on_next_sleep = self.on_next_sleep, None
        if hook is not None:
            hook()
        super().sleep(seconds)


def broker_qty(paper: PaperBroker, symbol: str) -> Decimal:
    """The paper account's true position (not through any lagging wrapper)."""
    pos = paper.get_position(symbol)
    return Decimal(0) if pos is None else pos.qty


def audit_of(store: ClaimStore, action: AuditAction, **filters: Any) -> list[AuditRecord]:
    """Return the audit records of one action, filtered like AuditQuery."""
    return list(store.audit_records(AuditQuery(actions=(action.value,), **filters)))


def run_cli(argv: list[str]) -> int:
    """Run the `tradeguard` command; return its exit status (argparse errors included)."""
    try:
        return cli_main(argv)
    except SystemExit as exc:  # argparse: unknown command or option
        return int(exc.code) if isinstance(exc.code, int) else 2
