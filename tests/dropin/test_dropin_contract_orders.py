"""The drop-in contract for order classes, cancel and replace (issue 10, points 6-7), and the paper
server answering like Alpaca (assets, unknown symbols, replace, held bracket legs).

As in test_dropin_contract.py: the one-import `GuardedTradingClient` (or alpaca-py's own
`TradingClient` where the paper server alone is on trial) over HTTP, and real outcomes: the
orders and legs the broker holds, positions, the guard's ledger and claims.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import AssetClass, AssetStatus, OrderClass, OrderSide, TimeInForce
from alpaca.trading.enums import OrderStatus as AlpacaStatus
from alpaca.trading.enums import OrderType as AlpacaType
from alpaca.trading.models import Asset
from alpaca.trading.requests import (
    CancelOrderResponse,
    GetAssetsRequest,
    GetOrderByIdRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)

from tests.dropin.bot import PRICES, SYMBOLS, SessionLog, submit_with_retries
from tests.dropin.kit import (
    as_order,
    claims_of,
    flatten_orders,
    guarded_client,
    held,
    ledger_qty,
    limit,
    market,
    num,
    plain_client,
    store_url,
)
from tradeguard import GuardedTradingClient, ManualClock
from tradeguard.domain import OrderStatus, OrderType, Side
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.faults import Fault, FaultAction, FaultPlan
from tradeguard.paper.server import PaperServer
from tradeguard.testing import FixedPrices, orders_of, paper_server

BUY, SELL = OrderSide.BUY, OrderSide.SELL


def bracket(
    take_profit: float = 440.00, stop_loss: float = 400.00, limit_price: float | None = None
) -> MarketOrderRequest | LimitOrderRequest:
    """A 5-share MSFT bracket entry (MSFT trades at 420): at market, or at `limit_price`."""
    legs = {
        "symbol": "MSFT",
        "qty": 5,
        "side": BUY,
        "time_in_force": TimeInForce.DAY,
        "order_class": OrderClass.BRACKET,
        "take_profit": TakeProfitRequest(limit_price=take_profit),
        "stop_loss": StopLossRequest(stop_price=stop_loss),
    }
    if limit_price is None:
        return MarketOrderRequest(**legs)
    return LimitOrderRequest(limit_price=limit_price, **legs)


def msft_orders(server: PaperServer, side: Side) -> list[tuple[OrderType, OrderStatus]]:
    """The MSFT orders on one side, legs included, as (type, status), sorted."""
    found = flatten_orders(server.broker.orders())
    return sorted((o.order_type, o.status) for o in found if o.symbol == "MSFT" and o.side is side)


def assert_exited_by(
    server: PaperServer, symbol: str, fired: tuple[OrderType, ...], sibling: OrderType | None = None
) -> None:
    """Assert one sell of a `fired` type filled the position and the `sibling` leg died unfilled.

    A triggered stop may fill itself or, as at Alpaca, be replaced by the market order that fills.
    """
    sells = [o for o in flatten_orders(server.broker.orders()) if o.symbol == symbol and o.side is Side.SELL]
    filled = [o for o in sells if o.status is OrderStatus.FILLED]
    assert len(filled) == 1 and filled[0].order_type in fired, sells
    if sibling is not None:
        dead = [o for o in sells if o.order_type is sibling and o.status is not OrderStatus.FILLED]
        assert dead and all(o.status in (OrderStatus.CANCELED, OrderStatus.REPLACED) for o in dead), sells


# ---- 6. order classes beyond simple -------------------------------------------------------------


def test_a_bracket_is_sent_once_and_its_take_profit_fill_leaves_the_ledger_flat(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    request = bracket()
    placed = as_order(client.submit_order(request))
    assert placed.order_class is OrderClass.BRACKET
    legs = [(leg.type, leg.side) for leg in placed.legs or []]
    assert len(legs) == 2 and set(legs) == {(AlpacaType.LIMIT, SELL), (AlpacaType.STOP, SELL)}, legs
    assert as_order(client.submit_order(request)).id == placed.id  # the retry: nothing sent
    [parent] = [o for o in server.broker.orders() if o.symbol == "MSFT" and o.side is Side.BUY]
    assert parent.order_class.value == "bracket" and parent.status is OrderStatus.FILLED
    # orders() lists legs as orders of their own; the parent read by id carries them, as at Alpaca.
    nested = server.broker.get_order(parent.id)
    assert nested is not None and len(nested.legs) == 2
    assert held(server, "MSFT") == 5 and ledger_qty(client, "MSFT") == 5
    server.broker.set_price("MSFT", "441")  # the take-profit leg fills; its sibling is canceled
    assert_exited_by(server, "MSFT", (OrderType.LIMIT,), OrderType.STOP)
    assert held(server, "MSFT") == 0
    assert ledger_qty(client, "MSFT") == 0  # the leg fill reached the ledger without a reconcile
    exits = claims_of(client, "MSFT", Kind.EXIT)  # the legs are tracked as the position's exits
    assert sum((c.filled_qty for c in exits), Decimal(0)) == 5, exits


def test_bracket_legs_are_held_until_the_parent_fills(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    placed = as_order(client.submit_order(bracket(limit_price=410.00)))
    nested = as_order(client.get_order_by_id(placed.id, GetOrderByIdRequest(nested=True)))
    assert nested.status is AlpacaStatus.NEW
    assert [leg.status for leg in nested.legs or []] == [AlpacaStatus.HELD, AlpacaStatus.HELD]
    assert held(server, "MSFT") == 0 and ledger_qty(client, "MSFT") == 0
    server.broker.set_price("MSFT", "409")  # the entry fills at its limit; the legs go live
    nested = as_order(client.get_order_by_id(placed.id, GetOrderByIdRequest(nested=True)))
    assert nested.status is AlpacaStatus.FILLED
    assert len(nested.legs or []) == 2
    assert all(leg.status not in (AlpacaStatus.FILLED, AlpacaStatus.CANCELED) for leg in nested.legs or [])
    assert held(server, "MSFT") == 5 and ledger_qty(client, "MSFT") == 5


@pytest.mark.parametrize(
    ("price", "fired", "sibling"),
    [
        ("441", (OrderType.LIMIT,), OrderType.STOP),
        ("399", (OrderType.STOP, OrderType.MARKET), OrderType.LIMIT),
    ],
    ids=["take_profit", "stop_loss"],
)
def test_an_oco_exit_closes_the_position_by_one_leg_and_cancels_the_other(
    client: GuardedTradingClient,
    server: PaperServer,
    price: str,
    fired: tuple[OrderType, ...],
    sibling: OrderType,
) -> None:
    client.submit_order(market("MSFT", 5, BUY))
    oco = LimitOrderRequest(
        symbol="MSFT",
        qty=5,
        side=SELL,
        time_in_force=TimeInForce.DAY,
        order_class=OrderClass.OCO,
        take_profit=TakeProfitRequest(limit_price=440.00),
        stop_loss=StopLossRequest(stop_price=400.00),
    )
    placed = as_order(client.submit_order(oco))
    assert placed.order_class is OrderClass.OCO
    exits = {c.client_order_id for c in claims_of(client, "MSFT", Kind.EXIT)}
    assert placed.client_order_id in exits  # the OCO is claimed as an exit decision
    assert as_order(client.submit_order(oco)).id == placed.id  # and its retry sends nothing
    server.broker.set_price("MSFT", price)
    assert_exited_by(server, "MSFT", fired, sibling)
    assert held(server, "MSFT") == 0 and ledger_qty(client, "MSFT") == 0


def test_an_oto_entry_exits_by_its_stop_loss_leg(client: GuardedTradingClient, server: PaperServer) -> None:
    oto = MarketOrderRequest(
        symbol="MSFT",
        qty=5,
        side=BUY,
        time_in_force=TimeInForce.DAY,
        order_class=OrderClass.OTO,
        stop_loss=StopLossRequest(stop_price=400.00),
    )
    placed = as_order(client.submit_order(oto))
    assert placed.order_class is OrderClass.OTO
    assert held(server, "MSFT") == 5 and ledger_qty(client, "MSFT") == 5
    [(kind, status)] = msft_orders(server, Side.SELL)
    assert kind is OrderType.STOP and status.is_open  # the leg is live once the entry filled
    server.broker.set_price("MSFT", "399")
    assert_exited_by(server, "MSFT", (OrderType.STOP, OrderType.MARKET))
    assert held(server, "MSFT") == 0 and ledger_qty(client, "MSFT") == 0


def test_shares_beside_a_bracket_sell_as_at_alpaca_its_legs_holding_their_shares_once(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    client.submit_order(market("MSFT", 5, BUY))
    client.submit_order(bracket())  # 5 more; its two legs are alternatives holding the same 5
    assert server.broker.get_position("MSFT").qty_available == 5  # type: ignore[union-attr]
    sold = as_order(client.submit_order(market("MSFT", 5, SELL)))  # alpaca-py's own client sells them
    assert sold.status is AlpacaStatus.FILLED and sold.filled_qty == "5"
    assert held(server, "MSFT") == 5 and ledger_qty(client, "MSFT") == 5
    with pytest.raises(APIError) as refused:  # the bracket's 5 are not for sale twice
        client.submit_order(market("MSFT", 1, SELL))
    assert refused.value.status_code == 403


def test_a_stop_loss_leg_cut_after_a_partial_take_profit_is_still_tracked_to_its_fill(
    tmp_path: Path, clock: ManualClock
) -> None:
    with (
        paper_server(prices=FixedPrices(PRICES), max_fill_qty=3, clock=clock) as server,
        guarded_client(server, store_url(tmp_path), clock=clock) as client,
    ):
        client.submit_order(bracket(take_profit=440.00, stop_loss=400.00))  # 3 of 5 fill at once
        server.broker.set_price("MSFT", "421")  # the other 2
        server.broker.set_price("MSFT", "441")  # the take-profit sells 3 of 5: the stop is cut to 2
        assert held(server, "MSFT") == 2 and ledger_qty(client, "MSFT") == 2
        exits = claims_of(client, "MSFT", Kind.EXIT)
        assert sorted((c.state, c.order_qty) for c in exits) == [
            (ClaimState.PARTIALLY_FILLED, 5),
            (ClaimState.SUBMITTED, 2),  # the cut stop leg: still its claim's order
        ]
        server.broker.set_price("MSFT", "399")  # the stop sells the other 2
        assert held(server, "MSFT") == 0 and ledger_qty(client, "MSFT") == 0
        exits = claims_of(client, "MSFT", Kind.EXIT)
        assert sum((c.filled_qty for c in exits), Decimal(0)) == 5, exits


def test_a_trailing_stop_follows_the_price_and_then_exits(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    client.submit_order(market("QQQ", 5, BUY))
    trail = TrailingStopOrderRequest(
        symbol="QQQ", qty=5, side=SELL, time_in_force=TimeInForce.DAY, trail_price=10.00
    )
    as_order(client.submit_order(trail))
    server.broker.set_price("QQQ", "420")  # the high-water mark rises: the stop is now 410
    server.broker.set_price("QQQ", "412")
    [resting] = orders_of(server.broker, symbol="QQQ", side="sell")
    assert resting.status.is_open and held(server, "QQQ") == 5
    server.broker.set_price("QQQ", "409")  # below the trailed stop: it fires
    assert_exited_by(server, "QQQ", (OrderType.TRAILING_STOP, OrderType.MARKET))
    assert held(server, "QQQ") == 0 and ledger_qty(client, "QQQ") == 0


def test_a_lost_answer_on_a_bracket_still_places_one_bracket(tmp_path: Path) -> None:
    lost = Fault("POST /v2/orders", FaultAction.ACCEPT_THEN_TIMEOUT, match={"symbol": "MSFT"}, delay_secs=0.9)
    with (
        paper_server(prices=FixedPrices(PRICES), faults=FaultPlan((lost,))) as server,
        guarded_client(server, store_url(tmp_path), timeout_secs=0.5) as client,
    ):
        placed = as_order(submit_with_retries(client, bracket(), SessionLog(), "msft-bracket"))
        parents = [o for o in server.broker.orders() if o.symbol == "MSFT" and o.side is Side.BUY]
        assert [p.id for p in parents] == [str(placed.id)]
        assert held(server, "MSFT") == 5 and ledger_qty(client, "MSFT") == 5


# ---- 7. cancel and replace ------------------------------------------------------------------------


def test_a_cancel_moves_the_claim_to_canceled_with_what_filled(tmp_path: Path, clock: ManualClock) -> None:
    with (
        paper_server(prices=FixedPrices(PRICES), max_fill_qty=3, clock=clock) as server,
        guarded_client(server, store_url(tmp_path), clock=clock) as client,
    ):
        request = limit("SPY", 10, BUY, 500.00, "bot-spy-bid-1")  # marketable: 3 fill at once
        placed = as_order(client.submit_order(request))
        assert placed.status is AlpacaStatus.PARTIALLY_FILLED
        client.cancel_order_by_id(placed.id)
        [spy] = orders_of(server.broker, symbol="SPY")
        assert (spy.status, spy.filled_qty) == (OrderStatus.CANCELED, Decimal(3))
        [claim] = claims_of(client, "SPY")
        assert (claim.state, claim.filled_qty) == (ClaimState.CANCELED, Decimal(3))
        assert held(server, "SPY") == 3 and ledger_qty(client, "SPY") == 3
        assert as_order(client.submit_order(request)).id == placed.id  # a late retry sends nothing
        assert len(orders_of(server.broker)) == 1


def test_cancel_orders_cancels_every_open_guarded_claim(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    client.submit_order(limit("SPY", 2, BUY, 450.00, "bot-spy-bid"))
    client.submit_order(limit("QQQ", 3, BUY, 350.00))
    answers = client.cancel_orders()
    assert isinstance(answers, list) and len(answers) == 2, answers
    assert all(isinstance(a, CancelOrderResponse) and a.status == 200 for a in answers), answers
    assert server.broker.list_orders(status="open") == []
    assert [c.state for c in claims_of(client)] == [ClaimState.CANCELED, ClaimState.CANCELED]


def _oto(symbol: str) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol=symbol, qty=5, side=BUY, time_in_force=TimeInForce.GTC, order_class=OrderClass.OTO,
        stop_loss=StopLossRequest(stop_price=1.00),
    )  # fmt: skip


def _resting(server: PaperServer, symbol: str) -> list[str]:
    return [o.status.value for o in server.broker.orders() if o.symbol == symbol and not o.status.is_terminal]


def test_cancel_orders_takes_down_a_held_stop_loss_leg_as_alpacas_bulk_cancel_does(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    # Audit 16 #1: the open listing leaves out held legs; Alpaca's bulk cancel does not.
    client.submit_order(_oto("MSFT"))
    assert _resting(server, "MSFT") == ["held"]
    ours = client.cancel_orders()
    with paper_server(prices=FixedPrices(PRICES)) as alone, plain_client(alone) as plain:
        plain.submit_order(_oto("MSFT"))
        theirs = plain.cancel_orders()
        assert _resting(alone, "MSFT") == []
    assert isinstance(ours, list) and isinstance(theirs, list)
    assert len(ours) == len(theirs) == 1
    assert _resting(server, "MSFT") == []
    assert [c.state for c in claims_of(client) if c.kind is Kind.EXIT] == [ClaimState.CANCELED]


def test_close_all_positions_with_cancel_orders_closes_a_position_held_by_a_held_leg(
    client: GuardedTradingClient, server: PaperServer
) -> None:
    client.submit_order(_oto("MSFT"))
    answers = client.close_all_positions(cancel_orders=True)
    assert isinstance(answers, list)
    assert [(a.symbol, a.status) for a in answers] == [("MSFT", 200)]
    assert held(server, "MSFT") == 0 == ledger_qty(client, "MSFT")
    assert _resting(server, "MSFT") == []


@pytest.mark.parametrize("client_order_id", ["bot-spy-bid-1", None], ids=["client_order_id", "content"])
def test_a_replace_is_recorded_against_the_claim_and_a_retry_of_the_original_places_nothing(
    client: GuardedTradingClient, server: PaperServer, client_order_id: str | None
) -> None:
    request = limit("SPY", 5, BUY, 450.00, client_order_id)
    placed = as_order(client.submit_order(request))
    new = as_order(client.replace_order_by_id(placed.id, ReplaceOrderRequest(qty=7, limit_price=455.00)))
    assert new.id != placed.id and (num(new.qty), num(new.limit_price)) == ("7", "455")
    old = server.broker.get_order(str(placed.id))
    assert old is not None and old.status is OrderStatus.REPLACED and old.replaced_by == str(new.id)
    [claim] = claims_of(client, "SPY")
    assert claim.broker_order_id == str(new.id)
    assert (claim.order_qty, claim.spec.limit_price) == (Decimal(7), Decimal(455))
    if client_order_id is not None:
        assert claim.client_order_id == client_order_id  # the caller's id stays the key
    retry = as_order(client.submit_order(request))  # the original submit's late retry
    assert retry.id == new.id and len(orders_of(server.broker, symbol="SPY")) == 2
    server.broker.set_price("SPY", "454")
    assert held(server, "SPY") == 7 and ledger_qty(client, "SPY") == 7
    [claim] = claims_of(client, "SPY")
    assert claim.state is ClaimState.FILLED


# ---- the paper server answers like Alpaca ------------------------------------------------------------


def test_a_made_up_symbol_is_refused_as_alpaca_does_and_never_fills_at_100(tmp_path: Path) -> None:
    with paper_server() as server:  # no price source: every real symbol trades at $100
        with plain_client(server) as plain, pytest.raises(APIError) as alpaca:
            plain.submit_order(market("ZZZZQ", 1, BUY))
        assert alpaca.value.status_code == 422 and "ZZZZQ" in alpaca.value.message
        with guarded_client(server, store_url(tmp_path)) as client:
            with pytest.raises(APIError) as guarded:
                client.submit_order(market("ZZZZQ", 1, BUY))
            assert guarded.value.status_code == 422
            assert ledger_qty(client, "ZZZZQ") == 0
        assert server.broker.orders() == [] and server.broker.list_positions() == []


def test_the_paper_server_serves_alpacas_asset_routes(
    server: PaperServer, tmp_path: Path, clock: ManualClock
) -> None:
    with plain_client(server) as plain:
        tqqq = plain.get_asset("TQQQ")
        assert isinstance(tqqq, Asset) and tqqq.symbol == "TQQQ" and tqqq.tradable
        assert tqqq.status is AssetStatus.ACTIVE and tqqq.asset_class is AssetClass.US_EQUITY
        by_id = plain.get_asset(tqqq.id)
        assert isinstance(by_id, Asset) and by_id.symbol == "TQQQ"
        listed = plain.get_all_assets(
            GetAssetsRequest(status=AssetStatus.ACTIVE, asset_class=AssetClass.US_EQUITY)
        )
        assert isinstance(listed, list) and all(isinstance(a, Asset) for a in listed)
        assert set(SYMBOLS) <= {a.symbol for a in listed if isinstance(a, Asset)}
        with pytest.raises(APIError) as unknown:
            plain.get_asset("ZZZZQ")
        assert unknown.value.status_code == 404  # alpaca-py: "a 404 error will be thrown"
    with guarded_client(server, store_url(tmp_path), clock=clock) as client:
        spy = client.get_asset("SPY")
        assert isinstance(spy, Asset) and spy.symbol == "SPY"


def test_the_paper_server_replaces_an_order_as_alpaca_does(server: PaperServer) -> None:
    with plain_client(server) as plain:
        placed = as_order(plain.submit_order(limit("SPY", 2, BUY, 450.00)))
        new = as_order(plain.replace_order_by_id(placed.id, ReplaceOrderRequest(qty=3, limit_price=455.00)))
        assert new.id != placed.id and new.replaces == placed.id
        assert (num(new.qty), num(new.limit_price)) == ("3", "455")
        assert new.status in (AlpacaStatus.NEW, AlpacaStatus.ACCEPTED, AlpacaStatus.PENDING_NEW)
        old = as_order(plain.get_order_by_id(placed.id))
        assert old.status is AlpacaStatus.REPLACED and old.replaced_by == new.id
        server.broker.set_price("SPY", "455")
        assert as_order(plain.get_order_by_id(new.id)).status is AlpacaStatus.FILLED
        assert held(server, "SPY") == 3


def test_the_paper_server_holds_bracket_legs_until_the_entry_fills(server: PaperServer) -> None:
    with plain_client(server) as plain:
        placed = as_order(plain.submit_order(bracket(limit_price=410.00)))
        assert placed.order_class is OrderClass.BRACKET
        assert [leg.status for leg in placed.legs or []] == [AlpacaStatus.HELD, AlpacaStatus.HELD]
        server.broker.set_price("MSFT", "445")  # above the take-profit, but the entry has not filled
        assert msft_orders(server, Side.SELL) == [
            (OrderType.LIMIT, OrderStatus.HELD),
            (OrderType.STOP, OrderStatus.HELD),
        ]
        assert held(server, "MSFT") == 0  # a held leg never sells what the account does not hold
        server.broker.set_price("MSFT", "409")  # the entry fills at its limit; the legs go live
        assert held(server, "MSFT") == 5
        # Live now (at Alpaca the take-profit shows "new" and the stop-loss stays "held").
        assert [(t, s.is_open) for t, s in msft_orders(server, Side.SELL)] == [
            (OrderType.LIMIT, True),
            (OrderType.STOP, True),
        ]
        server.broker.set_price("MSFT", "441")  # take profit; one cancels the other
        assert_exited_by(server, "MSFT", (OrderType.LIMIT,), OrderType.STOP)
        assert held(server, "MSFT") == 0
