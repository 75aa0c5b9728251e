"""A drop-in client given a broker needs no keys and no network (its docstring's promise).

`GuardedTradingClient(broker=PaperBroker())` sends its guarded orders to that broker and answers
alpaca-py's own calls (account, positions, orders) from the same paper account in process; over
any other broker those calls are refused in one line naming what to pass. Every test runs with
sockets unable to connect, so a request that tried to leave the process would fail it.
"""

from __future__ import annotations

import socket
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide

from tests.dropin.bot import PRICES
from tests.dropin.kit import as_order, ledger_qty, market, store_url
from tradeguard import ConfigError, GuardedTradingClient, OrderGateway, PaperBroker
from tradeguard.faults import FaultPlan, FaultyBroker
from tradeguard.testing import FixedPrices

BUY = OrderSide.BUY


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every outgoing connection fail: these clients must never need one."""

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("a keyless client over a broker opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def paper() -> PaperBroker:
    return PaperBroker(prices=FixedPrices(PRICES))


def test_a_client_given_a_paper_broker_needs_no_keys_and_reads_that_account(tmp_path: Path) -> None:
    broker = paper()
    with GuardedTradingClient(broker=broker, store=store_url(tmp_path)) as client:
        placed = as_order(client.submit_order(market("SPY", 10, BUY, "bot-spy-1")))
        [order] = broker.orders()
        assert str(placed.id) == order.id
        assert Decimal(str(client.get_open_position("SPY").qty)) == 10  # alpaca-py's own call
        assert str(client.get_order_by_client_id("bot-spy-1").id) == order.id
        assert Decimal(str(client.get_account().cash)) == Decimal(str(broker.account()["cash"]))
        with pytest.raises(APIError) as flat:  # Alpaca's own 404, as alpaca-py raises it
            client.get_open_position("QQQ")
        assert flat.value.status_code == 404
        client.close_position("SPY")
        assert ledger_qty(client, "SPY") == 0 and broker.get_position("SPY") is None


def test_a_keyless_client_over_a_gateway_reads_the_paper_account_beneath_its_wrappers(
    tmp_path: Path,
) -> None:
    broker = paper()
    faulty = FaultyBroker(broker, FaultPlan())  # a wrapper, as chaos runs and fault tests use
    gateway = OrderGateway(faulty, store_url(tmp_path), agent_id="bot")
    client = GuardedTradingClient(gateway=gateway)
    try:
        as_order(client.submit_order(market("SPY", 3, BUY)))
        assert Decimal(str(client.get_open_position("SPY").qty)) == 3
    finally:
        client.close()


class _Opaque:
    """A broker that is not a PaperBroker and wraps nothing it names: an unknown venue."""

    def __init__(self, inner: PaperBroker) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_over_another_broker_alpaca_pys_own_calls_are_refused_naming_the_keys(tmp_path: Path) -> None:
    broker = paper()
    with GuardedTradingClient(broker=_Opaque(broker), store=store_url(tmp_path)) as client:  # type: ignore[arg-type]
        as_order(client.submit_order(market("SPY", 1, BUY)))  # guarded calls still work
        with pytest.raises(ConfigError, match="api_key"):
            client.get_account()
    assert len(broker.orders()) == 1
