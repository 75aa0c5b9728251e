"""Eight OS processes claim the same intent at the same moment: exactly one wins, every round.

The workers are processes of their own (tests/forks.py: no state shared with this one) that
loop over the rounds; a barrier releases all eight into each claim together. The same workers then race on the
dedup window of drop-in mode.
"""

from __future__ import annotations

import queue
from collections import defaultdict

import pytest

from tests.forks import FORKS
from tests.mothers import make_intent
from tests.store_workers import race_worker
from tradeguard.store import AuditQuery, ClaimStore

WORKERS = 8
ROUNDS = 50

pytestmark = pytest.mark.slow


def run_race(url: str) -> dict[str, dict[int, list[tuple[object, ...]]]]:
    """Run the workers on `url`; return their results by kind and round."""
    ClaimStore(url).close()  # create the schema first, as a deployment would
    ctx = FORKS
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=race_worker, args=(url, ROUNDS, barrier, results, w)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    got: dict[str, dict[int, list[tuple[object, ...]]]] = defaultdict(lambda: defaultdict(list))
    try:
        for _ in range(WORKERS * ROUNDS * 2):
            item = results.get(timeout=120)
            assert item[0] != "error", f"worker {item[1]} failed: {item[2]}"
            got[str(item[0])][int(item[1])].append(item[2:])
    except queue.Empty:
        pytest.fail("the race workers stopped answering")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
        results.close()
        results.join_thread()
    assert [p.exitcode for p in procs] == [0] * WORKERS
    return got


def test_eight_processes_race_for_each_claim_and_window(store_url: str) -> None:
    got = run_race(store_url)

    assert sorted(got["claim"]) == list(range(ROUNDS))
    for r, answers in got["claim"].items():
        assert len(answers) == WORKERS
        winners = [a for a in answers if a[1]]
        assert len(winners) == 1, f"round {r}: {len(winners)} winners"
        (winner, _, coid, _owner) = winners[0]
        # Every loser got the winner's claim: same client_order_id, owned by the winner.
        assert {(a[2], a[3]) for a in answers} == {(coid, f"worker-{winner}")}

    assert sorted(got["window"]) == list(range(ROUNDS))
    for r, answers in got["window"].items():
        holders = {a[1] for a in answers}
        assert len(answers) == WORKERS and len(holders) == 1, f"round {r}: windows {holders}"
        assert holders <= {f"key-{w}-{r}" for w in range(WORKERS)}

    with ClaimStore(store_url) as store:
        claims = store.list_claims()
        assert len(claims) == ROUNDS
        assert {c.key for c in claims} == {make_intent(f"race-{r}").key for r in range(ROUNDS)}
        assert store.audit_count(AuditQuery(actions=("claim",))) == ROUNDS
