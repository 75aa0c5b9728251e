"""`tradeguard audit`: read the audit log, filtered and paged, or export it to a CSV file."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING

import click

from tradeguard.cli.common import EXIT_STATUSES, agent_id_callback, store_option, symbol_callback
from tradeguard.cli.output import Format, emit, format_option
from tradeguard.cli.when import WHEN, TimeParam
from tradeguard.domain.audit import AuditAction
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import ConfigError

if TYPE_CHECKING:
    from tradeguard.domain import AuditRecord

__all__ = ["COLUMNS", "audit", "record_row"]

COLUMNS = (
    "id",
    "at",
    "agent",
    "action",
    "kind",
    "symbol",
    "side",
    "qty",
    "state",
    "client_order_id",
    "reason",
)


def record_row(rec: AuditRecord) -> dict[str, object]:
    """Return one record as a row of `COLUMNS` (JSON output keeps the detail and the rest too)."""
    return {
        "id": rec.id, "at": rec.at.isoformat(timespec="seconds"), "agent": rec.agent_id,
        "action": rec.action.value, "kind": rec.kind, "symbol": rec.symbol, "side": rec.side,
        "qty": rec.qty, "state": rec.state, "prev_state": rec.prev_state,
        "client_order_id": rec.client_order_id, "claim_key": rec.claim_key, "reason": rec.reason,
        "detail": rec.detail,
    }  # fmt: skip


@click.command(epilog=f"Times: {WHEN}. An existing --csv file is kept unless --force. {EXIT_STATUSES}")
@store_option
@click.option("--agent-id", metavar="AGENT", callback=agent_id_callback, help="Only this agent's records.")
@click.option(
    "--action",
    "actions",
    multiple=True,
    type=click.Choice([a.value for a in AuditAction], case_sensitive=False),
    help="Only records of this action (repeatable).",
)
@click.option("--kind", type=click.Choice([k.value for k in Kind]), help="Only entry or only exit claims.")
@click.option(
    "--state",
    type=click.Choice([s.value for s in ClaimState], case_sensitive=False),
    help="Only records whose claim ended in this state.",
)
@click.option(
    "--symbol",
    metavar="SYMBOL",
    callback=symbol_callback,
    help="Only this symbol, e.g. TQQQ (any case; a pair with or without its slash).",
)
@click.option("--since", type=TimeParam(), help="Records at or after this time.")
@click.option("--until", type=TimeParam(), help="Records strictly before this time.")
@click.option(
    "--after-id",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Page: records after this id.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Page: at most this many records.",
)
@click.option(
    "--csv",
    "csv_path",
    metavar="FILE",
    help="Write every matching record (no paging) to this CSV file instead of printing.",
)
@click.option("--force", is_flag=True, help="With --csv: replace the file if it exists.")
@format_option
def audit(
    *,
    store_url: str,
    agent_id: str | None,
    actions: tuple[str, ...],
    kind: str | None,
    state: str | None,
    symbol: str | None,
    since: datetime | None,
    until: datetime | None,
    after_id: int,
    limit: int,
    csv_path: str | None,
    force: bool,
    fmt: str,
) -> int:
    """Read the audit log (every claim, skip, transition and reconcile action), oldest first."""
    from tradeguard.cli.common import open_existing_store, refuse_to_replace
    from tradeguard.store import AuditQuery
    from tradeguard.store.engine import is_store_file

    query = AuditQuery(
        agent_id=agent_id, actions=tuple(a.lower() for a in actions), kind=kind,
        state=state.upper() if state else None, symbol=symbol,
        since=since, until=until,
    )  # fmt: skip
    with open_existing_store(store_url) as store:
        if csv_path:
            if is_store_file(csv_path, store_url):  # the store's own refusal, before "pass --force"
                raise ConfigError(f"refusing to write {csv_path}: it is a file of the claim store being read")
            refuse_to_replace(csv_path, "--csv", force=force)
            try:
                count = store.export_audit_csv(csv_path, query)
            except OSError as exc:
                raise ConfigError(f"cannot write {csv_path}: {exc.strerror or exc}") from None
            print(f"wrote {count} audit record(s) to {csv_path}")
            return 0
        page = store.audit_page(query, after_id=after_id, limit=limit)
    emit(COLUMNS, [record_row(r) for r in page], fmt)
    if len(page) == limit and fmt == Format.TABLE:
        print(f"(more: --after-id {page[-1].id})", file=sys.stderr)
    return 0
