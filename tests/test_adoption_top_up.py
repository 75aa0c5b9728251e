"""Shares bought outside the guard on top of an agent's own position (audit 7a D1), in the store.

`adopt_position(..., top_up=True)` books what the broker holds beyond every ledger on the
account into an agent that holds on the same side. A lagging positions read must never make it
book shares that are not there: the agent's own buy just filled only understates the surplus
(adopted at once), its own sell just filled may overstate it (refused until it settles), and so
may its own buy still in motion. Other agents' shares and orders in motion are never taken.
Real parts: the real `PaperBroker`, stores on a SQLite file, PostgreSQL and in memory.
"""

from __future__ import annotations

from decimal import Decimal

from tests.mothers import make_intent, make_spec
from tradeguard import ManualClock, MemoryClaimStore, OrderGateway, PaperBroker
from tradeguard.config import Settings
from tradeguard.domain import AuditAction, BrokerPosition, OrderRequest, Side
from tradeguard.domain.ledger import orphan, own_moves_hide_the_orphan
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.paper.prices import FixedPrices
from tradeguard.ports import Broker, ForwardingBroker
from tradeguard.store import AuditQuery, ClaimStore

SETTINGS = Settings(recent_activity_secs=0, position_settle_secs=30, settle_delay_secs=2)


def paper(clock: ManualClock) -> PaperBroker:
    return PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock)


def outside(broker: PaperBroker, qty: int, side: Side = Side.BUY, name: str = "outside") -> None:
    """An order placed on the account without the guard (a person, another plain bot)."""
    broker.submit_order(OrderRequest(symbol="SPY", side=side, client_order_id=name, qty=Decimal(qty)))


def gateway(
    broker: Broker, store: ClaimStore | MemoryClaimStore, agent: str, clock: ManualClock
) -> OrderGateway:
    return OrderGateway(broker, store, agent_id=agent, settings=SETTINGS, clock=clock)


class Frozen(ForwardingBroker):
    """Positions answer what they were at `freeze()` (a positions endpoint trailing the fills)."""

    def __init__(self, inner: Broker) -> None:
        super().__init__(inner)
        self.stale: dict[str, BrokerPosition] | None = None

    def freeze(self) -> None:
        self.stale = {p.symbol: p for p in self.inner.list_positions()}

    def get_position(self, symbol: str) -> BrokerPosition | None:
        return self.inner.get_position(symbol) if self.stale is None else self.stale.get(symbol)


def test_the_rule_counts_only_own_moves_a_lagging_read_can_overstate() -> None:
    long = Decimal(15)
    assert not own_moves_hide_the_orphan(long, [], [("buy", Decimal(10))])  # own buy just filled
    assert own_moves_hide_the_orphan(long, [], [("sell", Decimal(10))])  # own sell just filled
    assert not own_moves_hide_the_orphan(long, [], [("sell", Decimal(0))])  # canceled unfilled
    assert own_moves_hide_the_orphan(long, ["buy"], [])  # own buy in motion
    assert not own_moves_hide_the_orphan(long, ["sell"], [])  # own resting exit
    assert own_moves_hide_the_orphan(Decimal(-5), [], [("buy", Decimal(1))])  # a short's cover
    assert orphan(long, Decimal(3), Decimal(10), top_up=True) == 2
    assert orphan(long, Decimal(3), Decimal(10), top_up=False) == 0
    assert orphan(long, Decimal(0), Decimal(-10), top_up=True) == 0  # the other side: never
    assert orphan(long, Decimal(0), Decimal(20), top_up=True) == 0  # the ledger holds more


def test_shares_bought_outside_on_top_of_the_agents_own_are_adopted_right_after_its_buy(
    store: ClaimStore, clock: ManualClock
) -> None:
    broker = paper(clock)
    outside(broker, 5, name="before")  # held before the bot started
    gw = gateway(broker, store, "bot", clock)
    gw.enter("SPY", qty=10, intent="in")  # its own fill is seconds old
    assert gw.adopt_broker_position("SPY", why="close").qty == 10  # no top-up asked: as before
    topped = gw.adopt_broker_position("SPY", why="close_position", top_up=True)
    assert topped.qty == 15 and store.position("bot", "SPY").qty == 15
    records = store.audit_records(AuditQuery(actions=(AuditAction.RECONCILE.value,)))
    [note] = [r for r in records if r.detail.get("action") == "adopt_broker_position"]
    assert note.detail == {
        "action": "adopt_broker_position", "broker_qty": "15", "other_agents_qty": "0", "ledger_qty": "10",
    }  # fmt: skip
    assert gw.adopt_broker_position("SPY", why="again", top_up=True).qty == 15  # converged


def test_a_lagging_read_after_the_agents_own_sell_is_not_topped_up(
    store: ClaimStore, clock: ManualClock
) -> None:
    inner = paper(clock)
    broker = Frozen(inner)
    gw = gateway(broker, store, "bot", clock)
    gw.enter("SPY", qty=20, intent="in")
    clock.advance(SETTINGS.position_settle_secs + 1)
    broker.freeze()  # the positions endpoint still shows 20 after 10 are sold
    gw.exit("SPY", qty=10, intent="half out")
    assert gw.adopt_broker_position("SPY", why="close_position", top_up=True).qty == 10
    clock.advance(SETTINGS.position_settle_secs + 1)
    broker.stale = None  # settled: the read is the truth, and nothing is beyond the ledger
    assert gw.adopt_broker_position("SPY", why="close_position", top_up=True).qty == 10


def test_an_own_buy_in_motion_holds_back_a_top_up(store: ClaimStore, clock: ManualClock) -> None:
    broker = paper(clock)
    gw = gateway(broker, store, "bot", clock)
    gw.enter("SPY", qty=10, intent="in")
    gw.enter("SPY", qty=5, intent="dip", order_type="limit", limit_price=495)
    broker.set_price("SPY", "490")  # the limit fills at the broker; the ledger has not seen it
    clock.advance(SETTINGS.position_settle_secs + 1)
    assert store.adopt_position("bot", "SPY", Decimal(15), why="read", top_up=True).qty == 10
    assert gw.position("SPY").qty == 15  # its own fill, booked as a fill, not as an orphan


def test_another_agents_shares_and_orders_are_never_topped_up(store: ClaimStore, clock: ManualClock) -> None:
    broker = paper(clock)
    a, b = gateway(broker, store, "bot-a", clock), gateway(broker, store, "bot-b", clock)
    a.enter("SPY", qty=10, intent="a in")
    b.enter("SPY", qty=3, intent="b in")
    outside(broker, 5)
    # B's fill is seconds old: a read may not show it yet, so nothing is beyond the ledgers.
    assert a.adopt_broker_position("SPY", why="close_position", top_up=True).qty == 10
    clock.advance(SETTINGS.position_settle_secs + 1)
    b.enter("SPY", qty=2, intent="b dip", order_type="limit", limit_price=495)  # B's order in motion
    assert a.adopt_broker_position("SPY", why="close_position", top_up=True).qty == 10
    b.cancel_all()
    clock.advance(SETTINGS.position_settle_secs + 1)
    assert a.adopt_broker_position("SPY", why="close_position", top_up=True).qty == 15  # 18 - B's 3
    assert store.position("bot-b", "SPY").qty == 3


def test_memory_store_tops_up_by_the_same_rules(clock: ManualClock) -> None:
    store = MemoryClaimStore(settings=SETTINGS, clock=clock)
    inner = paper(clock)
    broker = Frozen(inner)
    gw = gateway(broker, store, "bot", clock)
    gw.enter("SPY", qty=20, intent="in")
    outside(inner, 5)
    assert gw.adopt_broker_position("SPY", why="close_position", top_up=True).qty == 25
    broker.freeze()
    gw.exit("SPY", qty=10, intent="part out")  # the read still shows 25, the broker holds 15
    assert store.adopt_position("bot", "SPY", Decimal(25), why="stale", top_up=True).qty == 15


def test_another_agents_order_that_landed_after_it_was_marked_not_sent_is_never_adopted(
    store: ClaimStore, clock: ManualClock
) -> None:
    """Audit 8 D2: B's POST was held up past its timeout, its claim probed absent twice and
    marked NOT_SENT; then the order landed and filled. No ledger books those 5 yet, and B's claim
    is no longer in motion: A's top-up must not take them (its close would then leave A a phantom
    and make B's real shares unsellable)."""
    broker = paper(clock)
    a = gateway(broker, store, "bot-a", clock)
    b = gateway(broker, store, "bot-b", clock)
    a.enter("SPY", qty=10, intent="a in")
    late = store.claim(make_intent("b in", agent="bot-b", symbol="SPY"), make_spec(5), owner="w").claim
    store.transition(late, ClaimState.NOT_SENT, reason="absent on two probes")
    broker.submit_order(
        OrderRequest(symbol="SPY", side=Side.BUY, client_order_id=late.client_order_id, qty=Decimal(5))
    )  # the held-up POST lands
    clock.advance(60)

    kept = a.adopt_broker_position("SPY", why="close_position", top_up=True)

    assert kept.qty == 10 and store.position("bot-a", "SPY").qty == 10
    b.reconcile()  # B's reconciler finds its order after all (probed for not_sent_probe_secs)
    assert store.position("bot-b", "SPY").qty == 5
    assert a.exit("SPY", intent="a out").claim.order_qty == 10  # type: ignore[union-attr]
    assert b.exit("SPY", intent="b out").claim.order_qty == 5  # type: ignore[union-attr]
    assert broker.get_position("SPY") is None
