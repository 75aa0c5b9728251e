"""An exit grown by a replace beside another agent's fresh unbooked fill waits for a read that shows it (G3).

`OrderAmendments._room_beside` sizes what a resting exit may grow to from the broker's
`qty_available`, less other agents' fills no ledger books yet (a sender frozen or killed after
its POST: read by client_order_id, they are current). Alpaca's positions endpoint trails fills
by seconds (and its order listing may trail as well); held back from a read that does not show
the fill yet, its shares were taken off twice, as on the exit path before audit 76:

- past a phantom, the read still shows shares a person sold by hand moments before (the listing
  does not show that close yet either): agent A's exit grew onto agent C's fresh shares and sold
  them;
- an agent that really holds was refused growing its exit to all it holds.

The replace now waits out such a fill's horizon (`position_settle_secs` after its order's last
change) once and reads again, as a new exit does (`OrderGateway._sizing_read`). The paper broker
behind positions and listings that trail by `LAG` of the manual clock (the `Trailing` broker of
tests/test_audit76_unbooked_fill_read_trails.py); stores on SQLite and PostgreSQL; C's process
ends at the `after_post` crash point.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.test_audit76_unbooked_fill_read_trails import World, c_buys_and_dies, trailing_world
from tradeguard import OrderGateway
from tradeguard.domain import OrderRequest, ReplaceRequest, Side
from tradeguard.errors import ConfigError
from tradeguard.execution import Outcome


@pytest.fixture
def world(store_url: str) -> Iterator[World]:
    with trailing_world(store_url, agents="ac") as made:
        yield made


def _c_buys_and_dies(c: OrderGateway, qty: int) -> None:
    """C buys with a marketable limit (a market buy would be a potential wash trade against A's sell)."""
    c_buys_and_dies(c, qty, order_type="limit", limit_price="550")


def _resting_exit(a: OrderGateway, qty: int) -> str:
    resting = a.exit("SPY", intent="a-out", qty=qty, order_type="limit", limit_price="600")
    assert resting.outcome is Outcome.SUBMITTED and resting.order is not None, resting
    return resting.order.id


def test_a_replace_past_a_phantom_never_grows_onto_a_fresh_unbooked_fill_a_trailing_read_does_not_show(
    world: World,
) -> None:
    clock, account, gw = world
    assert gw["a"].enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    order_id = _resting_exit(gw["a"], 1)
    clock.advance(60)
    account.paper.submit_order(OrderRequest("SPY", Side.SELL, "by-hand", qty=Decimal(9)))  # A holds 1
    account.note()
    clock.advance(1)
    _c_buys_and_dies(gw["c"], 5)
    clock.advance(1)  # the read still shows A's 10 (9 free), not C's 5; the listing not the close

    # Grown to 5 and marketable, it would sell 4 of C's 5.
    with pytest.raises(ConfigError, match="may grow to 1"):
        gw["a"].replace(order_id, ReplaceRequest(qty=Decimal(5), limit_price=Decimal(500)))

    assert account.paper.position_qty("SPY") == 6  # A's 1 (under its resting exit) and C's 5
    assert [o.qty for o in account.paper.orders() if o.side is Side.SELL and o.status.is_open] == [1]


def test_a_replace_beside_a_fresh_unbooked_fill_may_grow_to_all_the_agent_holds(world: World) -> None:
    clock, account, gw = world
    assert gw["a"].enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    order_id = _resting_exit(gw["a"], 2)
    clock.advance(60)
    _c_buys_and_dies(gw["c"], 7)
    clock.advance(1)  # the read shows A's 10 (8 free), not C's 7 yet

    new = gw["a"].replace(order_id, ReplaceRequest(qty=Decimal(10), limit_price=Decimal(500)))

    assert new.qty == 10, new  # not refused as "may grow to 3" (10 - 2 + 2 - 7)
    assert account.paper.position_qty("SPY") == 7  # C's 7 left
    gw["a"].refresh("SPY")
    assert gw["a"].position("SPY").is_flat
