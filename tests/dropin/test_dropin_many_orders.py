"""Account-wide cancels reach every open order, however many (audit 10a D2).

alpaca-py's `cancel_orders()` cancels every open order of the account; a grid bot can rest
hundreds. The guard listed the open orders with the port's default cap of 500 and, past it,
raised "outcome unknown" and canceled nothing, also from `close_all_positions(cancel_orders=True)`
(the usual end-of-day flatten). Real parts: the paper server over HTTP, the real alpaca-py client.
"""

from __future__ import annotations

from decimal import Decimal

from alpaca.trading.enums import OrderSide

from tests.dropin.kit import guarded_client, market, plain_client
from tradeguard import ManualClock
from tradeguard.domain import OrderType, Side, TimeInForce
from tradeguard.paper.server import PaperServer
from tradeguard.testing import make_request

GRID = 510


def _rest_a_grid(server: PaperServer, clock: ManualClock, name: str = "grid") -> None:
    for i in range(GRID):
        clock.advance(0.001)
        price = Decimal(100) + Decimal(i) / 100
        order = make_request(
            symbol="SPY", qty=Decimal(1), side=Side.BUY, order_type=OrderType.LIMIT,
            limit_price=price, time_in_force=TimeInForce.GTC, client_order_id=f"{name}-{i}",
        )  # fmt: skip
        server.broker.submit_order(order)


def _open(server: PaperServer) -> int:
    return sum(1 for o in server.broker.orders() if o.status.is_open)


def test_cancel_orders_cancels_a_grid_beyond_one_listing_page_like_alpaca_py(
    server: PaperServer, claims: str, clock: ManualClock
) -> None:
    _rest_a_grid(server, clock)
    with guarded_client(server, claims, clock=clock) as guarded:
        answers = guarded.cancel_orders()
    assert len(answers) == GRID and _open(server) == 0
    _rest_a_grid(server, clock, "again")
    with plain_client(server) as plain:  # the same call before the switch: the same answer
        assert len(plain.cancel_orders()) == GRID and _open(server) == 0


def test_close_all_positions_with_cancel_orders_flattens_beside_a_grid(
    server: PaperServer, claims: str, clock: ManualClock
) -> None:
    with guarded_client(server, claims, clock=clock) as guarded:
        guarded.submit_order(market("QQQ", 5, OrderSide.BUY))
        _rest_a_grid(server, clock)
        guarded.close_all_positions(cancel_orders=True)
    assert _open(server) == 0
    assert server.broker.get_position("QQQ") is None
