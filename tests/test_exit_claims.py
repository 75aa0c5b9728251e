"""Exit claims sized and claimed in one store transaction (G3), on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

from tradeguard.domain import PositionIntent, Side
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.store import ClaimStore

AGENT = "exit-bot"


def _hold(store: ClaimStore, qty: int, agent: str = AGENT) -> None:
    entry = Intent(agent, Kind.ENTRY, "TQQQ", Side.BUY, f"entry {qty}")
    claim = store.claim(entry, OrderSpec(qty=Decimal(qty)), owner="w", order_qty=Decimal(qty)).claim
    store.transition(claim, ClaimState.FILLED, reason="filled", filled_qty=Decimal(qty))


def _exit(name: str) -> tuple[Intent, OrderSpec]:
    intent = Intent(AGENT, Kind.EXIT, "TQQQ", Side.SELL, name)
    return intent, OrderSpec(position_intent=PositionIntent.SELL_TO_CLOSE)


def test_a_racing_retry_of_the_same_exit_gets_the_claim_not_a_skip(store_url: str) -> None:
    with ClaimStore(store_url) as store:
        _hold(store, 10)
        intent, spec = _exit("11:26 momentum lost")
        first, room = store.claim_exit(intent, spec, owner="a", broker_available=Decimal(10), reason="x")
        assert first is not None and first.created and room is not None and room.qty == 10
        again, sized = store.claim_exit(intent, spec, owner="b", broker_available=Decimal(10), reason="x")
        assert again is not None and not again.created and sized is None
        assert again.claim.key == first.claim.key and again.claim.order_qty == 10


def test_a_second_decision_sizes_against_the_first_in_flight(store_url: str) -> None:
    with ClaimStore(store_url) as store:
        _hold(store, 10)
        first, _ = store.claim_exit(*_exit("stop"), owner="a", broker_available=Decimal(10), reason="x")
        assert first is not None and first.claim.order_qty == 10
        # The broker still shows 10 available (the first exit is not acknowledged yet).
        second, room = store.claim_exit(*_exit("target"), owner="b", broker_available=Decimal(10), reason="x")
        assert second is None and room is not None and room.qty == 0
        assert room.open_exits == 10 and room.unacknowledged_exits == 10


def test_other_agents_shares_are_never_an_exits_to_sell(store_url: str) -> None:
    with ClaimStore(store_url) as store:
        _hold(store, 10)  # a phantom: the broker holds only the other agent's 5
        _hold(store, 5, agent="other-bot")
        result, room = store.claim_exit(*_exit("stop"), owner="a", broker_available=Decimal(5), reason="x")
        assert result is None and room is not None
        assert room.reserved_by_others == 5 and room.qty == 0
