"""`tradeguard run`: run a strategy through the guard (the options; `tradeguard.run` does the rest)."""

from __future__ import annotations

from typing import Any

import click

from tradeguard.cli.common import EXIT_STATUSES, agent_id_callback, url_option_callback
from tradeguard.run.settings import Mode, ViewKind

__all__ = ["run"]


@click.command(
    epilog="Settings: option > TRADEGUARD_<FIELD> > --config file > default. "
    "Exit status 1: the run stopped on an error or ended with a difference a person must look at. "
    f"{EXIT_STATUSES}",
)
@click.argument("strategy", required=False)
@click.option("--mode", type=click.Choice([m.value for m in Mode]), help="sim (default), paper or live.")
@click.option(
    "--bars",
    metavar="FILE",
    help="Bar file (CSV, or Parquet with pyarrow) or seed:N; default: the shipped day.",
)
@click.option(
    "--url",
    metavar="URL",
    callback=url_option_callback,
    help="Paper mode: a tradeguard paper server, e.g. http://127.0.0.1:8765.",
)
@click.option("--store", "store_url", metavar="URL", help="Claim store (sim default: a fresh file).")
@click.option(
    "--agent-id",
    metavar="AGENT",
    callback=agent_id_callback,
    help="Agent of the claims and ledger (default: the strategy's name).",
)
@click.option("--faults", metavar="PLAN", help="Fault plan applied to the run's broker (sim, paper).")
@click.option("--record", metavar="FILE", help="Write the run as a session for `tradeguard replay`.")
@click.option("--speed", type=float, help="Paper with a bar file: replay this many times real time.")
@click.option(
    "--no-wait-for-open", "wait_for_open", flag_value=False, default=None,
    help="Paper: start at once even if /v2/clock says the market is closed.",
)  # fmt: skip
@click.option(
    "--close-outside", multiple=True, metavar="SYMBOL@HH:MM",
    help="Sim drill: close a position behind the bot's back at that bar (repeatable).",
)  # fmt: skip
@click.option(
    "--view", type=click.Choice([v.value for v in ViewKind]), help="Live view, plain lines, or auto."
)
@click.option(
    "--i-understand-this-is-live", "live_confirmed", flag_value=True, default=None,
    help="Required for --mode live (then the account number is asked for).",
)  # fmt: skip
@click.option(
    "--config", metavar="FILE", help="TOML settings file ([run], [guard]); env TRADEGUARD_CONFIG.",
)  # fmt: skip
@click.option("--print-config", is_flag=True, help="Print the settings in force and exit.")
def run(config: str | None, print_config: bool, **options: Any) -> int:
    """Run a strategy (module path like strategies.momentum, or bot.py[:Class]) through the guard."""
    from tradeguard.run.command import run_command

    return run_command(options, config=config, print_config=print_config)
