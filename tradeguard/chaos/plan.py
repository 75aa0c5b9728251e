"""The plan of one chaos run, drawn from its seed: broker faults and where the bot process dies.

Run `i` of a campaign with seed `S` uses the seed `S * 1_000_003 + i`, so `--seed` of a failing
run (printed with its violation) replays exactly that run. Crash points are dealt round-robin
over `crashpoints.POINTS` (every point is tried once every few runs); the hit at which the bot
dies, and whether it dies again after its restart, are random.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tradeguard import crashpoints
from tradeguard.faults import Fault, FaultAction, FaultPlan

__all__ = ["RunPlan", "plan_for", "run_seed"]

# Failures of the order POST a bot meets in production, definite and ambiguous alike.
_POST_ACTIONS = (
    FaultAction.ACCEPT_THEN_TIMEOUT,
    FaultAction.ACCEPT_THEN_ERROR,
    FaultAction.ERROR,
    FaultAction.DROP,
    FaultAction.RATE_LIMIT,
)
# Failing reads: a reconcile pass or an exit's sizing must never take them for "flat" (G4).
_READ_ROUTES = ("GET /v2/positions", "GET /v2/positions/{symbol}", "GET /v2/orders:by_client_order_id")


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What goes wrong in one run.

    Attributes:
        seed: The run's own seed (`--seed` replays it).
        faults: The broker's fault plan (empty for a fault-free run).
        crash_point: Where the bot process dies, or None.
        crash_hits: The hits of `crash_point` (1-based, counted over the whole run) that kill it.
    """

    seed: int
    faults: FaultPlan
    crash_point: str | None
    crash_hits: tuple[int, ...]


def run_seed(campaign_seed: int, index: int) -> int:
    """Return the seed of run `index` of a campaign."""
    return campaign_seed * 1_000_003 + index


def plan_for(
    seed: int,
    *,
    points: tuple[str, ...] = crashpoints.POINTS,
    faults: FaultPlan | None = None,
    crash: bool = True,
) -> RunPlan:
    """Draw the plan of the run with `seed`.

    Args:
        seed: The run's seed.
        points: The crash points to choose from (empty: no crash).
        faults: A fixed fault plan to use instead of a random one (`--faults`).
        crash: False for a run without crashes (and, with no `faults`, without faults).
    """
    rng = random.Random(seed)
    if faults is None:
        faults = _random_faults(rng, seed) if crash else FaultPlan(seed=seed)
    if not crash or not points:
        return RunPlan(seed, faults, None, ())
    point = points[seed % len(points)]
    first = rng.randint(1, 6)
    hits = [first]
    while rng.random() < 0.5 and len(hits) < 3:  # sometimes it dies again after the restart
        hits.append(hits[-1] + rng.randint(1, 4))
    return RunPlan(seed, faults, point, tuple(hits))


def _random_faults(rng: random.Random, seed: int) -> FaultPlan:
    posts = [
        Fault(
            route="POST /v2/orders", action=rng.choice(_POST_ACTIONS), probability=rng.choice((0.1, 0.2, 0.3))
        )
        for _ in range(rng.randint(1, 2))
    ]
    reads = [
        Fault(route=rng.choice(_READ_ROUTES), action=FaultAction.ERROR, probability=0.05)
        for _ in range(rng.randint(0, 1))
    ]
    return FaultPlan(faults=(*posts, *reads), seed=seed)
