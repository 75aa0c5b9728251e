"""One chaos run in process: the strategy over a day of bars, its process killed at crash points.

A crash is simulated by raising `SimulatedCrash` (a `BaseException`, so no `except Exception` in
the bot or the guard swallows it) out of the crash-point hook, then dropping the strategy and the
gateway, as the dead process's memory is gone; the supervisor's restart is a fresh strategy and
a fresh gateway (a new owner) on the same claim store and the same paper account, a few seconds
later, at the bar the bot died in. This is an honest model for in-process state: nothing after
the point runs. Real SIGKILLs of a bot process at the same points are `tests/test_chaos_kill.py`.

After the last bar the run settles as `tradeguard run` stops: `on_stop`, every open claim looked
up, the market fills what is open, and reconcile passes past the grace and settle horizons.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from tradeguard import crashpoints
from tradeguard.chaos.checker import Evidence, Guarantee, Violation, check_guarded, check_plain
from tradeguard.chaos.plan import RunPlan
from tradeguard.chaos.tap import AskTap, Decisions, DecisionScope, RequestTap
from tradeguard.chaos.unguarded import PlainGateway, SendLog
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.errors import ConfigError, TradeguardError
from tradeguard.faults import FaultyBroker
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.paper.prices import RecordedPrices
from tradeguard.run.bars import BarSeries
from tradeguard.run.runner import settle_in_flight
from tradeguard.run.strategy import Strategy, StrategyContext
from tradeguard.store import MemoryClaimStore

if TYPE_CHECKING:
    from tradeguard.client import GuardedTradingClient
    from tradeguard.sessions import Recorder

__all__ = [
    "RunOutcome", "SimulatedCrash", "UnsupportedStrategy", "WorkerFailed", "run_once", "settle_run",
    "trading_client",
]  # fmt: skip

RESTART_SECS = 10.0  # how long the supervisor takes to bring a dead bot back
GatewayFactory = Any  # (broker, store, agent_id, settings, clock, record_to) -> a gateway


class SimulatedCrash(BaseException):
    """The bot process dies here (raised by the crash-point hook of an in-process run)."""


@dataclass
class RunOutcome:
    """What one run did and what the checker found.

    Attributes:
        plan: The run's plan.
        crashes: The crash points the bot died at, in order.
        points_hit: Every crash point the run passed, with its count.
        faults_fired: How many scripted broker faults fired.
        orders: Orders the broker received.
        bot_errors: Exceptions out of the strategy (each one restarts the bot, as a supervisor would).
        violations: What the checker found.
    """

    plan: RunPlan
    crashes: list[str] = field(default_factory=list)
    points_hit: dict[str, int] = field(default_factory=dict)
    faults_fired: int = 0
    orders: int = 0
    bot_errors: int = 0
    violations: list[Violation] = field(default_factory=list)


@contextlib.contextmanager
def _crash_hook(plan: RunPlan, outcome: RunOutcome) -> Iterator[list[bool]]:
    armed = [True]  # off while the run settles: the supervisor is done by then

    def hook(name: str) -> None:
        count = outcome.points_hit.get(name, 0) + 1
        outcome.points_hit[name] = count
        if armed[0] and name == plan.crash_point and count in plan.crash_hits:
            outcome.crashes.append(name)
            raise SimulatedCrash(name)

    crashpoints.set_hook(hook)
    try:
        yield armed
    finally:
        crashpoints.set_hook(None)


class _World:
    """What outlives the bot's process: the account, the store, the clock and the checker's taps."""

    def __init__(
        self, strategy_cls: type[Strategy], bars: BarSeries, plan: RunPlan, factory: GatewayFactory
    ) -> None:
        self.strategy_cls = strategy_cls
        self.clock = ManualClock(bars.minutes[0].at)
        self.settings = Settings()
        self.paper = PaperBroker(
            prices=RecordedPrices(bars.price_series()), clock=self.clock, allow_short=True
        )
        self.tap = AskTap(self.paper)
        self.faulty = FaultyBroker(self.tap, plan.faults, clock=self.clock)
        self.decisions = Decisions()
        self.broker = RequestTap(self.faulty, self.decisions)
        self.store = MemoryClaimStore(settings=self.settings, clock=self.clock)
        self.log = SendLog()
        self.agent = strategy_cls.agent_name()
        self.factory = factory

    def start(self, unguarded: bool, record_to: Recorder | None) -> Incarnation:
        """Start the bot's process: a new gateway (a new owner) and a new strategy object."""
        if unguarded:
            gateway: Any = PlainGateway(
                self.broker, agent_id=self.agent, clock=self.clock, log=self.log, record_to=record_to
            )
        else:
            gateway = self.factory(
                self.broker, self.store, agent_id=self.agent, settings=self.settings, clock=self.clock,
                reconcile_on_start=False, record_to=record_to,
            )  # fmt: skip
            gateway.reconcile()  # the start-up pass, as `tradeguard run` does
        strategy = self.strategy_cls()
        scoped = cast(OrderGateway, DecisionScope(gateway, self.decisions))
        client = _no_plain_client if unguarded else functools.partial(trading_client, scoped)
        ctx = StrategyContext(
            gateway=scoped, clock=self.clock, mode="sim", agent_id=self.agent, _client=client,
            _log=lambda _: None,
        )  # fmt: skip
        strategy.on_start(ctx)
        return strategy, ctx, gateway


Incarnation = tuple[Strategy, StrategyContext, Any]


def run_once(
    strategy_cls: type[Strategy],
    bars: BarSeries,
    plan: RunPlan,
    *,
    unguarded: bool = False,
    gateway_factory: GatewayFactory | None = None,
    record_to: Recorder | None = None,
) -> RunOutcome:
    """Run `strategy_cls` over `bars` under `plan`, then check G1-G4; see the module docstring.

    Args:
        strategy_cls: The user's strategy.
        bars: The day.
        plan: Faults and crashes.
        unguarded: Send through `PlainGateway` instead of the guard.
        gateway_factory: Builds the guard (default `OrderGateway`); tests pass broken variants.
        record_to: A recorder every incarnation's gateway writes to (a failing run's session).
    """
    outcome = RunOutcome(plan)
    world = _World(strategy_cls, bars, plan, gateway_factory or OrderGateway)
    clock = world.clock
    with _crash_hook(plan, outcome) as armed:
        incarnation: Incarnation | None = None
        index = 0
        while index < len(bars.minutes):
            minute = bars.minutes[index]
            clock.set(max(clock.now(), minute.ends_at))
            world.paper.step()  # resting orders trade at the minute's close, as in `tradeguard run`
            fired = len(world.faulty.injector.fired())
            try:
                if incarnation is None:
                    incarnation = world.start(unguarded, record_to)
                strategy, ctx, gateway = incarnation
                world.decisions.at_bar(index)
                strategy.on_bar(minute, ctx)
                gateway.reconcile_if_due()
                index += 1
            except SimulatedCrash:
                incarnation = None  # the process is gone; the supervisor restarts it on this bar
                clock.advance(RESTART_SECS)
            except UnsupportedStrategy:
                raise  # not the bot's error: this run cannot be made
            except Exception as exc:  # the bot died of an error: restarted on the next bar
                outcome.bot_errors += 1
                first = not any(v.guarantee is Guarantee.BOT for v in outcome.violations)
                if first and not _explained(exc) and len(world.faulty.injector.fired()) == fired:
                    # Audit 14b M2: a strategy that raised on every bar passed ("G1-G4 held").
                    bug = f"{type(exc).__name__}: {exc} (bar {minute.local:%H:%M}; no fault injected in it)"
                    outcome.violations.append(Violation(Guarantee.BOT, bug))
                incarnation = None
                index += 1
        armed[0] = False
        last = incarnation or world.start(unguarded, record_to)
        settle_run(last, world.paper, clock, world.settings, unguarded)
    outcome.faults_fired = len(world.faulty.injector.fired())
    orders = world.paper.orders()
    outcome.orders = len(orders)
    evidence = Evidence(
        orders=orders,
        positions=world.paper.list_positions(),
        asks=world.tap.asks,
        decisions=world.decisions.of,
    )
    if unguarded:
        outcome.violations += check_plain(evidence, world.log, last[2].held)
    else:
        outcome.violations += check_guarded(evidence, world.store, world.agent)
    return outcome


def settle_run(
    incarnation: tuple[Strategy, StrategyContext, Any],
    paper: PaperBroker,
    clock: ManualClock,
    settings: Settings,
    unguarded: bool,
) -> None:
    """Stop the run as `tradeguard run` does, then settle: fills, look-ups, passes past grace."""
    strategy, ctx, gateway = incarnation
    with contextlib.suppress(Exception):
        strategy.on_stop(ctx)
    while paper.list_orders(status="open"):
        if not paper.step():
            break  # what cannot fill now (a limit away from the price) stays open, and is checked
    if unguarded:
        return
    settle_in_flight(gateway)
    quiet = max(settings.unknown_grace_secs, settings.lease_secs, settings.recent_activity_secs)
    for _ in range(3):  # grace, probe gap and settle horizon each pass before the next
        clock.advance(quiet + settings.position_settle_secs + settings.settle_delay_secs + 1)
        gateway.reconcile()


class WorkerFailed(RuntimeError):
    """A real bot process of a run ended in a way no kill or strategy error explains.

    The run could not be checked: neither a guarantee held nor broken. The message names the
    worker's last error and where its files are.
    """

    def __init__(self, what: str, stderr: str) -> None:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        self.stderr = stderr
        super().__init__(f"{what}: {lines[-1].strip() if lines else 'no error output'}")


class UnsupportedStrategy(ConfigError):
    """The strategy needs what this kind of chaos run cannot give it."""


def trading_client(gateway: OrderGateway, url: str | None = None) -> GuardedTradingClient:
    """Return the drop-in client of a chaos run: its orders go through the run's `gateway`.

    alpaca-py's own calls (`get_open_position`, ...) read the run's paper account beneath the
    fault plan, as `tradeguard run`'s view does: at `url` when it is served (several hosts),
    else in process, without keys; the guard's own reads and sends go through the plan.
    """
    from tradeguard.client import GuardedTradingClient  # noqa: PLC0415 - alpaca-py only when asked

    if url is not None:
        return GuardedTradingClient("chaos", "chaos", url_override=url, gateway=gateway)
    return GuardedTradingClient(gateway=gateway)


def _no_plain_client() -> Any:
    raise UnsupportedStrategy(
        "--unguarded runs a strategy through ctx.gateway only; this one asks ctx.trading_client() "
        "(an alpaca-py bot): run it guarded, or compare it with alpaca-py's own TradingClient yourself"
    )


# Top-level packages whose exceptions an injected fault may cause in a strategy's own calls
# (alpaca-py's APIError, a transport error, a response model that did not parse).
_FAULT_PACKAGES = frozenset({"alpaca", "requests", "urllib3", "pydantic", "pydantic_core"})


def _explained(exc: BaseException) -> bool:
    """Whether an exception out of the strategy may come of an injected fault or crash.

    Broker, store and transport errors may (a strategy that lets one escape is restarted, as a
    supervisor would); anything else raised in a bar where no fault fired is the strategy's own.
    """
    if isinstance(exc, TradeguardError | OSError | TimeoutError):
        return True
    return type(exc).__module__.split(".")[0] in _FAULT_PACKAGES
