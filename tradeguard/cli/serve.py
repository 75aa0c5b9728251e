"""`tradeguard serve`: the claim service (SafeAgent-compatible and native routes) over one store.

Needs the `service` extra (FastAPI, uvicorn). Before uvicorn starts, the command opens the store
once (migrating it, or creating a new SQLite file: a service's first start) and binds the port
once, so a bad store URL or a port in use is one line on stderr and exit 2, not a log dump (a URL
that names no store is said before the port, which is checked before anything is created).
A SQLite file that did not exist is created, and said so on stderr: a mistyped path would
otherwise serve an empty store (no keys, no claims) without a word.
"""

from __future__ import annotations

import logging
import math
import sys

import click

from tradeguard.cli.common import EXIT_STATUSES, check_port_free, missing_sqlite_file, store_option
from tradeguard.errors import ConfigError

__all__ = ["serve"]


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """Refuse nan and inf: either would turn the rate limit off without a word (0 says so)."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a rate (0 turns the limit off)", param=param)
    return value


@click.command(
    epilog="Create keys first: tradeguard keys create --agent-id ID --store URL. "
    "SIGTERM or Ctrl-C stops the service after requests in flight finish. " + EXIT_STATUSES
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8787, show_default=True, help="TCP port (0: a free one)."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes serving requests (each opens its own store connections).",
)
@click.option(
    "--rate-per-sec",
    type=click.FloatRange(min=0),
    callback=_finite,
    default=1000.0,
    show_default=True,
    help="Requests per second each API key may sustain (0: no limit); 429 past it.",
)
@click.option(
    "--rate-burst",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Requests a key may send at once after a quiet spell.",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1024),
    default=64 * 1024,
    show_default=True,
    help="Larger request bodies get 413 before they are read.",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    metavar="ORIGIN",
    help="A browser origin allowed to call the service (repeatable; CORS is off without one).",
)
@click.option("--no-docs", is_flag=True, help="Do not serve /docs and /openapi.json.")
@store_option
def serve(
    *,
    host: str,
    port: int,
    workers: int,
    rate_per_sec: float,
    rate_burst: int,
    max_body_bytes: int,
    cors_origins: tuple[str, ...],
    no_docs: bool,
    store_url: str,
) -> int:
    """Serve the claim store over HTTP to agents holding API keys."""
    try:
        from tradeguard.service.app import ServiceConfig
        from tradeguard.service.server import serve as run_service
    except ImportError as exc:
        raise ConfigError(
            f"the claim service needs the service extra ({exc.name} is missing): "
            'pip install "tradeguard[service]"'
        ) from exc
    from tradeguard.config import Settings
    from tradeguard.store import ClaimStore
    from tradeguard.store.engine import describe, parse_url

    settings = Settings.from_env()
    parse_url(store_url)  # a URL that names no store is wrong whatever the port: said before it
    check_port_free(host, port)  # before opening: a taken port leaves no new store file behind
    created = missing_sqlite_file(store_url)
    ClaimStore(store_url, settings=settings).close()  # a bad URL or an unusable store: one line, now
    if created is not None:
        print(
            f"tradeguard serve: created a new, empty claim store at {created} "
            "(no API keys yet: tradeguard keys create --agent-id ID --store URL)",
            file=sys.stderr,
        )
    config = ServiceConfig(
        store_url=store_url,
        settings=settings,
        max_body_bytes=max_body_bytes,
        rate_per_sec=rate_per_sec,
        rate_burst=rate_burst,
        cors_origins=cors_origins,
        docs=not no_docs,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    def announce(bound_host: str, bound_port: int) -> None:
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        docs = "" if no_docs else f"; API docs at http://{shown}:{bound_port}/docs"
        click.echo(
            f"claim service on http://{shown}:{bound_port} over {describe(parse_url(store_url))}{docs}",
        )

    run_service(config, host=host, port=port, workers=workers, on_ready=announce)
    return 0
