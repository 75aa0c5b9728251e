"""Several bots on several broker accounts sharing one claim store (SQLite file and PostgreSQL).

Exit sizing, adoption and the reconciler subtract "shares other agents' ledgers hold" from what
the broker shows; only agents registered on the same broker account count (`account_key_of`).
Agents on one account still never sell each other's shares; an agent with no registered account
(a store from before migration 0006) counts as sharing every account, as before. Real parts:
the real `PaperBroker`, the real alpaca-py client, stores on a SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import requests_mock
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from tradeguard import AlpacaBroker, GuardedTradingClient, ManualClock, OrderGateway, Outcome, PaperBroker
from tradeguard.config import Settings
from tradeguard.domain import OrderRequest, Side
from tradeguard.errors import TradeguardError
from tradeguard.faults import FaultPlan, FaultyBroker
from tradeguard.paper.prices import FixedPrices
from tradeguard.paper.state import paper_account_id
from tradeguard.ports import ForwardingBroker, account_key_from_id, account_key_of, same_account
from tradeguard.reconcile import Reconciler
from tradeguard.store import ClaimStore, RemoteClaimLedger
from tradeguard.testing import RecordingBroker

SETTINGS = Settings(recent_activity_secs=0, position_settle_secs=0)


def paper(clock: ManualClock, **extra: object) -> PaperBroker:
    return PaperBroker(prices=FixedPrices({"SPY": "500", "QQQ": "400"}), clock=clock, **extra)  # type: ignore[arg-type]


def gateway(broker: PaperBroker, store: ClaimStore, agent: str, clock: ManualClock) -> OrderGateway:
    return OrderGateway(broker, store, agent_id=agent, settings=SETTINGS, clock=clock)


def client(broker: PaperBroker, store_url: str, agent: str, clock: ManualClock) -> GuardedTradingClient:
    return GuardedTradingClient(
        "key", "secret", store=store_url, agent_id=agent, settings=SETTINGS, clock=clock, broker=broker
    )


def order(side: OrderSide, qty: int, coid: str) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol="SPY", qty=qty, side=side, time_in_force=TimeInForce.DAY, client_order_id=coid
    )


def buy_one(broker: PaperBroker) -> None:
    broker.submit_order(OrderRequest(symbol="SPY", side=Side.BUY, client_order_id="one", qty=Decimal(1)))


def held(broker: PaperBroker, symbol: str = "SPY") -> Decimal:
    position = broker.get_position(symbol)
    return Decimal(0) if position is None else position.qty


# -- the account key ----------------------------------------------------------------------------


def test_same_account_treats_an_unknown_key_as_any_account() -> None:
    a, b = account_key_from_id("a"), account_key_from_id("b")
    assert same_account(a, a) and not same_account(a, b)
    assert same_account("", b) and same_account(a, None) and same_account(None, None)
    # A key registered under the older rule (credentials, not the account id) cannot be compared.
    assert same_account("0123456789abcdef", a) and same_account(b, "0123456789abcdef")


ACCOUNT_ID = "904837e3-3b76-47ec-b432-046db621571b"


def test_alpaca_keys_name_the_account_id_whatever_the_credentials_or_url() -> None:
    with requests_mock.Mocker() as m:
        m.get("https://paper-api.alpaca.markets/v2/account", json={"id": ACCOUNT_ID, "status": "ACTIVE"})
        m.get("http://127.0.0.1:9/v2/account", json={"id": ACCOUNT_ID, "status": "ACTIVE"})
        m.get("https://api.alpaca.markets/v2/account", json={"id": "another-account", "status": "ACTIVE"})
        first = AlpacaBroker(TradingClient("k1", "s1", paper=True))
        key = first.account_key
        assert key == account_key_from_id(ACCOUNT_ID) and "k1" not in key
        assert key == first.account_key and m.call_count == 1  # read once
        assert AlpacaBroker(TradingClient("rotated", "s2", paper=True)).account_key == key
        assert AlpacaBroker(TradingClient("cli", "s", url_override="http://127.0.0.1:9")).account_key == key
        assert AlpacaBroker(TradingClient("k1", "s1", paper=False)).account_key != key


def test_an_unreadable_account_falls_back_to_a_key_that_counts_as_any_account() -> None:
    with requests_mock.Mocker() as m:
        m.get("https://paper-api.alpaca.markets/v2/account", status_code=500, text="<html>oops</html>")
        fallback = AlpacaBroker(TradingClient("k1", "s1", paper=True)).account_key
    assert fallback and "k1" not in fallback
    assert same_account(fallback, account_key_from_id(ACCOUNT_ID))
    assert same_account(fallback, account_key_from_id("another-account"))


def test_wrappers_answer_their_inner_brokers_key(clock: ManualClock) -> None:
    broker = paper(clock)
    assert broker.account_key.startswith("acct:") and broker.account_key != paper(clock).account_key
    wrapped = RecordingBroker(FaultyBroker(ForwardingBroker(broker), FaultPlan()))
    assert account_key_of(wrapped) == broker.account_key == account_key_of(broker)
    assert account_key_of(object()) == ""


def test_a_paper_account_keeps_its_key_through_the_snapshot_and_the_journal(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "acct.json"
    first = paper(clock, state_path=path)
    key = first.account_key
    buy_one(first)  # a new account's file is written with its first change
    first.close()  # one snapshot line
    again = paper(clock, state_path=path)
    assert again.account_key == key
    gw = gateway(again, ClaimStore(f"sqlite:///{tmp_path / 's.db'}", clock=clock), "a", clock)
    gw.enter("SPY", qty=2, intent="buy")  # a journal line after the snapshot
    gw.store.close()
    assert paper(clock, state_path=path).account_key == key


def test_an_old_state_file_gets_a_key_on_load_and_keeps_it(tmp_path: Path, clock: ManualClock) -> None:
    path = tmp_path / "old.json"
    buy_one(paper(clock, state_path=path))
    doc = json.loads(path.read_text())
    del doc["account_key"]  # as written before account keys
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    made = paper(clock, state_path=path).account_key
    assert made and paper(clock, state_path=path).account_key == made
    seed = json.loads(path.read_text().split("\n")[0])["account_key"]
    assert account_key_from_id(paper_account_id(seed)) == made


# -- two accounts, one store --------------------------------------------------------------------


def test_two_agents_on_two_accounts_each_exit_their_own_shares_fully(
    store: ClaimStore, clock: ManualClock
) -> None:
    acct1, acct2 = paper(clock), paper(clock)
    a, b = gateway(acct1, store, "bot-a", clock), gateway(acct2, store, "bot-b", clock)
    assert a.enter("SPY", qty=50, intent="a in").outcome is Outcome.SUBMITTED
    assert b.enter("SPY", qty=7, intent="b in").outcome is Outcome.SUBMITTED
    assert store.agent_accounts() == {"bot-a": acct1.account_key, "bot-b": acct2.account_key}
    part = b.exit("SPY", qty=3, intent="b trim")
    assert part.outcome is Outcome.SUBMITTED and part.claim is not None and part.claim.order_qty == 3
    rest = b.exit("SPY", intent="b out")
    assert rest.outcome is Outcome.SUBMITTED and rest.claim is not None and rest.claim.order_qty == 4
    out = a.exit("SPY", intent="a out")
    assert out.outcome is Outcome.SUBMITTED and out.claim is not None and out.claim.order_qty == 50
    assert (held(acct1), held(acct2)) == (0, 0)
    assert (a.position("SPY").qty, b.position("SPY").qty) == (0, 0)


def test_drop_in_sells_and_close_position_on_two_accounts_sharing_a_store(
    store_url: str, clock: ManualClock
) -> None:
    acct1, acct2 = paper(clock), paper(clock)
    a, b = client(acct1, store_url, "bot-a", clock), client(acct2, store_url, "bot-b", clock)
    a.submit_order(order(OrderSide.BUY, 50, "a-in"))
    b.submit_order(order(OrderSide.BUY, 7, "b-in"))
    sold = b.submit_order(order(OrderSide.SELL, 3, "b-out"))
    assert str(sold.qty) == "3" and held(acct2) == 4
    closed = b.close_position("SPY")
    assert str(closed.qty) == "4" and held(acct2) == 0
    assert str(a.close_position("SPY").qty) == "50" and held(acct1) == 0
    for c in (a, b):
        c.gateway.store.close()


def test_two_agents_on_one_account_still_cannot_sell_each_others_shares(
    store: ClaimStore, clock: ManualClock
) -> None:
    shared = paper(clock)
    a, b = gateway(shared, store, "bot-a", clock), gateway(shared, store, "bot-b", clock)
    a.enter("SPY", qty=5, intent="a in")
    b.enter("SPY", qty=3, intent="b in")
    store.adjust_position("bot-b", "SPY", Decimal(5), reason="a phantom 5 in b's ledger")
    out = b.exit("SPY", intent="b out")  # b's ledger says 8, the account holds a's 5 + b's 3
    assert out.claim is not None and out.claim.order_qty == 3
    assert held(shared) == 5 and store.position("bot-a", "SPY").qty == 5


def test_a_leftover_agent_on_another_account_does_not_block_a_new_agent(
    store: ClaimStore, clock: ManualClock
) -> None:
    # An earlier run's agent, on its own paper account, left 64 SPY open in the store.
    leftover = gateway(paper(clock), store, "old-run", clock)
    leftover.enter("SPY", qty=64, intent="left open")
    mine = paper(clock)
    fresh = gateway(mine, store, "new-run", clock)
    fresh.enter("SPY", qty=7, intent="in")
    out = fresh.exit("SPY", intent="out")
    assert out.outcome is Outcome.SUBMITTED and held(mine) == 0
    assert store.position("old-run", "SPY").qty == 64


def test_an_unregistered_leftover_still_counts_as_on_every_account(
    store: ClaimStore, clock: ManualClock
) -> None:
    # A store from before migration 0006: nobody knows the leftover's account; never sell it.
    store.adjust_position("old-run", "SPY", Decimal(64), reason="from before accounts were kept")
    mine = paper(clock)
    fresh = gateway(mine, store, "new-run", clock)
    fresh.enter("SPY", qty=7, intent="in")
    assert fresh.exit("SPY", intent="out").outcome is Outcome.SKIPPED
    assert held(mine) == 7


def test_reconcile_on_each_account_touches_only_its_own_agents(store: ClaimStore, clock: ManualClock) -> None:
    acct1, acct2 = paper(clock), paper(clock)
    a, b = gateway(acct1, store, "bot-a", clock), gateway(acct2, store, "bot-b", clock)
    a.enter("SPY", qty=50, intent="a in")
    b.enter("SPY", qty=7, intent="b in")
    for broker in (acct1, acct2):  # every agent's pass and the whole store's: nothing to do
        report = Reconciler(broker, store, settings=SETTINGS, clock=clock).run()
        assert report.actions == [] and report.aborted is None
    assert a.reconcile().actions == [] and b.reconcile().actions == []
    acct2.close_position("SPY")  # sold behind the guard's back: b's 7 are a phantom now
    report = Reconciler(acct2, store, settings=SETTINGS, clock=clock).run()
    assert [(x.kind.value, x.agent_id) for x in report.applied] == [("clear_phantom", "bot-b")]
    assert (store.position("bot-a", "SPY").qty, store.position("bot-b", "SPY").qty) == (50, 0)
    assert Reconciler(acct1, store, settings=SETTINGS, clock=clock).run().actions == []


def test_adoption_ignores_agents_on_another_account(store_url: str, clock: ManualClock) -> None:
    acct1, acct2 = paper(clock), paper(clock)
    a = client(acct1, store_url, "bot-a", clock)
    a.submit_order(order(OrderSide.BUY, 50, "a-in"))
    b = client(acct2, store_url, "bot-b", clock)
    b.gateway.position("SPY")  # started: registered on account 2
    # 7 SPY bought on account 2 behind the guard's back: b's first plain sell adopts them, and
    # a's 50 (on account 1) are not taken for b's account's shares.
    acct2.submit_order(OrderRequest(symbol="SPY", side=Side.BUY, client_order_id="before", qty=Decimal(7)))
    sold = b.submit_order(order(OrderSide.SELL, 7, "b-out"))
    assert str(sold.qty) == "7" and held(acct2) == 0 and held(acct1) == 50
    for c in (a, b):
        c.gateway.store.close()


# -- the claim service ----------------------------------------------------------------------------


def test_an_agent_key_registers_only_its_own_agent(sqlite_url: str, clock: ManualClock) -> None:
    from tests.native_kit import serve_native

    with ClaimStore(sqlite_url, clock=clock) as served, serve_native(served, sqlite_url) as service:
        with RemoteClaimLedger(
            service.base_url, api_key=service.key("bot-a", account=None), clock=clock
        ) as remote:
            remote.register_account("bot-a", "acct-1")
            with pytest.raises(TradeguardError, match="acts for agent bot-a only"):
                remote.register_account("bot-b", "acct-1")
            served.register_account("bot-b", "acct-2")
            assert remote.agent_accounts() == {"bot-a": "acct-1"}  # another agent's is not shown
        assert served.agent_accounts() == {"bot-a": "acct-1", "bot-b": "acct-2"}


# -- a store from before the accounts table -------------------------------------------------------


def test_a_store_upgraded_from_0004_keeps_its_agents_on_every_account(
    store_url: str, clock: ManualClock
) -> None:
    import sqlalchemy as sa
    from alembic import command

    from tradeguard.store.engine import _alembic_config, parse_url

    engine = sa.create_engine(parse_url(store_url))
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
    engine.dispose()
    with ClaimStore(store_url, clock=clock) as store:  # migrated to head on open
        store.adjust_position("old-run", "SPY", Decimal(64), reason="held before the upgrade")
        assert store.agent_accounts() == {}
        mine = paper(clock)
        fresh = gateway(mine, store, "new-run", clock)
        fresh.enter("SPY", qty=7, intent="in")
        assert store.agent_accounts() == {"new-run": mine.account_key}
        assert fresh.exit("SPY", intent="out").outcome is Outcome.SKIPPED  # 64 may be on this account
        # Its gateway started again on another account.
        store.register_account("old-run", account_key_from_id("another account"))
        assert fresh.exit("SPY", intent="out again").outcome is Outcome.SUBMITTED and held(mine) == 0
