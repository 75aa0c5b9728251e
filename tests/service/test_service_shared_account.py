"""Agent keys on one broker account read each other's holdings through `tradeguard serve` (G3, G4).

Two gateways on agent keys trade one paper account through the real service (a subprocess over a
SQLite file and the real PostgreSQL). Each registers the account at start; from then on each key
reads what the other agent holds, so an exit proven absent is re-sized instead of selling the
other agent's shares (G3), and a reconcile pass counts the other agent's ledger instead of
adopting its shares as drift (G4). An agent on another account (another tenant) still sees
nothing of theirs, and an agent whose account is unknown sees only itself.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.service.conftest import NewKey, Service
from tradeguard import OrderGateway, PaperBroker
from tradeguard.config import Settings
from tradeguard.domain import OrderRequest, Side
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import ConfigError, LeaseLost
from tradeguard.faults.plan import FaultPlan
from tradeguard.store import RemoteClaimLedger
from tradeguard.testing import FaultyBroker

# Short grace periods so an UNKNOWN exit is probed (and proven absent) within a second.
FAST = Settings().with_changes(
    unknown_grace_secs=0.5,
    unknown_probe_gap_secs=0.1,
    position_settle_secs=0.2,
    settle_delay_secs=0.1,
    recent_activity_secs=0.2,
)
FIRST_SELL_FAILS = """
seed: 1
faults:
  - route: POST /v2/orders
    match: {side: sell}
    nth: 1
    action: error
"""


def held(paper: PaperBroker, symbol: str) -> Decimal:
    position = paper.get_position(symbol)
    return Decimal(0) if position is None else position.qty


def get(client: httpx.Client, path: str, **params: str) -> Any:
    answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def test_an_exit_proven_absent_is_resized_not_resent_over_another_agents_shares(
    service: Service, new_key: NewKey
) -> None:
    paper = PaperBroker()
    faulty = FaultyBroker(paper, FaultPlan.parse(FIRST_SELL_FAILS))
    a = OrderGateway(faulty, service.base_url, agent_id="a", api_key=new_key("a"), settings=FAST)
    b = OrderGateway(paper, service.base_url, agent_id="b", api_key=new_key("b"), settings=FAST)
    a.enter("SPY", qty=10, intent="a-in")
    lost = a.exit("SPY", intent="a-out")  # a 5xx: nothing placed, the exit is UNKNOWN
    assert lost.claim is not None and lost.claim.state.value == "UNKNOWN"
    paper.submit_order(OrderRequest("SPY", Side.SELL, "closed-by-hand", qty=Decimal(10)))
    b.enter("SPY", qty=10, intent="b-in")
    assert held(paper, "SPY") == 10
    time.sleep(1.0)  # past the grace: the retry probes the broker and finds the exit absent
    a.exit("SPY", intent="a-out")
    assert held(paper, "SPY") == 10  # b's shares are still there
    assert b.position("SPY").qty == 10
    assert [o.client_order_id for o in paper.orders() if o.side is Side.SELL] == ["closed-by-hand"]


def test_a_reconcile_pass_on_an_agent_key_counts_the_other_agents_ledger(
    service: Service, new_key: NewKey
) -> None:
    paper = PaperBroker()
    a = OrderGateway(paper, service.base_url, agent_id="a", api_key=new_key("a"), settings=FAST)
    b = OrderGateway(paper, service.base_url, agent_id="b", api_key=new_key("b"), settings=FAST)
    a.enter("SPY", qty=10, intent="a-in")
    b.enter("SPY", qty=5, intent="b-in")
    time.sleep(0.5)  # past the settle window: the pass compares ledgers with the broker
    for _ in range(2):
        report = a.reconcile()
        assert report.aborted is None
        assert report.actions == []  # the broker's 15 are a's 10 and b's 5: no drift
    assert [a.position("SPY").qty, b.position("SPY").qty] == [10, 5]
    a.exit("SPY", intent="a-out")
    assert held(paper, "SPY") == 5 and b.position("SPY").qty == 5


def test_agents_on_one_account_read_each_other_and_no_one_else(service: Service, new_key: NewKey) -> None:
    shared, other = PaperBroker(), PaperBroker()
    keys = {agent: new_key(agent) for agent in ("a", "b", "c", "d")}
    for agent, broker, symbol in (
        ("a", shared, "SPY"),
        ("b", shared, "SPY"),
        ("c", other, "QQQ"),
        ("d", shared, "IWM"),
    ):
        gateway = OrderGateway(broker, service.base_url, agent_id=agent, api_key=keys[agent], settings=FAST)
        gateway.enter(symbol, qty=3, intent=f"{agent}-in")
    clients = {agent: service.client(key) for agent, key in keys.items()}
    a, b, c, d = (clients[agent] for agent in ("a", "b", "c", "d"))
    try:
        # d trades the shared account but its account is now unknown: it may be anyone's. Its own
        # key may not make a known account unknown (audit 22: it would count on every account);
        # an operator's admin key may.
        assert d.post("/v1/agents/account", json={"agent_id": "d", "account_key": ""}).status_code == 403
        with service.client(new_key("ops", admin=True)) as ops:
            unknown = {"agent_id": "d", "account_key": ""}
            assert ops.post("/v1/agents/account", json=unknown).status_code == 200
        b_claim = get(b, "/v1/claims", agent_id="b")[0]
        b_paths = (
            f"/v1/claims/{b_claim['key']}",
            f"/v1/claims/by-client-order-id/{b_claim['client_order_id']}",
        )
        # a reads b (the same account), never c (another account) nor d (unknown).
        assert get(a, "/v1/agents") == ["a", "b"]
        assert [(p["agent_id"], p["qty"]) for p in get(a, "/v1/positions")] == [("a", "3"), ("b", "3")]
        moved = get(a, "/v1/turns/moved", since="2000-01-01T00:00:00Z")
        assert sorted(p["agent_id"] for p in moved) == ["a", "b"]
        assert sorted(get(a, "/v1/agents/accounts")) == ["a", "b"]
        assert [x["agent_id"] for x in get(a, "/v1/claims")] == ["a", "b"]  # oldest first
        assert [x["agent_id"] for x in get(a, "/v1/claims", limit="1")] == ["a"]
        assert [x["agent_id"] for x in get(a, "/v1/claims", agent_id="b")] == ["b"]
        assert get(a, "/v1/claims", agent_id="c") == get(a, "/v1/claims", agent_id="d") == []
        assert a.get("/v1/position", params={"agent_id": "b", "symbol": "SPY"}).json()["qty"] == "3"
        for path in b_paths:
            assert a.get(path).json()["agent_id"] == "b"
        # c (another tenant) and d (unknown account) learn nothing of a and b, nor of each other.
        for outsider, own in ((c, "c"), (d, "d")):
            assert get(outsider, "/v1/agents") == [own]
            assert [p["agent_id"] for p in get(outsider, "/v1/positions")] == [own]
            assert list(get(outsider, "/v1/agents/accounts")) == [own]
            assert {x["agent_id"] for x in get(outsider, "/v1/claims")} == {own}
            assert get(outsider, "/v1/claims", agent_id="a") == []
            assert get(outsider, "/v1/symbols-in-motion") == []
            assert get(outsider, "/v1/turns/cleared", since="2000-01-01T00:00:00Z") == []
            moved = get(outsider, "/v1/turns/moved", since="2000-01-01T00:00:00Z")
            assert [p["agent_id"] for p in moved] == [own]
            for path in b_paths:
                assert outsider.get(path).json() == {"code": "not_found", "message": "claim not found"}
            for agent, symbol in (("a", "SPY"), ("nobody", "SPY")):
                answer = outsider.get("/v1/position", params={"agent_id": agent, "symbol": symbol})
                assert answer.json() == {"code": "not_found", "message": "position not found"}
        assert a.get("/v1/position", params={"agent_id": "c", "symbol": "QQQ"}).status_code == 404
    finally:
        for client in clients.values():
            client.close()
    # Reading is not writing: a's key still moves nothing of b's.
    with RemoteClaimLedger(service.base_url, api_key=keys["a"]) as remote:
        seen = remote.position("b", "SPY")
        assert seen.qty == 3
        with pytest.raises(ConfigError, match="not found"):
            remote.correct_position(seen, Decimal(-3), reason="not mine", detail={})
        with pytest.raises(ConfigError, match="not found"):
            remote.adjust_position("b", "SPY", Decimal(-3), reason="not mine")
        b_claim = remote.list_claims(agent_id="b")[0]
        with pytest.raises(LeaseLost):
            remote.transition(b_claim, ClaimState.CANCELED, reason="not mine")
        assert remote.position("b", "SPY").qty == 3


def test_a_close_by_hand_is_attributed_through_agent_keys_each_agent_in_its_own_pass(
    service: Service, new_key: NewKey
) -> None:
    """Order history proves both agents' first 10 went with a close by hand (G4). An agent key
    may change its own ledger only: A's pass trims A and tells B's correction (the service
    refuses it, the pass goes on), B's own pass clears B."""
    paper = PaperBroker()
    a = OrderGateway(paper, service.base_url, agent_id="a", api_key=new_key("a"), settings=FAST)
    b = OrderGateway(paper, service.base_url, agent_id="b", api_key=new_key("b"), settings=FAST)
    a.enter("SPY", qty=10, intent="a-in")
    b.enter("SPY", qty=10, intent="b-in")
    paper.close_position("SPY")  # by hand
    a.enter("SPY", qty=5, intent="a-again")
    time.sleep(0.5)  # past the positions lag (position_settle_secs 0.2)

    report = a.reconcile()

    assert report.aborted is None
    assert (a.position("SPY").qty, b.position("SPY").qty) == (5, 10)
    time.sleep(0.5)  # A's correction moved a turn: B's pass waits out the lag too
    b.reconcile()
    assert (a.position("SPY").qty, b.position("SPY").qty) == (5, 0)
    assert a.exit("SPY", intent="a-out").outcome.value == "submitted"
    assert held(paper, "SPY") == 0
