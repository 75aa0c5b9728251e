"""`tradeguard paper-server`: a paper account over Alpaca's REST routes, on loopback by default."""

from __future__ import annotations

import logging
import sys
import threading
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

import click

from tradeguard.cli.common import EXIT_STATUSES, cannot_listen, check_port_free, open_paper_broker
from tradeguard.errors import ConfigError

if TYPE_CHECKING:
    from tradeguard.clock import ReplayClock
    from tradeguard.paper import PaperBroker
    from tradeguard.paper.prices import BarPrices

__all__ = ["paper_server"]

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _cash(text: str) -> Decimal:
    try:
        cash = Decimal(text)
    except InvalidOperation:
        cash = Decimal(-1)
    if not cash.is_finite() or cash < 0:
        raise ConfigError(f"--cash wants an amount of dollars, got {text!r}")
    return cash


@click.command("paper-server", epilog=EXIT_STATUSES)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="TCP port; 0 picks a free one.",
)
@click.option("--faults", metavar="PLAN", help="Fault plan to inject (YAML or JSON).")
@click.option(
    "--state",
    metavar="FILE",
    help="File that keeps the paper account across restarts (a snapshot, then one line per change).",
)
@click.option("--cash", default="100000", show_default=True, help="Starting cash of a new account.")
@click.option("--allow-short", is_flag=True, help="Let sells open short positions.")
@click.option(
    "--fsync-every-change",
    is_flag=True,
    help="With --state: fsync each change before answering (survives power loss; slower).",
)
@click.option(
    "--bars",
    metavar="FILE",
    help="Bar file to replay (as run --bars reads it): the account's clock starts at its first close.",
)
@click.option(
    "--speed",
    type=float,
    default=1.0,
    show_default=True,
    help="With --bars: seconds of the bars' day per real second.",
)
@click.option(
    "--price", "prices", multiple=True, metavar="SYMBOL=PRICE", help="Pin a fill price (repeatable)."
)
@click.option(
    "--assets",
    metavar="CSV",
    help="Asset file adding symbols to the shipped list (symbol,name,exchange,...).",
)
def paper_server(
    *,
    host: str,
    port: int,
    faults: str | None,
    state: str | None,
    cash: str,
    allow_short: bool,
    fsync_every_change: bool,
    bars: str | None,
    speed: float,
    prices: tuple[str, ...],
    assets: str | None,
) -> int:
    """Serve a paper account over Alpaca's REST routes until Ctrl-C or SIGTERM."""
    from tradeguard.faults import FaultPlan
    from tradeguard.paper.server import PaperServer, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # Every failure below is bad input said in one line by `main` ("tradeguard: error: ...").
    check_port_free(host, port)  # first: a taken port leaves no new state file behind
    try:
        pins = [_pin(pin) for pin in prices]  # before the account is opened: a bad one makes none
        plan = FaultPlan.load(faults) if faults else None
        source, clock = _replay(bars, speed)
        broker = open_paper_broker(
            prices=source,
            clock=clock,
            cash=_cash(cash),
            allow_short=allow_short,
            state_path=state,
            assets_path=assets,
            fsync_every_change=fsync_every_change,
        )
        for symbol, price in pins:
            broker.set_price(symbol, price)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise ConfigError(f"{where}{exc.strerror or exc}") from exc
    except OverflowError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        server = PaperServer(broker, host=host, port=port, fault_plan=plan).start()
    except OSError as exc:  # taken since the check above, or an address not of this host
        raise ConfigError(cannot_listen(host, port, exc)) from exc

    def announce(running: PaperServer) -> None:
        print(f"paper server listening on {running.url} (any API key works; Ctrl-C stops it)", flush=True)
        if host not in _LOOPBACK:
            print(f"warning: {host} is not loopback: anyone who can reach it can trade here", file=sys.stderr)
        if plan is not None:
            print(f"fault plan {faults}: {len(plan.faults)} fault(s), seed {plan.seed}", flush=True)
        if clock is not None:
            print(f"replaying {bars} from {clock.start:%Y-%m-%d %H:%M} UTC at {speed:g}x", flush=True)

    if clock is None:
        serve(server, on_ready=announce)
        return 0
    # Resting orders (limits, stops, trailing stops, a bracket's legs) trade as the replayed
    # prices reach them, between requests too, as a broker's book would.
    stop = threading.Event()
    ticker = threading.Thread(
        target=_trade_resting, args=(broker, source, clock, stop, _tick_secs(speed)), daemon=True
    )
    ticker.start()
    try:
        serve(server, on_ready=announce)
    finally:
        stop.set()
        ticker.join()
        # `serve` folded the state file into one snapshot before the ticker stopped: a pass in
        # between (a resting order reached) wrote a journal line after it. Fold it in too.
        broker.close()
    return 0


_MAX_SPEED = 3600.0  # an hour of the day per second: a day in under seven seconds


def _pin(pin: str) -> tuple[str, Decimal]:
    """Return a `--price SYMBOL=PRICE` as the symbol the gateway keys and a price, naming it if bad."""
    from tradeguard.domain.intents import FIGURE_LIMIT, check_symbol
    from tradeguard.domain.orders import canonical_symbol
    from tradeguard.paper.prices import to_price

    text, sep, price = pin.partition("=")
    if not sep:
        raise ConfigError(f"--price wants SYMBOL=PRICE, got {pin!r}")
    where = f"--price {pin}"
    symbol = canonical_symbol(text)
    try:
        check_symbol(symbol)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    number = to_price(price, where)
    if number >= FIGURE_LIMIT:
        raise ConfigError(f"{where}: the price must be less than {FIGURE_LIMIT:,}")
    return symbol, number


def _replay(bars: str | None, speed: float) -> tuple[BarPrices | None, ReplayClock | None]:
    """Return the bar file's prices and the clock that replays its day (None, None without one).

    The file is read as `tradeguard run --bars` reads it (the same checks, a line named on
    error) and priced as the run prices it: each close from its minute's end, when it is known
    (`BarSeries.price_series`). The bars' day then runs on the wall clock from the first close,
    `speed` times as fast: prices, `/v2/clock` and resting orders follow the bars as a bot lives
    through them (a server on the system clock priced every order at the file's last close, the
    day being long past).
    """
    from tradeguard.clock import ReplayClock
    from tradeguard.run.barfile import read_bar_file

    if not speed > 0 or speed > _MAX_SPEED:
        raise ConfigError(f"--speed wants a number above 0 and at most {_MAX_SPEED:g}, got {speed:g}")
    if bars is None:
        if speed != 1.0:
            raise ConfigError("--speed replays a bar file: give --bars too")
        return None, None
    series = read_bar_file(bars)
    # Each close from its minute's end, as the run prices it; the ended bars are market data too.
    return series.bar_prices(), ReplayClock(series.minutes[0].ends_at, speed)


def _tick_secs(speed: float) -> float:
    """Real seconds between matching passes: a few per replayed minute, at most one a second."""
    return max(0.01, min(1.0, 60.0 / speed / 4))


def _trade_resting(
    broker: PaperBroker, prices: BarPrices, clock: ReplayClock, stop: threading.Event, every: float
) -> None:
    """Match resting orders a few times per replayed minute until `stop`.

    Each pass first runs one as of every minute's end passed since the last pass but the
    newest (`PaperBroker.step(at=...)`): at a high `--speed` a pass a few milliseconds late is
    a whole replayed minute late, and a stop or limit that only that minute's close reached would
    never trade, or trade later at another close. Then one pass at the clock's time.
    """
    log = logging.getLogger("tradeguard.paper_server")
    last = clock.now()
    while not stop.wait(every):
        now = clock.now()
        try:
            for end in prices.ends(last, now)[:-1]:  # the newest end's close is the price now
                broker.step(at=end)
            broker.step()
        except Exception:  # a failed pass (a state file that cannot be written) is said, not fatal
            log.exception("matching resting orders failed; trying again")
        last = now
