"""`tradeguard demo`: a guarded bot against the paper broker with injected faults, no keys."""

from __future__ import annotations

import click

from tradeguard.cli.common import EXIT_STATUSES, store_option

__all__ = ["demo"]


@click.command(epilog=EXIT_STATUSES)
@store_option
@click.option("--agent-id", default="demo-bot", show_default=True, help="Agent of the demo's claims.")
def demo(store_url: str, agent_id: str) -> int:
    """Run a guarded bot against the paper broker with injected faults (no keys)."""
    from tradeguard.demo import run_demo

    return run_demo(store_url=store_url, agent_id=agent_id)
