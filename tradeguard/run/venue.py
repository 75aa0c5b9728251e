"""What a run trades against, per mode: a broker for the guard, a clock, and the plain truth.

- sim: an in-process `PaperBroker` (a margin account, so only the guard stands between a
  double exit and a short, as on May 21) priced from the bars, on a `ManualClock` that the run
  moves bar by bar; a fault plan wraps it in a `FaultyBroker` on the same clock.
- paper: Alpaca paper with keys, or a tradeguard paper server (`--url`), through `AlpacaBroker`
  on the wall clock; a fault plan wraps it in process.
- live: Alpaca live, after the checks in `safety`.

`truth` is the broker without faults: the view and the summary read positions there, so
showing the run never uses up (or trips) a scripted fault.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import time
from typing import TYPE_CHECKING

from tradeguard.clock import Clock, ManualClock, SystemClock
from tradeguard.errors import ConfigError, OrderRejected
from tradeguard.ports import Broker
from tradeguard.run.bars import Bars, BarSeries
from tradeguard.run.safety import Credentials, check_before_connecting, confirm_live_account
from tradeguard.run.settings import Mode, RunSettings

if TYPE_CHECKING:
    from tradeguard.broker.alpaca import AlpacaBroker
    from tradeguard.faults import FaultInjector, FaultPlan
    from tradeguard.paper import PaperBroker
    from tradeguard.paper.server import PaperServer

__all__ = ["ClientEndpoint", "OutsideClose", "Venue", "build_venue", "parse_outside_closes"]

_DRILL = re.compile(r"^([A-Za-z.]{1,10})@([0-2]\d):([0-5]\d)$")


@dataclass(frozen=True, slots=True)
class OutsideClose:
    """A sim drill: at the bar of `at` (US/Eastern), `symbol` is closed behind the bot's back."""

    symbol: str
    at: time


def parse_outside_closes(texts: tuple[str, ...]) -> tuple[OutsideClose, ...]:
    """Parse ``SYMBOL@HH:MM`` drills.

    Raises:
        ConfigError: A drill that is not SYMBOL@HH:MM.
    """
    drills = []
    for text in texts:
        match = _DRILL.match(text.strip())
        if match is None:
            raise ConfigError(
                f"--close-outside {text!r}: expected SYMBOL@HH:MM (US/Eastern), e.g. SQQQ@11:40"
            )
        symbol, hour, minute = match.groups()
        if int(hour) > 23:
            raise ConfigError(f"--close-outside {text!r}: no hour {hour}")
        drills.append(OutsideClose(symbol.upper(), time(int(hour), int(minute))))
    return tuple(drills)


@dataclass(frozen=True, slots=True)
class ClientEndpoint:
    """What an alpaca-py `TradingClient` needs to reach the run's account."""

    key: str
    secret: str = field(repr=False)
    paper: bool
    url: str | None


@dataclass
class Venue:
    """The run's account. Build it with `build_venue`; `close()` it at the end.

    Attributes:
        mode: The run's mode.
        broker: What the guard sends through (with the fault plan, if any).
        truth: The same account without faults, for the view and the summary.
        clock: The run's clock.
        label: Where the orders go, for people.
        paper: The sim's paper account.
        alpaca: The Alpaca adapter (paper and live).
        injector: The fault plan's live counters, when a plan is applied.
    """

    mode: Mode
    broker: Broker
    truth: Broker
    clock: Clock
    label: str
    paper: PaperBroker | None = None
    alpaca: AlpacaBroker | None = None
    injector: FaultInjector | None = None
    drills: tuple[OutsideClose, ...] = ()
    _endpoint: ClientEndpoint | None = None
    _server: PaperServer | None = None

    def endpoint(self) -> ClientEndpoint:
        """Return where a `TradingClient` reaches this account (in sim: a paper server on loopback)."""
        if self._endpoint is not None:
            return self._endpoint
        assert self.paper is not None
        from tradeguard.paper.server import PaperServer

        self._server = PaperServer(self.paper).start()
        self._endpoint = ClientEndpoint("sim", "sim", True, self._server.url)
        return self._endpoint

    def before_bar(
        self,
        bars: Bars,
        note: Callable[[str], None],
        closed_outside: Callable[[str, str], None],
    ) -> None:
        """Trade the sim's resting orders at this bar, then run its drills, before the strategy sees it.

        `closed_outside(symbol, reason)` hears each position a drill closed (the run's session
        recording keeps it as an `external` event, so a replay of the recording closes it too).
        """
        if self.paper is None:
            return
        # The sim's market moves a minute at a time (the clock is at this minute's end, the price
        # its close): resting orders (limits, stops, trailing stops, a bracket's legs) trade as a
        # broker's book would have through the minute. Before, nothing matched them after their
        # submit, and a stop-loss never fired in a sim (rec38).
        self.paper.step()
        local = bars.local.time()
        for drill in self.drills:
            if drill.at == local:
                try:
                    self.paper.close_position(drill.symbol)
                    said = f"drill: {drill.symbol} closed outside the bot at {drill.at:%H:%M}"
                    note(said)
                    closed_outside(drill.symbol, said)
                except OrderRejected as exc:
                    note(f"drill: nothing to close in {drill.symbol} at {drill.at:%H:%M} ({exc.message})")

    def faults_fired(self) -> int:
        """Return how many scripted faults fired so far."""
        return len(self.injector.fired()) if self.injector is not None else 0

    def close(self) -> None:
        """Stop the loopback server and close HTTP sessions."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self.alpaca is not None:
            self.alpaca.client._session.close()


def build_venue(
    settings: RunSettings,
    credentials: Credentials | None,
    bars: BarSeries | None,
    *,
    ask: Callable[[str], str] = input,
) -> Venue:
    """Build the account a run trades against, after the mode's checks.

    Args:
        settings: The run's settings.
        credentials: Alpaca keys from the environment, if any.
        bars: The bars of a sim (they price its paper account); None for market data.
        ask: How the live account number is asked for.

    Raises:
        ConfigError: The mode's checks failed; nothing was sent.
    """
    check_before_connecting(settings, credentials)
    drills = parse_outside_closes(settings.close_outside)
    if drills and settings.mode is not Mode.SIM:
        raise ConfigError("--close-outside is a sim drill: it closes positions of the simulated account")
    from tradeguard.faults import FaultPlan

    plan = FaultPlan.load(settings.faults) if settings.faults else None
    if settings.mode is Mode.SIM:
        assert bars is not None
        _check_drills_fire(drills, bars)
        return _sim(bars, plan, drills)
    from tradeguard.broker.alpaca import AlpacaBroker

    if settings.url is not None:
        alpaca = AlpacaBroker.from_credentials(
            "paper", "paper", url_override=settings.url, settings=settings.guard
        )
        endpoint = ClientEndpoint("paper", "paper", True, settings.url)
        label = f"paper server {settings.url}"
    else:
        assert credentials is not None
        live = settings.mode is Mode.LIVE
        alpaca = AlpacaBroker.from_credentials(
            credentials.key_id, credentials.secret, paper=not live, settings=settings.guard
        )
        endpoint = ClientEndpoint(credentials.key_id, credentials.secret, not live, None)
        label = "Alpaca LIVE" if live else "Alpaca paper"
        if live:
            label += f" account {confirm_live_account(alpaca, ask)}"
    clock = SystemClock()
    broker, injector = _with_faults(alpaca, plan, clock)
    return Venue(
        settings.mode, broker, alpaca, clock, label, alpaca=alpaca, injector=injector, _endpoint=endpoint
    )


def _check_drills_fire(drills: tuple[OutsideClose, ...], bars: BarSeries) -> None:
    """Refuse a drill that would never fire: a symbol without bars, or a minute the bars lack.

    A drill fires at a bar of its minute, before the strategy sees it; one that names a symbol the
    sim does not price, or a minute outside the bars, would run the whole day without the close
    it was asked for, and the run would end 0 as if the drill had been tested.

    Raises:
        ConfigError: The first such drill, with what the bars hold.
    """
    minutes = {m.local.time() for m in bars.minutes}
    for drill in drills:
        text = f"--close-outside {drill.symbol}@{drill.at:%H:%M}"
        if drill.symbol not in bars.symbols:
            raise ConfigError(
                f"{text}: {bars.source} has no {drill.symbol} bars (it has {', '.join(bars.symbols)})"
            )
        if drill.at not in minutes:
            first, last = min(minutes), max(minutes)
            raise ConfigError(
                f"{text}: {bars.source} has no bar at {drill.at:%H:%M} ET "
                f"(its bars run {first:%H:%M}-{last:%H:%M} ET)"
            )


def _sim(bars: BarSeries, plan: FaultPlan | None, drills: tuple[OutsideClose, ...]) -> Venue:
    from tradeguard.paper import PaperBroker

    clock = ManualClock(bars.minutes[0].at)
    # Closes from each minute's end; an alpaca-py strategy's data reads get the bars that ended.
    paper = PaperBroker(prices=bars.bar_prices(), clock=clock, allow_short=True)
    broker, injector = _with_faults(paper, plan, clock)
    label = "in-process paper account (sim)"
    return Venue(Mode.SIM, broker, paper, clock, label, paper=paper, injector=injector, drills=drills)


def _with_faults(inner: Broker, plan: FaultPlan | None, clock: Clock) -> tuple[Broker, FaultInjector | None]:
    """Return the broker the guard sends through: `inner`, or `inner` under the fault plan."""
    if plan is None:
        return inner, None
    from tradeguard.faults import FaultyBroker

    faulty = FaultyBroker(inner, plan, clock=clock)
    return faulty, faulty.injector
