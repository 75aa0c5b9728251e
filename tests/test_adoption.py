"""Adopting broker shares the guard never saw (a drop-in bot's first close), on SQLite and PostgreSQL.

The orphan is booked in one store step with the read of other agents' shares (two agents on one
account never both adopt the same shares), only after a second read a settle delay later agrees,
and never while the agent's own fills in the symbol are recent enough for the positions endpoint
to lag them (ALPACA.md). Real parts: the real `PaperBroker`, stores on a SQLite file and PostgreSQL.
"""

from __future__ import annotations

import threading
from decimal import Decimal

from tradeguard import ManualClock, MemoryClaimStore, OrderGateway, PaperBroker
from tradeguard.config import Settings
from tradeguard.domain import AuditAction, BrokerPosition, OrderRequest, Side
from tradeguard.paper.prices import FixedPrices
from tradeguard.ports import Broker, ForwardingBroker
from tradeguard.store import AuditQuery, ClaimStore

SETTINGS = Settings(recent_activity_secs=0, position_settle_secs=30, settle_delay_secs=2)


def paper(clock: ManualClock) -> PaperBroker:
    return PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock)


def before_the_guard(broker: PaperBroker, qty: int) -> None:
    """Shares bought on the account behind the guard's back (before the bot used it)."""
    broker.submit_order(
        OrderRequest(symbol="SPY", side=Side.BUY, client_order_id=f"pre-{qty}", qty=Decimal(qty))
    )


def gateway(
    broker: Broker, store: ClaimStore | MemoryClaimStore, agent: str, clock: ManualClock
) -> OrderGateway:
    return OrderGateway(broker, store, agent_id=agent, settings=SETTINGS, clock=clock)


class MeetAtTheSecondRead(ForwardingBroker):
    """Holds each caller's confirming read until both callers made it: both adopt after both read."""

    def __init__(self, inner: Broker, barrier: threading.Barrier) -> None:
        super().__init__(inner)
        self._barrier = barrier
        self._reads = threading.local()

    def get_position(self, symbol: str) -> BrokerPosition | None:
        found = super().get_position(symbol)
        self._reads.n = getattr(self._reads, "n", 0) + 1
        if self._reads.n == 2:
            self._barrier.wait(timeout=30)
        return found


def test_a_pre_guard_position_is_adopted_after_two_reads_a_settle_delay_apart(
    store: ClaimStore, clock: ManualClock
) -> None:
    broker = paper(clock)
    before_the_guard(broker, 10)
    gw = gateway(broker, store, "bot", clock)
    gw.position("SPY")  # started
    started = clock.now()
    adopted = gw.adopt_broker_position("SPY", why="first close")
    assert adopted.qty == 10 and (clock.now() - started).total_seconds() >= SETTINGS.settle_delay_secs
    records = store.audit_records(AuditQuery(actions=(AuditAction.RECONCILE.value,)))
    [record] = [r for r in records if r.detail.get("action") == "adopt_broker_position"]
    assert (record.detail["broker_qty"], record.detail["other_agents_qty"]) == ("10", "0")


def test_two_agents_on_one_account_adopting_at_once_take_the_shares_once(
    store_url: str, clock: ManualClock
) -> None:
    broker = paper(clock)
    before_the_guard(broker, 10)
    barrier = threading.Barrier(2)
    stores = [ClaimStore(store_url, clock=clock) for _ in range(2)]
    gws = [gateway(MeetAtTheSecondRead(broker, barrier), s, f"bot-{n}", clock) for n, s in enumerate(stores)]
    for gw in gws:
        gw.position("SPY")  # started: both registered on the one paper account
    out: dict[str, Decimal] = {}

    def adopt(gw: OrderGateway) -> None:
        out[gw.agent_id] = gw.adopt_broker_position("SPY", why="close_position").qty

    threads = [threading.Thread(target=adopt, args=(gw,)) for gw in gws]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(out.values()) == [0, 10]  # one took the 10, the other found them held
    assert sum(stores[0].position(g.agent_id, "SPY").qty for g in gws) == 10
    for s in stores:
        s.close()


class Lagging(ForwardingBroker):
    """Positions answer what they were before the last `freeze()` (a lagging positions endpoint)."""

    def __init__(self, inner: Broker) -> None:
        super().__init__(inner)
        self.stale: dict[str, BrokerPosition | None] | None = None
        self.flip_after: int | None = None

    def freeze(self) -> None:
        self.stale = {p.symbol: p for p in self.inner.list_positions()}

    def get_position(self, symbol: str) -> BrokerPosition | None:
        if self.flip_after is not None:
            self.flip_after -= 1
            if self.flip_after < 0:
                return self.inner.get_position(symbol)
        if self.stale is not None:
            return self.stale.get(symbol)
        return self.inner.get_position(symbol)


def test_a_lagging_read_right_after_the_agents_own_exit_is_not_adopted(
    store: ClaimStore, clock: ManualClock
) -> None:
    inner = paper(clock)
    broker = Lagging(inner)
    gw = gateway(broker, store, "bot", clock)
    gw.enter("SPY", qty=10, intent="in")
    broker.freeze()  # the positions endpoint still shows the 10 after they are sold
    assert gw.exit("SPY", intent="out").claim is not None and inner.get_position("SPY") is None
    assert gw.adopt_broker_position("SPY", why="close_all").is_flat
    assert store.position("bot", "SPY").is_flat


def test_a_read_the_confirming_read_disagrees_with_is_not_adopted(
    store: ClaimStore, clock: ManualClock
) -> None:
    inner = paper(clock)
    before_the_guard(inner, 10)
    broker = Lagging(inner)
    gw = gateway(broker, store, "bot", clock)
    gw.position("SPY")
    broker.freeze()
    inner.close_position("SPY")  # gone at the broker; the first read still shows 10
    broker.flip_after = 1  # the confirming read sees the truth
    assert gw.adopt_broker_position("SPY", why="close").is_flat


def test_memory_store_adopts_once_too(clock: ManualClock) -> None:
    store = MemoryClaimStore(clock=clock, settings=SETTINGS)
    broker = paper(clock)
    before_the_guard(broker, 10)
    a, b = gateway(broker, store, "a", clock), gateway(broker, store, "b", clock)
    assert a.adopt_broker_position("SPY", why="x").qty == 10
    assert b.adopt_broker_position("SPY", why="x").is_flat


def test_shares_another_agents_acknowledged_order_filled_unseen_are_never_adopted(
    store: ClaimStore, clock: ManualClock
) -> None:
    """A's limit buy is acknowledged and fills later at the broker; before A looks, B (same account)
    closes SPY. Found by an adversarial run: B adopted A's 10 and sold them, A's ledger a phantom."""
    broker = paper(clock)
    a, b = gateway(broker, store, "bot-a", clock), gateway(broker, store, "bot-b", clock)
    sent = a.enter("SPY", qty=10, intent="dip buy", order_type="limit", limit_price=495)
    assert sent.claim is not None and sent.claim.filled_qty == 0
    broker.set_price("SPY", "490")  # the limit fills at the broker; A has not read it yet
    assert broker.get_position("SPY") is not None
    clock.advance(SETTINGS.position_settle_secs + 1)
    assert b.adopt_broker_position("SPY", why="first close").is_flat
    out = b.exit("SPY", intent="b flat")
    assert out.outcome.value == "skipped", out.reason
    position = broker.get_position("SPY")
    assert position is not None and position.qty == 10  # A's shares stay A's
    assert a.position("SPY").qty == 10  # A's view refreshes to its fill, no phantom


def test_a_stale_read_right_after_another_agents_exit_is_not_adopted(
    store: ClaimStore, clock: ManualClock
) -> None:
    """The positions endpoint still shows shares another agent's exit just sold: not an orphan."""
    broker = paper(clock)
    a = gateway(broker, store, "bot-a", clock)
    a.enter("SPY", qty=20, intent="a in")
    clock.advance(SETTINGS.position_settle_secs + 1)
    stale = broker.get_position("SPY")
    a.exit("SPY", qty=10, intent="a half out")  # the broker now holds A's other 10

    class Stale(ForwardingBroker):
        def get_position(self, symbol: str) -> BrokerPosition | None:
            return stale  # both reads trail A's fill (within the settle horizon)

    b = gateway(Stale(broker), store, "bot-b", clock)
    assert b.adopt_broker_position("SPY", why="first close").is_flat
    assert a.position("SPY").qty == 10


def test_memory_store_never_adopts_while_an_order_is_in_motion_either(clock: ManualClock) -> None:
    store = MemoryClaimStore(clock=clock)
    broker = paper(clock)
    a, b = gateway(broker, store, "bot-a", clock), gateway(broker, store, "bot-b", clock)
    a.enter("SPY", qty=10, intent="dip buy", order_type="limit", limit_price=495)
    broker.set_price("SPY", "490")
    clock.advance(SETTINGS.position_settle_secs + 1)
    assert b.adopt_broker_position("SPY", why="first close").is_flat
    assert store.adopt_position("bot-b", "SPY", Decimal(10), why="direct").is_flat


def test_through_the_claim_service_an_agent_key_never_adopts_shares_another_agent_just_sold(
    store_url: str, clock: ManualClock
) -> None:
    """A caller's own reads are not under the store's lock, so the store itself must know another
    agent's ledger moved within the settle horizon (found by an adversarial run: B adopted and sold
    C's shares). B is on A's account: an agent key adopts only once its account is known."""
    from tests.native_kit import serve_native
    from tradeguard.ports import account_key_of
    from tradeguard.store import RemoteClaimLedger

    with (
        ClaimStore(store_url, settings=SETTINGS, clock=clock) as served,
        serve_native(served, store_url) as service,
    ):
        broker = paper(clock)
        a = gateway(broker, served, "bot-a", clock)
        a.enter("SPY", qty=10, intent="a in")
        clock.advance(SETTINGS.position_settle_secs + 1)
        a.exit("SPY", intent="a out")  # A's turn closed just now; a lagging read still shows 10
        key = service.key("bot-b", account=None)
        served.register_account("bot-b", account_key_of(broker))
        with RemoteClaimLedger(service.base_url, api_key=key, clock=clock) as remote:
            adopted = remote.adopt_position("bot-b", "SPY", Decimal(10), why="first close")
            assert adopted.is_flat
        clock.advance(SETTINGS.position_settle_secs + 1)  # settled: a real orphan is adopted again
        assert served.adopt_position("bot-b", "SPY", Decimal(3), why="first close").qty == 3


def test_memory_store_never_adopts_right_after_another_agents_turn_moved(clock: ManualClock) -> None:
    store = MemoryClaimStore(settings=SETTINGS, clock=clock)
    broker = paper(clock)
    a = gateway(broker, store, "bot-a", clock)
    a.enter("SPY", qty=10, intent="a in")
    clock.advance(SETTINGS.position_settle_secs + 1)
    a.exit("SPY", intent="a out")
    assert store.adopt_position("bot-b", "SPY", Decimal(10), why="stale read").is_flat
    clock.advance(SETTINGS.position_settle_secs + 1)
    assert store.adopt_position("bot-b", "SPY", Decimal(3), why="first close").qty == 3
