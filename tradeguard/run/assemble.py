"""The one place a run builds its claim store, its gateway, and the alpaca-py client over them.

Every order of a run goes through the gateway `build_gateway` returns, including those of a bot
written against alpaca-py (`trading_client` hands that bot a `GuardedTradingClient` on the same
gateway), so whatever a run must do to every order — recording a session for `tradeguard
replay` — is done here once.
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

from tradeguard.config import DEFAULT_STORE_URL
from tradeguard.errors import ConfigError
from tradeguard.run.settings import Mode, RunSettings
from tradeguard.run.venue import Venue

if TYPE_CHECKING:
    from tradeguard.client import GuardedTradingClient
    from tradeguard.gateway import OrderGateway
    from tradeguard.store import ClaimStore

__all__ = ["build_gateway", "check_record", "open_store", "trading_client"]


def open_store(settings: RunSettings, venue: Venue, agent_id: str) -> ClaimStore:
    """Open the run's claim store: the one named, else a fresh SQLite file (sim) or the default.

    Raises:
        ConfigError: A sim was pointed at a store where the agent holds positions, or has
            claims not yet final: the sim's account starts empty, so its reconcile would take
            the positions for phantoms and the open claims' orders (on an account that is gone)
            for orders never sent.
    """
    from tradeguard.run.summary import OPEN_STATES
    from tradeguard.store import ClaimStore

    url = settings.store_url
    if url is None:
        if settings.mode is Mode.SIM:
            # Kept after the run so `tradeguard audit --store ...` can read it.
            folder = tempfile.mkdtemp(prefix="tradeguard-sim-")
            url = f"sqlite:///{os.path.join(folder, 'claims.db')}"
        else:
            url = DEFAULT_STORE_URL
    store = ClaimStore(url, settings=settings.guard, clock=venue.clock)
    if settings.mode is Mode.SIM:
        held = [p for p in store.positions(agent_id) if not p.is_flat]
        if held:
            store.close()
            what = ", ".join(f"{p.qty} {p.symbol}" for p in held)
            raise ConfigError(
                f"sim needs a store of its own: agent {agent_id} holds {what} in {url}, which a "
                "simulated account (it starts empty) would take for phantoms"
            )
        # An UNKNOWN (or PENDING, SUBMITTED) claim of an earlier run names an order on that
        # run's account, which no longer exists: the fresh account's "no such order" is no
        # evidence, yet its reconcile would record the order NOT_SENT (a fill lost from the
        # record, G2) once the strategy's same decision came round again.
        unsettled = store.list_claims(states=list(OPEN_STATES), agent_id=agent_id)
        if unsettled:
            store.close()
            first = unsettled[0]
            more = f" and {len(unsettled) - 1} more" if len(unsettled) > 1 else ""
            raise ConfigError(
                f"sim needs a store of its own: agent {agent_id} has {len(unsettled)} claim(s) not "
                f"yet final in {url} ({first.state.value} {first.symbol} {first.side.value} "
                f"{first.client_order_id}{more}), orders of another account that a simulated "
                "account (it starts empty) would take for never sent"
            )
    return store


def build_gateway(venue: Venue, store: ClaimStore, settings: RunSettings, agent_id: str) -> OrderGateway:
    """Build the run's gateway; the start-up reconcile pass is the runner's, so it is off here.

    With `settings.record` the gateway records every attempt and answer as a session file that
    `tradeguard replay` reads; every order of the run, alpaca-py bots' included, goes through
    this one gateway.
    """
    from tradeguard.gateway import OrderGateway

    gateway = OrderGateway(
        venue.broker,
        store,
        agent_id=agent_id,
        settings=settings.guard,
        clock=venue.clock,
        reconcile_on_start=False,
        record_to=settings.record,
    )
    if settings.record is not None and gateway.recorder.failure is not None:
        # A recording asked for on the command line that cannot even start is refused before
        # anything is sent (the gateway alone would trade on unrecorded).
        gateway.close()
        raise ConfigError(f"--record {settings.record}: cannot write it: {gateway.recorder.failure}")
    return gateway


def check_record(path: str) -> None:
    """Raise ConfigError when `path` cannot be a session file: a folder, or in none that is writable."""
    if path == "-":
        # Not standard output, as `import -o -` is: the run prints its own view and summary there.
        raise ConfigError(
            "--record -: a run records to a file (its standard output is the run's view); name one"
        )
    if os.path.isdir(path):
        raise ConfigError(f"--record {path}: is a folder; name a file in it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"--record {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"--record {path}: folder {folder} is not writable")


def trading_client(venue: Venue, gateway: OrderGateway) -> GuardedTradingClient:
    """Return a `GuardedTradingClient` on the run's account whose orders go through `gateway`."""
    from tradeguard.client import GuardedTradingClient

    end = venue.endpoint()
    # One gateway per run: a client's own would be a second owner of the agent's claims, with
    # its own start-up reconcile and none of what `build_gateway` adds to every order.
    return GuardedTradingClient(end.key, end.secret, paper=end.paper, url_override=end.url, gateway=gateway)
