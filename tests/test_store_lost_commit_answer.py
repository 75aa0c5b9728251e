"""A claim whose commit answer was lost on the wire is this call's claim: it is sent, not "unknown".

Audit 10d D2: the network drops after PostgreSQL committed a new claim and before its answer
reaches the client. The store runs the claim statement again on a fresh connection (it is
rerunnable: the second run finds the row), and that second answer said the claim already
existed. The gateway then took its own brand-new claim for one it had sent earlier and lost:
it reported UNKNOWN, audited "sent earlier, answer not recorded", and sent nothing until the
grace period and two probes had passed. Nothing had been sent; the audit was false (G6) and the
bot's order late. Real parts: the PostgreSQL server behind a TCP proxy that cuts the connection
after passing the claim through; the paper broker.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

import pytest

from tradeguard import OrderGateway, PaperBroker
from tradeguard.domain import AuditAction, ClaimState
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.orders import Side
from tradeguard.execution import Outcome
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import AuditQuery, ClaimStore, new_owner_token

pytestmark = pytest.mark.postgres


class CuttingProxy:
    """Forwards TCP to PostgreSQL; once armed, the first message holding `trigger` reaches the
    server and the connection is then cut before any answer comes back."""

    def __init__(self, host: str, port: int, trigger: bytes) -> None:
        self._target = (host, port)
        self._trigger = trigger
        self.armed = False
        self.fired = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        cut = False
        try:
            while True:
                readable, _, _ = select.select([client, server], [], [], 5)
                if not readable:
                    continue
                if client in readable:
                    data = client.recv(65536)
                    if not data:
                        return
                    if self.armed and not self.fired and self._trigger in data:
                        self.fired = cut = True
                    server.sendall(data)
                if server in readable:
                    data = server.recv(65536)
                    if not data:
                        return
                    if cut:
                        return  # the server answered (committed); the client never hears it
                    client.sendall(data)
        finally:
            client.close()
            server.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()


@pytest.fixture
def proxied(pg_url: str) -> Iterator[tuple[str, CuttingProxy]]:
    parts = urlsplit(pg_url)
    proxy = CuttingProxy(parts.hostname or "127.0.0.1", parts.port or 5432, b"tg_claim2(")
    netloc = parts.netloc.replace(f":{parts.port}", f":{proxy.port}") if parts.port else parts.netloc
    try:
        yield urlunsplit(parts._replace(netloc=netloc)), proxy
    finally:
        proxy.close()


def test_a_new_claim_whose_commit_answer_was_lost_is_created_by_this_call(
    proxied: tuple[str, CuttingProxy],
) -> None:
    url, proxy = proxied
    with ClaimStore(url) as store:
        owner = new_owner_token()
        intent = Intent("bot", Kind.ENTRY, "TQQQ", Side.BUY, "09:42 breakout")
        proxy.armed = True
        outcome = store.claim(intent, OrderSpec(qty=Decimal(6)), owner=owner)
        assert proxy.fired
        assert outcome.created and outcome.claim.state is ClaimState.PENDING
        again = store.claim(intent, OrderSpec(qty=Decimal(6)), owner=owner)  # a real retry is still a retry
        assert not again.created
        other = store.claim(intent, OrderSpec(qty=Decimal(6)), owner=new_owner_token())
        assert not other.created


def test_the_gateway_sends_a_claim_whose_commit_answer_was_lost_at_once(
    proxied: tuple[str, CuttingProxy],
) -> None:
    url, proxy = proxied
    broker = PaperBroker(prices=FixedPrices({"TQQQ": "75"}))
    with ClaimStore(url) as store:
        gateway = OrderGateway(broker, store, agent_id="bot", reconcile_on_start=False)
        proxy.armed = True
        result = gateway.enter("TQQQ", qty=6, intent="09:42 breakout")
        assert proxy.fired
        assert result.outcome is Outcome.SUBMITTED and len(broker.orders()) == 1
        moves = store.audit_records(AuditQuery(actions=(AuditAction.TRANSITION.value,)))
        trail = [(r.prev_state, r.state) for r in moves]
        assert ("PENDING", "UNKNOWN") not in trail
