"""G5 on PostgreSQL: a server that stops answering ends the call in a clear error, never a hang.

A frozen server process, a hung pooler or a proxy that stopped forwarding keep the client's
TCP connection open and acknowledged: keepalives and `tcp_user_timeout` see a live peer, and
libpq waits for the answer without end. Before `Settings.pg_answer_timeout_secs`, a bot hung
inside its claim (or right after its POST, the order placed and unrecorded) for as long as the
server stayed silent. Now the wait is bounded: before the POST the call fails with StoreError
and nothing is sent; after it, UnrecordedOrder; and once the server answers again, the retry of
the decision places or finds exactly one order. The real server behind a real TCP proxy
(tests/silent_proxy.py) that holds every byte.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TypeVar

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import at_head
from tests.silent_proxy import SilentProxy
from tradeguard import crashpoints
from tradeguard.config import Settings
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import ConfigError, StoreError, UnrecordedOrder
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.store import ClaimStore
from tradeguard.testing import FixedPrices, RecordingBroker, orders_of

pytestmark = pytest.mark.postgres

_T = TypeVar("_T")

PRICES = FixedPrices({"SPY": Decimal("500")})
SETTINGS = Settings(pg_answer_timeout_secs=1.0, pg_lock_timeout_ms=500)
HANG_SECS = 20.0  # far past the bound and one reconnect attempt; what a hang is here


@pytest.fixture
def silent_path(pg_url: str) -> Iterator[tuple[SilentProxy, str]]:
    """A proxy to the test server, and the store URL through it (a reconnect gives up in 1 s).

    The schema is migrated first, directly (`at_head`): the tests' 500 ms lock wait is for their
    own statements, not for another schema's migration elsewhere in the database.
    """
    url = make_url(at_head(pg_url))
    with SilentProxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        through = url.set(port=proxy.port).update_query_dict({"connect_timeout": "1"})
        yield proxy, through.render_as_string(hide_password=False)


def within(secs: float, call: Callable[[], _T]) -> _T:
    """Run `call` and return what it returns or raise what it raises; fail if it hangs past `secs`."""
    outcome: list[_T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test's thread
            failure.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(secs)
    if worker.is_alive():
        pytest.fail(f"the call still waited for the silent server after {secs:g} s")
    if failure:
        raise failure[0]
    return outcome[0]


def test_a_claim_while_the_server_is_silent_fails_closed_and_the_retry_sends_once(
    silent_path: tuple[SilentProxy, str],
) -> None:
    proxy, url = silent_path
    paper = PaperBroker(prices=PRICES)
    broker = RecordingBroker(paper)
    with ClaimStore(url, settings=SETTINGS) as store:
        gw = OrderGateway(broker, store, agent_id="bot", settings=SETTINGS, reconcile_on_start=False)
        gw.enter("SPY", qty=1, intent="09:31 warm-up")  # the pool holds a live connection now
        proxy.silent()
        with pytest.raises(StoreError, match="nothing was sent") as caught:
            within(HANG_SECS, lambda: gw.enter("SPY", qty=5, intent="09:42 breakout"))
        assert not isinstance(caught.value, UnrecordedOrder)
        assert [r.qty for r in broker.requests] == [Decimal(1)]  # nothing sent (G5)
        proxy.speak()
        placed = gw.enter("SPY", qty=5, intent="09:42 breakout")
        again = gw.enter("SPY", qty=5, intent="09:42 breakout")
        assert placed.outcome is Outcome.SUBMITTED and again.outcome is Outcome.DUPLICATE
        assert [o.qty for o in orders_of(paper, symbol="SPY")] == [Decimal(1), Decimal(5)]  # G1
        assert store.position("bot", "SPY").qty == 6


def test_a_server_gone_silent_right_after_the_post_is_an_unrecorded_order_found_once_it_answers(
    silent_path: tuple[SilentProxy, str],
) -> None:
    proxy, url = silent_path
    paper = PaperBroker(prices=PRICES)
    broker = RecordingBroker(paper)

    def go_silent(point: str) -> None:
        if point == "after_post":
            crashpoints.set_hook(None)
            proxy.silent()

    with ClaimStore(url, settings=SETTINGS) as store:
        gw = OrderGateway(broker, store, agent_id="bot", settings=SETTINGS, reconcile_on_start=False)
        crashpoints.set_hook(go_silent)
        try:
            with pytest.raises(UnrecordedOrder, match="may be at the broker"):
                within(HANG_SECS, lambda: gw.enter("SPY", qty=3, intent="09:42 breakout"))
        finally:
            crashpoints.set_hook(None)
        assert len(orders_of(paper, symbol="SPY")) == 1  # the POST went out before the silence
        proxy.speak()
        again = gw.enter("SPY", qty=3, intent="09:42 breakout")
        assert again.outcome is Outcome.DUPLICATE and again.claim is not None
        assert again.claim.state is ClaimState.FILLED
        assert len(broker.requests) == 1 and len(orders_of(paper, symbol="SPY")) == 1  # G1
        assert store.position("bot", "SPY").qty == 3


def test_a_reader_waits_no_longer_than_the_bound_either(silent_path: tuple[SilentProxy, str]) -> None:
    proxy, url = silent_path
    with ClaimStore(url, settings=SETTINGS) as store:
        store.position("bot", "SPY")
        proxy.silent()
        with pytest.raises(StoreError):
            within(HANG_SECS, lambda: store.position("bot", "SPY"))
        proxy.speak()
        assert store.position("bot", "SPY").qty == 0


@pytest.mark.parametrize("lock_ms", [30_000, 45_000])
def test_an_answer_bound_that_would_cut_off_a_lock_wait_is_refused(lock_ms: int) -> None:
    with pytest.raises(ConfigError, match=r"pg_answer_timeout_secs .* must exceed pg_lock_timeout_ms"):
        Settings(pg_answer_timeout_secs=30, pg_lock_timeout_ms=lock_ms)
    Settings(pg_answer_timeout_secs=0, pg_lock_timeout_ms=lock_ms)  # 0: no bound, nothing to cut off
