"""`tradeguard keys`: create, list and revoke the claim service's API keys.

A key is shown once, at creation, alone on the last line of the output so a script can take it
with `tail -n 1`; the store keeps only its hash. Keys live in the claim store's database, so
`--store` names the same store `tradeguard serve` runs on. `create` may create a new store (the
first key usually comes before the first `serve`) and says so on stderr; `list` and `revoke`
never do.
"""

from __future__ import annotations

import click

from tradeguard.cli.common import EXIT_STATUSES, store_option
from tradeguard.cli.output import emit, format_option

__all__ = ["keys"]

_COLUMNS = ("key_id", "agent_id", "admin", "label", "created_at", "revoked_at")


@click.group(epilog=EXIT_STATUSES)
def keys() -> None:
    """Create, list and revoke the claim service's API keys (one per agent, or admin)."""


@keys.command(epilog=EXIT_STATUSES)
@click.option("--agent-id", required=True, help="The agent the key acts for (its claims only).")
@click.option("--admin", is_flag=True, help="An admin key: reads and moves every agent's records.")
@click.option("--label", default="", help="A note kept with the key (who or what uses it).")
@store_option
def create(agent_id: str, admin: bool, label: str, store_url: str) -> int:
    """Create a key; print it alone on the last line (shown once, stored only as a hash)."""
    from tradeguard.cli.common import missing_sqlite_file
    from tradeguard.service.keys import KeyRing

    created = missing_sqlite_file(store_url)
    with KeyRing(store_url) as ring:
        record, token = ring.create(agent_id, admin=admin, label=label)
    if created is not None:
        # Said, not refused: the first key usually comes before the first `serve` (README), but
        # a mistyped path must not become a second store without a word.
        click.echo(
            f"tradeguard keys: created a new, empty claim store at {created} "
            "(serve it with: tradeguard serve --store URL)",
            err=True,
        )
    role = "admin key" if admin else "key"
    click.echo(f"created {role} {record.key_id} for agent {agent_id}; it is shown once, keep it now:")
    click.echo(token)
    return 0


@keys.command(name="list", epilog=EXIT_STATUSES)
@click.option("--active", is_flag=True, help="Only keys that are not revoked.")
@format_option
@store_option
def list_(active: bool, fmt: str, store_url: str) -> int:
    """List the keys (ids, agents, roles, times; never secrets)."""
    from tradeguard.cli.common import require_store
    from tradeguard.service.keys import KeyRing

    require_store(store_url)  # a mistyped store is an error, never a new empty one
    with KeyRing(store_url) as ring:
        records = ring.list(include_revoked=not active)
    rows = [
        {
            "key_id": r.key_id,
            "agent_id": r.agent_id,
            "admin": "yes" if r.admin else "no",
            "label": r.label,
            "created_at": r.created_at.isoformat(timespec="seconds"),
            "revoked_at": r.revoked_at.isoformat(timespec="seconds") if r.revoked_at else "",
        }
        for r in records
    ]
    emit(_COLUMNS, rows, fmt, title="API keys")
    return 0


@keys.command(epilog=EXIT_STATUSES)
@click.argument("key_id")
@store_option
def revoke(key_id: str, store_url: str) -> int:
    """Revoke KEY_ID (as `keys list` shows it); the service refuses it from the next request."""
    from tradeguard.cli.common import require_store
    from tradeguard.service.keys import KeyRing

    require_store(store_url)
    with KeyRing(store_url) as ring:
        before = ring.get(key_id).revoked_at
        record = ring.revoke(key_id)
    assert record.revoked_at is not None
    when = f"{record.revoked_at:%Y-%m-%d %H:%M:%S}Z"
    # Revoking twice is not an error (the key ends refused either way), but the second call
    # must not read as if it had just cut off an agent that was still sending.
    done = "was already revoked" if before is not None else "revoked"
    click.echo(f"key {record.key_id} of agent {record.agent_id} {done} at {when}")
    return 0
