"""The paper broker's plain-market path answers every order as the full rule walk does (issue 11, speed).

`accept` takes a simple market order of `qty` shares with no prices, trail or extended hours
through `_accept_plain_market`, which leaves out the checks such an order always passes. Here
the same orders, one after another on the same account, go to a broker on that path and to a
broker made to walk every rule (`_accept_any`), and every answer must be the same: the order
(its fields and Alpaca's JSON, all but the random ids), or the refusal (status, code, message, body), and the
account after each.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tradeguard.clock import ManualClock
from tradeguard.domain import OrderRequest, OrderType, PositionIntent, Side, TimeInForce
from tradeguard.errors import OrderRejected
from tradeguard.paper import PaperBroker
from tradeguard.paper import accept as accept_module
from tradeguard.paper.assets import Asset

_ASSETS = (
    Asset("NOSHORT", shortable=False),
    Asset("WHOLE", fractionable=False),
    Asset("HALTED", tradable=False),
)


def _broker() -> PaperBroker:
    broker = PaperBroker(clock=ManualClock(), cash=Decimal(5_000), allow_short=True, assets=_ASSETS)
    for symbol, price in (("TQQQ", "75.25"), ("SQQQ", "22.40"), ("NOSHORT", "10"), ("WHOLE", "10")):
        broker.set_price(symbol, Decimal(price))
    return broker


def _req(symbol: str, side: str, qty: str, coid: str, **more: Any) -> OrderRequest:
    return OrderRequest(symbol, Side(side), coid, qty=Decimal(qty), **more)


# In order, on one account: fills, adds, closes, and every refusal a plain market order can meet.
_ORDERS = [
    _req("TQQQ", "buy", "6", "a1"),
    _req(" tqqq ", "buy", "4", "a2"),  # a symbol as a bot may spell it
    _req("TQQQ", "buy", "1", "a1"),  # client_order_id must be unique
    _req("TQQQ", "sell", "11", "a3"),  # more than held: insufficient qty available
    _req("TQQQ", "sell", "4", "a4", position_intent=PositionIntent.SELL_TO_CLOSE),
    _req("TQQQ", "sell", "1", "a5", position_intent=PositionIntent.SELL_TO_OPEN),  # intent mismatch
    _req("TQQQ", "buy", "0", "a6"),  # qty must be > 0
    _req("TQQQ", "buy", "-2", "a7"),
    _req("TQQQ", "buy", "NaN", "a8"),
    _req("TQQQ", "buy", "1E+13", "a9"),  # too large
    _req("TQQQ", "buy", "0.0000000001", "a10"),  # finer than Alpaca's step
    _req("TQQQ", "buy", "0.5", "a11"),  # fractional, day: fine
    _req("TQQQ", "buy", "0.5", "a12", time_in_force=TimeInForce.GTC),  # fractional must be DAY
    _req("WHOLE", "buy", "1.5", "a13"),  # not fractionable
    _req("WHOLE", "buy", "2", "a14"),
    _req("SQQQ", "sell", "3", "a15"),  # opens a short
    _req("SQQQ", "sell", "0.5", "a16"),  # a fractional short
    _req("SQQQ", "buy", "3", "a17", position_intent=PositionIntent.BUY_TO_CLOSE),
    _req("NOSHORT", "sell", "1", "a18"),  # cannot be sold short
    _req("HALTED", "buy", "1", "a19"),  # not tradable
    _req("NOPE", "buy", "1", "a20"),  # not found
    _req("", "buy", "1", "a21"),  # symbol is required
    _req("TQQQ", "buy", "1", "x" * 129),  # client_order_id too long
    _req("TQQQ", "buy", "1000", "a22"),  # insufficient buying power
    _req("TQQQ", "buy", "1", ""),  # no client id: the broker makes one
    _req("TQQQ", "buy", "2", "a23", order_type=OrderType.LIMIT, limit_price=Decimal("70")),  # rests
    _req("TQQQ", "sell", "1", "a24"),  # a market sell against the resting buy: wash trade
    _req("SQQQ", "buy", "2", "a25", time_in_force=TimeInForce.IOC),
]


def _answer(broker: PaperBroker, request: OrderRequest) -> tuple[Any, ...]:
    try:
        order = broker.submit_order(request)
    except OrderRejected as exc:
        return ("refused", exc.status_code, exc.code, exc.message, exc.body, exc.kind)
    # Alpaca's JSON of the order, but for the ids the broker draws at random.
    raw = {k: v for k, v in order.raw.items() if k != "id"}
    if not request.client_order_id:
        raw.pop("client_order_id")
    return ("placed", order.status, order.filled_qty, order.filled_avg_price, raw)


def _account(broker: PaperBroker) -> tuple[Any, ...]:
    positions = [(p.symbol, p.qty, p.qty_available, p.avg_entry_price) for p in broker.list_positions()]
    ours = {r.client_order_id for r in _ORDERS}
    orders = [
        (o.client_order_id if o.client_order_id in ours else "made by the broker", o.status, o.filled_qty)
        for o in broker.orders()
    ]
    return positions, orders, broker.account()["cash"], broker.account()["buying_power"]


def test_the_plain_market_path_answers_every_order_as_the_full_rule_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken: list[str] = []
    plain = accept_module._accept_plain_market

    def counting(venue: Any, request: OrderRequest) -> Any:
        taken.append(request.client_order_id)
        return plain(venue, request)

    fast, full = _broker(), _broker()
    for request in _ORDERS:
        monkeypatch.setattr(accept_module, "_accept_plain_market", counting)
        got = _answer(fast, request)
        monkeypatch.setattr(accept_module, "_accept_plain_market", accept_module._accept_any)
        expected = _answer(full, request)
        assert got == expected, request
        assert _account(fast) == _account(full), request
    # Every plain market order took the short path; the limit order did not.
    assert "a23" not in taken
    assert len(taken) == len(_ORDERS) - 1
