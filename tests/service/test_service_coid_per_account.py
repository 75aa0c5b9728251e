"""Through `tradeguard serve`: a caller's client_order_id is unique per broker account, as at Alpaca.

Two drop-in clients on agent keys of two paper accounts share one claim service (a subprocess
over a SQLite file and the real PostgreSQL) and both send `client_order_id="entry-1"`: both
orders are placed, and each retry is its own order (G1). Two agents on one account still get
Alpaca's 422 with nothing sent, and the second adopts nothing (G1, the ledger). A lookup by id
through the service reads the caller's own account's claim.
"""

from __future__ import annotations

import pytest
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from tests.service.conftest import NewKey, Service
from tradeguard import GuardedTradingClient, PaperBroker
from tradeguard.client import ClientOrderIdReused
from tradeguard.ports import account_key_of
from tradeguard.store import RemoteClaimLedger


def buy(qty: int) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol="SPY", qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, client_order_id="entry-1"
    )


def test_agent_keys_of_two_accounts_each_place_entry_1_and_one_account_refuses_a_second(
    service: Service, new_key: NewKey
) -> None:
    x, y = PaperBroker(), PaperBroker()
    keys = {agent: new_key(agent) for agent in ("a", "b", "a2")}
    bots = {
        agent: GuardedTradingClient(
            store=service.base_url, store_api_key=keys[agent], agent_id=agent, broker=broker
        )
        for agent, broker in (("a", x), ("b", y), ("a2", x))
    }
    try:
        placed_a = bots["a"].submit_order(buy(1))
        placed_b = bots["b"].submit_order(buy(2))
        assert bots["a"].submit_order(buy(1)).id == placed_a.id  # type: ignore[union-attr]
        assert bots["b"].submit_order(buy(2)).id == placed_b.id  # type: ignore[union-attr]
        assert [str(o.id) for o in x.orders()] == [str(placed_a.id)]  # type: ignore[union-attr]
        assert [str(o.id) for o in y.orders()] == [str(placed_b.id)]  # type: ignore[union-attr]
        with pytest.raises(ClientOrderIdReused):  # a2 is on a's account: Alpaca's 422, nothing sent
            bots["a2"].submit_order(buy(1))
        assert len(x.orders()) == 1
    finally:
        for bot in bots.values():
            bot.close()
    for agent, broker, qty in (("a", x, 1), ("b", y, 2)):
        with RemoteClaimLedger(service.base_url, api_key=keys[agent]) as remote:
            mine = remote.get_by_client_order_id("entry-1")  # the key's own account, by default
            assert mine is not None and (mine.agent_id, mine.order_qty) == (agent, qty)
            scoped = remote.get_by_client_order_id("entry-1", account_key=account_key_of(broker))
            assert scoped is not None and scoped.key == mine.key
            assert remote.position(agent, "SPY").qty == qty
    with RemoteClaimLedger(service.base_url, api_key=keys["a2"]) as remote:
        assert remote.list_claims(agent_id="a2") == [] and remote.position("a2", "SPY").is_flat


def test_through_the_service_a_re_pointed_agents_unknown_claim_stays_unknown_on_its_new_account(
    service: Service, new_key: NewKey
) -> None:
    # bot "a" sends on account x and loses the answer (nothing landed); its key is then used by a
    # client on account y (re-pointed). y's passes say nothing of x: UNKNOWN stays (G2), and the
    # claim read through the service names its account (`Claim.coid_scope`).
    from tradeguard.config import Settings
    from tradeguard.domain import BrokerOrder, OrderRequest
    from tradeguard.domain.lifecycle import ClaimState
    from tradeguard.errors import OutcomeUnknown
    from tradeguard.ports import ForwardingBroker

    class Lost(ForwardingBroker):
        def submit_order(self, request: OrderRequest) -> BrokerOrder:
            raise OutcomeUnknown("read timed out")

    quick = Settings(
        unknown_grace_secs=0, unknown_probe_gap_secs=0, recent_activity_secs=0, position_settle_secs=0
    )
    x, y = PaperBroker(), PaperBroker()
    key = new_key("a")
    on_x = GuardedTradingClient(
        store=service.base_url, store_api_key=key, agent_id="a", broker=Lost(x), settings=quick
    )
    try:
        with pytest.raises(Exception):  # noqa: B017 - the drop-in's 504: it may exist
            on_x.submit_order(buy(1))
    finally:
        on_x.close()
    on_y = GuardedTradingClient(
        store=service.base_url, store_api_key=key, agent_id="a", broker=y, settings=quick
    )
    try:
        on_y.gateway.reconcile()  # before: NOT_SENT on y's word
    finally:
        on_y.close()
    with RemoteClaimLedger(service.base_url, api_key=key) as remote:
        (claim,) = remote.list_claims(agent_id="a")
        assert claim.state is ClaimState.UNKNOWN and claim.coid_scope == account_key_of(x)
    assert x.orders() == [] and y.orders() == []
