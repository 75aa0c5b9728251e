"""A chaos campaign: many seeded runs of one strategy, the result, and the failing runs' sessions."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from tradeguard import crashpoints
from tradeguard.chaos.harness import GatewayFactory, RunOutcome, run_once
from tradeguard.chaos.kill import run_killed, write_bars
from tradeguard.chaos.plan import RunPlan, plan_for, run_seed
from tradeguard.errors import ConfigError
from tradeguard.faults import FaultPlan
from tradeguard.run.barfile import load_bars
from tradeguard.run.bars import BarSeries
from tradeguard.run.strategy import Strategy, load_strategy
from tradeguard.sessions import Recorder

__all__ = ["ChaosResult", "chaos"]


@dataclass
class ChaosResult:
    """What a campaign found.

    Attributes:
        runs: Every run's outcome, in order.
        sessions: Session files of failing runs (for `tradeguard replay`), by run seed.
        killed: Seeds of the runs whose bot processes were really SIGKILLed.
        folder: Where the failing real-process runs kept their store, account and journal
            (`run-<seed>` in it); None when every such run passed (their folders are removed).
    """

    runs: list[RunOutcome] = field(default_factory=list)
    sessions: dict[int, str] = field(default_factory=dict)
    killed: list[int] = field(default_factory=list)
    folder: str | None = None

    @property
    def ok(self) -> bool:
        """True when no run broke a guarantee."""
        return not self.failing

    @property
    def failing(self) -> list[RunOutcome]:
        """The runs with violations."""
        return [r for r in self.runs if r.violations]

    @property
    def crash_points_hit(self) -> Counter[str]:
        """How often the bot died at each crash point."""
        return Counter(point for r in self.runs for point in r.crashes)

    @property
    def points_missed(self) -> list[str]:
        """Crash points no run died at."""
        return [p for p in crashpoints.POINTS if not self.crash_points_hit[p]]


def chaos(
    strategy: type[Strategy] | str,
    *,
    runs: int = 200,
    seed: int = 1,
    bars: BarSeries | str | None = None,
    faults: FaultPlan | None = None,
    crash_points: tuple[str, ...] = crashpoints.POINTS,
    unguarded: bool = False,
    crash: bool = True,
    only_seed: int | None = None,
    save_to: str | None = None,
    gateway_factory: GatewayFactory | None = None,
    kill_every: int = 0,
    store_url: str | None = None,
    hosts: int = 1,
    progress: Callable[[int, RunOutcome], None] | None = None,
    into: ChaosResult | None = None,
) -> ChaosResult:
    """Run `strategy` `runs` times under seeded faults and crashes; check G1-G4 after each run.

    Args:
        strategy: A `Strategy` subclass or its spec (``strategies.momentum``).
        runs: How many runs.
        seed: The campaign's seed; run i uses `run_seed(seed, i)`.
        bars: The day (a `BarSeries`, a file path, ``seed:N``); default the shipped day.
        faults: A fixed fault plan instead of random ones.
        crash_points: The points the bot may die at.
        unguarded: Run through a plain bot's order path instead of the guard.
        crash: False for fault-free, crash-free runs (the baseline of `bench/chaos.py`).
        only_seed: Replay exactly the run with this seed (as printed with a violation).
        save_to: A folder for the session files of failing runs (guarded or not).
        gateway_factory: Builds the guard (tests pass broken variants).
        kill_every: About one run in `kill_every` (0: none) runs as real bot processes, SIGKILLed
            at its crash point and restarted on a SQLite file and a paper state file
            (`chaos.kill`); see `kills`.
        store_url: The claim store of the real-kill runs (PostgreSQL, say) instead of a SQLite
            file each; in-process runs always use the in-memory store.
        hosts: More than 1: every run is that many processes of the bot as separate hosts on
            `store_url` (PostgreSQL) and one paper account served over HTTP, killed at random
            (`chaos.hosts`); faults and crash points are then drawn per host.
        progress: Called after each run with its number (1-based) and outcome.
        into: The result to fill, run by run (returned): a caller that passes one still holds
            the runs done so far when the campaign is interrupted (Ctrl-C) or raises.

    Example::

        result = chaos("strategies.momentum", runs=20, seed=1)
        assert result.ok, result.failing[0].violations
    """
    if hosts > 1 and store_url is None:
        raise ConfigError("several hosts share one claim store: give its URL (PostgreSQL)")
    if hosts > 1 and (unguarded or faults is not None or crash_points != crashpoints.POINTS):
        # Each host draws its own faults and crash points from the run's seed, guarded: these
        # options would be ignored, and the report would describe a run that never happened.
        raise ConfigError(
            "--workers runs guarded hosts with faults and crashes drawn from each run's seed; "
            "--unguarded, --faults and --crash-points apply to single-host runs"
        )
    cls = load_strategy(strategy) if isinstance(strategy, str) else strategy
    day = bars if isinstance(bars, BarSeries) else load_bars(bars)
    # A symbol the day has no bars of fails every bar of every run in the strategy (and a real
    # process run waits out a restart per bar): refused here as `tradeguard run` refuses it.
    day.require(cls.symbols)
    # What the runs will write is checked before the first run: a store that cannot be opened
    # or a folder that cannot be made would otherwise end the campaign with a traceback after
    # minutes of runs, their results lost.
    if store_url is not None:
        _check_store(store_url)
    if save_to is not None:
        _check_folder(save_to)
    seeds = [only_seed] if only_seed is not None else [run_seed(seed, i) for i in range(runs)]
    result = into if into is not None else ChaosResult()
    try:
        for number, run in enumerate(seeds, start=1):
            plan = plan_for(run, points=crash_points, faults=faults, crash=crash)
            if hosts > 1:
                outcome = _on_hosts(cls, day, run, result, hosts=hosts, store_url=store_url)
            elif kills(run, kill_every, len(crash_points)) and not unguarded and gateway_factory is None:
                outcome = _killed(cls, day, plan, result, store_url=store_url)
            else:
                outcome = run_once(cls, day, plan, unguarded=unguarded, gateway_factory=gateway_factory)
            result.runs.append(outcome)
            if outcome.violations and save_to is not None:
                result.sessions[run] = _save(cls, day, plan, save_to, gateway_factory, unguarded=unguarded)
            if progress is not None:
                progress(number, outcome)
    finally:
        _tidy(result)  # also when interrupted: what passed is removed, what failed is kept
    return result


def _check_store(url: str) -> None:
    """Open the claim store of the real-process runs once (creating its schema), or raise."""
    from tradeguard.store import ClaimStore  # noqa: PLC0415 - only with --store

    ClaimStore(url).close()


def _check_folder(folder: str) -> None:
    """Raise ConfigError unless `folder` is, or can be made as, a writable folder."""
    existing = os.path.abspath(folder)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "" if existing == os.path.abspath(folder) else f" ({existing} is not a folder)"
        raise ConfigError(f"--save {folder}: not a folder{where}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--save {folder}: {existing} is not writable")


def _save(
    cls: type[Strategy],
    day: BarSeries,
    plan: RunPlan,
    folder: str,
    factory: GatewayFactory | None,
    *,
    unguarded: bool = False,
) -> str:
    """Run the failing seed again (runs are deterministic) with every gateway recording a session.

    A run that failed with real processes is saved from its in-process twin (same plan, same
    seed): a session is recorded in process.
    """
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"chaos-{plan.seed}.jsonl")
    recorder = Recorder(path)
    try:
        run_once(cls, day, plan, unguarded=unguarded, gateway_factory=factory, record_to=recorder)
    finally:
        recorder.close()
    # A folder kept from an earlier campaign already holds this seed's session: the recorder
    # keeps it and writes `chaos-<seed>.<n>.jsonl` beside it, the file the report must name.
    return recorder.path or path


def kills(seed: int, kill_every: int, points: int) -> bool:
    """Return whether the run with `seed` runs as real processes.

    Blocks of `points` consecutive seeds, one block in `kill_every`: the real kills cover every
    crash point (`plan_for` deals points round-robin by seed), and `--replay-seed` replays a run
    the way it ran.
    """
    return kill_every > 0 and (seed // max(points, 1)) % kill_every == 0


def _killed(
    cls: type[Strategy],
    day: BarSeries,
    plan: RunPlan,
    result: ChaosResult,
    *,
    store_url: str | None,
) -> RunOutcome:
    """Run `plan` with real bot processes, in a folder kept for a look afterwards."""
    if result.folder is None:
        result.folder = tempfile.mkdtemp(prefix="tradeguard-chaos-")
        write_bars(day, os.path.join(result.folder, "bars.csv"))
    result.killed.append(plan.seed)
    folder = os.path.join(result.folder, f"run-{plan.seed}")
    outcome = run_killed(
        cls,
        day,
        os.path.join(result.folder, "bars.csv"),
        plan,
        folder,
        store_url=store_url,
    )
    return _kept_if_failing(outcome, folder)


def _on_hosts(
    cls: type[Strategy], day: BarSeries, seed: int, result: ChaosResult, *, hosts: int, store_url: str | None
) -> RunOutcome:
    """Run one seed as `hosts` bot processes on one store and one served account."""
    from tradeguard.chaos.hosts import run_hosts  # noqa: PLC0415 - only this mode serves HTTP

    assert store_url is not None
    if result.folder is None:
        result.folder = tempfile.mkdtemp(prefix="tradeguard-chaos-")
    result.killed.append(seed)
    folder = os.path.join(result.folder, f"run-{seed}")
    return _kept_if_failing(
        run_hosts(cls, day, seed=seed, hosts=hosts, store_url=store_url, folder=folder), folder
    )


def _kept_if_failing(outcome: RunOutcome, folder: str) -> RunOutcome:
    """Remove a passing run's folder (its store, account and journals); keep a failing one's.

    A campaign of a few hundred real-process runs would otherwise leave as many folders in the
    temporary directory, unnamed anywhere; a failing run's is named in the report instead.
    """
    if not outcome.violations:
        shutil.rmtree(folder, ignore_errors=True)
    return outcome


def _tidy(result: ChaosResult) -> None:
    """Remove the campaign's folder when no run kept anything in it (every real-process run passed)."""
    folder = result.folder
    if folder is not None and not any(name.startswith("run-") for name in os.listdir(folder)):
        shutil.rmtree(folder, ignore_errors=True)
        result.folder = None
