"""The native `/v1` routes of the ledger, the audit log, dedup windows and the store's settings.

With the claim routes of `native` they cover the whole `ClaimLedger` port, so
`RemoteClaimLedger` can stand in for a `ClaimStore`. An agent key writes only its own agent's
positions and records (another agent's answer 404, as missing ones do). It reads its own and
those of the agents on its broker account (`native_base.peers`: registered with the same
non-empty account key): positions, and the account-wide reads (`all_positions`, `agents`,
`agent_accounts`, `cleared_turns`, `moved_turns`, `symbols_in_motion`) narrowed to those agents.
So a gateway on an agent key sizes exits (G3) and reconciles (G4) against every ledger on its
account, and learns nothing about agents on other accounts. An agent whose account is unknown
reads only itself; the gateway registers its account when it starts, so G3 and G4 across agents
hold through the service once each gateway has started. The audit log stays the key's own agent's.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, Query, Request, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tradeguard.domain.audit import AuditAction
from tradeguard.domain.lifecycle import ACTIVE_STATES
from tradeguard.errors import ConfigError
from tradeguard.service import codec
from tradeguard.service.actions import MAX_RESULT_DEPTH, deeper_than
from tradeguard.service.auth import Principal
from tradeguard.service.native_base import (
    Caller,
    acting_for,
    books_shares,
    may_register,
    not_found,
    peers,
    readable,
    router,
    store_of,
    visible_claim,
)
from tradeguard.service.wire import (
    AdjustIn,
    AuditIn,
    AuditPage,
    CloseTurnIn,
    CorrectionIn,
    DecimalText,
    PositionList,
    PositionOut,
    SettleIn,
    SkipIn,
    Text,
    WindowIn,
)
from tradeguard.store.audit import AuditQuery

__all__: list[str] = []  # routes only: they register on `native_base.router`


# The columns an audit record may carry besides agent, action and reason.
_AUDIT_FIELDS = frozenset(
    {"kind", "symbol", "side", "qty", "state", "prev_state", "client_order_id", "claim_key", "detail"}
)
Agent = Annotated[str, Query(max_length=64)]
Symbol = Annotated[str, Query(max_length=32)]
WindowKey = Annotated[str, Query(min_length=1, max_length=128)]


def _own(principal: Principal, agent_id: str, what: str = "position") -> None:
    """404 for a record of another agent, as for a missing one."""
    if not principal.may_act_for(agent_id):
        raise not_found(what)


def _readable(request: Request, principal: Principal, agent_id: str, what: str = "position") -> None:
    """404 for a record of an agent on another account (or of unknown account), as for a missing one."""
    if not readable(store_of(request), principal, agent_id):
        raise not_found(what)


def _writer(principal: Principal, agent_id: str) -> str:
    """The agent a record is written for: an agent key writes its own records only.

    Account-wide records (`"*"`, a reconcile pass's report) from an agent key are its own; a
    record for another agent is refused (403).
    """
    if agent_id == "*" and not principal.admin:
        return principal.agent_id
    acting_for(principal, agent_id)  # the caller named the agent: 403 reveals nothing
    return agent_id


def _fields(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - _AUDIT_FIELDS
    if unknown:
        raise ConfigError(f"audit fields {sorted(unknown)} are not columns of the audit log")
    # A detail nested deeper than a response can carry would be stored and then break every
    # `GET /v1/audit` page that holds it, the admin's too (as a settle result would).
    if deeper_than(fields.get("detail"), MAX_RESULT_DEPTH):
        raise ConfigError(
            f"audit detail nested too deeply: at most {MAX_RESULT_DEPTH} levels of objects and arrays"
        )
    return fields


# -- dedup windows, skips and audit records ------------------------------------------------------


@router.post("/windows", summary="Open a dedup window or learn which claim holds it")
def claim_window(body: WindowIn, request: Request, principal: Caller) -> dict[str, str]:
    """Return `claim_key` when this call opened the window, else the holder's claim key.

    Windows are scoped to the caller's agent, so no key can hold (or probe) another agent's window.
    """
    holder = store_of(request).claim_window(
        _scoped(principal, body.content_key), window_secs=body.window_secs, claim_key=body.claim_key
    )
    return {"claim_key": holder}


@router.get("/windows", summary="Which claim holds a live dedup window (opens none)")
def window_holder(content_key: WindowKey, request: Request, principal: Caller) -> dict[str, str | None]:
    """Return the claim key holding the caller's live window for `content_key`, or null.

    Scoped to the caller's agent as `POST /v1/windows` is: no key reads another agent's window.
    """
    return {"claim_key": store_of(request).window_holder(_scoped(principal, content_key))}


def _scoped(principal: Principal, content_key: str) -> str:
    """The store's key of the caller's window: content keys are the caller's agent's own."""
    return hashlib.sha256(f"{principal.agent_id}|{content_key}".encode()).hexdigest()


@router.post("/skips", status_code=status.HTTP_204_NO_CONTENT, summary="Audit a blocked duplicate")
def record_skip(body: SkipIn, request: Request, principal: Caller) -> None:
    """Audit a blocked duplicate (of `claim_key`) or an exit with nothing to sell."""
    store = store_of(request)
    claim = None if body.claim_key is None else visible_claim(store, principal, body.claim_key)
    store.record_skip(
        claim, agent_id=_writer(principal, body.agent_id), reason=body.reason, **_fields(body.fields)
    )


@router.post("/audit", status_code=status.HTTP_204_NO_CONTENT, summary="Append one audit record")
def write_audit(body: AuditIn, request: Request, principal: Caller) -> None:
    """Append one record for the caller's agent (an admin key: any agent)."""
    agent = _writer(principal, body.agent_id)
    store_of(request).audit(body.action, agent_id=agent, reason=body.reason, **_fields(body.fields))


def _audit_query(
    *,
    principal: Caller,
    agent_id: str | None = None,
    action: Annotated[list[AuditAction] | None, Query()] = None,
    kind: str | None = None,
    state: str | None = None,
    symbol: str | None = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    client_order_id: str | None = None,
) -> AuditQuery | None:
    """The filters of `GET /v1/audit` and `/v1/audit/count` as the query they run.

    None when an agent key asks for another agent (no records, as if there were none).
    """
    if not principal.admin:
        if agent_id is not None and agent_id != principal.agent_id:
            return None
        agent_id = principal.agent_id
    return AuditQuery(
        agent_id=agent_id, actions=tuple(a.value for a in action or ()), kind=kind, state=state,
        symbol=symbol, since=since and since.astimezone(UTC), until=until and until.astimezone(UTC),
        client_order_id=client_order_id,
    )  # fmt: skip


AuditFilters = Annotated[AuditQuery | None, Depends(_audit_query)]


@router.get("/audit", response_model=AuditPage, summary="Read the audit log, oldest first, paged")
def read_audit(
    *,
    request: Request,
    query: AuditFilters,
    after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Return up to `limit` records with id above `after_id`; page on with `next_after_id`."""
    if query is None:
        return {"items": [], "next_after_id": None}
    page = store_of(request).audit_page(query, after_id=after_id, limit=limit)  # type: ignore[attr-defined]
    return {
        "items": [codec.record_json(r) for r in page],
        "next_after_id": page[-1].id if len(page) == limit else None,
    }


@router.get("/audit/count", summary="Count matching audit records")
def count_audit(*, request: Request, query: AuditFilters) -> dict[str, int]:
    """Return how many records match the filters of `GET /v1/audit`."""
    count = 0 if query is None else store_of(request).audit_count(query)  # type: ignore[attr-defined]
    return {"count": int(count)}


# -- positions ----------------------------------------------------------------------------------


@router.get("/positions", response_model=PositionList, summary="Open ledger positions")
def list_positions(request: Request, principal: Caller, agent_id: str | None = None) -> dict[str, Any]:
    """One agent's open positions, or (no agent) every one the caller may see, by agent and symbol."""
    store = store_of(request)
    if agent_id is not None:
        _readable(request, principal, agent_id)
        found = store.positions(agent_id)
    else:
        seen = peers(store, principal)
        found = [p for p in store.all_positions() if seen is None or p.agent_id in seen]
    return {"items": [codec.position_json(p) for p in found]}


@router.get("/position", response_model=PositionOut, summary="One agent's position in one symbol")
def read_position(agent_id: Agent, symbol: Symbol, request: Request, principal: Caller) -> dict[str, Any]:
    """The position (flat when nothing is held); 404 for an agent's on another account."""
    _readable(request, principal, agent_id)
    return codec.position_json(store_of(request).position(agent_id, symbol))


@router.get("/position/latest-turn", summary="The id of the agent's latest turn in a symbol")
def latest_turn(
    agent_id: Agent, symbol: Symbol, request: Request, principal: Caller
) -> dict[str, int | None]:
    """The most recent turn, open or closed; null when the agent never held the symbol."""
    _readable(request, principal, agent_id)
    return {"turn_id": store_of(request).latest_turn_id(agent_id, symbol)}


@router.get("/position/exits-in-flight", summary="Unfilled exits the broker may not show yet")
def exits_in_flight(agent_id: Agent, symbol: Symbol, request: Request, principal: Caller) -> dict[str, str]:
    """The unfilled quantity of the agent's PENDING and UNKNOWN exits in the symbol."""
    _readable(request, principal, agent_id)
    qty = store_of(request).exits_in_flight(agent_id, symbol)  # type: ignore[attr-defined]
    return {"qty": format(qty, "f")}


@router.post("/position/corrections", summary="Correct a position read as `expect` (CAS)")
def correct_position(body: CorrectionIn, request: Request, principal: Caller) -> dict[str, bool]:
    """`applied` false, and nothing changed, when the ledger moved since `expect` was read."""
    expect = codec.position_from_json(body.expect.model_dump(mode="json"))
    _own(principal, expect.agent_id)
    delta = Decimal(body.delta)
    after = expect.qty + delta
    if not (abs(after) <= abs(expect.qty) and after * expect.qty >= 0):
        # A correction toward flat (compare-and-set on `expect`) holds back no one: open to all.
        books_shares(store_of(request), principal)
    applied = store_of(request).correct_position(expect, delta, reason=body.reason, detail=body.detail)
    return {"applied": applied}


@router.post("/position/close", summary="Close the open turn (a phantom), only while it is `expect`")
def close_turn(body: CloseTurnIn, request: Request, principal: Caller) -> dict[str, int | None]:
    """The id of the turn closed, or null (no open turn, or it moved since `expect`)."""
    _own(principal, body.agent_id)
    expect = None if body.expect is None else codec.position_from_json(body.expect.model_dump(mode="json"))
    turn_id = store_of(request).close_turn(
        body.agent_id, body.symbol, reason=body.reason, detail=body.detail, expect=expect
    )
    return {"turn_id": turn_id}


@router.post("/position/settle", summary="Set a position (an operator's decision on drift)")
def settle_position(body: SettleIn, request: Request, principal: Caller) -> dict[str, str]:
    """Set the position to `qty`, audited with who and why; answer what it held before."""
    _own(principal, body.agent_id)
    books_shares(store_of(request), principal)
    before = store_of(request).settle_position(  # type: ignore[attr-defined]
        body.agent_id, body.symbol, Decimal(body.qty), reason=body.reason, actor=body.actor
    )
    return {"before": format(before, "f")}


@router.post("/position/adjustments", summary="Add to a position without a claim")
def adjust_position(body: AdjustIn, request: Request, principal: Caller) -> dict[str, int | None]:
    """Apply `delta` as a fill without a claim; answer the open turn's id after it."""
    _own(principal, body.agent_id)
    books_shares(store_of(request), principal)
    turn_id = store_of(request).adjust_position(  # type: ignore[attr-defined]
        body.agent_id, body.symbol, Decimal(body.delta), reason=body.reason
    )
    return {"turn_id": turn_id}


# -- account-wide reads, narrowed to the caller's account ------------------------------------------


def _turns_seen(request: Request, principal: Caller, read: str, since: AwareDatetime) -> dict[str, Any]:
    """Run the store's turn listing `read` since `since`, narrowed to the agents the caller sees."""
    store = store_of(request)
    seen = peers(store, principal)
    found = getattr(store, read)(since.astimezone(UTC))
    return {"items": [codec.position_json(p) for p in found if seen is None or p.agent_id in seen]}


@router.get("/turns/cleared", response_model=PositionList, summary="Turns cleared while holding")
def cleared_turns(since: AwareDatetime, request: Request, principal: Caller) -> dict[str, Any]:
    """Turns closed since `since` while still holding shares (phantom clears), newest first."""
    return _turns_seen(request, principal, "cleared_turns", since)


@router.get("/turns/moved", response_model=PositionList, summary="Turns moved recently")
def moved_turns(since: AwareDatetime, request: Request, principal: Caller) -> dict[str, Any]:
    """Turns, open or closed, that a fill or correction moved after `since` (a closed one reads flat)."""
    return _turns_seen(request, principal, "moved_turns", since)


@router.get("/agents", summary="Agents that have claims")
def agents(request: Request, principal: Caller) -> dict[str, list[str]]:
    """Every agent id with claims, sorted (an agent key: those on its account)."""
    store = store_of(request)
    seen = peers(store, principal)
    return {"items": [a for a in store.agents() if seen is None or a in seen]}


class AccountIn(BaseModel):
    """The broker account `agent_id` trades (`tradeguard.ports.account_key_of`; "" unknown)."""

    model_config = ConfigDict(extra="forbid")
    agent_id: Annotated[str, Field(max_length=64)]
    account_key: Annotated[str, Field(max_length=64)]


class AdoptIn(BaseModel):
    """Adopt into `agent_id`'s ledger what the broker holds and no agent's ledger does.

    A flat ledger adopts; one holding on the broker's side only with `top_up`.
    """

    model_config = ConfigDict(extra="forbid")
    agent_id: Annotated[str, Field(max_length=64)]
    symbol: Annotated[str, Field(max_length=32)]
    broker_qty: DecimalText
    why: Text
    top_up: bool = False


@router.post("/position/adoptions", response_model=PositionOut, summary="Adopt a broker position")
def adopt_position(body: AdoptIn, request: Request, principal: Caller) -> dict[str, Any]:
    """Book the orphan atomically (other agents' shares on the account read in the same step)."""
    _own(principal, body.agent_id)
    books_shares(store_of(request), principal)
    found = store_of(request).adopt_position(
        body.agent_id, body.symbol, Decimal(body.broker_qty), why=body.why, top_up=body.top_up
    )
    return codec.position_json(found)


@router.post("/agents/account", summary="Register the broker account an agent trades")
def register_account(body: AccountIn, request: Request, principal: Caller) -> dict[str, str]:
    """Upsert the agent's account key (audited when it changes); an agent key registers its own only."""
    acting_for(principal, body.agent_id)
    may_register(store_of(request), principal, body.account_key)
    store_of(request).register_account(body.agent_id, body.account_key)
    return {"agent_id": body.agent_id, "account_key": body.account_key}


@router.get("/agents/accounts", summary="The broker account each agent registered")
def agent_accounts(request: Request, principal: Caller) -> dict[str, dict[str, str]]:
    """Agent id -> account key of every agent that registered one (an agent key: those on its account)."""
    store = store_of(request)
    seen = peers(store, principal)
    found = store.agent_accounts()
    return {"items": {a: k for a, k in found.items() if seen is None or a in seen}}


@router.get("/symbols-in-motion", summary="Symbols with an active claim")
def symbols_in_motion(
    request: Request, principal: Caller, excluding_agent: str | None = None
) -> dict[str, list[str]]:
    """Symbols with a PENDING, SUBMITTED, PARTIALLY_FILLED or UNKNOWN claim, leaving out one agent's."""
    store = store_of(request)
    seen = peers(store, principal)
    if seen is None:
        found = store.symbols_in_motion(excluding_agent=excluding_agent)
    else:
        states = sorted(ACTIVE_STATES)
        found = {
            c.symbol
            for agent in sorted(seen - {excluding_agent})
            for c in store.list_claims(states=states, agent_id=agent)
        }
    return {"items": sorted(found)}


@router.get("/settings", summary="The store's settings (lease length, client_order_id prefix)")
def settings(request: Request, principal: Caller) -> dict[str, Any]:
    """Every field of the store's `Settings`; a remote ledger adopts them."""
    del principal  # any valid key may read them
    return dataclasses.asdict(store_of(request).settings)
