"""The requests-mock Alpaca fake must not hide Alpaca's rules (issue 8): `position_intent` is
checked against the position held, as Alpaca does (422 42210000 "position intent mismatch,
inferred: ...")."""

from __future__ import annotations

from decimal import Decimal

import pytest
from alpaca.trading.client import TradingClient

from tests.alpaca_bodies import FakeAlpaca
from tradeguard.broker.alpaca import AlpacaBroker
from tradeguard.domain import OrderRequest, PositionIntent, RejectKind, Side
from tradeguard.errors import OrderRejected


@pytest.fixture
def world(fake: FakeAlpaca, trading_client: TradingClient) -> tuple[FakeAlpaca, AlpacaBroker]:
    return fake, AlpacaBroker(trading_client)


def _sell(intent: PositionIntent, coid: str) -> OrderRequest:
    return OrderRequest("TQQQ", Side.SELL, coid, qty=Decimal(5), position_intent=intent)


def test_fake_refuses_sell_to_open_while_long_as_alpaca_does(world: tuple[FakeAlpaca, AlpacaBroker]) -> None:
    """Issue 8 (test double): a sell sent as sell_to_open while long is refused, inferred sell_to_close."""
    fake, broker = world
    fake.add_position("TQQQ", "10")
    with pytest.raises(OrderRejected) as refused:
        broker.submit_order(_sell(PositionIntent.SELL_TO_OPEN, "tg-open-while-long"))
    assert (refused.value.status_code, refused.value.code) == (422, 42210000)
    assert "inferred: sell_to_close" in refused.value.message
    assert fake.orders == {}


def test_fake_refuses_sell_to_close_while_flat_as_alpaca_does(world: tuple[FakeAlpaca, AlpacaBroker]) -> None:
    """Issue 8 (test double): sell_to_close on a flat symbol is refused, inferred sell_to_open,
    and the adapter classes it as a position rejection (a phantom candidate)."""
    fake, broker = world
    with pytest.raises(OrderRejected) as refused:
        broker.submit_order(_sell(PositionIntent.SELL_TO_CLOSE, "tg-close-while-flat"))
    assert "inferred: sell_to_open" in refused.value.message
    assert refused.value.kind is RejectKind.POSITION
    assert fake.orders == {}


def test_fake_accepts_sell_to_close_while_long(world: tuple[FakeAlpaca, AlpacaBroker]) -> None:
    fake, broker = world
    fake.add_position("TQQQ", "10")
    order = broker.submit_order(_sell(PositionIntent.SELL_TO_CLOSE, "tg-close-while-long"))
    assert order.client_order_id in fake.orders
