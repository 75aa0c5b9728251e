"""Exits never sell shares another agent's order in motion filled but no ledger books yet (G3).

Two agents trade one account. Agent A's ledger holds 10 SPY that are gone (closed outside the
bots: a phantom); agent B buys 10 and its process dies right after the POST, so the broker holds
B's 10 while B's claim is PENDING and B's ledger books nothing. A's exit sized from the broker's
`qty_available` alone would sell B's shares (`sell_to_close` 10 fills against them). The gateway
and the reconciler's release of a refused exit both hold back what other agents' orders in
motion filled (read by client_order_id: orders are current), and only that: a resting order that
filled nothing blocks no one. Real parts: the real `PaperBroker`, stores on a SQLite file and on
PostgreSQL; B's death is the `after_post` crash point raising out of its gateway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tradeguard import ManualClock, OrderGateway, PaperBroker, crashpoints
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, ClaimState, OrderRequest, RejectKind, ReplaceRequest, Side
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.errors import BrokerError, ConfigError
from tradeguard.execution import Outcome
from tradeguard.paper.prices import FixedPrices
from tradeguard.ports import ForwardingBroker
from tradeguard.store import ClaimStore
from tradeguard.testing import FaultPlan, FaultyBroker, RecordingBroker

SETTINGS = Settings(recent_activity_secs=0, position_settle_secs=0, settle_delay_secs=1)


class Died(BaseException):
    """B's process ends at the crash point (nothing after it runs)."""


def paper(clock: ManualClock) -> PaperBroker:
    return PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock)


_OPENED: list[ClaimStore] = []


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    yield
    while _OPENED:
        _OPENED.pop().close()


def opened(url: str, clock: ManualClock) -> ClaimStore:
    store = ClaimStore(url, clock=clock)
    _OPENED.append(store)
    return store


def gateway(broker: object, url: str, agent: str, clock: ManualClock) -> OrderGateway:
    return OrderGateway(broker, opened(url, clock), agent_id=agent, settings=SETTINGS, clock=clock)  # type: ignore[arg-type]


def a_holds_10(store_url: str, clock: ManualClock) -> tuple[PaperBroker, OrderGateway]:
    """A paper account where agent A bought 10 SPY through its gateway (booked)."""
    broker = paper(clock)
    gw_a = gateway(broker, store_url, "a", clock)
    assert gw_a.enter("SPY", 10, intent="a-in").outcome is Outcome.SUBMITTED
    return broker, gw_a


def outside_close(broker: PaperBroker, qty: int) -> None:
    broker.submit_order(OrderRequest("SPY", Side.SELL, "outside-close", qty=Decimal(qty)))


def dies_after_its_post(send: Callable[[], object]) -> None:
    """Run `send`; its process ends at the `after_post` crash point (nothing after it runs)."""

    def hook(name: str) -> None:
        if name == "after_post":
            raise Died(name)

    crashpoints.set_hook(hook)
    try:
        with pytest.raises(Died):
            send()
    finally:
        crashpoints.set_hook(None)


def b_buys_and_dies(broker: PaperBroker, url: str, clock: ManualClock, qty: int = 10, **order: str) -> None:
    gw_b = gateway(broker, url, "b", clock)
    gw_b.position("SPY")  # started before the hook: only its entry's POST dies
    dies_after_its_post(lambda: gw_b.enter("SPY", qty, intent="b-in", **order))  # type: ignore[arg-type]


def sells(broker: PaperBroker) -> list[BrokerOrder]:
    return [o for o in broker.orders() if o.side is Side.SELL and o.client_order_id != "outside-close"]


def test_a_phantom_exit_does_not_sell_the_shares_of_an_entry_whose_sender_died(
    store_url: str, clock: ManualClock
) -> None:
    broker, gw_a = a_holds_10(store_url, clock)
    outside_close(broker, 10)
    b_buys_and_dies(broker, store_url, clock)
    [b_claim] = gw_a.store.list_claims(agent_id="b")
    assert b_claim.state is ClaimState.PENDING and broker.get_position("SPY").qty == 10  # type: ignore[union-attr]

    result = OrderGateway(broker, opened(store_url, clock), agent_id="a", settings=SETTINGS,
                          clock=clock).exit("SPY", intent="a-out")  # fmt: skip

    assert result.outcome is Outcome.SKIPPED
    assert "held back" in result.reason and "b tg-" in result.reason
    assert sells(broker) == []  # nothing of B's sold
    assert broker.get_position("SPY").qty == 10  # type: ignore[union-attr]


def test_an_agent_that_really_holds_sells_its_own_shares_beside_an_unbooked_entry(
    store_url: str, clock: ManualClock
) -> None:
    broker, gw_a = a_holds_10(store_url, clock)
    b_buys_and_dies(broker, store_url, clock, qty=7)
    assert broker.get_position("SPY").qty == 17  # type: ignore[union-attr]

    result = gw_a.exit("SPY", intent="a-out")

    assert result.outcome is Outcome.SUBMITTED and result.claim is not None
    assert result.claim.order_qty == 10  # all of A's, none of B's
    assert broker.get_position("SPY").qty == 7  # type: ignore[union-attr]


def test_a_resting_order_of_another_agent_that_filled_nothing_holds_nothing_back(
    store_url: str, clock: ManualClock
) -> None:
    broker = paper(clock)
    gw_a = gateway(broker, store_url, "a", clock)
    gw_b = gateway(broker, store_url, "b", clock)
    gw_a.enter("SPY", 10, intent="a-in")
    resting = gw_b.enter("SPY", 5, intent="b-dip", order_type="limit", limit_price="400")
    assert resting.outcome is Outcome.SUBMITTED

    # A limit exit (a market one would be a potential wash trade against B's resting buy).
    result = gw_a.exit("SPY", intent="a-out", order_type="limit", limit_price="450")

    assert result.outcome is Outcome.SUBMITTED and result.claim is not None and result.claim.order_qty == 10
    assert "held back" not in result.reason


class FailingOrderReads(ForwardingBroker):
    """Order lookups by client_order_id fail (a 5xx); positions still read."""

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        raise BrokerError("GET /v2/orders:by_client_order_id: 503 service unavailable", status_code=503)


def test_an_exit_whose_read_of_another_agents_order_fails_sends_nothing(
    store_url: str, clock: ManualClock
) -> None:
    broker, _a = a_holds_10(store_url, clock)
    outside_close(broker, 10)
    b_buys_and_dies(broker, store_url, clock)
    blind = OrderGateway(FailingOrderReads(broker), opened(store_url, clock), agent_id="a",
                         settings=SETTINGS, clock=clock, reconcile_on_start=False)  # fmt: skip

    result = blind.exit("SPY", intent="a-out")

    assert result.outcome is Outcome.NOT_SENT and "cannot read" in result.reason
    assert sells(broker) == []


def test_a_refused_exit_is_not_released_against_another_agents_unbooked_fill(
    store_url: str, clock: ManualClock
) -> None:
    broker, gw_a = a_holds_10(store_url, clock)
    outside_close(broker, 10)
    # A's exit, refused by the broker for position reasons (as a 422 while flat leaves it).
    store = gw_a.store
    decision = Intent("a", Kind.EXIT, "SPY", Side.SELL, "a-out")
    outcome, _room = store.claim_exit(
        decision, OrderSpec(qty=Decimal(10)), owner="x", broker_available=Decimal(10), reason="exit"
    )
    assert outcome is not None
    store.transition(
        outcome.claim, ClaimState.REJECTED, reason="insufficient qty", reject_kind=RejectKind.POSITION
    )
    b_buys_and_dies(broker, store_url, clock)
    clock.advance(SETTINGS.unknown_grace_secs + 1)

    report = gw_a.reconciler.run(agent_id="a", release_exits=True)

    assert report.sent == {}
    assert sells(broker) == []  # B's 10 stay B's
    assert broker.get_position("SPY").qty == 10  # type: ignore[union-attr]


def test_an_exit_is_not_enlarged_onto_another_agents_unbooked_fill(
    store_url: str, clock: ManualClock
) -> None:
    broker, gw_a = a_holds_10(store_url, clock)
    outside_close(broker, 5)  # A's ledger says 10; 5 of them are gone
    resting = gw_a.exit("SPY", intent="a-out", qty=5, order_type="limit", limit_price="600")
    assert resting.outcome is Outcome.SUBMITTED and resting.order is not None
    # A marketable limit buy (a market one would be a potential wash trade against A's sell).
    b_buys_and_dies(broker, store_url, clock, order_type="limit", limit_price="550")
    assert broker.get_position("SPY").qty == 15  # type: ignore[union-attr]  # A's 5, B's unbooked 10

    with pytest.raises(ConfigError, match="may grow to 5"):
        gw_a.replace(resting.order.id, ReplaceRequest(qty=Decimal(10)))

    assert [o.qty for o in broker.orders() if o.status.is_open] == [Decimal(5)]
    assert broker.get_position("SPY").qty == 15  # type: ignore[union-attr]


def test_an_order_marked_not_sent_that_landed_late_is_still_held_back(
    store_url: str, clock: ManualClock
) -> None:
    # B's POST was held up in the network: B's reconcile proved it absent twice and marked it
    # NOT_SENT, then it landed and filled. The reconciler probes NOT_SENT claims for a while for
    # exactly this; exit sizing counts them the same way.
    broker, gw_a = a_holds_10(store_url, clock)
    outside_close(broker, 10)
    store = gw_a.store
    store.register_account("b", store.agent_accounts()["a"])
    entry = store.claim(
        Intent("b", Kind.ENTRY, "SPY", Side.BUY, "b-in"), OrderSpec(qty=Decimal(10)), owner="b"
    )
    late = store.transition(entry.claim, ClaimState.NOT_SENT, reason="absent on two probes")
    broker.submit_order(OrderRequest("SPY", Side.BUY, late.client_order_id, qty=Decimal(10)))  # lands late

    result = gw_a.exit("SPY", intent="a-out")

    assert result.outcome is Outcome.SKIPPED and f"b {late.client_order_id}" in result.reason
    assert sells(broker) == [] and broker.get_position("SPY").qty == 10  # type: ignore[union-attr]


def test_a_grid_of_resting_orders_is_read_order_by_order_never_from_a_listing(
    store_url: str, clock: ManualClock
) -> None:
    """A listing can trail a fill (audit 67): each of the grid's orders is read by client_order_id, once."""
    broker = RecordingBroker(paper(clock))
    gw_a = gateway(broker, store_url, "a", clock)
    gw_b = gateway(broker, store_url, "b", clock)
    gw_a.enter("SPY", 10, intent="a-in")
    for n in range(8):  # B's grid of limit buys below the market: accepted, resting
        assert gw_b.enter("SPY", 1, intent=f"grid-{n}", order_type="limit", limit_price=str(400 + n)).order
    broker.calls.clear()

    result = gw_a.exit("SPY", intent="a-out", order_type="limit", limit_price="450")

    assert result.outcome is Outcome.SUBMITTED and result.claim is not None and result.claim.order_qty == 10
    lookups = [c.subject for c in broker.calls if c.method == "get_order_by_client_id"]
    grid = {c.client_order_id for c in gw_b.store.list_claims(agent_id="b")}
    assert sorted(s for s in lookups if s in grid) == sorted(grid) and len(grid) == 8


def test_a_fill_booked_between_the_read_and_the_sizing_is_not_held_back_twice(
    store_url: str, clock: ManualClock
) -> None:
    # A holds 5 of its own; B bought 5 and lost the answer (UNKNOWN, unbooked). A's exit reads
    # B's order (5 held back); then, before A's sizing locks the symbol, B's retry finds its order
    # and books the 5. The sizing counts them again as B's ledger holding: 10 - 5 - 5 leaves A
    # nothing, "nothing to sell". A's exit must size from what is true when it sends: all of A's
    # shares, none of B's.
    broker = paper(clock)
    gw_a = gateway(broker, store_url, "a", clock)
    assert gw_a.enter("SPY", 5, intent="a-in").outcome is Outcome.SUBMITTED
    lost = FaultPlan.parse(
        "faults: [{route: POST /v2/orders, nth: 1, action: accept_then_error},"
        " {route: GET /v2/orders:by_client_order_id, nth: 1, action: error}]"
    )
    gw_b = gateway(FaultyBroker(broker, lost), store_url, "b", clock)
    assert gw_b.enter("SPY", 5, intent="b-in").outcome is Outcome.UNKNOWN
    assert broker.get_position("SPY").qty == 10  # type: ignore[union-attr]

    def b_retries(name: str) -> None:
        if name == "exit_before_claim":
            crashpoints.set_hook(None)
            gw_b.enter("SPY", 5, intent="b-in")  # found by client_order_id: booked now
            assert gw_b.store.position("b", "SPY").qty == 5

    crashpoints.set_hook(b_retries)
    try:
        result = gw_a.exit("SPY", intent="a-out")
    finally:
        crashpoints.set_hook(None)

    assert result.outcome is Outcome.SUBMITTED, result.reason
    assert result.claim is not None and result.claim.order_qty == 5  # all of A's
    assert broker.get_position("SPY").qty == 5  # type: ignore[union-attr]  # B's 5 untouched
    assert gw_a.store.position("b", "SPY").qty == 5 and gw_a.store.position("a", "SPY").qty == 0


# ---- other agents' exits that ended at the broker (audit 10b D1) --------------------------------


def _b_rests_an_exit_and_a_is_a_phantom(
    url: str, clock: ManualClock
) -> tuple[PaperBroker, RecordingBroker, OrderGateway, OrderGateway, str]:
    """A holds 10 and B 5 through the guard; B rests a limit exit of its 5; A's 10 are sold by hand."""
    broker = paper(clock)
    port = RecordingBroker(broker)
    a, b = gateway(port, url, "agent-a", clock), gateway(port, url, "agent-b", clock)
    a.enter("SPY", qty=10, intent="a entry")
    b.enter("SPY", qty=5, intent="b entry")
    resting = b.exit("SPY", intent="b take profit", order_type="limit", limit_price="999.00")
    assert resting.claim is not None and resting.claim.state is ClaimState.SUBMITTED
    broker.submit_order(OrderRequest("SPY", Side.SELL, "ui-sell", qty=Decimal(10)))  # A's 10, by hand
    assert resting.claim.broker_order_id is not None
    return broker, port, a, b, resting.claim.broker_order_id


def _sells(port: RecordingBroker, since: int) -> list[Decimal | None]:
    return [r.qty for r in port.requests[since:] if r.side == "sell"]


def test_a_phantom_exit_does_not_sell_shares_freed_by_another_agents_exit_canceled_by_hand(
    store_url: str, clock: ManualClock
) -> None:
    broker, port, a, b, resting = _b_rests_an_exit_and_a_is_a_phantom(store_url, clock)
    broker.cancel_order(resting)  # in the Alpaca UI, or a DAY order expired; B's claim still SUBMITTED
    clock.advance(120)
    before = len(port.requests)
    result = a.exit("SPY", intent="a stop")
    assert result.outcome is Outcome.SKIPPED and _sells(port, before) == []
    assert broker.get_position("SPY") is not None and broker.get_position("SPY").qty == 5  # type: ignore[union-attr]
    canceled = b.store.list_claims(agent_id="agent-b", kind=Kind.EXIT)
    assert [c.state for c in canceled] == [ClaimState.CANCELED]  # adopted from the broker's evidence
    assert b.store.position("agent-b", "SPY").qty == 5


def test_an_account_wide_cancel_by_one_agent_does_not_free_another_agents_shares_for_it(
    store_url: str, clock: ManualClock
) -> None:
    broker, port, a, _b, _resting = _b_rests_an_exit_and_a_is_a_phantom(store_url, clock)
    a.cancel_all()  # alpaca-py's cancel_orders(): B's resting exit goes too
    clock.advance(120)
    before = len(port.requests)
    result = a.exit("SPY", intent="a stop")
    assert result.outcome is Outcome.SKIPPED and _sells(port, before) == []
    position = broker.get_position("SPY")
    assert position is not None and position.qty == 5


def test_another_agents_exit_replaced_a_hundred_times_costs_an_exit_one_listing(tmp_path: Path) -> None:
    """Audit 11a D3: the check for ended exits walked B's replace chain from its first order by
    client id, one GET per hop: 63 requests for one exit at 60 replacements, and past 100 the
    walk gave up and A's exit was refused for good. One listing of the symbol's open orders
    finds B's exit live; A's exit costs its position read, that listing and its POST."""
    from tradeguard.broker.alpaca import AlpacaBroker
    from tradeguard.testing import alpaca_client, paper_server

    clock = ManualClock(datetime.now(UTC))
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    with (
        paper_server(prices=FixedPrices({"SPY": "500"}), clock=clock) as server,
        alpaca_client(server.url) as client_a,
        alpaca_client(server.url) as client_b,
    ):
        a = gateway(AlpacaBroker(client_a, settings=SETTINGS), url, "agent-a", clock)
        b = gateway(AlpacaBroker(client_b, settings=SETTINGS), url, "agent-b", clock)
        a.enter("SPY", qty=10, intent="a in")
        b.enter("SPY", qty=10, intent="b in")
        resting = b.exit(
            "SPY", intent="b take profit", order_type="limit", limit_price="600", time_in_force="gtc"
        )
        assert resting.order is not None
        order_id, price = resting.order.id, Decimal(600)
        for _ in range(101):  # a bot chasing its take-profit price
            price -= Decimal("0.10")
            order_id = b.replace(order_id, ReplaceRequest(limit_price=price)).id
            clock.advance(60)
        calls: list[str] = []
        send = client_a._session.request

        def counting(method: str, target: str, *args: object, **kwargs: object) -> object:
            calls.append(f"{method} {target.rsplit('/v2', maxsplit=1)[-1].split('?', maxsplit=1)[0]}")
            return send(method, target, *args, **kwargs)

        client_a._session.request = counting  # type: ignore[method-assign]
        out = a.exit("SPY", intent="a out", qty=1)
        assert out.outcome is Outcome.SUBMITTED
        assert sorted(calls) == ["GET /orders", "GET /positions/SPY", "POST /orders"]


def test_an_exit_sized_beside_a_stale_exit_sends_nothing_when_the_open_orders_cannot_be_read(
    store_url: str, clock: ManualClock
) -> None:
    """Audit 12a D2: A's resting exit was canceled by an account-wide cancel (its claim still
    SUBMITTED), a person sold 6 by hand (broker 9, ledgers A 7 and B 8), and the one listing that
    would show A's exit ended answers 503. Counting A's exit in flight freed A's shares: B sold 7
    and the broker fell below A's ledger. Whose shares are free is then unknown: nothing is sent."""
    broker = paper(clock)
    port = ForwardingBroker(broker)
    a, b = gateway(broker, store_url, "agent-a", clock), gateway(port, store_url, "agent-b", clock)
    a.enter("SPY", qty=7, intent="a entry")
    b.enter("SPY", qty=8, intent="b entry")
    a.exit("SPY", intent="a take profit", order_type="limit", limit_price="999.00")
    for order in broker.list_orders(status="open"):
        broker.cancel_order(order.id)
    broker.submit_order(OrderRequest("SPY", Side.SELL, "ui-sell", qty=Decimal(6)))
    plan = FaultPlan.parse("faults:\n  - {route: GET /v2/orders, nth: 1, action: error, status: 503}\n")
    port.inner = FaultyBroker(broker, plan, clock=clock)
    result = b.exit("SPY", intent="b stop", qty=7)
    assert result.outcome is Outcome.NOT_SENT and "cannot read other agents" in result.reason
    position = broker.get_position("SPY")
    assert position is not None and position.qty == 9
    port.inner = broker
    again = b.exit("SPY", intent="b stop", qty=7)  # the read works: A's exit is seen ended
    assert again.order is not None and again.order.qty == 2


def a_exits_and_dies(broker: PaperBroker, url: str, clock: ManualClock) -> None:
    """Agent A's exit reaches the broker (and fills) and A's process ends before recording it."""
    gw_a = gateway(broker, url, "a", clock)
    gw_a.position("SPY")
    dies_after_its_post(lambda: gw_a.exit("SPY", intent="a-out"))


def test_an_exit_whose_sender_died_after_the_post_frees_nothing_until_its_lease_lapses_then_is_adopted(
    store_url: str, clock: ManualClock
) -> None:
    # Audit 17 #2: A's sold shares stayed reserved for A (its claim PENDING, its ledger 10), so
    # B's own 10 could not be sold until A came back or a whole-store pass ran.
    broker, _ = a_holds_10(store_url, clock)
    gw_b = gateway(broker, store_url, "b", clock)
    assert gw_b.enter("SPY", 10, intent="b-in").outcome is Outcome.SUBMITTED
    a_exits_and_dies(broker, store_url, clock)
    assert broker.get_position("SPY").qty == 10  # type: ignore[union-attr]  # B's 10 only
    [a_exit] = [c for c in gw_b.store.list_claims(agent_id="a") if c.kind is Kind.EXIT]
    assert a_exit.state is ClaimState.PENDING

    # While A's lease runs, its sender may be mid-send: its shares stay reserved (G3).
    early = gw_b.exit("SPY", intent="b-out-early")
    assert early.outcome is Outcome.SKIPPED and sells(broker)[-1].client_order_id == a_exit.client_order_id

    clock.advance(Settings().lease_secs + 1)
    late = gw_b.exit("SPY", intent="b-out")
    assert late.outcome is Outcome.SUBMITTED and late.claim is not None and late.claim.order_qty == 10
    assert broker.get_position("SPY") is None
    adopted = gw_b.store.get(a_exit.key)
    assert adopted is not None and adopted.state is ClaimState.FILLED
    assert gw_b.store.position("a", "SPY").qty == 0 == gw_b.store.position("b", "SPY").qty
