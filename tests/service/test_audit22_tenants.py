"""Audit 22: an agent key cannot make its shares count on other tenants' accounts (14a D1).

A store counts an agent of unknown account, or of a key named by the older rule, as on every
account (`ports.same_account`): its shares hold back every other agent's exits in the symbol.
Through the service, such an agent's key therefore neither claims nor books shares, and a key may
not turn its agent's known account unknown after booking.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.mothers import make_intent, make_spec
from tests.service.conftest import NewKey, Service
from tradeguard import OrderGateway, PaperBroker
from tradeguard.domain import OrderRequest, Side
from tradeguard.errors import ConfigError
from tradeguard.ports import account_key_from_id
from tradeguard.store import RemoteClaimLedger

_BOOKINGS = (
    ("/v1/position/adjustments", {"agent_id": "x", "symbol": "SPY", "delta": "10", "reason": "r"}),
    ("/v1/position/settle", {"agent_id": "x", "symbol": "SPY", "qty": "10", "reason": "r", "actor": "x"}),
    ("/v1/position/adoptions", {"agent_id": "x", "symbol": "SPY", "broker_qty": "10", "why": "r"}),
)


@pytest.mark.parametrize("registered", [None, "", "creds:legacy-rule-key"])
def test_an_agent_of_unknown_account_cannot_hold_back_another_tenants_exit(
    service: Service, new_key: NewKey, registered: str | None
) -> None:
    paper = PaperBroker()
    b = OrderGateway(paper, service.base_url, agent_id="b", api_key=new_key("b"))
    b.enter("SPY", qty=10, intent="b-in")
    key = new_key("x")
    with service.client(key) as x, RemoteClaimLedger(service.base_url, api_key=key) as remote:
        if registered is not None:
            assert x.post("/v1/agents/account", json={"agent_id": "x", "account_key": registered}).is_success
        for path, body in _BOOKINGS:
            refused = x.post(path, json=body)
            assert refused.status_code == 403, refused.text
            assert "no known broker account" in refused.json()["message"]
        with pytest.raises(ConfigError, match="no known broker account"):
            remote.claim(make_intent("x-in", agent="x", symbol="SPY"), make_spec("10"), owner="w")
    out = b.exit("SPY", intent="b-out")
    assert out.claim is not None and out.claim.state.value == "FILLED", out
    assert [o.side for o in paper.orders()] == [Side.BUY, Side.SELL]
    assert b.position("SPY").qty == Decimal(0)


def test_an_agent_key_cannot_make_its_known_account_unknown(service: Service, new_key: NewKey) -> None:
    paper = PaperBroker()
    b = OrderGateway(paper, service.base_url, agent_id="b", api_key=new_key("b"))
    b.enter("SPY", qty=10, intent="b-in")
    with service.client(new_key("x")) as x:
        known = account_key_from_id("x's own account")
        assert x.post("/v1/agents/account", json={"agent_id": "x", "account_key": known}).is_success
        booked = x.post(_BOOKINGS[0][0], json=_BOOKINGS[0][1])
        assert booked.status_code == 200, booked.text
        for unknown in ("", "creds:legacy-rule-key"):
            refused = x.post("/v1/agents/account", json={"agent_id": "x", "account_key": unknown})
            assert refused.status_code == 403, refused.text
    out = b.exit("SPY", intent="b-out")  # x's 10 are on x's own account: b sells its own 10
    assert out.claim is not None and out.claim.state.value == "FILLED", out
    assert b.position("SPY").qty == Decimal(0)


class _Unnamed:
    """A custom broker that names no account: the paper broker beneath, its account key hidden."""

    account_key = ""

    def __init__(self, inner: PaperBroker) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def test_a_position_of_an_agent_of_unknown_account_stays_exitable(service: Service, new_key: NewKey) -> None:
    # Booked before its account was required (here by an operator's key): the exit, sized from
    # its own holdings, is still claimed and sent.
    paper = PaperBroker()
    paper.submit_order(OrderRequest("SPY", Side.BUY, "bought-before", qty=Decimal(4)))
    with service.client(new_key("ops", admin=True)) as ops:
        booked = ops.post(_BOOKINGS[0][0], json=_BOOKINGS[0][1] | {"delta": "4"})
        assert booked.status_code == 200, booked.text
    x = OrderGateway(_Unnamed(paper), service.base_url, agent_id="x", api_key=new_key("x"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no known broker account"):
        x.enter("SPY", qty=1, intent="x-more")
    out = x.exit("SPY", intent="x-out")
    assert out.claim is not None and out.claim.state.value == "FILLED", out
    assert paper.get_position("SPY") is None and x.position("SPY").qty == 0


def test_an_agent_of_unknown_account_may_correct_its_position_toward_flat_only(
    service: Service, new_key: NewKey
) -> None:
    with service.client(new_key("ops", admin=True)) as ops:
        assert ops.post(_BOOKINGS[0][0], json=_BOOKINGS[0][1] | {"delta": "4"}).status_code == 200
    with service.client(new_key("x")) as x:
        seen = x.get("/v1/position", params={"agent_id": "x", "symbol": "SPY"}).json()
        up = x.post("/v1/position/corrections", json={"expect": seen, "delta": "1", "reason": "r"})
        assert up.status_code == 403, up.text
        beyond = x.post("/v1/position/corrections", json={"expect": seen, "delta": "-5", "reason": "r"})
        assert beyond.status_code == 403, beyond.text
        down = x.post("/v1/position/corrections", json={"expect": seen, "delta": "-3", "reason": "r"})
        assert down.status_code == 200 and down.json() == {"applied": True}, down.text
        assert x.get("/v1/position", params={"agent_id": "x", "symbol": "SPY"}).json()["qty"] == "1"
