"""`tradeguard chaos`: the options; `tradeguard.chaos.command` runs the campaign and reports."""

from __future__ import annotations

from typing import Any

import click

from tradeguard.cli.common import EXIT_STATUSES

__all__ = ["chaos"]


@click.command(epilog=f"Exit status 1: a run broke a guarantee (G1-G4). {EXIT_STATUSES}")
@click.argument("strategy")
@click.option("--runs", type=click.IntRange(min=1), default=200, show_default=True, help="How many runs.")
@click.option("--seed", type=int, default=1, show_default=True, help="The campaign's seed.")
@click.option("--replay-seed", type=int, help="Replay exactly the run with this seed.")
@click.option("--faults", metavar="PLAN", help="A fault plan file instead of random faults.")
@click.option(
    "--crash-points", default="all", show_default=True, help="all, or a comma-separated list of points."
)
@click.option("--bars", metavar="FILE", help="Bar file or seed:N (default: the shipped day).")
@click.option(
    "--kill-every", type=click.IntRange(min=0), default=20, show_default=True,
    help="About one run in N as real bot processes, SIGKILLed and restarted (0: none).",
)  # fmt: skip
@click.option("--unguarded", is_flag=True, help="Send through a plain bot's path instead of the guard.")
@click.option(
    "--save",
    default="chaos-sessions",
    show_default=True,
    metavar="DIR",
    help="Folder for failing runs' sessions.",
)
@click.option("--json", "json_", is_flag=True, help="Print the result as JSON.")
@click.option("--store", metavar="URL", help="Claim store URL of the real-kill runs (e.g. PostgreSQL).")
@click.option(
    "--workers", type=click.IntRange(min=1), default=1, show_default=True,
    help="Run each run as N bot processes (hosts) on --store and one paper account, killed at random.",
)  # fmt: skip
@click.option("--minutes", type=int, help="Use only the first N minutes of the bars.")
def chaos(json_: bool, **options: Any) -> int:
    """Run your strategy (module path or file) under seeded faults and crashes; check G1-G4."""
    from tradeguard.chaos.command import ChaosOptions, run_chaos

    return run_chaos(ChaosOptions(json=json_, **options))
