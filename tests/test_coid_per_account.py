"""A caller's client_order_id is unique per broker account, as at Alpaca, not per claim store.

Two bots on two broker accounts that share one claim store (a SQLite file, PostgreSQL) and both
send `client_order_id="entry-1"` through the drop-in client each get their order placed, as they
would with alpaca-py alone; each retry returns its own order (G1). On one account the second
use of an id is still Alpaca's 422 with nothing sent, and the second agent adopts nothing of
the first's (G1, the ledger). An agent of unknown account shares its ids with every account
(fail-safe). Migration 0012 takes a store created at 0011, rows in it, on both dialects.
Real parts: `PaperBroker` accounts, real stores, the in-memory store.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic import command
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from tradeguard import GuardedTradingClient, ManualClock, PaperBroker
from tradeguard.client import ClientOrderIdReused
from tradeguard.config import Settings
from tradeguard.domain import Side
from tradeguard.domain.intents import Intent, Kind, OrderSpec, canonical_json, hash_payload_json
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import StoreError
from tradeguard.paper.prices import FixedPrices
from tradeguard.ports import ClaimLedger, ForwardingBroker, account_key_from_id, account_key_of
from tradeguard.store import ClaimStore, MemoryClaimStore
from tradeguard.store.engine import _alembic_config, open_engine

SETTINGS = Settings(recent_activity_secs=0, position_settle_secs=0)
X, Y = account_key_from_id("account-x"), account_key_from_id("account-y")


def paper(clock: ManualClock) -> PaperBroker:
    """A paper account of its own (each `PaperBroker` names a new account)."""
    return PaperBroker(prices=FixedPrices({"SPY": "500"}), clock=clock)  # type: ignore[arg-type]


class Unnamed(ForwardingBroker):
    """A broker whose account is not known (`account_key_of` is "")."""

    account_key = ""


def client(broker: object, store_url: str, agent: str, clock: ManualClock) -> GuardedTradingClient:
    return GuardedTradingClient(
        store=store_url,
        agent_id=agent,
        settings=SETTINGS,
        clock=clock,
        broker=broker,  # type: ignore[arg-type]
    )


def buy(qty: int, coid: str = "entry-1") -> MarketOrderRequest:
    return MarketOrderRequest(symbol="SPY", qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                              client_order_id=coid)  # fmt: skip


def orders_under(broker: PaperBroker, coid: str) -> list[str]:
    return [o.id for o in broker.orders() if o.client_order_id == coid]


# -- the drop-in client ------------------------------------------------------------------------


def test_two_accounts_sharing_a_store_each_place_their_own_entry_1(store_url: str) -> None:
    clock = ManualClock()
    x, y = paper(clock), paper(clock)
    bot_a, bot_b = client(x, store_url, "bot-a", clock), client(y, store_url, "bot-b", clock)
    try:
        placed_a = bot_a.submit_order(buy(1))
        placed_b = bot_b.submit_order(buy(2))  # refused as ClientOrderIdReused before the fix
        assert orders_under(x, "entry-1") == [str(placed_a.id)]  # type: ignore[union-attr]
        assert orders_under(y, "entry-1") == [str(placed_b.id)]  # type: ignore[union-attr]
        # Each retry is its own decision's answer: nothing more is sent (G1).
        assert bot_a.submit_order(buy(1)).id == placed_a.id  # type: ignore[union-attr]
        assert bot_b.submit_order(buy(2)).id == placed_b.id  # type: ignore[union-attr]
        assert len(x.orders()) == 1 and len(y.orders()) == 1
    finally:
        bot_a.close()
        bot_b.close()
    with ClaimStore(store_url) as store:
        claims = store.list_claims()
        assert sorted((c.agent_id, c.client_order_id, c.order_qty) for c in claims) == [
            ("bot-a", "entry-1", Decimal(1)), ("bot-b", "entry-1", Decimal(2)),
        ]  # fmt: skip
        assert store.position("bot-a", "SPY").qty == 1 and store.position("bot-b", "SPY").qty == 2
        # A lookup by id reads its account's claim.
        mine = store.get_by_client_order_id("entry-1", account_key=account_key_of(y))
        assert mine is not None and mine.agent_id == "bot-b"


def test_two_agents_on_one_account_still_get_alpacas_422_and_adopt_nothing(store_url: str) -> None:
    clock = ManualClock()
    x = paper(clock)
    bot_a, bot_b = client(x, store_url, "bot-a", clock), client(x, store_url, "bot-b", clock)
    try:
        placed = bot_a.submit_order(buy(1))
        for _ in range(2):  # and its retry
            with pytest.raises(ClientOrderIdReused) as refused:
                bot_b.submit_order(buy(1))  # the very same order: still not bot-b's to adopt
            assert isinstance(refused.value, APIError) and refused.value.status_code == 422
            assert "client_order_id must be unique" in str(refused.value)
        assert orders_under(x, "entry-1") == [str(placed.id)]  # type: ignore[union-attr]
        assert len(x.orders()) == 1
    finally:
        bot_a.close()
        bot_b.close()
    with ClaimStore(store_url) as store:
        assert store.list_claims(agent_id="bot-b") == []
        assert store.position("bot-b", "SPY").is_flat
        assert store.position("bot-a", "SPY").qty == 1


def test_an_agent_of_unknown_account_shares_its_ids_with_every_account(store_url: str) -> None:
    clock = ManualClock()
    x, y, z = paper(clock), paper(clock), paper(clock)
    known, unknown = client(x, store_url, "bot-a", clock), client(Unnamed(y), store_url, "bot-u", clock)
    later = client(z, store_url, "bot-c", clock)
    try:
        known.submit_order(buy(1))
        with pytest.raises(ClientOrderIdReused):  # it may be on account x: refused, nothing sent
            unknown.submit_order(buy(1))
        unknown.submit_order(buy(1, "entry-2"))
        with pytest.raises(ClientOrderIdReused):  # and its own ids are refused on every account
            later.submit_order(buy(1, "entry-2"))
        assert y.orders()[0].client_order_id == "entry-2" and len(y.orders()) == 1
        assert z.orders() == []
    finally:
        for each in (known, unknown, later):
            each.close()


# -- the store contract (SQLite, PostgreSQL, in memory) ----------------------------------------


def _claim(store: ClaimLedger, agent: str, coid: str, qty: int = 1) -> str:
    intent = Intent(agent, Kind.ENTRY, "SPY", Side.BUY, f"coid:{coid}")
    return store.claim(intent, OrderSpec(qty=Decimal(qty)), owner="w", client_order_id=coid).claim.key


def test_every_store_scopes_a_client_order_id_to_its_account(shared: ClaimLedger) -> None:
    for agent, key in (("a", X), ("a2", X), ("b", Y), ("u", "0123456789abcdef"), ("v", "")):
        shared.register_account(agent, key)
    a = _claim(shared, "a", "entry-1")
    b = _claim(shared, "b", "entry-1")  # another account: its own claim
    assert a != b
    assert _claim(shared, "b", "entry-1") == b  # a retry is the same claim
    with pytest.raises(StoreError, match="already belongs to another claim"):
        _claim(shared, "a2", "entry-1")  # the same account
    for unknown in ("u", "v"):  # no account of the account's own id: every account's ids
        with pytest.raises(StoreError):
            _claim(shared, unknown, "entry-1")
    _claim(shared, "u", "entry-2")
    for known in ("a", "b"):
        with pytest.raises(StoreError):
            _claim(shared, known, "entry-2")
    found_a = shared.get_by_client_order_id("entry-1", account_key=X)
    found_b = shared.get_by_client_order_id("entry-1", account_key=Y)
    assert found_a is not None and found_a.key == a and found_b is not None and found_b.key == b
    oldest = shared.get_by_client_order_id("entry-1")  # account unknown: every account's, oldest
    first = min((found_a, found_b), key=lambda c: (c.created_at, c.key))
    assert oldest is not None and oldest.key == first.key
    other = shared.get_by_client_order_id("entry-2", account_key=Y)  # of unknown account: any one's
    assert other is not None and other.agent_id == "u"
    assert shared.get_by_client_order_id("entry-1", account_key=account_key_from_id("z")) is None


def test_an_id_is_scoped_to_a_key_of_the_accounts_own_id_only() -> None:
    from tradeguard.ports import coid_scope

    assert coid_scope(X) == X and coid_scope("0123456789abcdef") == coid_scope(None) == coid_scope("") == ""


# -- migration 0012 on a store created at 0011 -------------------------------------------------


def _store_at_0011_with_a_claim(url: str) -> Intent:
    """Create the schema at 0011 and write one claim of agent a (account X) as that code did."""
    engine = open_engine(url, migrate=False)  # its transactions: BEGIN IMMEDIATE on SQLite, as a migration
    cfg = _alembic_config()
    intent = Intent("a", Kind.ENTRY, "SPY", Side.BUY, "coid:entry-1")
    text = canonical_json(OrderSpec(qty=Decimal(1)).as_payload())
    at = datetime(2026, 5, 21, 14, 30, tzinfo=UTC)
    naive = at if engine.dialect.name == "postgresql" else at.replace(tzinfo=None)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0011")
        conn.execute(
            sa.text(
                "INSERT INTO tg_claims (claim_key, client_order_id, agent_id, kind, symbol, side, intent,"
                " payload, payload_hash, state, epoch, owner, lease_expires_at, order_qty, attempts,"
                " reason, created_at, updated_at) VALUES (:key, 'entry-1', 'a', 'entry', 'SPY', 'buy',"
                " 'coid:entry-1', :payload, :hash, 'SUBMITTED', 1, 'w', :lease, '1', 1, 'sent', :at, :at)"
            ),
            {
                "key": intent.key,
                "payload": text,
                "hash": hash_payload_json(text),
                "at": naive,
                "lease": naive + timedelta(seconds=30),
            },
        )
        conn.execute(
            sa.text("INSERT INTO tg_agent_accounts (agent_id, account_key, updated_at) VALUES ('a', :x, :t)"),
            {"x": X, "t": naive},
        )
    engine.dispose()
    return intent


def test_migration_0012_keeps_a_0011_stores_claims_and_scopes_new_ids(store_url: str) -> None:
    old = _store_at_0011_with_a_claim(store_url)
    with ClaimStore(store_url) as store:  # opening migrates to the head
        kept = store.get(old.key)
        assert kept is not None and kept.state is ClaimState.SUBMITTED
        again = store.claim(old, OrderSpec(qty=Decimal(1)), owner="w2", client_order_id="entry-1")
        assert not again.created and again.claim.key == old.key  # its retry is itself (G1)
        found = store.get_by_client_order_id("entry-1", account_key=X)
        assert found is not None and found.key == old.key
        store.register_account("b", Y)
        store.register_account("a2", X)
        # A claim from before 0012 never recorded its account: its id stays every account's.
        with pytest.raises(StoreError):
            _claim(store, "b", "entry-1")
        assert _claim(store, "a", "entry-3") != _claim(store, "b", "entry-3")  # new ids: per account
        with pytest.raises(StoreError):
            _claim(store, "a2", "entry-3")  # another agent on a's account


def _downgrade_to_0011(url: str) -> None:
    engine = open_engine(url, migrate=False)
    cfg = _alembic_config()
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0011")
    finally:
        engine.dispose()


def test_migration_0012_downgrades_unless_two_accounts_share_an_id_and_upgrades_again(store_url: str) -> None:
    with ClaimStore(store_url) as store:
        store.register_account("a", X)
        store.register_account("b", Y)
        _claim(store, "a", "entry-1")
        _claim(store, "b", "entry-1")
    with pytest.raises(sa.exc.IntegrityError):  # one id per store again: refused, nothing changed
        _downgrade_to_0011(store_url)
    with ClaimStore(store_url) as store:  # still at the head, both claims there
        assert len(store.list_claims()) == 2
    # b's claim goes (a store whose ids are one per store goes down).
    engine = open_engine(store_url, migrate=False)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM tg_claims WHERE agent_id = 'b'"))
    engine.dispose()
    _downgrade_to_0011(store_url)
    with ClaimStore(store_url) as store:  # upgraded again: the claim kept, its id now of scope ""
        assert [c.agent_id for c in store.list_claims()] == ["a"]
        with pytest.raises(StoreError):
            _claim(store, "c", "entry-1")


def test_an_unknown_accounts_claim_racing_a_known_ones_for_one_id_leaves_one_claim(store_url: str) -> None:
    """The "" scope's rule is atomic: on PostgreSQL its claim and a known account's serialise on the id."""
    rounds = 30
    stores = [ClaimStore(store_url), ClaimStore(store_url)]
    try:
        stores[0].register_account("known", X)
        stores[0].register_account("unknown", "")
        barrier = threading.Barrier(2)
        won: list[list[str]] = [[] for _ in range(rounds)]

        def race(store: ClaimStore, agent: str) -> None:
            for i in range(rounds):
                barrier.wait()
                with contextlib.suppress(StoreError):
                    _claim(store, agent, f"race-{i}")
                    won[i].append(agent)

        threads = [
            threading.Thread(target=race, args=(s, a))
            for s, a in zip(stores, ("known", "unknown"), strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(len(winners) == 1 for winners in won), won
        assert len(stores[0].list_claims()) == rounds
    finally:
        for store in stores:
            store.close()


def test_the_memory_store_forgets_a_pruned_claims_id_in_its_scope_only() -> None:
    clock = ManualClock()
    store = MemoryClaimStore(clock=clock)
    store.register_account("a", X)
    store.register_account("b", Y)
    a = store.get(_claim(store, "a", "entry-1"))
    assert a is not None
    store.transition(
        store.transition(a, ClaimState.SUBMITTED, reason="sent"), ClaimState.CANCELED, reason="x"
    )
    clock.advance(3600)
    b = _claim(store, "b", "entry-1")  # b's, active: kept
    assert store.prune_resolved(clock.now() - timedelta(seconds=60)) == 1
    assert store.get_by_client_order_id("entry-1", account_key=X) is None
    kept = store.get_by_client_order_id("entry-1", account_key=Y)
    assert kept is not None and kept.key == b
    assert _claim(store, "b", "entry-1") == b


def test_a_refused_id_names_the_claim_it_conflicts_with_not_another_accounts(shared: ClaimLedger) -> None:
    # The account whose key sorts first holds the id too: an unscoped read of the id finds it first.
    first, second = sorted((X, Y))
    shared.register_account("elsewhere", first)
    shared.register_account("holder", second)
    shared.register_account("late", second)
    theirs = _claim(shared, "elsewhere", "entry-1")
    mine = _claim(shared, "holder", "entry-1")
    with pytest.raises(StoreError) as refused:
        _claim(shared, "late", "entry-1")
    assert mine in str(refused.value) and theirs not in str(refused.value)
