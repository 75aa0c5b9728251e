"""A replay's accounts follow the live state, not the session's length (issue 11).

Sizes are counted in objects (orders the paper broker keeps, claims and audit records the claim
store keeps), never in bytes or time. The opt-in forgetting methods of `PaperBroker` and
`MemoryClaimStore` keep what a later call can read, and change nothing unless called.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from replay import Mode, replay_session
from replay.generate import generate_session
from replay.modes import FORGET_ABOVE, FullGuard
from tradeguard import ManualClock, MemoryClaimStore, OrderGateway, OrderRequest, OrderType, PaperBroker, Side
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import ConfigError

# A generated session makes about one decision every 1.2 s of session time: the hour of the
# retry horizon holds about 3,000 decisions, each one claim and at most one order. The bound is
# that hour plus the minute between two forgetting passes, with room; it does not depend on
# the session's length.
_LIVE_BOUND = max(FORGET_ABOVE, 4_000) + 200


def _full(path: Path, forget_above: int | None = FORGET_ABOVE) -> FullGuard:
    result = replay_session(path, [Mode.FULL], forget_above=forget_above)
    sim = result.simulations[Mode.FULL]
    assert isinstance(sim, FullGuard)
    return sim


def _sizes(sim: FullGuard) -> tuple[int, int, int]:
    store = sim.gateway.store
    assert isinstance(store, MemoryClaimStore)
    return sim.paper.order_count(), store.claim_count(), store.audit_kept()


@pytest.mark.slow
def test_a_20k_attempt_replay_keeps_what_a_2k_one_keeps(tmp_path: Path) -> None:
    small, large = tmp_path / "2k.jsonl", tmp_path / "20k.jsonl"
    generate_session(small, 2_000)
    generate_session(large, 20_000)
    small_sizes = _sizes(_full(small))
    large_sim = _full(large)
    large_sizes = _sizes(large_sim)
    assert large_sim.metrics.totals.decisions > 15_000  # the session is long: it made that many
    for kept in (*small_sizes, *large_sizes):
        assert kept <= _LIVE_BOUND, (small_sizes, large_sizes)
    # The replay's own per-decision bookkeeping follows the live decisions too.
    assert len(large_sim.metrics._orders) <= _LIVE_BOUND
    assert len(large_sim._counted) <= _LIVE_BOUND


@pytest.mark.slow
def test_forgetting_never_changes_the_figures(tmp_path: Path) -> None:
    path = tmp_path / "6k.jsonl"
    generate_session(path, 6_000)
    kept = replay_session(path, list(Mode), forget_above=None)
    # A small bound forgets at every pass: only the retry horizon decides what goes.
    forgetting = replay_session(path, list(Mode), forget_above=100)
    assert {m: t.as_dict() for m, t in forgetting.totals.items()} == {
        m: t.as_dict() for m, t in kept.totals.items()
    }
    full = forgetting.simulations[Mode.FULL]
    assert isinstance(full, FullGuard)
    assert full.paper.order_count() < kept.simulations[Mode.FULL].paper.order_count()


def test_a_short_session_forgets_nothing(tmp_path: Path) -> None:
    path = tmp_path / "1k.jsonl"
    generate_session(path, 1_000)
    sim = _full(path)
    orders, claims, _ = _sizes(sim)
    assert orders == len(sim.paper.orders()) == sim.metrics.totals.orders_placed
    assert claims == sim.metrics.totals.decisions


# -- the opt-in methods ------------------------------------------------------------------------


def _account() -> tuple[ManualClock, PaperBroker, MemoryClaimStore, OrderGateway]:
    clock = ManualClock()
    paper = PaperBroker(clock=clock, cash=Decimal(10**6))
    paper.set_price("SPY", Decimal(100))
    store = MemoryClaimStore(clock=clock)
    return clock, paper, store, OrderGateway(paper, store, agent_id="bot", clock=clock)


def test_forget_terminal_orders_keeps_open_orders_and_the_position() -> None:
    clock, paper, _, _ = _account()
    paper.submit_order(OrderRequest("SPY", Side.BUY, "filled-1", qty=Decimal(3)))
    resting = OrderRequest(
        "SPY", Side.BUY, "resting-1", qty=Decimal(1), order_type=OrderType.LIMIT, limit_price=Decimal(1)
    )
    paper.submit_order(resting)
    clock.advance(7200)
    assert paper.forget_terminal_orders(clock.now() - timedelta(hours=1)) == 1
    assert paper.get_order_by_client_id("filled-1") is None
    assert paper.get_order_by_client_id("resting-1") is not None
    assert paper.position_qty("SPY") == 3
    assert paper.order_count() == 1


def test_forget_terminal_orders_keeps_what_the_caller_names_and_anything_recent() -> None:
    clock, paper, _, _ = _account()
    paper.submit_order(OrderRequest("SPY", Side.BUY, "old-kept", qty=Decimal(1)))
    paper.submit_order(OrderRequest("SPY", Side.BUY, "old-gone", qty=Decimal(1)))
    clock.advance(7200)
    paper.submit_order(OrderRequest("SPY", Side.BUY, "recent", qty=Decimal(1)))
    assert paper.forget_terminal_orders(clock.now() - timedelta(hours=1), keep=lambda c: c == "old-kept") == 1
    assert [o.client_order_id for o in paper.orders()] == ["old-kept", "recent"]


def test_a_paper_account_with_a_state_file_keeps_every_order(tmp_path: Path) -> None:
    paper = PaperBroker(state_path=tmp_path / "state.json")
    with pytest.raises(ConfigError):
        paper.forget_terminal_orders(paper.clock.now())


def test_prune_resolved_keeps_active_claims_and_the_ledger() -> None:
    clock, paper, store, gateway = _account()
    assert gateway.enter("SPY", qty=2, intent="filled").order is not None
    gateway.enter("SPY", qty=1, intent="resting", order_type="limit", limit_price=Decimal(1))
    clock.advance(7200)
    assert store.prune_resolved(clock.now() - timedelta(hours=1)) == 1
    assert store.get_by_client_order_id(paper.orders()[0].client_order_id) is None
    live = store.list_claims(states=[ClaimState.SUBMITTED], agent_id="bot")
    assert [c.intent for c in live] == ["resting"]
    assert store.position("bot", "SPY").qty == 2
    assert store.claim_count() == 1


def test_forgetting_walks_past_what_it_keeps_and_stops_at_what_came_after_the_horizon() -> None:
    clock, paper, store, gateway = _account()
    gateway.enter("SPY", qty=1, intent="resting", order_type="limit", limit_price=Decimal(1))
    assert gateway.enter("SPY", qty=2, intent="old").order is not None
    clock.advance(7200)
    assert gateway.enter("SPY", qty=3, intent="recent").order is not None
    before = clock.now() - timedelta(hours=1)
    assert store.prune_resolved(before) == 1  # the old fill, behind the resting claim made first
    assert [c.intent for c in store.list_claims()] == ["resting", "recent"]
    assert paper.forget_terminal_orders(before) == 1
    assert [o.qty for o in paper.orders()] == [Decimal(1), Decimal(3)]


def test_nothing_is_forgotten_unless_asked() -> None:
    clock, _, store, gateway = _account()
    for n in range(5):
        gateway.enter("SPY", qty=1, intent=f"d{n}")
    clock.advance(10**6)
    gateway.enter("SPY", qty=1, intent="late")
    assert store.claim_count() == 6
    assert store.audit_count() == store.audit_kept()


def test_trim_audit_keeps_the_last_records_and_their_ids() -> None:
    _, _, store, gateway = _account()
    for n in range(5):
        gateway.enter("SPY", qty=1, intent=f"d{n}")
    every = list(store.audit_records())
    assert store.trim_audit(3) == len(every) - 3
    assert store.audit_kept() == 3
    assert [r.id for r in store.audit_records()] == [r.id for r in every[-3:]]
    assert [r.id for r in store.audit_page(after_id=every[-2].id)] == [every[-1].id]
    assert store.audit_count() == 3
    gateway.enter("SPY", qty=1, intent="after")
    assert list(store.audit_records())[-1].id > every[-1].id
    with pytest.raises(ValueError):
        store.trim_audit(-1)


def test_replay_json_keeps_no_row_in_memory_yet_prints_every_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Audit 18 #10: `--json` collected every row until the end (436 MB at 100k attempts, --compare).
    import json

    import replay.cli
    from tradeguard.cli import main

    path = tmp_path / "g.jsonl"
    generate_session(path, 300)
    asked: list[bool] = []
    real = replay.cli.replay_session

    def spy(*args: object, **kwargs: object) -> object:
        asked.append(bool(kwargs.get("collect_rows")))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(replay.cli, "replay_session", spy)
    assert main(["replay", str(path), "--compare", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert asked == [False]
    kept = replay_session(path, list(Mode), collect_rows=True)  # the API's document, rows kept
    assert doc == replay.cli.result_json(kept, list(Mode), compare=True)
    assert all(len(d["events"]) >= 300 for d in doc.values())  # a row per attempt at least
