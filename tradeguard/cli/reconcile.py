"""`tradeguard reconcile` and `tradeguard settle`: hold claims and ledger against the broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from tradeguard.cli.common import (
    EXIT_STATUSES,
    BrokerChoice,
    ExitStatus,
    Refused,
    agent_id_callback,
    broker_options,
    default_actor,
    store_option,
    symbol_callback,
)
from tradeguard.cli.output import Format, emit, format_option

if TYPE_CHECKING:
    from tradeguard.reconcile.runner import ReconcileReport
    from tradeguard.reconcile.snapshot import PutOff
    from tradeguard.store import ClaimStore

__all__ = ["reconcile", "settle"]

COLUMNS = ("action", "agent", "symbol", "qty", "reason")
PUT_OFF = "put_off"  # the action of a row naming a symbol not checked yet (--format csv / json)


def _put_off_reason(off: PutOff) -> str:
    return (
        f"ledger {off.ledger_qty}, broker {off.broker_qty}; the ledger moved too recently, so the "
        f"check waits for the positions endpoint until {_utc(off.until)}"
    )


def _utc(when: datetime) -> str:
    """`when` in UTC to the second, rounded up: "run again after" must not name a time too soon."""
    whole = when.astimezone(UTC)
    if whole.microsecond:
        whole = whole.replace(microsecond=0) + timedelta(seconds=1)
    return whole.isoformat().replace("+00:00", "Z")


def _print_report(report: ReconcileReport, fmt: str) -> None:
    rows = [
        {"action": a.kind.value, "agent": a.agent_id or "*", "symbol": a.symbol,
         "qty": "" if a.qty is None else str(a.qty), "reason": a.reason}
        for a in report.actions
    ]  # fmt: skip
    if fmt != Format.TABLE:
        # A put-off symbol is a row too (action "put_off"), after the actions: the list keeps
        # its shape for programs that read only the actions, and loses no symbol left unchecked.
        put_off = [
            {"action": PUT_OFF, "agent": "*", "symbol": off.symbol, "qty": "", "reason": _put_off_reason(off),
             "ledger_qty": str(off.ledger_qty), "broker_qty": str(off.broker_qty), "until": _utc(off.until)}
            for off in report.put_off
        ]  # fmt: skip
        emit(COLUMNS, [*rows, *put_off], fmt)
        return
    if report.aborted:
        return  # said on stderr by the caller, in every format
    mode = "dry run: would apply" if report.dry_run else "applied"
    print(f"reconcile pass at {report.started_at:%Y-%m-%d %H:%M:%S}Z, {report.reads} broker read(s)")
    if not report.actions and not report.put_off:
        print("nothing to do: claims and ledger agree with the broker")
        return
    if report.actions:
        emit(COLUMNS, rows, fmt)
        print(f"{mode} {len(report.actions if report.dry_run else report.applied)} action(s)")
    else:
        print("nothing applied yet: the check of these symbols is put off (run again after the time given)")
    if report.put_off:
        if report.actions:
            print("the check of these symbols is put off (run again after the time given):")
        for off in report.put_off:
            print(f"  {off.symbol}: {_put_off_reason(off)}")


@click.command(
    epilog="Exit status 1: the pass was aborted, or found drift, an orphan, a missing order, or a claim or "
    "position made on another broker account than this one (an agent re-pointed since; its own account's "
    f"broker resolves it: action report_elsewhere). "
    f"{EXIT_STATUSES}"
)
@store_option
@broker_options
@click.option("--dry-run", is_flag=True, help="Show the actions without applying them.")
@click.option(
    "--agent-id", metavar="AGENT", callback=agent_id_callback, help="Only this agent's claims and ledger."
)
@click.option(
    "--symbol",
    "symbols",
    multiple=True,
    metavar="SYMBOL",
    callback=symbol_callback,
    help="Only this symbol (repeatable; any case, a pair with or without its slash).",
)
@click.option(
    "--adopt-orphans-to",
    metavar="AGENT",
    callback=agent_id_callback,
    help="Take unowned broker positions into AGENT's ledger.",
)
@format_option
def reconcile(
    *,
    store_url: str,
    paper_url: str | None,
    paper_state: str | None,
    live: bool,
    dry_run: bool,
    agent_id: str | None,
    symbols: tuple[str, ...],
    adopt_orphans_to: str | None,
    fmt: str,
) -> int:
    """Hold claims and ledger against the broker; print (and apply) the actions.

    With --format json or csv: one row per action (action, agent, symbol, qty, reason), then one row
    per symbol whose check is put off because its ledger moved too recently: action "put_off",
    and in JSON also ledger_qty, broker_qty and until (UTC, ISO 8601; run again after it).
    """
    from tradeguard.cli.common import make_broker, open_existing_store
    from tradeguard.config import Settings
    from tradeguard.reconcile.runner import Reconciler

    settings = Settings.from_env()
    broker = make_broker(BrokerChoice(paper_url, paper_state, live), settings)  # nothing opened yet
    with open_existing_store(store_url, settings) as store:
        report = Reconciler(broker, store, settings=settings).run(
            agent_id=agent_id,
            symbols=list(symbols) or None,
            dry_run=dry_run,
            adopt_orphans_to=adopt_orphans_to,
        )
    _print_report(report, fmt)
    if report.aborted:
        # 1 with its reason on stderr: in JSON or CSV the list alone (empty) would not say why.
        raise Refused(f"reconcile aborted, nothing changed: {report.aborted}")
    # 1: a problem a person must look at (drift, an orphan, a missing order).
    return ExitStatus.PROBLEM if report.problems else ExitStatus.OK


@click.command(epilog=EXIT_STATUSES)
@store_option
@click.option(
    "--agent-id",
    required=True,
    metavar="AGENT",
    callback=agent_id_callback,
    help="The agent whose ledger is settled.",
)
@click.option(
    "--symbol",
    required=True,
    metavar="SYMBOL",
    callback=symbol_callback,
    help="The symbol, e.g. TQQQ (booked as the gateway books it: upper case, a pair as BTC/USD).",
)
@click.option("--qty", required=True, metavar="QTY", help="What the agent really holds (signed; 0 = flat).")
@click.option("--reason", required=True, help="Why, for the audit log.")
@click.option(
    "--actor", default=default_actor, show_default="$USER", help="Who settles it, for the audit log."
)
@click.option(
    "--new-agent",
    is_flag=True,
    help="AGENT is new to the store (no claims, ledger, audit records or registered account): settle it all "
    "the same.",
)
def settle(
    *, store_url: str, agent_id: str, symbol: str, qty: str, reason: str, actor: str, new_agent: bool
) -> int:
    """Set one agent's ledger position after drift the reconciler cannot attribute (audited).

    An agent the store has never seen is refused unless --new-agent says it is meant: a mistyped
    agent id would hold shares no bot owns, and every other agent on the account would size its
    exits around them.
    """
    from tradeguard.cli.common import figure, open_existing_store
    from tradeguard.errors import ConfigError

    amount = figure(qty, "--qty")
    if not reason.strip():
        raise ConfigError("--reason must say why, for the audit log")
    with open_existing_store(store_url) as store:
        if not new_agent:
            _check_known_agent(store, agent_id, store_url)
        before = store.settle_position(agent_id, symbol, amount, reason=reason, actor=actor)
    print(f"{agent_id} {symbol}: ledger {before} -> {amount} (settled by {actor}: {reason})")
    return 0


_LISTED = 10  # agents named in the refusal of an unknown one; the rest are counted


def _check_known_agent(store: ClaimStore, agent_id: str, store_url: str) -> None:
    """Refuse an agent id the store has never seen: no claim, open turn, registered account or record.

    The audit log covers what the other reads do not: a turn since closed, an earlier settle.

    Raises:
        ConfigError: Naming the agents the store knows (a close spelling first) and --new-agent.
    """
    from difflib import get_close_matches

    from tradeguard.errors import ConfigError
    from tradeguard.store import AuditQuery
    from tradeguard.store.engine import describe, parse_url

    known = set(store.agents()) | {p.agent_id for p in store.all_positions()} | set(store.agent_accounts())
    if agent_id in known or store.audit_page(AuditQuery(agent_id=agent_id), limit=1):
        return
    where = describe(parse_url(store_url))
    if known:
        names = sorted(known)
        more = len(names) - _LISTED
        listed = ", ".join(names[:_LISTED]) + (f" and {more} more" if more > 0 else "")
        close = get_close_matches(agent_id, names, n=1)
        hint = f"did you mean {close[0]}? known agents: {listed}" if close else f"known agents: {listed}"
    else:
        hint = "the store knows no agent yet"
    raise ConfigError(
        f"--agent-id {agent_id}: no such agent in {where} (no claims, ledger, audit records or registered "
        f"account; {hint}); pass --new-agent if it is meant to be a new one"
    )
