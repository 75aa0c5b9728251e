"""`tradeguard run`: from the command line's values to a run assembled from its settings.

The options are declared in `tradeguard.cli.run` (Click); everything heavy (the store,
alpaca-py, Rich) is imported when a run is prepared. `prepare` checks
everything that can be wrong before anything is sent — the settings, the strategy's import, the
bars, the mode's credentials and safety checks, the store — and each failure is one line and exit
status 2 (`ConfigError`, reported by `tradeguard.cli.main`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from tradeguard.errors import ConfigError
from tradeguard.run.settings import Mode, RunSettings, describe, resolve_settings

if TYPE_CHECKING:
    from tradeguard.broker.alpaca import AlpacaBroker
    from tradeguard.gateway import OrderGateway
    from tradeguard.run.bars import BarSeries
    from tradeguard.run.feeds import Feed
    from tradeguard.run.runner import Runner
    from tradeguard.run.safety import Credentials
    from tradeguard.run.strategy import Strategy
    from tradeguard.run.summary import RunReport
    from tradeguard.run.venue import Venue
    from tradeguard.store import ClaimStore

__all__ = ["FIELD_OPTIONS", "PreparedRun", "prepare", "run_command"]

# The options that set a `RunSettings` field (option name = field name; None = not given).
FIELD_OPTIONS = (
    "strategy", "mode", "bars", "url", "store_url", "agent_id", "faults", "record", "speed",
    "wait_for_open", "close_outside", "view", "live_confirmed",
)  # fmt: skip


def run_command(options: Mapping[str, Any], *, config: str | None, print_config: bool) -> int:
    """Run `tradeguard run`; return the exit status (0 clean, 1 a person should look).

    Args:
        options: The command line's values by `RunSettings` field; None or empty = not given.
        config: The --config file, if any.
        print_config: Print the settings in force and stop.
    """
    flags = {name: options[name] for name in FIELD_OPTIONS if options.get(name) not in (None, ())}
    if "close_outside" in flags:
        flags["close_outside"] = tuple(flags["close_outside"])
    settings, sources = resolve_settings(flags, config_path=config)
    if print_config:
        print(describe(settings, sources))
        return 0
    return prepare(settings, environ=os.environ, ask=input, out=sys.stdout).run().exit_status


@dataclass
class PreparedRun:
    """A run checked and assembled, ready to `runner.run()`; `close()` it afterwards."""

    settings: RunSettings
    venue: Venue
    store: ClaimStore
    gateway: OrderGateway
    runner: Runner

    def run(self) -> RunReport:
        """Run it and close it; return the report."""
        try:
            return self.runner.run()
        finally:
            self.close()

    def close(self) -> None:
        """Close the recording, the store and the venue's connections."""
        self.gateway.close()
        self.store.close()
        self.venue.close()


def prepare(
    settings: RunSettings,
    *,
    environ: Mapping[str, str],
    ask: Callable[[str], str] = input,
    out: TextIO = sys.stdout,
) -> PreparedRun:
    """Check and assemble a run; nothing is sent before `runner.run()`.

    Raises:
        ConfigError: The first thing wrong, in one line (see the module docstring).
    """
    from tradeguard.domain.intents import check_agent_id
    from tradeguard.run.assemble import build_gateway, check_record, open_store
    from tradeguard.run.safety import Credentials
    from tradeguard.run.strategy import load_strategy
    from tradeguard.run.venue import build_venue

    if not settings.strategy:
        raise ConfigError(
            "name a strategy: tradeguard run strategies.momentum (or [run] strategy in --config)"
        )
    strategy_cls = load_strategy(settings.strategy)
    if not strategy_cls.symbols:
        raise ConfigError(f"strategy {settings.strategy}: {strategy_cls.__name__}.symbols names no symbols")
    # `is None`, not `or`: an empty id is refused below, never swapped for the strategy's name.
    agent_id = strategy_cls.agent_name() if settings.agent_id is None else settings.agent_id
    check_agent_id(agent_id)
    series = _bars(settings, strategy_cls.symbols)
    if settings.record is not None:
        check_record(settings.record)
    credentials = Credentials.from_env(environ)
    venue = build_venue(settings, credentials, series, ask=ask)
    try:
        store = open_store(settings, venue, agent_id)
    except BaseException:
        venue.close()
        raise
    try:
        gateway = build_gateway(venue, store, settings, agent_id)
        runner = _runner(settings, strategy_cls, venue, store, gateway, series, credentials, out)
    except BaseException:
        store.close()
        venue.close()
        raise
    return PreparedRun(settings, venue, store, gateway, runner)


def _bars(settings: RunSettings, symbols: tuple[str, ...]) -> BarSeries | None:
    """Load the bars of a sim, or of a paper run on a bar file or a paper server (no market data)."""
    from tradeguard.run.barfile import load_bars

    replay = settings.mode is Mode.PAPER and (settings.bars is not None or settings.url is not None)
    if settings.mode is Mode.SIM or replay:
        series = load_bars(settings.bars)
        series.require(symbols)
        return series
    if settings.speed != 1.0:
        raise ConfigError("--speed replays a bar file; live market data comes at its own pace")
    return None


def _runner(  # noqa: PLR0917 - the parts `prepare` checked, in the order it built them
    settings: RunSettings,
    strategy_cls: type[Strategy],
    venue: Venue,
    store: ClaimStore,
    gateway: OrderGateway,
    series: BarSeries | None,
    credentials: Credentials | None,
    out: TextIO,
) -> Runner:
    from tradeguard.run.runner import Runner
    from tradeguard.run.summary import Monitor
    from tradeguard.run.view import choose_view

    label = f"{strategy_cls.__module__}:{strategy_cls.__name__}"
    store_url = store.url.render_as_string(hide_password=True)
    header = [f"tradeguard run {label}", f"{settings.mode} on {venue.label}", f"agent {gateway.agent_id}"]
    view = choose_view(settings.view, out, venue.clock, [*header, f"store {store_url}"])
    monitor = Monitor(store, venue.truth, gateway.agent_id, venue.clock.now(), strategy_cls.symbols)

    def open_feed(stop: Any, note: Callable[[str], None]) -> Feed | None:
        from tradeguard.clock import ManualClock
        from tradeguard.run.feeds import AlpacaFeed, SimFeed, alpaca_fetcher, bar_file_feed, wait_for_open

        if settings.mode is Mode.SIM:
            assert series is not None
            assert isinstance(venue.clock, ManualClock)
            return SimFeed(series, venue.clock)
        assert venue.alpaca is not None
        until = None
        if settings.wait_for_open:
            until = wait_for_open(venue.alpaca, stop, note)
            if until is None:
                return None
        if series is not None:
            server_now = _server_clock(venue.alpaca) if settings.url is not None else None
            return bar_file_feed(series, 60.0 / settings.speed, server_now, venue.clock.now(), note)
        assert credentials is not None
        # Without waiting for the open, the feed runs until stopped (a day at most).
        until = until or venue.clock.now() + timedelta(days=1)
        fetch = alpaca_fetcher(credentials.key_id, credentials.secret)
        return AlpacaFeed(fetch, strategy_cls.symbols, venue.clock, until, note=note)

    return Runner(
        strategy=strategy_cls(),
        label=label,
        venue=venue,
        gateway=gateway,
        open_feed=open_feed,
        view=view,
        monitor=monitor,
        store_url=store_url,
    )


def _server_clock(alpaca: AlpacaBroker) -> Callable[[], datetime]:
    """Return a reader of the paper server's clock (`GET /v2/clock`'s timestamp, aware)."""

    def now() -> datetime:
        market: Any = alpaca.client.get_clock()  # alpaca-py's Clock (the adapter never asks for raw data)
        at: datetime = market.timestamp
        return at if at.tzinfo is not None else at.replace(tzinfo=UTC)

    return now
