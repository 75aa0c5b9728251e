"""Fixtures of the drop-in tests: one paper account that may short, the guard, one clock.

Shared by every module here, so each test reads as a bot's session: `server` (the paper server
at the kit's fixed prices), `claims` (a SQLite file), `client` (the one-import drop-in on both).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.dropin.bot import PRICES
from tests.dropin.kit import guarded_client, store_url
from tradeguard import GuardedTradingClient, ManualClock
from tradeguard.paper.server import PaperServer
from tradeguard.testing import FixedPrices, paper_server


@pytest.fixture
def clock() -> ManualClock:
    """One clock for the paper broker and the guard, starting now: time moves when a test says."""
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def server(clock: ManualClock) -> Iterator[PaperServer]:
    """A paper account that may short, at the bot's fixed prices."""
    with paper_server(prices=FixedPrices(PRICES), allow_short=True, clock=clock) as s:
        yield s


@pytest.fixture
def claims(tmp_path: Path) -> str:
    """A SQLite claim store file of the test's own."""
    return store_url(tmp_path)


@pytest.fixture
def client(server: PaperServer, claims: str, clock: ManualClock) -> Iterator[GuardedTradingClient]:
    """The one-import drop-in on the paper server, claims in a SQLite file."""
    with guarded_client(server, claims, clock=clock) as c:
        yield c
