"""`tradeguard db`: upgrade a store's schema, check it, export its claims and audit log.

`db upgrade` is the one store command that may create a store. `db export --what claims` writes
JSON that `tradeguard import claims` reads back (one record per claim, with the fields of
SafeAgent's claim records beside tradeguard's own), and `--what audit --format csv` is the same
file as `tradeguard audit --csv`, which it reads too.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from typing import IO, TYPE_CHECKING, Any

import click

from tradeguard.cli.common import EXIT_STATUSES, FORCE_HELP, ExitStatus, Refused, store_option
from tradeguard.errors import ConfigError

if TYPE_CHECKING:
    from tradeguard.domain import Claim

__all__ = ["claim_record", "db"]

CLAIM_COLUMNS = (
    "key", "client_order_id", "agent_id", "kind", "symbol", "side", "intent", "qty", "state",
    "filled_qty", "filled_avg_price", "broker_order_id", "attempts", "created_at", "updated_at", "reason",
)  # fmt: skip
_SENT = frozenset({"SUBMITTED", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED"})


@click.group(epilog=EXIT_STATUSES)
def db() -> None:
    """Upgrade, check or export a claim store."""


@db.command(epilog=EXIT_STATUSES)
@store_option
def upgrade(store_url: str) -> int:
    """Create the store, or migrate its schema to this tradeguard's head."""
    import os

    from tradeguard.cli.common import schema_revision, sqlite_file
    from tradeguard.config import Settings
    from tradeguard.store import ClaimStore
    from tradeguard.store.engine import describe, parse_url
    from tradeguard.store.schema import SCHEMA_HEAD

    path = sqlite_file(store_url)
    before = schema_revision(store_url) if path is None or os.path.isfile(path) else None
    settings = Settings.from_env()  # before anything is created: a bad variable changes nothing
    # Opening migrates (and refuses a schema newer than this tradeguard).
    ClaimStore(store_url, settings=settings).close()
    was = "a new store" if before is None else f"was {before}"
    print(f"{describe(parse_url(store_url))}: schema at head {SCHEMA_HEAD} ({was})")
    return 0


@db.command(
    epilog=f"Exit status 1: the schema is behind (run db upgrade) or ahead of tradeguard. {EXIT_STATUSES}"
)
@store_option
def check(store_url: str) -> int:
    """Say whether the store's schema is at this tradeguard's head; never changes anything."""
    from tradeguard.cli.common import read_store_id, schema_revision
    from tradeguard.store.engine import describe, known_revisions, parse_url
    from tradeguard.store.schema import SCHEMA_HEAD

    where = describe(parse_url(store_url))
    revision = schema_revision(store_url)
    if revision == SCHEMA_HEAD:
        # The id a claim service names on its answers; a gateway can insist on it (?store_id=).
        print(f"{where}: schema at head {SCHEMA_HEAD}, store id {read_store_id(store_url)}")
        return ExitStatus.OK
    if revision is None:
        raise Refused(f"{where}: no tradeguard schema, behind head {SCHEMA_HEAD} (run tradeguard db upgrade)")
    if revision in known_revisions():
        raise Refused(f"{where}: schema {revision} is behind head {SCHEMA_HEAD} (run tradeguard db upgrade)")
    raise Refused(
        f"{where}: schema {revision} is ahead of this tradeguard (head {SCHEMA_HEAD}); upgrade tradeguard"
    )


def claim_record(claim: Claim) -> dict[str, Any]:
    """Return a claim as an export record: tradeguard's fields and SafeAgent's claim-record fields.

    `request_id`, `symbol`, `side`, `qty`, `claimed_at`, `outcome` and `broker_order_id` are what
    `tradeguard import claims` reads from a SafeAgent claim record (LOGS.md §3); the request id
    starts with the claim's kind, as SafeAgent's exit records do.
    """
    qty = claim.order_qty if claim.order_qty is not None else claim.spec.qty
    state = claim.state.value
    outcome = "COMMITTED" if state in _SENT else "PENDING" if state in ("PENDING", "UNKNOWN") else state
    return {
        "request_id": f"{claim.kind}:{claim.agent_id}:{claim.symbol}:{claim.intent}",
        "symbol": claim.symbol, "side": claim.side.value,
        "qty": str(qty if qty is not None else claim.filled_qty),
        "claimed_at": claim.created_at.isoformat(), "outcome": outcome,
        "broker_order_id": claim.broker_order_id,
        "key": claim.key, "client_order_id": claim.client_order_id, "agent_id": claim.agent_id,
        "kind": claim.kind.value, "intent": claim.intent, "state": state,
        "filled_qty": str(claim.filled_qty),
        "filled_avg_price": None if claim.filled_avg_price is None else str(claim.filled_avg_price),
        "attempts": claim.attempts, "created_at": claim.created_at.isoformat(),
        "updated_at": claim.updated_at.isoformat(), "reason": claim.reason, "payload": claim.payload,
    }  # fmt: skip


def _open_output(path: str | None, store_url: str, *, force: bool) -> Any:
    from tradeguard.cli.common import refuse_to_replace
    from tradeguard.store.engine import is_store_file

    if path is None:
        return nullcontext(sys.stdout)
    if is_store_file(path, store_url):  # opening it for writing would truncate the store
        raise ConfigError(f"refusing to write {path}: it is a file of the claim store being exported")
    refuse_to_replace(path, "-o", force=force)
    try:
        return open(path, "w", newline="", encoding="utf-8")  # closed by the caller's `with`
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


@db.command(
    epilog="JSON claims are what `tradeguard import claims` reads; CSV audit is what `tradeguard audit "
    f"--csv` writes. An existing -o file is kept unless --force. {EXIT_STATUSES}"
)
@store_option
@click.option(
    "--what",
    type=click.Choice(["claims", "audit"]),
    default="claims",
    show_default=True,
    help="What to export.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv"]),
    default="json",
    show_default=True,
    help="File format.",
)
@click.option("-o", "--output", metavar="FILE", help="Write to this file (default: stdout).")
@click.option("--force", is_flag=True, help=FORCE_HELP)
def export(store_url: str, what: str, fmt: str, output: str | None, force: bool) -> int:
    """Export every claim, or the whole audit log, as JSON or CSV."""
    from tradeguard.cli.audit import record_row
    from tradeguard.cli.common import open_existing_store
    from tradeguard.cli.output import emit

    try:
        with open_existing_store(store_url) as store, _open_output(output, store_url, force=force) as out:
            if what == "claims":
                rows = [claim_record(c) for c in store.list_claims()]
                emit(CLAIM_COLUMNS, rows, fmt, out=out)
            elif fmt == "csv":
                _audit_csv(store.audit_records(), out)
            else:
                emit((), [record_row(r) for r in store.audit_records()], fmt, out=out)
            count = len(rows) if what == "claims" else store.audit_count()
    except OSError as exc:  # the file's write or close (a full disk); stdout's is said by `main`
        if output is None:
            raise
        raise ConfigError(f"cannot write {output}: {exc.strerror or exc}") from None
    if output is not None:
        print(f"wrote {count} {what} record(s) to {output}")
    return 0


def _audit_csv(records: Any, out: IO[str]) -> None:
    """Write records as `tradeguard audit --csv` does (the same columns, detail as JSON)."""
    from tradeguard.store.audit import write_records_csv

    write_records_csv(records, out)
