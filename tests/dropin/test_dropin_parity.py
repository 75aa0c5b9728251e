"""The drop-in answers as plain alpaca-py does where the guard has nothing to make safer.

Each test runs one bot's calls twice on the paper server: with alpaca-py's own `TradingClient`
and with the one-import `GuardedTradingClient`, and checks both end the same (the orders at the
broker, its positions, the answers' shapes), and that the guard's ledger agrees.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest
import requests_mock
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.enums import PositionIntent as AlpacaPositionIntent
from alpaca.trading.models import Asset, Position
from alpaca.trading.requests import CancelOrderResponse, MarketOrderRequest, ReplaceOrderRequest

from tests.alpaca_bodies import PAPER_URL, FakeAlpaca
from tests.dropin.kit import (
    as_order,
    claims_of,
    flatten_orders,
    guarded_client,
    held,
    ledger_qty,
    limit,
    market,
    plain_client,
    store_url,
)
from tests.dropin.test_dropin_contract_orders import bracket
from tradeguard import GuardedTradingClient, ManualClock
from tradeguard.domain import OrderStatus
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.paper import PaperBroker
from tradeguard.paper.server import PaperServer

BUY, SELL = OrderSide.BUY, OrderSide.SELL


@pytest.fixture(params=["alpaca-py", "guarded"])
def bot(
    request: pytest.FixtureRequest, server: PaperServer, tmp_path: Path, clock: ManualClock
) -> Iterator[TradingClient]:
    """The same bot's client: alpaca-py's own, or the guard's by one import."""
    make: AbstractContextManager[TradingClient] = (
        plain_client(server)
        if request.param == "alpaca-py"
        else guarded_client(server, store_url(tmp_path), clock=clock)
    )
    with make as client:
        yield client


def _ledger_agrees(client: TradingClient, server: PaperServer, symbol: str) -> None:
    if isinstance(client, GuardedTradingClient):
        assert ledger_qty(client, symbol) == held(server, symbol)


# ---- close_position takes a symbol or an asset id ------------------------------------------


@pytest.mark.parametrize("as_text", [False, True], ids=["uuid", "str"])
def test_close_position_by_asset_id_closes_that_assets_position(
    bot: TradingClient, server: PaperServer, as_text: bool
) -> None:
    bot.submit_order(market("SPY", 10, BUY))
    asset = bot.get_asset("SPY")
    assert isinstance(asset, Asset)
    closed = as_order(bot.close_position(str(asset.id) if as_text else asset.id))
    assert closed.symbol == "SPY" and closed.side is SELL and closed.qty == "10"
    assert held(server, "SPY") == 0
    _ledger_agrees(bot, server, "SPY")


def test_close_position_by_an_unknown_asset_id_is_a_404_and_sends_nothing(
    bot: TradingClient, server: PaperServer
) -> None:
    bot.submit_order(market("SPY", 10, BUY))
    with pytest.raises(APIError) as missing:
        bot.close_position("00000000-0000-4000-8000-000000000000")
    assert missing.value.status_code == 404
    assert held(server, "SPY") == 10 and len(server.broker.orders()) == 1


def test_the_paper_server_answers_position_routes_by_asset_id(bot: TradingClient) -> None:
    bot.submit_order(market("QQQ", 3, BUY))
    asset = bot.get_asset("QQQ")
    assert isinstance(asset, Asset)
    position = bot.get_open_position(asset.id)
    assert isinstance(position, Position) and position.symbol == "QQQ" and position.qty == "3"
    assert str(position.asset_id) == str(asset.id)


# ---- cancel_orders answers once per order canceled, a bracket's legs included --------------


@pytest.mark.parametrize("entry_price", [410.00, None], ids=["resting-entry", "filled-entry"])
def test_cancel_orders_answers_once_per_order_it_canceled_legs_included(
    bot: TradingClient, server: PaperServer, entry_price: float | None
) -> None:
    bot.submit_order(bracket(limit_price=entry_price))
    bot.submit_order(limit("QQQ", 1, BUY, 300.00))
    answers = bot.cancel_orders()
    assert isinstance(answers, list) and all(isinstance(a, CancelOrderResponse) for a in answers)
    canceled = {o.id for o in flatten_orders(server.broker.orders()) if o.status is OrderStatus.CANCELED}
    assert sorted(str(a.id) for a in answers) == sorted(canceled)
    assert len(canceled) == (4 if entry_price else 3) and {a.status for a in answers} == {200}
    if isinstance(bot, GuardedTradingClient):
        assert all(c.state is not ClaimState.SUBMITTED for c in claims_of(bot))


def test_cancel_orders_raw_answers_have_alpacas_keys(server: PaperServer, tmp_path: Path) -> None:
    with plain_client(server, raw_data=True) as plain:
        plain.submit_order(bracket(limit_price=410.00))
        expected = plain.cancel_orders()
    with guarded_client(server, store_url(tmp_path), raw_data=True) as guarded:
        guarded.submit_order(bracket(limit_price=410.00))
        got = guarded.cancel_orders()
    assert [sorted(a) for a in got] == [sorted(a) for a in expected] == [["id", "status"]] * 3


# ---- a notional sell of a long is a guarded exit, in the shares its dollars buy ------------


def dollars(
    symbol: str, amount: float, side: OrderSide, client_order_id: str | None = None
) -> MarketOrderRequest:
    """A day market order for `amount` dollars."""
    return MarketOrderRequest(
        symbol=symbol,
        notional=amount,
        side=side,
        time_in_force=TimeInForce.DAY,
        client_order_id=client_order_id,
    )


@pytest.mark.parametrize("client_order_id", [None, "bot-spy-trim-1"], ids=["content", "client_order_id"])
def test_a_notional_sell_of_part_of_a_long_is_accepted_and_sells_those_dollars(
    bot: TradingClient, server: PaperServer, client_order_id: str | None
) -> None:
    bot.submit_order(market("SPY", 10, BUY))  # SPY at 500
    sold = as_order(bot.submit_order(dollars("SPY", 1250, SELL, client_order_id)))
    assert sold.status.value == "filled" and sold.filled_qty == "2.5"
    assert held(server, "SPY") == Decimal("7.5")
    _ledger_agrees(bot, server, "SPY")
    if isinstance(bot, GuardedTradingClient):
        assert sold.position_intent is AlpacaPositionIntent.SELL_TO_CLOSE
        again = as_order(bot.submit_order(dollars("SPY", 1250, SELL, client_order_id)))  # a retry
        assert again.id == sold.id and held(server, "SPY") == Decimal("7.5")


def test_a_notional_sell_beyond_the_long_never_sells_more_than_is_held(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    client.submit_order(market("SPY", 10, BUY))
    client.submit_order(limit("SPY", 4, SELL, 600.00))  # an exit in flight holds 4 shares
    sold = as_order(client.submit_order(dollars("SPY", 5000, SELL)))  # 10 shares' worth
    assert sold.qty == "6" and held(server, "SPY") == 4  # what was held minus the exit in flight
    assert ledger_qty(client, "SPY") == 4


# ---- a replace may enlarge an exit within what is held minus the other exits ----------------


def test_a_replace_that_enlarges_an_exit_within_the_position_is_accepted(
    bot: TradingClient, server: PaperServer
) -> None:
    bot.submit_order(market("SPY", 10, BUY))
    target = as_order(bot.submit_order(limit("SPY", 4, SELL, 600.00)))
    bigger = as_order(bot.replace_order_by_id(target.id, ReplaceOrderRequest(qty=8)))
    assert bigger.qty == "8" and bigger.replaces == target.id
    server.broker.set_price("SPY", "600.00")
    assert held(server, "SPY") == 2
    _ledger_agrees(bot, server, "SPY")


def test_a_replace_that_enlarges_an_exit_beyond_the_other_exits_room_is_refused(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    client.submit_order(market("SPY", 10, BUY))
    target = as_order(client.submit_order(limit("SPY", 4, SELL, 600.00)))
    client.submit_order(limit("SPY", 3, SELL, 700.00))  # another exit in flight: 7 left for this one
    with pytest.raises(APIError) as refused:
        client.replace_order_by_id(target.id, ReplaceOrderRequest(qty=8))
    assert refused.value.status_code == 422 and "more than is held" in refused.value.message
    assert [o.qty for o in server.broker.orders() if o.status.is_open] == [Decimal(4), Decimal(3)]
    bigger = as_order(client.replace_order_by_id(target.id, ReplaceOrderRequest(qty=7)))
    assert bigger.qty == "7"
    [claim] = [c for c in claims_of(client, "SPY") if c.broker_order_id == str(bigger.id)]
    assert claim.order_qty == 7 and claim.client_order_id == target.client_order_id
    server.broker.set_price("SPY", "700.00")  # both exits fill: flat, never short (G3)
    assert held(server, "SPY") == 0 and ledger_qty(client, "SPY") == 0


# ---- a client_order_id reused for another order is Alpaca's 422 -------------------------------


def test_a_client_order_id_reused_for_another_order_is_alpacas_422(
    bot: TradingClient, server: PaperServer
) -> None:
    bot.submit_order(market("SPY", 2, BUY, "bot-spy-1"))
    with pytest.raises(APIError) as reused:
        bot.submit_order(market("QQQ", 1, BUY, "bot-spy-1"))  # another symbol, the same id
    assert (reused.value.status_code, reused.value.code) == (422, 40010001)
    # Alpaca's message word for word, as plain alpaca-py shows it (a bot may compare it); the
    # guard names the other order in the body's `detail`.
    assert reused.value.message == "client_order_id must be unique"
    assert [o.symbol for o in server.broker.orders()] == ["SPY"]


def test_close_all_positions_raw_answers_have_alpacas_keys(server: PaperServer, tmp_path: Path) -> None:
    with plain_client(server, raw_data=True) as plain:
        plain.submit_order(market("SPY", 2, BUY))
        expected = plain.close_all_positions(cancel_orders=True)
    with guarded_client(server, store_url(tmp_path), raw_data=True) as guarded:
        guarded.submit_order(market("SPY", 2, BUY))
        got = guarded.close_all_positions(cancel_orders=True)
    assert [sorted(a) for a in got] == [sorted(a) for a in expected] == [["body", "status", "symbol"]]


def test_close_position_by_asset_id_over_alpaca_asks_alpaca_for_the_symbol(
    claims: str, mocker: requests_mock.Mocker, fake: FakeAlpaca
) -> None:
    asset = PaperBroker().get_asset("SPY")
    assert asset is not None
    mocker.get(f"{PAPER_URL}/v2/assets/{asset.id}", json=asset.to_alpaca())
    fake.add_position("SPY", "10")
    with GuardedTradingClient("key", "secret", store=claims, agent_id="bot") as client:
        closed = as_order(client.close_position(UUID(asset.id)))
    assert closed.symbol == "SPY" and closed.qty == "10" and closed.side is SELL
    [sent] = [r.json() for r in mocker.request_history if r.method == "POST"]
    assert (sent["symbol"], sent["position_intent"]) == ("SPY", "sell_to_close")


def test_close_all_positions_explains_a_refused_symbol_as_alpaca_py_does(
    bot: TradingClient, server: PaperServer
) -> None:
    """Audit 10a D3: a symbol the close cannot sell answers with Alpaca's whole 403 body
    (available, existing_qty, held_for_orders, symbol), not its code and message alone."""
    bot.submit_order(market("SPY", 10, BUY))
    bot.submit_order(limit("SPY", 10, SELL, 10_000))  # holds every share
    bot.submit_order(market("QQQ", 3, BUY))
    answers = {a.symbol: a for a in bot.close_all_positions(cancel_orders=False)}
    assert sorted(answers) == ["QQQ", "SPY"]
    refused = answers["SPY"]
    assert refused.status == 403
    body = refused.body
    assert body is not None and float(body.available) == 0  # type: ignore[union-attr, arg-type]
    assert float(body.existing_qty) == float(body.held_for_orders) == 10  # type: ignore[union-attr, arg-type]
    assert body.symbol == "SPY"  # type: ignore[union-attr]
    assert answers["QQQ"].status == 200 and held(server, "QQQ") == 0
