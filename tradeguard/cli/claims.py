"""`tradeguard claims`: list open, UNKNOWN and stale claims; show one with its audit trail; resolve one.

`claims resolve` is the operator's way out of `UNKNOWN` (G2: time alone never resolves it). The
logic lives in the library (`tradeguard.reconcile.resolve`); this module reads the options, asks
the broker when one is configured, and prints what changed. A resolution the broker's evidence
contradicts is refused with exit status 1 and changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import click

from tradeguard.cli.common import (
    EXIT_STATUSES,
    BrokerChoice,
    agent_id_callback,
    broker_options,
    default_actor,
    store_option,
    symbol_callback,
)
from tradeguard.cli.output import Format, emit, format_option
from tradeguard.domain.lifecycle import ACTIVE_STATES, ClaimState
from tradeguard.errors import ConfigError

if TYPE_CHECKING:
    from tradeguard.domain import Claim
    from tradeguard.ports import Broker
    from tradeguard.store import ClaimStore

__all__ = ["claims"]

LIST_COLUMNS = (
    "client_order_id",
    "agent",
    "kind",
    "symbol",
    "side",
    "qty",
    "filled",
    "state",
    "updated",
    "stale",
)
_STATES = [s.value for s in ClaimState]
_DEFAULT_STATES = (*sorted(ACTIVE_STATES), ClaimState.NOT_SENT)


def _row(claim: Claim, stale_before: datetime) -> dict[str, object]:
    qty = claim.order_qty if claim.order_qty is not None else claim.spec.qty
    return {
        "client_order_id": claim.client_order_id, "key": claim.key, "agent": claim.agent_id,
        "kind": claim.kind.value, "symbol": claim.symbol, "side": claim.side.value, "intent": claim.intent,
        "qty": qty, "filled": claim.filled_qty, "avg_price": claim.filled_avg_price,
        "state": claim.state.value, "broker_order_id": claim.broker_order_id, "epoch": claim.epoch,
        "attempts": claim.attempts, "reason": claim.reason,
        "created": claim.created_at.isoformat(timespec="seconds"),
        "updated": claim.updated_at.isoformat(timespec="seconds"),
        "stale": "yes" if claim.is_active and claim.updated_at < stale_before else "",
    }  # fmt: skip


@click.group(epilog=EXIT_STATUSES)
def claims() -> None:
    """Inspect claims and resolve those only a person can settle."""


@claims.command("list", epilog=EXIT_STATUSES)
@store_option
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(_STATES, case_sensitive=False),
    help="Only claims in this state (repeatable). Default: open ones (PENDING, SUBMITTED, "
    "PARTIALLY_FILLED, UNKNOWN) and NOT_SENT.",
)
@click.option("--all", "all_states", is_flag=True, help="Claims in every state, finished ones too.")
@click.option("--agent-id", metavar="AGENT", callback=agent_id_callback, help="Only this agent's claims.")
@click.option(
    "--symbol",
    metavar="SYMBOL",
    callback=symbol_callback,
    help="Only this symbol (any case, a pair with or without its slash).",
)
@click.option(
    "--stale-after",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    metavar="SECS",
    help="An open claim not updated for this long is marked stale.",
)
@click.option("--stale", "only_stale", is_flag=True, help="Only the stale ones.")
@format_option
def list_claims(
    *,
    store_url: str,
    states: tuple[str, ...],
    all_states: bool,
    agent_id: str | None,
    symbol: str | None,
    stale_after: float,
    only_stale: bool,
    fmt: str,
) -> int:
    """List open, UNKNOWN and stale claims (or those in --state), oldest first."""
    from tradeguard.cli.common import open_existing_store

    chosen = None if all_states else [ClaimState(s.upper()) for s in states] or list(_DEFAULT_STATES)
    with open_existing_store(store_url) as store:
        stale_before = store.clock.now() - timedelta(seconds=stale_after)
        found = store.list_claims(
            states=chosen,
            agent_id=agent_id,
            symbol=symbol,
            updated_before=stale_before if only_stale else None,
        )
    rows = [_row(c, stale_before) for c in found if not only_stale or c.is_active]
    emit(LIST_COLUMNS, rows, fmt)
    return 0


def find_claim(store: ClaimStore, ident: str, broker: Broker | None = None) -> Claim:
    """Return the claim whose key or client_order_id is `ident`.

    A client_order_id is unique per broker account, not per store (`ports.coid_scope`): with a
    broker of known account it names that account's claim; without one, the only claim holding
    it, as an id several accounts' claims hold names none of them for sure.

    Raises:
        ConfigError: No such claim in the store, or several (named, with their keys).
    """
    from tradeguard.ports import account_key_of, coid_scope

    claim = store.get(ident)
    scope = coid_scope(account_key_of(broker)) if broker is not None else ""
    if claim is None and scope:
        claim = store.get_by_client_order_id(ident, account_key=scope)
    elif claim is None:
        held = store.claims_by_client_order_id(ident)
        if len(held) > 1:
            raise ConfigError(
                f"client_order_id {ident!r} is held by {len(held)} claims, of agents on different broker "
                "accounts (ids are unique per account): name one by its claim key: "
                + ", ".join(f"{c.key} ({c.agent_id})" for c in held)
            )
        claim = held[0] if held else None
    if claim is None:
        raise ConfigError(
            f"no claim with key or client_order_id {ident!r} in {store.url.database or store.url}"
        )
    return claim


@claims.command("show", epilog=f"CSV output is the audit trail alone. {EXIT_STATUSES}")
@store_option
@click.argument("ident", metavar="ID")
@format_option
def show(store_url: str, ident: str, fmt: str) -> int:
    """Show one claim (by claim key or client_order_id) and its audit trail."""
    from tradeguard.cli.audit import COLUMNS, record_row
    from tradeguard.cli.common import open_existing_store
    from tradeguard.store import AuditQuery

    with open_existing_store(store_url) as store:
        claim = find_claim(store, ident)
        trail = [
            record_row(r) for r in store.audit_records(AuditQuery(client_order_id=claim.client_order_id))
        ]
    row = _row(claim, claim.updated_at)
    row.pop("stale")
    # The broker account its id was claimed on (`Claim.coid_scope`; "" unknown): an agent
    # re-pointed since leaves such a claim for that account's broker to resolve.
    row["account"] = claim.coid_scope or ""
    if fmt == Format.JSON:
        import json

        print(
            json.dumps(
                {"claim": {k: _text(v) for k, v in row.items()}, "audit": trail}, indent=2, default=str
            )
        )
    elif fmt == Format.CSV:
        emit(COLUMNS, trail, fmt)
    else:
        emit(("field", "value"), [{"field": k, "value": v} for k, v in row.items()], fmt, title="claim")
        print()
        emit(COLUMNS, trail, fmt, title="audit trail")
    return 0


def _text(value: object) -> object:
    return value if value is None or isinstance(value, int | str) else str(value)


@claims.command(
    "resolve",
    epilog="Refused (exit 1, nothing changed) when the broker's evidence contradicts the resolution: "
    "filled needs the broker's order filled, not-sent needs no order at the broker, canceled needs it "
    f"canceled or expired. {EXIT_STATUSES}",
)
@store_option
@click.argument("ident", metavar="ID")
@click.option(
    "--as",
    "resolution",
    required=True,
    type=click.Choice(["filled", "not-sent", "canceled"]),
    help="What became of the claim's order.",
)
@click.option("--reason", required=True, help="Why you know it, for the audit log.")
@click.option(
    "--actor", default=default_actor, show_default="$USER", help="Who resolves it, for the audit log."
)
@click.option(
    "--qty", metavar="QTY", help="Shares filled. Without a broker only (default for filled: the order's qty)."
)
@click.option("--price", metavar="PRICE", help="Average fill price. Without a broker only.")
@broker_options
@click.option(
    "--without-broker",
    is_flag=True,
    help="Resolve on your word alone when no broker is configured (audited as such).",
)
def resolve(
    *,
    store_url: str,
    ident: str,
    resolution: str,
    reason: str,
    actor: str,
    qty: str | None,
    price: str | None,
    paper_url: str | None,
    paper_state: str | None,
    live: bool,
    without_broker: bool,
) -> int:
    """Resolve a claim as filled, not sent or canceled; the broker is asked first."""
    from tradeguard.cli.common import figure, make_broker, open_existing_store
    from tradeguard.config import Settings
    from tradeguard.reconcile.resolve import Resolution, resolve_claim

    if not reason.strip() or not actor.strip():
        raise ConfigError("--reason and --actor must say something, for the audit log")
    filled = None if qty is None else figure(qty, "--qty")
    avg = None if price is None else figure(price, "--price")
    choice = BrokerChoice(paper_url, paper_state, live)
    if choice.configured and without_broker:
        raise ConfigError(
            "--without-broker and a broker (--paper-url, --paper-state or APCA_* keys): give one"
        )
    if not choice.configured and not without_broker:
        raise ConfigError(
            "no broker to check the claim against: pass --paper-url / --paper-state or set "
            "APCA_API_KEY_ID / APCA_API_SECRET_KEY, or --without-broker to resolve on your word alone"
        )
    settings = Settings.from_env()
    broker = make_broker(choice, settings) if choice.configured else None
    if broker is not None and price is not None:
        raise ConfigError("--price is the broker's to say when a broker is configured")
    with open_existing_store(store_url, settings) as store:
        claim = find_claim(store, ident, broker)
        done = resolve_claim(
            store, claim, Resolution(resolution), reason=reason, actor=actor, broker=broker,
            filled_qty=filled, filled_avg_price=avg,
        )  # fmt: skip
        position = store.position(claim.agent_id, claim.symbol).qty
    print(
        f"{done.claim.client_order_id}: {done.before.state} -> {done.claim.state} "
        f"(filled {done.claim.filled_qty}); {done.evidence}; resolved by {actor}: {reason}"
    )
    print(f"ledger {claim.agent_id} {claim.symbol}: {position}")
    return 0
