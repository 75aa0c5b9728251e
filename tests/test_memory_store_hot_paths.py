"""The in-memory store's shortcuts on the replay's hot path answer as the SQL store does.

`MemoryClaimStore.moved_turns` hands out an open turn's own value and a cached flat value per
closed turn instead of building each anew, and `list_claims` returns at once when no index holds
a candidate. Each step of a ledger history (turns opened, added to, closed by fills, cleared as
phantoms, reopened; the clock moving between them) is checked against a real SQLite `ClaimStore`
doing the same, for every bound an exit or a reconcile pass asks with.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain.ledger import LedgerPosition
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.store import ClaimStore, MemoryClaimStore

T0 = datetime(2026, 5, 21, 14, 0, tzinfo=UTC)

# (seconds after T0, agent, symbol, what): a signed fill, or "clear" (a phantom's turn closed).
STEPS: list[tuple[int, str, str, Decimal | str]] = [
    (1, "a", "TQQQ", Decimal(5)),
    (2, "b", "TQQQ", Decimal(3)),
    (2, "a", "TQQQ", Decimal(2)),  # an add: the open turn moves
    (4, "b", "TQQQ", Decimal(-3)),  # closed by a fill
    (5, "a", "SQQQ", Decimal(-4)),  # a short
    (7, "b", "TQQQ", Decimal(6)),  # reopened: a new turn, a new move
    (9, "a", "SQQQ", "clear"),  # cleared while short: the flat value of a cleared turn
    (12, "b", "TQQQ", Decimal(-6)),  # closed again: the cached flat value must not be the first one's
    (15, "a", "SQQQ", Decimal(1)),  # reopened on the other side
    (15, "a", "SQQQ", Decimal(-1)),  # and closed at the same instant
    (20, "a", "TQQQ", Decimal(-7)),
]


def _view(turns: list[LedgerPosition], store: ClaimStore | MemoryClaimStore) -> list[tuple[object, ...]]:
    # The memory store keeps each agent's latest turn in a symbol only (the one whose move time it
    # keeps; the SQL store lists older turns moved since too), so the latest turns are compared.
    # Turn ids are each store's own numbering; a closed turn's `opened_at` is the SQL store's alone.
    return [
        (p.agent_id, p.symbol, p.qty, p.updated_at)
        for p in turns
        if p.turn_id == store.latest_turn_id(p.agent_id, p.symbol)
    ]


def test_moved_turns_answer_as_the_sql_store_at_every_step(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    memory = MemoryClaimStore(settings=Settings(), clock=clock)
    sql = ClaimStore(f"sqlite:///{tmp_path / 'claims.db'}", settings=Settings(), clock=clock)
    try:
        for secs, agent, symbol, what in STEPS:
            clock.set(T0 + timedelta(seconds=secs))
            for store in (memory, sql):
                if what == "clear":
                    store.close_turn(agent, symbol, reason="phantom: broker flat twice")
                else:
                    assert isinstance(what, Decimal)
                    store.adjust_position(agent, symbol, what, reason="fill")
            for back in (0, 1, 2, 3, 5, 30):
                since = clock.now() - timedelta(seconds=back)
                # Asked twice: the second answer comes from what the first one kept.
                for _ in range(2):
                    mem, want = memory.moved_turns(since), sql.moved_turns(since)
                    assert sorted(_view(mem, memory)) == sorted(_view(want, sql)), (secs, back)
                    assert len(_view(mem, memory)) == len(mem)  # the latest turns only
                    assert [p.updated_at for p in mem] == sorted(p.updated_at for p in mem)
                    for p in mem:  # an open turn's value is the position itself
                        held = memory.position(p.agent_id, p.symbol)
                        assert p.qty == held.qty
                        if not held.is_flat:
                            assert p.turn_id == held.turn_id
                            assert p.opened_at == held.opened_at
    finally:
        sql.close()


def test_a_listing_with_no_candidate_is_empty_and_the_rest_unchanged() -> None:
    clock = ManualClock(T0)
    store = MemoryClaimStore(settings=Settings(), clock=clock)
    in_motion = [ClaimState.PENDING, ClaimState.UNKNOWN, ClaimState.SUBMITTED, ClaimState.PARTIALLY_FILLED]
    assert store.list_claims(states=in_motion, symbol="TQQQ") == []
    assert store.list_claims(states=[ClaimState.NOT_SENT], symbol="TQQQ", updated_since=T0) == []
    assert store.list_claims(agent_id="a") == []
    assert store.list_claims() == []
