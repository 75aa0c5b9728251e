"""The hot path's caches change nothing a caller can see: refusals, types, retries, renderings."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradeguard import (
    ConfigError,
    ManualClock,
    MemoryClaimStore,
    OrderGateway,
    OrderRequest,
    OrderType,
    PaperBroker,
    Side,
)
from tradeguard.domain import canonical_symbol
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.execution import Outcome


@pytest.fixture
def gateway() -> OrderGateway:
    paper = PaperBroker(cash=Decimal(10) ** 9)
    paper.set_price("TQQQ", Decimal("75.33"))
    return OrderGateway(paper, MemoryClaimStore(), agent_id="cache-test")


def test_a_refused_order_shape_is_refused_every_time_and_a_bool_is_no_share_count(
    gateway: OrderGateway,
) -> None:
    assert gateway.enter("TQQQ", qty=1, intent="one").outcome is Outcome.SUBMITTED
    for _ in range(2):  # the spec of qty=1 is cached; True (== 1, same hash) must not meet it
        with pytest.raises(ConfigError, match="qty must be a number, got True"):
            gateway.enter("TQQQ", qty=True, intent="bool")
    for _ in range(2):
        with pytest.raises(ConfigError, match="needs limit_price"):
            gateway.enter("TQQQ", qty=1, order_type="limit", intent="no price")
    with pytest.raises(ConfigError, match="qty must be a number"):
        gateway.enter("TQQQ", qty=[1], intent="unhashable")  # type: ignore[arg-type]


def test_equal_quantities_of_other_types_are_one_decision(gateway: OrderGateway) -> None:
    first = gateway.enter("TQQQ", qty=6.0, intent="base")
    again = gateway.enter("TQQQ", qty=Decimal("6"), intent="base")
    assert first.outcome is Outcome.SUBMITTED and again.outcome is Outcome.DUPLICATE
    assert first.claim is not None and first.claim.payload["qty"] == "6"


def test_an_intent_key_is_its_canonical_hash_and_not_part_of_its_value() -> None:
    a = Intent("bot", Kind.ENTRY, "TQQQ", Side.BUY, "09:42 base")
    b = Intent("bot", Kind.ENTRY, "TQQQ", Side.BUY, "09:42 base")
    assert a.key == a.key == b.key and a == b and hash(a) == hash(b) and repr(a) == repr(b)
    other = Intent("bot", Kind.EXIT, "TQQQ", Side.SELL, "09:42 base")
    assert other.key != a.key


def test_each_rendering_is_its_own_copy_and_follows_the_order() -> None:
    clock = ManualClock()
    paper = PaperBroker(clock=clock, cash=Decimal(10) ** 9)
    paper.set_price("TQQQ", Decimal("75"))
    placed = paper.submit_order(
        OrderRequest(
            "TQQQ", Side.BUY, "resting", qty=Decimal(2), limit_price=Decimal(70), order_type=OrderType.LIMIT
        )
    )
    assert placed.raw["status"] == "new" and placed.raw["filled_at"] is None
    placed.raw["status"] = "scribbled"  # a caller may change its copy
    looked = paper.get_order_by_client_id("resting")
    assert looked is not None and looked.raw["status"] == "new"
    clock.advance(5)
    paper.set_price("TQQQ", Decimal("69"))  # the limit crosses: the order fills
    filled = paper.get_order_by_client_id("resting")
    assert filled is not None
    assert filled.raw["status"] == "filled" and filled.raw["filled_qty"] == "2"
    assert filled.raw["filled_at"] is not None and filled.raw["updated_at"] != placed.raw["created_at"]


def test_a_claims_spec_is_what_its_payload_reads_back_as() -> None:
    store = MemoryClaimStore()
    spec = OrderSpec(qty=Decimal("6.0"), limit_price=Decimal("100.50"), order_type=OrderType.LIMIT)
    intent = Intent("cache-test", Kind.ENTRY, "TQQQ", Side.BUY, "read back")
    claim = store.claim(intent, spec, owner="me").claim
    assert claim.spec == OrderSpec.from_payload(claim.payload) == spec.read_back()
    assert str(claim.spec.qty) == "6" and str(claim.spec.limit_price) == "100.5"  # as read from the payload
    assert spec.read_back() is spec.read_back()


def test_a_symbols_spelling_is_worked_out_once_and_the_same_every_time() -> None:
    class Named(str):
        __slots__ = ()

    for _ in range(2):  # worked out, then from the cache
        assert canonical_symbol(" btcusd ") == "BTC/USD"
        assert canonical_symbol("spy") == "SPY"
        assert canonical_symbol("BRK/B") == "BRK/B"
        named = canonical_symbol(Named("eth/usd"))
        assert named == "ETH/USD" and type(named) is str
