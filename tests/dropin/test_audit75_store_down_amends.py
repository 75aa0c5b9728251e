"""Audit 75: a cancel or replace the broker took while the claim store was down is not "nothing sent".

The guard records a cancel's or a replace's result on the claim after the broker acted. With
the store failing at that moment, the bot heard ClaimStoreError "the order was not sent ...
nothing was sent" although the broker had canceled its order, or replaced it with a live
order at the new terms: told that, a bot places the order again (two orders resting) or keeps
counting on a canceled one. The error now says what the broker did, and a cancel the broker
refused is the broker's refusal, as on alpaca-py, not a store error.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide
from alpaca.trading.requests import ReplaceOrderRequest

import tradeguard
from tests.dropin.kit import as_order, guarded_client, limit, plain_client
from tradeguard import GuardedTradingClient, ManualClock, Settings
from tradeguard.paper.server import PaperServer

BUY = OrderSide.BUY


@contextmanager
def _store_locked(path: Path) -> Iterator[None]:
    """Another process holds the SQLite store's write lock for the block."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        other.rollback()
        other.close()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "claims.db"


@pytest.fixture
def bot(server: PaperServer, store_path: Path, clock: ManualClock) -> Iterator[GuardedTradingClient]:
    settings = Settings(sqlite_busy_timeout_ms=100)
    with guarded_client(server, f"sqlite:///{store_path}", settings=settings, clock=clock) as c:
        yield c


def _store_error(call: object) -> APIError:
    assert callable(call)
    with pytest.raises(APIError) as failed:
        call()
    assert isinstance(failed.value, tradeguard.StoreError), failed.value
    assert failed.value.status_code == 503
    return failed.value


def test_a_replace_the_broker_made_while_the_store_is_down_is_not_reported_as_nothing_sent(
    bot: GuardedTradingClient, server: PaperServer, store_path: Path, clock: ManualClock
) -> None:
    bid = as_order(bot.submit_order(limit("SPY", 2, BUY, 400)))
    clock.advance(5)
    with _store_locked(store_path):
        error = _store_error(lambda: bot.replace_order_by_id(bid.id, ReplaceOrderRequest(limit_price=410)))
    [new] = [o for o in server.broker.orders() if o.status.value == "new"]
    assert new.replaces == str(bid.id) and new.limit_price == 410  # the broker replaced it
    assert "not sent" not in error.message and new.id in error.message and "replaced" in error.message
    # Once the store is back, the claim follows the replacement on its next read (a refresh).
    bot.gateway.refresh("SPY")
    [claim] = bot.gateway.store.list_claims()
    assert claim.broker_order_id == new.id and claim.order_qty == 2
    bot.cancel_order_by_id(new.id)
    [claim] = bot.gateway.store.list_claims()
    assert claim.state.value == "CANCELED"


def test_a_cancel_the_broker_took_while_the_store_is_down_says_so(
    bot: GuardedTradingClient, server: PaperServer, store_path: Path, clock: ManualClock
) -> None:
    bid = as_order(bot.submit_order(limit("SPY", 2, BUY, 400)))
    clock.advance(5)
    with _store_locked(store_path):
        error = _store_error(lambda: bot.cancel_order_by_id(bid.id))
    assert server.broker.get_order(str(bid.id)).status.value == "canceled"  # type: ignore[union-attr]
    assert "not sent" not in error.message and str(bid.id) in error.message and "cancel" in error.message


def test_a_cancel_the_broker_refused_while_the_store_is_down_is_the_brokers_refusal(
    bot: GuardedTradingClient, server: PaperServer, store_path: Path, clock: ManualClock
) -> None:
    # The bid fills at the broker while the guard's claim still says it rests: following the
    # refused cancel's order is a write, which the locked store fails.
    filled = as_order(bot.submit_order(limit("SPY", 2, BUY, 400)))
    server.broker.set_price("SPY", "399")
    with plain_client(server) as plain, pytest.raises(APIError) as alpaca:
        plain.cancel_order_by_id(filled.id)
    clock.advance(5)
    with _store_locked(store_path), pytest.raises(APIError) as guarded:
        bot.cancel_order_by_id(filled.id)
    assert not isinstance(guarded.value, tradeguard.StoreError), guarded.value
    got, want = guarded.value, alpaca.value
    assert (got.status_code, str(got)) == (want.status_code, str(want)) == (422, str(want))


def test_cancel_orders_the_broker_took_while_the_store_is_down_says_so(
    bot: GuardedTradingClient, server: PaperServer, store_path: Path, clock: ManualClock
) -> None:
    as_order(bot.submit_order(limit("SPY", 2, BUY, 400)))
    as_order(bot.submit_order(limit("QQQ", 2, BUY, 300)))
    clock.advance(5)
    with _store_locked(store_path):
        error = _store_error(bot.cancel_orders)
    assert {o.status.value for o in server.broker.orders()} == {"canceled"}
    assert "not sent" not in error.message and "2 orders" in error.message
