"""Audit 75: a bot that frees the shares Alpaca's 403 names, then exits, exits on both clients.

A common alpaca-py exit: sell what is held; on 403 "insufficient qty available" cancel the
orders the body's `related_orders` names (the legs of an earlier OTO or OCO holding the
shares) and sell again. The guard refuses such a sell itself, with Alpaca's body; its
`related_orders` came from the open-order listing, which leaves out `held` legs (an OTO's
stop-loss after its entry filled, an OCO's stop leg), so the bot canceled nothing and its exit
was refused for good where plain alpaca-py's went through.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, TimeInForce
from alpaca.trading.requests import (
    LimitOrderRequest,
    MarketOrderRequest,
    OrderRequest,
    StopLossRequest,
    TakeProfitRequest,
)

from tests.dropin.bot import PRICES
from tests.dropin.kit import as_order, broker_positions, guarded_client, held, plain_client, store_url
from tradeguard import ManualClock
from tradeguard.paper.server import PaperServer
from tradeguard.testing import FixedPrices, paper_server


def _buy(symbol: str, qty: int) -> OrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)


def _oto_entry(symbol: str) -> OrderRequest:
    """A market buy of 5 with a stop-loss leg (held by Alpaca until it is needed)."""
    return MarketOrderRequest(
        symbol=symbol, qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
        order_class=OrderClass.OTO, stop_loss=StopLossRequest(stop_price=370),
    )  # fmt: skip


def _oco_exit(symbol: str) -> OrderRequest:
    """An OCO exit of 10: a take-profit limit and a stop leg."""
    return LimitOrderRequest(
        symbol=symbol, qty=10, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, limit_price=450,
        order_class=OrderClass.OCO, take_profit=TakeProfitRequest(limit_price=450),
        stop_loss=StopLossRequest(stop_price=400),
    )  # fmt: skip


def exit_freeing_held_shares(client: TradingClient, symbol: str) -> list[str]:
    """The bot's exit: sell the position; on Alpaca's 403, cancel its related orders, sell again.

    Returns what happened, one line a step, without ids (comparable across the two clients).
    """
    log: list[str] = []
    qty = float(client.get_open_position(symbol).qty)  # type: ignore[union-attr]
    sell = MarketOrderRequest(symbol=symbol, qty=qty, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
    for _ in range(2):
        try:
            order = as_order(client.submit_order(sell))
        except APIError as exc:
            body: dict[str, Any] = json.loads(str(exc))
            related = body.get("related_orders", [])
            log.append(f"{exc.status_code} {body['message']}, {len(related)} related")
            for order_id in related:
                try:
                    client.cancel_order_by_id(order_id)
                except APIError as gone:  # an OCO leg canceled with its order: 422, fine
                    log.append(f"cancel {gone.status_code}")
            continue
        log.append(f"sold {order.qty} {order.status.value}")
        break
    return log


@contextmanager
def _account() -> Iterator[tuple[PaperServer, ManualClock]]:
    clock = ManualClock(datetime.now(UTC))
    with paper_server(prices=FixedPrices(PRICES), allow_short=True, clock=clock) as server:
        yield server, clock


Outcome = tuple[list[str], dict[str, str]]


def _run(kind: str, tmp_path: Path, symbol: str, entry: list[OrderRequest]) -> Outcome:
    """Run the entry orders and the bot's exit on a fresh account with `kind`'s client."""
    with _account() as (server, clock):
        store = store_url(tmp_path)
        clients = plain_client(server) if kind == "plain" else guarded_client(server, store, clock=clock)
        with clients as client:
            for order in entry:
                client.submit_order(order)
                clock.advance(2)
            log = exit_freeing_held_shares(client, symbol)
            assert held(server, symbol) == Decimal(0), log
            return log, broker_positions(server)


@pytest.mark.parametrize(
    ("symbol", "entry"),
    [
        ("DIA", [_oto_entry("DIA")]),
        ("MSFT", [_buy("MSFT", 10), _oco_exit("MSFT")]),
    ],
    ids=["oto-stop-leg", "oco"],
)  # fmt: skip
def test_an_exit_that_cancels_the_orders_alpacas_403_names_goes_through_as_on_alpaca_py(
    tmp_path: Path, symbol: str, entry: list[OrderRequest]
) -> None:
    plain = _run("plain", tmp_path, symbol, entry)
    guarded = _run("guarded", tmp_path, symbol, entry)
    assert plain[0][0].startswith("403 insufficient qty available") and plain[0][-1].startswith("sold")
    assert guarded == plain
