"""G1/G2: an error answer for an order that was in fact placed is looked up, never taken as "rejected".

ALPACA.md: field reports exist of an error response on an order that was in fact placed. Taken
at its word, the claim became REJECTED with the ledger short of the shares, and the bot, told
"rejected, nothing placed", would decide again and buy twice. The guard now looks the order up
once by client_order_id before recording a refusal. Real parts: the paper server over HTTP,
alpaca-py's `TradingClient`, `AlpacaBroker`, a SQLite (and PostgreSQL) claim store.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from alpaca.trading.client import TradingClient

from tests.alpaca_bodies import FakeAlpaca, error_text
from tradeguard import OrderGateway, OrderResult, Outcome
from tradeguard.broker.alpaca import AlpacaBroker
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.faults import FaultPlan
from tradeguard.paper.prices import FixedPrices
from tradeguard.store import ClaimStore
from tradeguard.testing import paper_server

PLACED_THEN_403 = (
    "faults: [{route: POST /v2/orders, nth: 1, action: accept_then_error, status: 403,"
    " body: {code: 40310000, message: insufficient buying power}}]"
)
SETTINGS = Settings(recent_activity_secs=0, position_settle_secs=0)


def test_an_entry_refused_after_it_was_placed_is_adopted_and_never_sent_again(store_url: str) -> None:
    plan = FaultPlan.parse(PLACED_THEN_403)
    with paper_server(prices=FixedPrices({"AAPL": "100"}), faults=plan) as server:
        broker = AlpacaBroker(TradingClient("k", "s", url_override=server.url))
        with ClaimStore(store_url, settings=SETTINGS) as store:
            gateway = OrderGateway(broker, store, agent_id="bot", settings=SETTINGS)
            first = gateway.enter("AAPL", qty=10, intent="09:35 breakout")
            assert first.outcome is Outcome.SUBMITTED, first.reason
            assert "insufficient buying power" in first.reason
            assert first.claim is not None and first.claim.state is ClaimState.FILLED
            assert gateway.position("AAPL").qty == 10  # the ledger holds what the broker holds
            again = gateway.enter("AAPL", qty=10, intent="09:35 breakout")
            assert again.outcome is Outcome.DUPLICATE
            # One order at the broker, its shares in the ledger; the refusal's record is kept.
            orders = broker.list_orders(status="all")
            assert [o.client_order_id for o in orders] == [first.claim.client_order_id]
            assert broker.get_position("AAPL") is not None
            assert broker.get_position("AAPL").qty == 10  # type: ignore[union-attr]
            coid = first.claim.client_order_id
            trail = [r.reason for r in store.audit_records() if r.client_order_id == coid]
            assert any("after the broker answered 403" in reason for reason in trail), trail


REFUSED = (
    "{route: POST /v2/orders, nth: 1, action: reject, status: 403,"
    " body: {code: 40310000, message: insufficient buying power}}"
)


def _enter_refused(store_url: str, *faults: str) -> tuple[OrderResult, list[BrokerOrder], Decimal]:
    """Enter 10 AAPL against the paper server under `faults`; return the result, orders, ledger qty."""
    plan = FaultPlan.parse(f"faults: [{', '.join(faults)}]")
    with paper_server(prices=FixedPrices({"AAPL": "100"}), faults=plan) as server:
        broker = AlpacaBroker(TradingClient("k", "s", url_override=server.url))
        with ClaimStore(store_url, settings=SETTINGS) as store:
            gateway = OrderGateway(broker, store, agent_id="bot", settings=SETTINGS)
            result = gateway.enter("AAPL", qty=10, intent="09:35 breakout")
            return result, broker.list_orders(status="all"), gateway.position("AAPL").qty


def test_a_refusal_that_placed_nothing_is_still_rejected_after_the_lookup(store_url: str) -> None:
    result, orders, ledger = _enter_refused(store_url, REFUSED)
    assert result.outcome is Outcome.REJECTED
    assert result.claim is not None and result.claim.state is ClaimState.REJECTED
    assert orders == [] and ledger == 0


@pytest.mark.parametrize("lookup", ["error", "drop"])
def test_a_refusal_whose_lookup_fails_stands(store_url: str, lookup: str) -> None:
    """The broker's own words are evidence; an unread lookup does not overturn them."""
    result, orders, ledger = _enter_refused(
        store_url, REFUSED, f"{{route: GET /v2/orders:by_client_order_id, action: {lookup}}}"
    )
    assert result.outcome is Outcome.REJECTED
    assert orders == [] and ledger == 0


def test_a_refusal_whose_order_the_broker_holds_as_rejected_is_rejected(
    store_url: str, fake: FakeAlpaca, trading_client: TradingClient
) -> None:
    """Found by the lookup, but rejected at the broker too: the answer stays "rejected"."""
    made = fake.add_order

    def as_rejected(submitted_at: object = None, **changes: object) -> dict[str, object]:
        return made(submitted_at, **{**changes, "status": "rejected"})  # type: ignore[arg-type]

    fake.add_order = as_rejected  # type: ignore[method-assign]
    fake.lose_next_answer(status=403, text=error_text(40310000, "insufficient buying power"))
    with ClaimStore(store_url, settings=SETTINGS) as store:
        gateway = OrderGateway(AlpacaBroker(trading_client), store, agent_id="bot", settings=SETTINGS)
        result = gateway.enter("AAPL", qty=10, intent="09:35 breakout")
        assert result.outcome is Outcome.REJECTED
        assert result.claim is not None and result.claim.state is ClaimState.REJECTED
        assert gateway.position("AAPL").qty == 0
