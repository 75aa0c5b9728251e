"""Store41: a claim service restarted on another database is refused by the gateway, not trusted.

A `tradeguard serve` restarted on another SQLite file (a relative path read from another working
directory) answered as if it were the same service: the gateway's decisions looked new there and
its exits saw a flat ledger (audit37, "no store identity"). The service now names the store it
serves on every answer (`X-Tradeguard-Store`); the gateway's remote ledger pins the first one and
refuses any other: before a send nothing is sent (G5), after a send the order is an
`UnrecordedOrder` and is found by its client_order_id once the right store is served again
(G1, G2). A restart on the same file goes on as before.

Real processes: the service (`tests.service.conftest.start_service`) stopped and started again
at the same address on another file; the gateway over HTTP; a paper account in process. The
other file knows the gateway's key and account (provisioned alike, here by copying their rows):
otherwise its answer is a refused key, which fails closed already.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.gateway_kit import MAY21_PRICES
from tests.service.conftest import Service, start_service
from tradeguard.domain import BrokerOrder, OrderRequest, Side
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import StoreError, UnrecordedOrder
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.service.codec import STORE_HEADER
from tradeguard.service.keys import KeyRing
from tradeguard.store import ClaimStore, RemoteClaimLedger
from tradeguard.store.engine import parse_url
from tradeguard.testing import RecordingBroker

AGENT = "may21-bot"


class Address:
    """One loopback address the service is started at, again and again, over one store or another."""

    def __init__(self, folder: Path) -> None:
        with socket.socket() as probe:  # a free port, bound again by each start
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder = folder
        self.running: Service | None = None
        self.started: list[Service] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, store_url: str) -> None:
        """Stop the service running here (gracefully) and start one over `store_url`."""
        self.stop()
        self.running = start_service(store_url, self.folder, "--port", str(self.port))
        assert self.running.base_url == self.url
        self.started.append(self.running)

    def stop(self) -> None:
        if self.running is not None:
            assert self.running.stop() == 0 or self.running.process.returncode is not None
            self.running = None


@pytest.fixture
def address(tmp_path: Path) -> Iterator[Address]:
    at = Address(tmp_path)
    yield at
    at.stop()


def _store(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{path}"
    ClaimStore(url).close()
    return url


def _provisioned_like(source: str, target: str) -> None:
    """Give `target` the keys and agent accounts of `source` (as the operator provisioned both)."""
    src, dst = sa.create_engine(parse_url(source)), sa.create_engine(parse_url(target))
    try:
        for table in ("tg_api_keys", "tg_agent_accounts"):
            with src.connect() as conn:
                rows = [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table}"))]
            columns = ", ".join(rows[0])
            values = ", ".join(f":{c}" for c in rows[0])
            with dst.begin() as conn:
                conn.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES ({values})"), rows)
    finally:
        src.dispose()
        dst.dispose()


class ThenRestarted(RecordingBroker):
    """The paper account; `after_post` runs once, as soon as an order is placed."""

    after_post: Callable[[], None] | None = None

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        order = super().submit_order(request)
        hook, self.after_post = self.after_post, None
        if hook is not None:
            hook()
        return order


@pytest.fixture
def trading(tmp_path: Path, address: Address) -> Iterator[tuple[OrderGateway, ThenRestarted, str, str]]:
    """A gateway holding 10 TQQQ through the service on `claims.db`; `other.db` made and provisioned."""
    home = _store(tmp_path / "claims.db")
    with KeyRing(home) as ring:
        key = ring.create(AGENT)[1]
    address.serve(home)
    paper = ThenRestarted(PaperBroker(prices=MAY21_PRICES))
    gw = OrderGateway(paper, address.url, agent_id=AGENT, api_key=key)
    try:
        assert gw.enter("TQQQ", qty=10, intent="09:42 breakout").outcome is Outcome.SUBMITTED
        other = _store(tmp_path / "elsewhere" / "claims.db")  # the same name, another folder
        _provisioned_like(home, other)
        yield gw, paper, home, other
    finally:
        gw.store.close()


def test_an_enter_or_exit_through_a_service_restarted_on_another_file_is_refused_and_nothing_is_sent(
    trading: tuple[OrderGateway, ThenRestarted, str, str], address: Address
) -> None:
    gw, paper, home, other = trading
    address.serve(other)
    with pytest.raises(StoreError, match="now serves another store") as refused:
        gw.enter("SQQQ", qty=3, intent="09:43 hedge")
    with ClaimStore(home) as h, ClaimStore(other) as o:
        assert h.store_id in str(refused.value) and o.store_id in str(refused.value)
        # The request named the store the gateway pinned: the service refused it unrun.
        assert o.list_claims() == [], "nothing recorded in the other store"
    # The exit would have seen a flat ledger there: refused the same way, nothing sent.
    with pytest.raises(StoreError, match="now serves another store"):
        gw.exit("TQQQ", intent="09:50 take profit")
    assert [(o.symbol, o.side, o.qty) for o in paper.asked()] == [("TQQQ", Side.BUY, 10)], "G5"
    # The service back on its own file: the same gateway goes on.
    address.serve(home)
    assert gw.exit("TQQQ", intent="09:50 take profit").outcome is Outcome.SUBMITTED
    assert [(o.symbol, o.side, o.qty) for o in paper.asked()][1:] == [("TQQQ", Side.SELL, 10)]
    assert paper.get_position("TQQQ") is None
    with ClaimStore(home) as h, ClaimStore(other) as o:
        assert h.position(AGENT, "TQQQ").qty == 0
        assert o.list_claims() == []


def _named(address: Address) -> str:
    """The store the service at `address` names in its health answer (no key needed)."""
    return requests.get(f"{address.url}/health", timeout=30).headers[STORE_HEADER]


def test_a_restart_on_the_same_file_goes_on(
    trading: tuple[OrderGateway, ThenRestarted, str, str], address: Address
) -> None:
    gw, paper, home, other = trading
    with ClaimStore(home) as h, ClaimStore(other) as o:
        mine, theirs = h.store_id, o.store_id
    assert mine != theirs and _named(address) == mine and gw.store.store_id == mine  # type: ignore[attr-defined]
    address.serve(home)
    assert _named(address) == mine
    assert gw.enter("SQQQ", qty=3, intent="09:43 hedge").outcome is Outcome.SUBMITTED
    assert gw.exit("TQQQ", intent="09:50 take profit").outcome is Outcome.SUBMITTED
    assert [(o.symbol, o.qty) for o in paper.asked()] == [("TQQQ", 10), ("SQQQ", 3), ("TQQQ", 10)]
    with ClaimStore(home) as h:
        assert h.position(AGENT, "TQQQ").qty == 0 and h.position(AGENT, "SQQQ").qty == 3


def test_a_service_that_stops_naming_its_store_is_refused_and_nothing_is_sent(
    trading: tuple[OrderGateway, ThenRestarted, str, str],
) -> None:
    # Pinned at the gateway's start; then an answer names no store (an older tradeguard started
    # at the address, or something else answering there): refused as another store's would be.
    gw, paper, _home, _other = trading
    assert isinstance(gw.store, RemoteClaimLedger)

    def unnamed(answer: requests.Response, *_a: object, **_k: object) -> None:
        answer.headers.pop(STORE_HEADER, None)

    gw.store._session.hooks["response"].append(unnamed)
    with pytest.raises(StoreError, match="without naming its store"):
        gw.enter("SQQQ", qty=3, intent="09:43 hedge")
    assert [o.symbol for o in paper.asked()] == ["TQQQ"], "nothing sent (G5)"


def test_an_exit_answered_from_another_store_after_its_post_is_unrecorded_and_found_by_its_id_later(
    trading: tuple[OrderGateway, ThenRestarted, str, str], address: Address
) -> None:
    gw, paper, home, other = trading
    paper.after_post = lambda: address.serve(other)  # restarted on the other file as the order lands
    with pytest.raises(UnrecordedOrder, match="now serves another store"):
        gw.exit("TQQQ", intent="09:50 take profit")
    exit_order = paper.asked()[-1]
    assert (exit_order.side, exit_order.qty) == (Side.SELL, 10) and paper.get_position("TQQQ") is None
    with ClaimStore(other) as o:
        assert o.list_claims() == [], "the other store recorded nothing of it"
    address.serve(home)
    # The bot retries the decision once its own store is served again: the order is found at the
    # broker by its client_order_id and recorded, never sent twice (G1, G2).
    retry = gw.exit("TQQQ", intent="09:50 take profit")
    assert retry.outcome is Outcome.DUPLICATE and retry.order is not None
    assert retry.order.client_order_id == exit_order.client_order_id
    assert len(paper.asked()) == 2, "one order for the decision (G1)"
    with ClaimStore(home) as h:
        claim = h.get_by_client_order_id(exit_order.client_order_id)
        assert claim is not None and claim.state is ClaimState.FILLED
        assert claim.broker_order_id == retry.order.id
        assert h.position(AGENT, "TQQQ").qty == Decimal(0)
