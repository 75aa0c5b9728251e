"""A gateway can be told which store its claim service must serve (`?store_id=`), before its first call.

Store41 pinned the store of the service's *first* answer: a gateway started after the service had
been moved to another database (a relative SQLite path read from another working directory, a
failover to an empty server) pinned that other store, and its decisions looked new there, its
exits saw a flat ledger. Now the store can be named up front, in the service URL
(``https://host:8787?store_id=...``, so `OrderGateway(store=...)`, `GuardedTradingClient` and
every `--store` take it) or as `RemoteClaimLedger(store_id=...)`: a service on another store is
refused from the first request, and refuses it unrun (409), so nothing is recorded there and
nothing is sent (G5). `tradeguard db check` prints the id.

Real processes: the service (`tests.service.conftest.start_service`) over real SQLite files, the
gateway over HTTP, a paper account in process.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.gateway_kit import MAY21_PRICES
from tests.service.conftest import start_service
from tests.test_store41_service_restarted import AGENT, _provisioned_like, _store
from tradeguard.cli import main
from tradeguard.config import Settings
from tradeguard.errors import ConfigError, StoreError
from tradeguard.execution import Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.service.keys import KeyRing
from tradeguard.store import ClaimStore, RemoteClaimLedger, open_ledger
from tradeguard.testing import RecordingBroker


def _two_stores(tmp_path: Path) -> tuple[str, str, str, RecordingBroker]:
    """The gateway's store (`claims.db`: 10 TQQQ bought), another provisioned alike, the key, the account."""
    home = _store(tmp_path / "claims.db")
    with KeyRing(home) as ring:
        key = ring.create(AGENT)[1]
    paper = RecordingBroker(PaperBroker(prices=MAY21_PRICES))
    with ClaimStore(home) as store:
        gw = OrderGateway(paper, store, agent_id=AGENT)
        assert gw.enter("TQQQ", qty=10, intent="09:42 breakout").outcome is Outcome.SUBMITTED
    other = _store(tmp_path / "elsewhere" / "claims.db")  # the same name, another folder
    _provisioned_like(home, other)
    return home, other, key, paper


def test_a_gateway_naming_its_store_refuses_a_service_moved_before_its_first_call(tmp_path: Path) -> None:
    home, other, key, paper = _two_stores(tmp_path)
    with ClaimStore(home) as h:
        mine = h.store_id
    service = start_service(other, tmp_path)  # already moved when the bot starts
    try:
        # Without a store id the gateway pins whatever it meets first: the other store, where its
        # 10 TQQQ are unknown (store41's limit) ...
        unnamed = RemoteClaimLedger(service.base_url, api_key=key)
        assert unnamed.position(AGENT, "TQQQ").qty == 0 and unnamed.store_id != mine
        unnamed.close()
        # ... named, it refuses the service at once: nothing read from it, nothing sent.
        with pytest.raises(StoreError, match="it was configured with") as refused:
            gw = OrderGateway(paper, f"{service.base_url}?store_id={mine}", agent_id=AGENT, api_key=key)
            gw.exit("TQQQ", intent="09:50 take profit")
        assert mine in str(refused.value)
        assert len(paper.asked()) == 1, "nothing sent but the first entry (G5)"
        with ClaimStore(other) as o:
            assert o.list_claims() == [] and o.audit_count() == 0, "nothing recorded there"
    finally:
        service.stop()
    # The service back on the gateway's store: the same configuration trades.
    service = start_service(home, tmp_path)
    try:
        gw = OrderGateway(paper, f"{service.base_url}?store_id={mine}", agent_id=AGENT, api_key=key)
        assert gw.position("TQQQ").qty == 10
        gw.store.close()
    finally:
        service.stop()


def test_the_store_id_in_the_url_or_the_argument_is_checked_before_any_request() -> None:
    settings = Settings()  # given: no request is made at construction
    ledger = RemoteClaimLedger("http://127.0.0.1:9/?store_id=abc-123", api_key="k", settings=settings)
    assert ledger.store_id == "abc-123" and ledger.url == "http://127.0.0.1:9"
    ledger.close()
    same = RemoteClaimLedger(
        "http://127.0.0.1:9?store_id=abc", api_key="k", settings=settings, store_id="abc"
    )
    assert same.store_id == "abc"
    same.close()
    refused = {
        "http://127.0.0.1:9?store=abc": "takes only ?store_id=..., not store",
        "http://127.0.0.1:9?store_id=abc&store_id=def": "names another store_id",
        "http://127.0.0.1:9?store_id=": "is not a store id",
        "http://127.0.0.1:9?store_id=a%20b": "is not a store id",
    }
    for url, said in refused.items():
        with pytest.raises(ConfigError, match=re.escape(said)):
            RemoteClaimLedger(url, api_key="k", settings=settings)
    with pytest.raises(ConfigError, match="names another store_id"):
        RemoteClaimLedger("http://127.0.0.1:9?store_id=abc", api_key="k", settings=settings, store_id="def")
    with pytest.raises(ConfigError, match="is not a store id"):
        open_ledger("http://127.0.0.1:9?store_id=" + "x" * 65, api_key="k", settings=settings)


def test_db_check_prints_the_store_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = _store(tmp_path / "claims.db")
    with ClaimStore(url) as store:
        mine = store.store_id
    assert main(["db", "check", "--store", url]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f", store id {mine}")
