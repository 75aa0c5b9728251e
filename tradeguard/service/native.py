"""The native `/v1` claim routes: trading decisions claimed, moved and read over HTTP.

Every route needs a key (`current_principal`) and works on the app's store
(`request.app.state.store`). An agent key acts only for its own agent: another agent's claim
answers 404 exactly as a missing one does (so its existence never shows), and claiming for
another agent answers 403 (the request names the agent, so nothing is revealed). It reads the
claims of the agents on its own broker account too (`native_base.peers`: a gateway sizes exits
and reconciles against them), never those of agents on other accounts. An admin key acts for
every agent.

Every move is a compare-and-set on the claim version the caller read (`expect`: state, epoch,
attempts, filled_qty), which the route lays over the stored claim before handing it to the
store: the claim's identity (agent, symbol, side) always comes from the store, never from the
request, so no body can steer a fill into another agent's ledger. Errors answer one body
`{"code", "message"}` (`codec.ErrorCode`), one code per library exception. The ledger, audit and
settings routes live in `native_ledger`; `router` holds both.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import UTC
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Query, Request, Response, status
from pydantic import AwareDatetime

from tradeguard.domain.claims import Claim, ClaimOutcome
from tradeguard.domain.intents import FIGURE_LIMIT, Intent, Kind, OrderSpec, derive_client_order_id
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import ConfigError, StoreError
from tradeguard.ports import ClaimLedger
from tradeguard.service import (
    codec,
    native_ledger,  # noqa: F401 - registers the ledger and audit routes
)
from tradeguard.service.auth import Principal
from tradeguard.service.native_base import (
    Caller,
    acting_for,
    as_seen,
    books_shares,
    peers,
    readable,
    readable_claim,
    router,
    store_of,
    visible_claim,
)
from tradeguard.service.wire import (
    ClaimIn,
    ClaimList,
    ClaimOut,
    ClaimOutcomeOut,
    ExitIn,
    ExitOut,
    FenceOut,
    IntentIn,
    LeaseIn,
    ResendExitIn,
    ResendOut,
    TransitionIn,
    VersionIn,
)

__all__ = ["router"]


def _intent(body: IntentIn, principal: Principal) -> Intent:
    acting_for(principal, body.agent_id)
    return codec.intent_from_json(body.model_dump(mode="json"))


def _spec(order: dict[str, Any]) -> OrderSpec:
    """The order spec of a claim, or ConfigError (422) naming what is wrong (audit 14a D5).

    Every figure positive, finite and below `FIGURE_LIMIT`, as the gateway's own arguments are:
    the payload is normalised here, so an exponent past Decimal's range is refused, not a 500.
    """
    try:
        spec = codec.spec_from_json(order)
        spec.as_payload()
    except (ValueError, ArithmeticError, TypeError) as exc:
        raise ConfigError(f"order is not an order spec: {exc}") from exc
    for field in dataclasses.fields(spec):
        value = getattr(spec, field.name)
        if isinstance(value, Decimal) and not (value.is_finite() and 0 < value < FIGURE_LIMIT):
            raise ConfigError(
                f"order {field.name} must be a positive number below {FIGURE_LIMIT:,}, got {value}"
            )
    return spec


_DERIVED = re.compile(r"[0-9a-f]{32}")  # the key part of `derive_client_order_id`'s ids


def _coid(coid: str | None, intent: Intent, store: ClaimLedger) -> str | None:
    """A caller's own client_order_id, or ConfigError (422) (audit 14a D2).

    Printable ASCII, as Alpaca takes it; and never one shaped like a derived id (the store's
    prefix, a dash and 32 hex digits) other than this intent's own derivation, unless it is
    already the caller's agent's (a bot retrying under the id it read back from the broker gets
    the store's answer, as from a local store). Derived ids are public functions of another
    agent's intent: claimed first under another key, one would block that agent's decision for
    good (ids are unique in the store), and a refusal that differed would tell the prober the
    decision exists. A bot's own ids of any other shape ("tg-mybot-0001") are its own.
    """
    if coid is None:
        return None
    if not (coid.isascii() and coid.isprintable()) or not coid:
        raise ConfigError(f"client_order_id must be printable ASCII, got {coid!r}")
    prefix = store.settings.client_order_id_prefix
    shaped = coid.startswith(f"{prefix}-") and _DERIVED.fullmatch(coid[len(prefix) + 1 :]) is not None
    if shaped and coid != derive_client_order_id(intent.key, prefix):
        # Shaped like a derived id and not this intent's: the caller's own earlier claim's (a
        # retry under the id read back from the broker) goes on to the store's own answer, as a
        # local store gives it; anyone else's, or no one's, is refused alike (no oracle).
        held = store.get_by_client_order_id(coid, account_key=store.agent_accounts().get(intent.agent_id))
        if held is None or held.agent_id != intent.agent_id:
            raise ConfigError(
                f"client_order_id {coid!r} has the shape of a derived id ({prefix}-<32 hex>) but is "
                "not this intent's: leave it out to have it derived, or choose another"
            )
    return coid


def _claimed(store: ClaimLedger, principal: Principal, claiming: Callable[[], Any]) -> Any:
    """Run a claim; a reused client_order_id never names another agent's claim to an agent key."""
    try:
        return claiming()
    except StoreError as exc:
        if exc.__cause__ is not None or principal.admin:
            raise
        raise StoreError("client_order_id is already in use by another claim") from None


def _as_stored(store: ClaimLedger, outcome: ClaimOutcome) -> ClaimOutcome:
    """A claim this call created, as its row reads: what every later answer for it shows.

    A store builds a new claim's value before reading its row, so it lacks what the insert
    derived in the database: the account its id is scoped to (`Claim.coid_scope`, None there).
    A remote gateway reads that scope (a re-pointed agent leaves its old account's claims), and a
    retry of the same request must see the very claim the first answer showed.
    """
    if not outcome.created or outcome.claim.coid_scope is not None:
        return outcome
    stored = store.get(outcome.claim.key)
    return outcome if stored is None else ClaimOutcome(stored, created=True)


# -- claiming -----------------------------------------------------------------------------------


@router.post(
    "/claims",
    response_model=ClaimOutcomeOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": ClaimOutcomeOut, "description": "The claim existed: returned as it is"}},
    summary="Claim a trading decision (201 created, 200 existing; safe to retry)",
)
def create_claim(body: ClaimIn, request: Request, response: Response, principal: Caller) -> dict[str, Any]:
    """Record the intent as PENDING unless its key exists; return the claim either way."""
    store = store_of(request)
    books_shares(store, principal)
    intent, spec = _intent(body.intent, principal), _spec(body.order)
    outcome = _claimed(
        store,
        principal,
        lambda: store.claim(
            intent,
            spec,
            owner=body.owner,
            client_order_id=_coid(body.client_order_id, intent, store),
            order_qty=codec.dec(body.order_qty),
            turn_id=body.turn_id,
            reason=body.reason,
        ),
    )
    if not outcome.created:
        response.status_code = status.HTTP_200_OK
    return codec.outcome_json(_as_stored(store, outcome))


@router.post(
    "/exits", response_model=ExitOut, summary="Size an exit and claim it in one atomic step (safe to retry)"
)
def create_exit(body: ExitIn, request: Request, principal: Caller) -> dict[str, Any]:
    """Claim an exit sized from the ledger and the broker's available quantity (G3).

    Open to an agent of unknown account (`books_shares` is not asked): an exit is sized from its
    own holdings, so it cannot hold back others' exits, and a position booked before its account
    was required stays exitable.
    """
    store = store_of(request)
    intent, spec = _intent(body.intent, principal), _spec(body.order)
    outcome, room = _claimed(
        store,
        principal,
        lambda: store.claim_exit(
            intent,
            spec,
            owner=body.owner,
            broker_available=Decimal(body.broker_available),
            reason=body.reason,
            client_order_id=_coid(body.client_order_id, intent, store),
            broker_read_at=body.broker_read_at,
        ),
    )
    return {
        "outcome": None if outcome is None else codec.outcome_json(_as_stored(store, outcome)),
        "room": None if room is None else codec.room_json(room),
    }


# -- reading claims -----------------------------------------------------------------------------


@router.get("/claims", response_model=ClaimList, summary="List claims, oldest first")
def list_claims(
    *,
    request: Request,
    principal: Caller,
    state: Annotated[list[ClaimState] | None, Query()] = None,
    agent_id: str | None = None,
    symbol: str | None = None,
    kind: Kind | None = None,
    updated_before: AwareDatetime | None = None,
    updated_since: AwareDatetime | None = None,
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> dict[str, Any]:
    """Return claims matching every filter; an agent key sees its own and its account's agents'."""
    store = store_of(request)

    def listed(agent: str | None) -> list[Claim]:
        return store.list_claims(
            states=state, agent_id=agent, symbol=symbol, kind=kind,
            updated_before=updated_before and updated_before.astimezone(UTC),
            updated_since=updated_since and updated_since.astimezone(UTC), limit=limit,
        )  # fmt: skip

    if principal.admin:
        found = listed(agent_id)
    elif agent_id is not None:
        # Another account's agent: as if it had no claims, nothing to detect.
        found = listed(agent_id) if readable(store, principal, agent_id) else []
    else:
        # One query per agent on the account, never the whole store's claims filtered here.
        found = [c for agent in sorted(peers(store, principal) or ()) for c in listed(agent)]
        found.sort(key=lambda c: (c.created_at, c.key))  # the store's order: oldest first
        found = found[:limit] if limit is not None else found
    return {"items": [codec.claim_json(c) for c in found]}


@router.get("/claims/{key}", response_model=ClaimOut, summary="Read one claim by its key")
def read_claim(key: str, request: Request, principal: Caller) -> dict[str, Any]:
    """Return the claim, or 404 (missing, or an agent's on another account)."""
    store = store_of(request)
    return codec.claim_json(readable_claim(store, principal, store.get(key)))


@router.get(
    "/claims/by-client-order-id/{client_order_id}",
    response_model=ClaimOut,
    summary="Read the claim that owns a client_order_id",
)
def read_claim_by_coid(
    client_order_id: str,
    request: Request,
    principal: Caller,
    account_key: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Return the claim, or 404 (missing, or an agent's on another account).

    Ids are unique per broker account (`ports.coid_scope`): read in `account_key`'s scope, by
    default the agent key's own registered account (an admin key's: every account's).
    """
    store = store_of(request)
    if account_key is None and not principal.admin:
        account_key = store.agent_accounts().get(principal.agent_id)
    found = store.get_by_client_order_id(client_order_id, account_key=account_key)
    return codec.claim_json(readable_claim(store, principal, found))


# -- moving claims ------------------------------------------------------------------------------


@router.post(
    "/claims/{key}/transitions",
    response_model=ClaimOut,
    summary="Move a claim (compare-and-set on its version); NOT safe to retry blindly",
)
def transition_claim(key: str, body: TransitionIn, request: Request, principal: Caller) -> dict[str, Any]:
    """Apply one checked transition; 409 `lease_lost` when the claim moved since `expect`."""
    store = store_of(request)
    seen = as_seen(visible_claim(store, principal, key), body.expect)
    moved = store.transition(
        seen, body.to, reason=body.reason, broker_order_id=body.broker_order_id,
        filled_qty=codec.dec(body.filled_qty), filled_avg_price=codec.dec(body.filled_avg_price),
        order_qty=codec.dec(body.order_qty), owner=body.owner, detail=body.detail,
        reject_kind=body.reject_kind, payload=body.payload,
    )  # fmt: skip
    return codec.claim_json(moved)


@router.post(
    "/claims/{key}/takeover", response_model=ClaimOut, summary="Take over a claim whose lease lapsed"
)
def take_over_claim(key: str, body: LeaseIn, request: Request, principal: Caller) -> dict[str, Any]:
    """Raise the epoch and become the owner; 409 `claim_in_progress` while the lease is live."""
    store = store_of(request)
    return codec.claim_json(
        store.take_over(as_seen(visible_claim(store, principal, key), body.expect), body.owner)
    )


@router.post("/claims/{key}/fence", response_model=FenceOut, summary="Make sure a lease outlasts one send")
def fence_claim(key: str, body: VersionIn, request: Request, principal: Caller) -> dict[str, Any]:
    """Renew the lease if it is nearly out (`renewed`); 409 `lease_lost`: do not send."""
    store = store_of(request)
    seen = as_seen(visible_claim(store, principal, key), body)
    fenced = store.fence_before_send(seen)
    return {"claim": codec.claim_json(fenced), "renewed": fenced is not seen}


@router.post(
    "/claims/{key}/lease", response_model=ClaimOut, summary="Renew this owner's lease on a PENDING claim"
)
def renew_claim_lease(key: str, body: LeaseIn, request: Request, principal: Caller) -> dict[str, Any]:
    """Renew the lease and raise the epoch; 409 `lease_lost` when the claim is not this owner's."""
    store = store_of(request)
    seen = as_seen(visible_claim(store, principal, key), body.expect)
    return codec.claim_json(store.renew_lease(seen, body.owner))  # type: ignore[attr-defined]


@router.post("/claims/{key}/exit-resend", response_model=ResendOut, summary="Re-size and resend an exit")
def resend_exit(key: str, body: ResendExitIn, request: Request, principal: Caller) -> dict[str, Any]:
    """Move an exit that placed nothing back to PENDING, re-sized; `claim` null: nothing to sell."""
    store = store_of(request)
    seen = as_seen(visible_claim(store, principal, key), body.expect)
    claim, room = store.resend_exit(
        seen, owner=body.owner, broker_available=Decimal(body.broker_available), reason=body.reason,
        detail=body.detail, broker_read_at=body.broker_read_at,
    )  # fmt: skip
    return {"claim": None if claim is None else codec.claim_json(claim), "room": codec.room_json(room)}
