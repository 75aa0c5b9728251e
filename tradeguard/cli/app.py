"""The `tradeguard` command group: one line per command in `COMMANDS`, each loaded when it runs.

`tradeguard audit ...` imports `tradeguard.cli.audit` and nothing of the other commands;
`tradeguard --help` imports every command module for its one-line help, and those import only
Click and the light parts of tradeguard at module level (everything heavy inside the function).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click

from tradeguard import __version__
from tradeguard.cli.common import EXIT_STATUSES

__all__ = ["COMMANDS", "LazyGroup", "cli"]

# name -> "module:attribute" of its click.Command. Adding a command is adding a line.
COMMANDS: dict[str, str] = {
    "demo": "tradeguard.cli.demo:demo",
    "run": "tradeguard.cli.run:run",
    "chaos": "tradeguard.cli.chaos:chaos",
    "paper-server": "tradeguard.cli.paper:paper_server",
    "reconcile": "tradeguard.cli.reconcile:reconcile",
    "settle": "tradeguard.cli.reconcile:settle",
    "claims": "tradeguard.cli.claims:claims",
    "audit": "tradeguard.cli.audit:audit",
    "db": "tradeguard.cli.db:db",
    "keys": "tradeguard.cli.keys:keys",
    "replay": "tradeguard.cli.replay:replay",
    "import": "tradeguard.cli.replay:import_",
}


class LazyGroup(click.Group):
    """A group whose subcommands are named by import path and imported on first use."""

    def __init__(self, *args: Any, lazy: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Return the commands in the order `COMMANDS` lists them."""
        return [*self.lazy, *(n for n in super().list_commands(ctx) if n not in self.lazy)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import and return the command, or None for an unknown name."""
        target = self.lazy.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command), target
        return command


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    epilog=EXIT_STATUSES,
    context_settings={"help_option_names": ["-h", "--help"], "terminal_width": 100},
)
@click.version_option(__version__, "--version", "-V", prog_name="tradeguard", message="%(prog)s %(version)s")
def cli() -> None:
    """Exactly-once order execution for Alpaca bots: claims, reconcile, audit, replay, paper broker."""
