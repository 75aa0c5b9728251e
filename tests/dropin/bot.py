"""An ordinary alpaca-py bot, for the drop-in tests (issue 10): it knows nothing of tradeguard.

It imports only alpaca-py (and `requests`, whose exceptions alpaca-py lets through), so it runs
unchanged on alpaca-py's `TradingClient` and on `GuardedTradingClient`: the one-import switch the
README promises. `run_session(client, raw_client)` trades one realistic session: market and limit
entries, plain sells to exit, a short and its cover, a partial then a full `close_position`, a
bracket, a resting bid canceled and another replaced, orders read with ``raw_data=True``, and
`close_all_positions(cancel_orders=True)` to end the day.

Its retry policy is the naive one real bots have: when `submit_order` raises a transport error
(timeout, reset) or an `APIError` that is not a definite 4xx refusal, it sends the very same
request object again, up to `MAX_ATTEMPTS` times. Some decisions carry a `client_order_id`,
others do not. Any other `APIError` is logged and the session goes on, as a bot that must not
die mid-session would; an exception that is not alpaca-py's (or requests') is a crash.

Each decision below is different in content or carries its own `client_order_id`, so identical
content within a short window only ever comes from a retry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Asset, ClosePositionResponse, Order, Position
from alpaca.trading.requests import (
    ClosePositionRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    OrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
    TakeProfitRequest,
)

__all__ = [
    "MAX_ATTEMPTS",
    "PRICES",
    "SYMBOLS",
    "SessionLog",
    "run_session",
    "submit_with_retries",
]

# The paper account's prices for the session (the tests pin the paper broker to them).
PRICES = {
    "SPY": "500.00",
    "QQQ": "400.00",
    "DIA": "380.00",
    "AAPL": "190.00",
    "TQQQ": "75.00",
    "MSFT": "420.00",
}
SYMBOLS = tuple(PRICES)

MAX_ATTEMPTS = 3
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_TRANSPORT_ERRORS = (requests.exceptions.Timeout, requests.exceptions.ConnectionError)


@dataclass
class SessionLog:
    """What the bot did and saw.

    Attributes:
        steps: The steps run, in order.
        positions: After each step, the account's positions as {symbol: signed qty}.
        errors: Each alpaca-py error a step ended with: "step: status message".
        attempts: How many times each decision's order was sent (submit_order calls).
        raw_orders_read: How many orders the raw_data=True read returned.
    """

    steps: list[str] = field(default_factory=list)
    positions: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    raw_orders_read: int = 0


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, _TRANSPORT_ERRORS):
        return True
    # No status (an answer that never came) or a 5xx/429: the naive bot tries again.
    return isinstance(exc, APIError) and (exc.status_code is None or exc.status_code in _RETRYABLE_STATUS)


def submit_with_retries(
    client: TradingClient, request: OrderRequest, log: SessionLog, decision: str
) -> Order | dict[str, Any]:
    """Submit `request`; on a transport error or a 5xx/429 send the same object again."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        log.attempts[decision] = log.attempts.get(decision, 0) + 1
        try:
            return client.submit_order(request)
        except (APIError, *_TRANSPORT_ERRORS) as exc:
            if attempt == MAX_ATTEMPTS or not _retryable(exc):
                raise
    raise AssertionError("unreachable: the loop returns or raises")


def _qty(text: str | float | None) -> str:
    return format(Decimal(str(text)).normalize(), "f")


def _positions(client: TradingClient) -> dict[str, str]:
    positions = client.get_all_positions()
    assert isinstance(positions, list)
    return {p.symbol: _qty(p.qty) for p in positions if isinstance(p, Position)}


def _describe(exc: Exception) -> str:
    if isinstance(exc, APIError):
        return f"APIError {exc.status_code}: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _step(log: SessionLog, client: TradingClient, name: str, action: Callable[[], object]) -> None:
    log.steps.append(name)
    try:
        action()
    except (APIError, *_TRANSPORT_ERRORS) as exc:
        log.errors.append(f"{name}: {_describe(exc)}")
    log.positions.append((name, _positions(client)))


def _market(symbol: str, qty: int, side: OrderSide, client_order_id: str | None = None) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol=symbol, qty=qty, side=side, time_in_force=TimeInForce.DAY, client_order_id=client_order_id
    )


def _limit(
    symbol: str, qty: int, side: OrderSide, price: float, client_order_id: str | None = None
) -> LimitOrderRequest:
    return LimitOrderRequest(
        symbol=symbol,
        qty=qty,
        side=side,
        time_in_force=TimeInForce.DAY,
        limit_price=price,
        client_order_id=client_order_id,
    )


def _check_assets(client: TradingClient, log: SessionLog) -> None:
    for symbol in SYMBOLS:
        asset = client.get_asset(symbol)
        if not isinstance(asset, Asset) or not asset.tradable:
            log.errors.append(f"check assets: {symbol} is not tradable: {asset!r}")


def _bid_then_cancel(client: TradingClient, raw_client: TradingClient, log: SessionLog) -> None:
    # Placed through the raw_data=True client: alpaca-py answers with the JSON dict.
    request = _limit("QQQ", 3, OrderSide.BUY, 350.00, client_order_id="bot-qqq-bid-1030")
    placed = submit_with_retries(raw_client, request, log, "qqq-bid")
    if not isinstance(placed, dict):
        raise TypeError(f"a raw_data=True client must return the order as a dict, got {type(placed)}")
    raw_client.cancel_order_by_id(placed["id"])
    after = client.get_order_by_id(placed["id"])
    if not isinstance(after, Order) or after.status is not OrderStatus.CANCELED:
        log.errors.append(f"QQQ bid: not canceled after cancel_order_by_id: {after!r}")


def _bid_then_replace(client: TradingClient, log: SessionLog) -> None:
    placed = submit_with_retries(client, _limit("SPY", 2, OrderSide.BUY, 450.00), log, "spy-bid")
    if not isinstance(placed, Order):
        raise TypeError(f"a raw_data=False client must return an Order, got {type(placed)}")
    replaced = client.replace_order_by_id(placed.id, ReplaceOrderRequest(qty=3, limit_price=455.00))
    if not isinstance(replaced, Order) or replaced.id == placed.id or _qty(replaced.qty) != "3":
        log.errors.append(f"SPY bid: replace_order_by_id did not answer with the new order: {replaced!r}")


def _read_orders_raw(raw_client: TradingClient, log: SessionLog) -> None:
    orders = raw_client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500))
    if not isinstance(orders, list) or not all(isinstance(o, dict) for o in orders):
        raise TypeError(f"a raw_data=True client must return orders as dicts, got {orders!r}")
    log.raw_orders_read = len(orders)


def _close_all(client: TradingClient, log: SessionLog) -> None:
    answers = client.close_all_positions(cancel_orders=True)
    if not isinstance(answers, list):
        raise TypeError(f"close_all_positions must return a list, got {answers!r}")
    for answer in answers:
        if not isinstance(answer, ClosePositionResponse) or answer.status != 200:
            log.errors.append(f"close all: {answer!r}")


def run_session(client: TradingClient, raw_client: TradingClient) -> SessionLog:
    """Trade one session on `client`; `raw_client` is the same account with ``raw_data=True``."""
    log = SessionLog()
    buy, sell = OrderSide.BUY, OrderSide.SELL

    def send(decision: str, request: OrderRequest) -> Callable[[], object]:
        return lambda: submit_with_retries(client, request, log, decision)

    _step(log, client, "check assets", lambda: _check_assets(client, log))
    _step(log, client, "SPY market entry", send("spy-entry", _market("SPY", 10, buy)))
    _step(
        log, client, "QQQ limit entry", send("qqq-entry", _limit("QQQ", 5, buy, 401.00, "bot-qqq-entry-0942"))
    )
    _step(log, client, "DIA market entry", send("dia-entry", _market("DIA", 4, buy, "bot-dia-entry-0945")))
    _step(log, client, "SPY partial exit, plain sell", send("spy-trim", _market("SPY", 4, sell)))
    _step(log, client, "DIA exit, plain sell", send("dia-exit", _market("DIA", 4, sell)))
    _step(log, client, "AAPL short", send("aapl-short", _market("AAPL", 6, sell)))
    _step(log, client, "AAPL cover, plain buy", send("aapl-cover", _market("AAPL", 6, buy)))
    _step(log, client, "TQQQ entry", send("tqqq-entry", _market("TQQQ", 12, buy, "bot-tqqq-entry-1005")))
    _step(
        log,
        client,
        "TQQQ partial close",
        lambda: client.close_position("TQQQ", ClosePositionRequest(qty="4")),
    )
    _step(log, client, "TQQQ full close", lambda: client.close_position("TQQQ"))
    bracket = MarketOrderRequest(
        symbol="MSFT",
        qty=5,
        side=buy,
        time_in_force=TimeInForce.DAY,
        order_class=OrderClass.BRACKET,
        take_profit=TakeProfitRequest(limit_price=440.00),
        stop_loss=StopLossRequest(stop_price=400.00),
    )
    _step(log, client, "MSFT bracket entry", send("msft-bracket", bracket))
    _step(log, client, "QQQ bid, then cancel", lambda: _bid_then_cancel(client, raw_client, log))
    _step(log, client, "SPY bid, then replace", lambda: _bid_then_replace(client, log))
    _step(log, client, "read orders raw", lambda: _read_orders_raw(raw_client, log))
    _step(log, client, "close all", lambda: _close_all(client, log))
    return log
