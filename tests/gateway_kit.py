"""Helpers of the tests that drive a gateway over the paper account.

- `make_gateway`: a gateway on a real store over a `RecordingBroker` around a paper account.
- `ServedRecording`: a paper account for the paper server that records the orders asked of it
  over HTTP (refused ones included) with the kit's `RecordingBroker`.
- `LaggingPositions`: a recording broker whose positions endpoint trails fills (Alpaca's does,
  for seconds): positions of hidden symbols read as flat while orders show them filled, and
  after `freeze()` every position reads as it was then.
- `OnSleepClock`: a ManualClock whose next `sleep` first runs a callback (something the bot does
  while the reconciler waits between its two reads).
- `broker_qty`, `audit_of`, `run_cli`: reading the account and the store, running the command.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from tradeguard.cli import main as cli_main
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import AuditAction, AuditRecord, BrokerOrder, BrokerPosition, OrderRequest
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.ports import Broker
from tradeguard.store import AuditQuery, ClaimStore
from tradeguard.testing import RecordingBroker

MAY21_PRICES = FixedPrices({"TQQQ": "75.33", "SQQQ": "21.50", "QQQ": "530.00", "SPY": "590.00"})


def make_gateway(
    url: str,
    *,
    clock: ManualClock | None = None,
    agent_id: str = "may21-bot",
    broker: Broker | None = None,
    settings: Settings | None = None,
) -> tuple[OrderGateway, RecordingBroker[PaperBroker]]:
    """Return a gateway on a real store over a recorded PaperBroker sharing one manual clock."""
    clock = clock or ManualClock()
    # The paper broker's positions never trail its fills, so these tests need no recency or settle
    # horizon; the lagging positions endpoint has its own tests (test_hardening_reconcile.py).
    settings = settings or Settings(recent_activity_secs=0, position_settle_secs=0)
    spy = RecordingBroker(PaperBroker(prices=MAY21_PRICES, clock=clock))
    store = ClaimStore(url, settings=settings, clock=clock)
    gateway = OrderGateway(broker or spy, store, agent_id=agent_id, settings=settings, clock=clock)
    return gateway, spy


class ServedRecording(PaperBroker):
    """A PaperBroker whose submits go through `self.recording` (a RecordingBroker).

    The paper server calls the account it serves, not a wrapper, so the recorder sits inside:
    it wraps `super()`, the account's own unrecorded methods.
    """

    def __init__(self, **options: Any) -> None:
        options.setdefault("prices", MAY21_PRICES)
        super().__init__(**options)
        self.recording = RecordingBroker(super())

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        return self.recording.submit_order(request)


class LaggingPositions(RecordingBroker[Any]):
    """A broker whose positions endpoint does not show `hidden` symbols yet (orders are current)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.hidden: set[str] = set()
        self.frozen: dict[str, BrokerPosition] | None = None

    def freeze(self) -> None:
        """Serve the positions as they are now until `frozen` is set back to None."""
        self.frozen = {p.symbol: p for p in super().list_positions()}

    def list_positions(self) -> list[BrokerPosition]:
        found = super().list_positions() if self.frozen is None else list(self.frozen.values())
        return [p for p in found if p.symbol not in self.hidden]

    def get_position(self, symbol: str) -> BrokerPosition | None:
        if symbol in self.hidden:
            return None
        return super().get_position(symbol) if self.frozen is None else self.frozen.get(symbol)


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


def broker_qty(broker: Any, symbol: str) -> Decimal:
    """The account's true position, read past any recording (or lagging) wrapper."""
    while isinstance(broker, RecordingBroker):
        broker = broker.inner
    pos = broker.get_position(symbol)
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
