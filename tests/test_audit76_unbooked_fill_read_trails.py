"""Audit 76: an exit beside another agent's fresh unbooked fill waits until a positions read shows it (G3).

Exit sizing holds back what other agents' orders filled that no ledger books yet (a sender frozen
or killed after its POST): read by client_order_id, those fills are current, but Alpaca's
positions endpoint trails fills by seconds (and its order listing may trail as well). Held back
from a read that does not show the fill yet, the shares are taken off twice:

- past a phantom, the read still shows shares a person sold by hand moments before (the listing
  does not show that close yet either, so it is not held back as sold outside): agent A, whose
  ledger is a phantom, sold agent C's fresh shares;
- an agent that really holds undersold its exit (B asked for its 10 and sold 3);
- a refused exit released by the reconciler, or resent when the bot retried it, sold the fresh
  fill's shares the same way.

The exit (and its resend) now waits out such a fill's horizon (`position_settle_secs` from its
order's last change), once, then reads again; the reconciler's release is put off. Real parts:
the paper broker behind positions and listings that trail by `LAG` of the manual clock, stores
on SQLite and PostgreSQL; C's process ends at the `after_post` crash point.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tradeguard import ManualClock, OrderGateway, PaperBroker, crashpoints
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, BrokerPosition, OrderRequest, Side
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.execution import Outcome
from tradeguard.paper.prices import FixedPrices
from tradeguard.ports import ForwardingBroker
from tradeguard.store import ClaimStore

LAG = timedelta(seconds=10)  # inside the settle horizon (30 s)
SETTINGS = Settings(recent_activity_secs=0)


class Died(BaseException):
    """C's process ends at the crash point."""


class Trailing(ForwardingBroker):
    """Positions and order listings as they were `LAG` ago on the clock; lookups by id as they are."""

    def __init__(self, inner: PaperBroker, clock: ManualClock) -> None:
        super().__init__(inner)
        self.paper = inner
        self.clock = clock
        self.history: list[tuple[datetime, dict[str, BrokerPosition], list[BrokerOrder]]] = []
        self.note()

    def note(self) -> None:
        """Remember the account as it is now (after every change)."""
        positions = {p.symbol: p for p in self.paper.list_positions()}
        orders = self.paper.list_orders(status="all", limit=10_000)
        self.history.append((self.clock.now(), positions, orders))

    def _seen(self) -> tuple[dict[str, BrokerPosition], list[BrokerOrder]]:
        shown = self.history[0]
        for entry in self.history:
            if entry[0] <= self.clock.now() - LAG:
                shown = entry
        return shown[1], shown[2]

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        try:
            return self.paper.submit_order(request)
        finally:
            self.note()

    def list_positions(self) -> list[BrokerPosition]:
        return list(self._seen()[0].values())

    def get_position(self, symbol: str) -> BrokerPosition | None:
        return self._seen()[0].get(symbol)

    def list_orders(self, *, status: str = "open", symbols: list[str] | None = None, after: Any = None,
                    limit: int = 500, **_: Any) -> list[BrokerOrder]:  # fmt: skip
        listed = [
            o
            for o in self._seen()[1]
            if (status == "all" or (status == "open") == o.status.is_open)
            and (not symbols or o.symbol in symbols)
            and (after is None or (o.created_at is not None and o.created_at > after))
        ]
        return listed[:limit]


World = tuple[ManualClock, Trailing, dict[str, OrderGateway]]


@contextlib.contextmanager
def trailing_world(store_url: str, agents: str = "abc") -> Iterator[World]:
    """One trailing paper account on a manual clock, a gateway (with its own store) per agent."""
    clock = ManualClock()
    account = Trailing(PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock), clock)
    stores = [ClaimStore(store_url, settings=SETTINGS, clock=clock) for _ in agents]
    gateways = {
        agent: OrderGateway(account, s, agent_id=agent, settings=SETTINGS, clock=clock)
        for s, agent in zip(stores, agents, strict=True)
    }
    try:
        yield clock, account, gateways
    finally:
        for s in stores:
            s.close()


@pytest.fixture
def world(store_url: str) -> Iterator[World]:
    with trailing_world(store_url) as made:
        yield made


def c_buys_and_dies(c: OrderGateway, qty: int, **order: Any) -> None:
    """Agent C's entry (`order`: its type and prices) is placed; its process ends right after the POST."""
    c.position("SPY")  # started before the hook: only its entry's POST dies

    def hook(name: str) -> None:
        if name == "after_post":
            raise Died(name)

    crashpoints.set_hook(hook)
    try:
        with pytest.raises(Died):
            c.enter("SPY", qty, intent="c-in", **order)
    finally:
        crashpoints.set_hook(None)
    [claim] = c.store.list_claims(agent_id="c")
    assert claim.state is ClaimState.PENDING


def test_a_phantom_exit_never_sells_a_fresh_unbooked_fill_a_trailing_read_does_not_show(
    world: World,
) -> None:
    clock, account, gw = world
    assert gw["a"].enter("SPY", qty=6, intent="a-in").outcome is Outcome.SUBMITTED
    assert gw["b"].enter("SPY", qty=4, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    account.paper.submit_order(OrderRequest("SPY", Side.SELL, "by-hand", qty=Decimal(10)))  # A's and B's gone
    account.note()
    clock.advance(1)
    c_buys_and_dies(gw["c"], 5)
    clock.advance(1)  # the read still shows the 10 from before the close; the listing not the close

    result = gw["a"].exit("SPY", intent="a-out")

    assert result.outcome is Outcome.SKIPPED, result  # nothing of A's is left
    assert account.paper.position_qty("SPY") == 5  # C's 5 are still there


def test_an_exit_beside_a_fresh_unbooked_fill_sells_all_the_agent_holds(
    world: World,
) -> None:
    clock, account, gw = world
    assert gw["b"].enter("SPY", qty=10, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    c_buys_and_dies(gw["c"], 7)
    clock.advance(1)  # the read shows B's 10, not C's 7 yet

    result = gw["b"].exit("SPY", intent="b-out")

    assert result.outcome is Outcome.SUBMITTED, result
    assert result.claim is not None and result.claim.order_qty == 10, result  # not 10 - 7
    assert account.paper.position_qty("SPY") == 7 and gw["b"].position("SPY").is_flat


@pytest.mark.xfail(
    strict=True,
    reason=(
        "audit 76, open: a partial close by hand that both the positions read and the order listing "
        "still trail leaves no evidence at sizing time (`sold_outside` lists orders, the by-hand order "
        "has no client_order_id the guard knows, and no guard fill is fresh to wait out), so a phantom "
        "agent's exit is sized from the stale read and sells another agent's shares; catching it needs "
        "a read that does not trail (account activities / fills) or a wait of position_settle_secs "
        "before every exit beside another agent"
    ),
)
def test_a_partial_close_by_hand_both_reads_trail_does_not_let_a_phantom_sell_another_agents_shares(
    world: World,
) -> None:
    clock, account, gw = world
    assert gw["a"].enter("SPY", qty=6, intent="a-in").outcome is Outcome.SUBMITTED
    assert gw["b"].enter("SPY", qty=4, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    account.paper.submit_order(OrderRequest("SPY", Side.SELL, "by-hand", qty=Decimal(2)))  # 2 of A's gone
    account.note()
    clock.advance(1)  # neither the positions read nor the listing shows the close yet

    result = gw["a"].exit("SPY", intent="a-out")

    # A truly holds 4: selling 6 takes 2 of B's.
    assert result.claim is None or result.claim.order_qty is None or result.claim.order_qty <= 4, result


def test_a_refused_phantom_exit_is_not_released_onto_a_fresh_unbooked_fill_a_trailing_read_does_not_show(
    world: World,
) -> None:
    clock, account, gw = world
    assert gw["a"].enter("SPY", qty=6, intent="a-in").outcome is Outcome.SUBMITTED
    assert gw["b"].enter("SPY", qty=4, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    gw["c"].position("SPY")

    def between_sizing_and_post(point: str) -> None:
        # After A's exit was sized, before its POST: a person closes the position by hand (A's and
        # B's shares gone) and C buys, its process dying right after its POST (C's hook takes over).
        if point == "before_post":
            crashpoints.set_hook(None)
            account.paper.submit_order(OrderRequest("SPY", Side.SELL, "by-hand", qty=Decimal(10)))
            account.note()
            c_buys_and_dies(gw["c"], 5)  # at the close's instant: A's exit is not held up, it is refused

    crashpoints.set_hook(between_sizing_and_post)
    try:
        result = gw["a"].exit("SPY", intent="a-out")
    finally:
        crashpoints.set_hook(None)

    # Refused (the broker holds only C's 5); the release that follows must not sell C's shares.
    assert result.outcome is not Outcome.SUBMITTED or result.claim is None or result.claim.order_qty == 0, (
        result
    )
    assert account.paper.position_qty("SPY") == 5, [o for o in account.paper.orders() if o.side is Side.SELL]
    # Once the reads settle, the passes book C's fill and clear A's phantom (its refused exit names
    # it); B's is left reported: a close at the instant of a claimed fill is not attributed.
    for _ in range(4):
        clock.advance(60)
        for g in gw.values():
            g.reconcile()
    assert [gw[x].position("SPY").qty for x in "ac"] == [0, 5]
    assert account.paper.position_qty("SPY") == 5


def test_a_refused_phantom_exit_retried_beside_a_fresh_unbooked_fill_never_sells_it(
    world: World,
) -> None:
    clock, account, gw = world
    assert gw["a"].enter("SPY", qty=6, intent="a-in").outcome is Outcome.SUBMITTED
    assert gw["b"].enter("SPY", qty=4, intent="b-in").outcome is Outcome.SUBMITTED
    clock.advance(60)

    def closed_by_hand_before_the_post(point: str) -> None:
        if point == "before_post":
            crashpoints.set_hook(None)
            account.paper.submit_order(OrderRequest("SPY", Side.SELL, "by-hand", qty=Decimal(10)))
            account.note()

    crashpoints.set_hook(closed_by_hand_before_the_post)
    try:
        refused = gw["a"].exit("SPY", intent="a-out")
    finally:
        crashpoints.set_hook(None)
    assert refused.outcome is not Outcome.SUBMITTED, refused  # the account is flat: refused
    clock.advance(1)
    c_buys_and_dies(gw["c"], 5)
    clock.advance(1)  # the read still shows the 10 from before the close

    retried = gw["a"].exit("SPY", intent="a-out")  # the bot retries its refused exit (a resend)

    assert account.paper.position_qty("SPY") == 5, retried  # C's 5 are still there


def test_a_first_close_does_not_adopt_a_stale_orphan_beside_a_fresh_unbooked_fill(
    world: World,
) -> None:
    clock, account, gw = world
    account.paper.submit_order(OrderRequest("SPY", Side.BUY, "bought-by-hand", qty=Decimal(10)))
    account.note()
    clock.advance(60)
    account.paper.submit_order(OrderRequest("SPY", Side.SELL, "sold-by-hand", qty=Decimal(10)))
    account.note()
    clock.advance(1)
    c_buys_and_dies(gw["c"], 5)
    clock.advance(1)  # both reads a settle delay apart still show the 10 from before the sale

    adopted = gw["a"].adopt_broker_position("SPY", why="a drop-in bot's first close")

    # The broker holds only C's 5 (its fill unbooked): nothing is A's (held: C's order in motion
    # holds the adoption off), and A's close sells nothing.
    assert adopted.is_flat, adopted
    assert gw["a"].exit("SPY", intent="close").outcome is not Outcome.SUBMITTED
    assert account.paper.position_qty("SPY") == 5


def test_a_one_agent_pass_clears_its_phantom_beside_another_agents_stranded_filled_entry(
    world: World,
) -> None:
    """G4: C's process died after its POST and never came back; A's own passes must still converge."""
    clock, account, gw = world
    assert gw["a"].enter("SPY", qty=10, intent="a-in").outcome is Outcome.SUBMITTED
    clock.advance(60)
    account.paper.submit_order(OrderRequest("SPY", Side.SELL, "by-hand", qty=Decimal(10)))  # A's 10 gone
    account.note()
    clock.advance(1)
    c_buys_and_dies(gw["c"], 5)

    for _ in range(6):  # three minutes of A's own passes (C's lease lapsed long before)
        clock.advance(30)
        assert gw["a"].reconcile().aborted is None

    assert gw["a"].store.position("a", "SPY").is_flat  # A's phantom cleared
    assert gw["a"].store.position("c", "SPY").qty == 5  # C's fill booked (by A's pass, from the broker)
    assert account.paper.position_qty("SPY") == 5
