"""`tradeguard replay` and `tradeguard import`: the options; `replay.cli` does the work."""

from __future__ import annotations

import click

from tradeguard.cli.common import EXIT_STATUSES

__all__ = ["import_", "replay"]


@click.command(epilog=EXIT_STATUSES)
@click.argument("session")
@click.option(
    "--guard",
    default=None,
    type=click.Choice(["none", "entry-only", "full"]),
    help="Guard mode to replay under (default: full).",
)
@click.option("--compare", is_flag=True, help="Run the three modes side by side (instead of --guard).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (one per mode with --compare).")
@click.option("--plot", metavar="FILE.png", help="Draw the position over the session per mode (matplotlib).")
@click.option("--report", metavar="FILE.html", help="Write a self-contained HTML report.")
def replay(
    *, session: str, guard: str | None, compare: bool, as_json: bool, plot: str | None, report: str | None
) -> int:
    """Replay a recorded session (a JSON Lines file, or a shipped one's name) in three guard modes."""
    from replay.cli import run_replay

    return run_replay(session, guard=guard, compare=compare, as_json=as_json, plot=plot, report=report)


@click.command("import", epilog=EXIT_STATUSES)
@click.argument("kind", type=click.Choice(["alpaca-orders", "bot-log", "claims"]))
@click.argument("file")
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="SESSION.jsonl",
    help="The session file to write (- for stdout; what was found then goes to stderr).",
)
@click.option("--force", is_flag=True, help="Replace the session file if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print what was found as one JSON object.")
def import_(kind: str, file: str, output: str, force: bool, as_json: bool) -> int:
    """Turn a bot log, an Alpaca order history or a claim export (KIND) into a session."""
    from replay.cli import run_import

    return run_import(kind, file, output, as_json=as_json, force=force)
