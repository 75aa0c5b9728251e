"""The SafeAgent-compatible routes: `/claim`, `/claim/test`, `/settle/{id}`, `/audit`, `/sweep`, `/health`.

The shapes are SafeAgent's (shared/SAFEAGENT.md), so a bot using SafeAgent's hosted guard moves
by changing its base URL. What differs, on purpose:

* The tenant is the API key's agent; every request id is stored under that agent
  (`actions.action_key`), so two agents never collide and never see each other's claims.
* A PENDING claim stays PENDING on every retry (never settled with a made-up result): the action
  may have happened, and only its owner knows the result.
* Settling needs the claim's owner key *and* its settlement token (403 without or with a wrong
  one). A lost token is not a dead end: an admin key may settle any agent's claim without it
  (`?agent_id=` names the agent), and the audit log records that an admin did.
* The same request id claimed again for another action is 409: a bug in the bot, made loud.
* `/sweep` (admin only) counts stale PENDING claims and changes nothing.
* Every claim, duplicate and settle leaves an audit record in the claim store's log (G6), written
  in the same transaction as the claim or the result: if it cannot be, nothing is stored and the
  caller gets 503 "nothing was decided" (true: a retry claims afresh and gets its token).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel, Field, field_validator
from starlette.convertors import Convertor, register_url_convertor

from tradeguard.domain.audit import AuditAction
from tradeguard.service.actions import (
    ActionQuery,
    ActionRecord,
    ActionStatus,
    ActionStore,
    ClaimAnswer,
    SettleAnswer,
    standard_json,
)
from tradeguard.service.auth import Principal, audit_principal, current_principal, visible
from tradeguard.service.codec import STORE_HEADER
from tradeguard.store import ClaimStore

__all__ = ["SETTLEMENT_HEADER", "router", "test_request_id"]

SETTLEMENT_HEADER = "X-SafeAgent-Settlement-Token"
_TEST_PREFIX = "test:"
_MAX_TS = 253_402_300_799.0  # 9999-12-31T23:59:59Z: the last second a datetime can hold

# No NUL characters: PostgreSQL text cannot hold them, and a store refusal must mean an outage.
_TEXT = r"^[^\x00]*$"


class _AnyText(Convertor[str]):
    """A path parameter of any text, line breaks too (Starlette's `path` stops at one).

    A request id is any JSON string; one claimed with a line break must be settleable.
    """

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("tg_any_text", _AnyText())

router = APIRouter(tags=["SafeAgent-compatible"])
Caller = Annotated[Principal, Depends(current_principal)]
# /audit and /sweep: SafeAgent's admin token, when valid, wins over a tenant key sent with it.
AuditCaller = Annotated[Principal, Depends(audit_principal)]


class ClaimBody(BaseModel):
    """A claim of one action under the caller's request id."""

    request_id: str = Field(min_length=1, max_length=512, pattern=_TEXT)
    action: str = Field(min_length=1, max_length=256, pattern=_TEXT)


class TestClaimBody(BaseModel):
    """A test claim; the request id is derived from these three fields.

    `agent_id` and `scope` are only hashed into the request id, never stored: any text SafeAgent
    takes (NUL and long scopes too, up to the body limit) derives its id here as well.
    `action_type` is stored as the claim's action, so it is held to the action's limits.
    """

    agent_id: str = Field(min_length=1)
    action_type: str = Field(min_length=1, max_length=256, pattern=_TEXT)
    scope: str


class SettleBody(BaseModel):
    """The result of the action, stored and handed to every later claim as `existing`."""

    result: dict[str, Any]

    @field_validator("result")
    @classmethod
    def _standard(cls, result: dict[str, Any]) -> dict[str, Any]:
        # Checked before anything is stored: a result the store cannot hold is the caller's
        # error (422), and the claim stays PENDING for a corrected settle.
        standard_json(result)
        return result


class ClaimOut(BaseModel):
    """What to do: PROCEED (with the token to settle), PENDING, or SKIP (with the stored result)."""

    status: ClaimAnswer
    request_id: str
    agent_id: str
    settlement_token: str | None = None
    existing: dict[str, Any] | None = None
    test: bool | None = None


class SettleOut(BaseModel):
    """Whether this call stored the result or an earlier one had."""

    status: SettleAnswer
    request_id: str


class AuditItem(BaseModel):
    """One action claim (times in Unix seconds), in SafeAgent's field names."""

    request_id: str
    agent_id: str
    action: str
    status: ActionStatus
    result: dict[str, Any] | None
    claimed_at: float
    committed_at: float | None = Field(description="when it was settled (COMMITTED); null while PENDING")


class AuditOut(BaseModel):
    """One page of action claims, newest first."""

    items: list[AuditItem]
    total: int
    limit: int
    offset: int


class SweepOut(BaseModel):
    """Stale PENDING claims, reported and left alone."""

    swept: int
    stale_pending: int
    requires_reconciliation: bool
    action: Literal["none"]


class HealthOut(BaseModel):
    """The service answers."""

    status: Literal["ok"]


def test_request_id(agent_id: str, action_type: str, scope: str) -> str:
    """Return SafeAgent's derived request id of a test claim."""
    canonical = json.dumps(
        {"agent_id": agent_id, "action_type": action_type, "scope": scope},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return _TEST_PREFIX + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _actions(request: Request) -> ActionStore:
    store: ActionStore = request.app.state.actions
    return store


def _audit_log(request: Request) -> ClaimStore:
    store: ClaimStore = request.app.state.store
    return store


def _with_stored(text: str, name: str, stored: str | None) -> str:
    """Return the JSON object `text` with `name` added, its value the stored JSON text `stored`.

    A stored result goes out as stored: parsing it and serializing it again would put it through
    depth limits (pydantic's, Python's) that a row written by an earlier version may exceed.
    """
    sep = "" if text == "{}" else ","
    return f"{text[:-1]}{sep}{json.dumps(name)}:{'null' if stored is None else stored}}}"


def _json(text: str) -> Response:
    return Response(content=text, media_type="application/json")


def _claim(
    request: Request, caller: Principal, request_id: str, action: str, *, test: bool
) -> ClaimOut | Response:
    # The store writes the audit record of each outcome in the claim's own transaction.
    outcome = _actions(request).claim(caller.agent_id, request_id, action)
    record = outcome.record
    if record.action != action:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"request id already claimed for another action ({record.action!r})",
        )
    answer = ClaimOut(
        status=outcome.answer, request_id=request_id, agent_id=caller.agent_id, test=True if test else None
    )
    if outcome.answer is ClaimAnswer.SKIP:
        return _json(_with_stored(answer.model_dump_json(exclude_none=True), "existing", record.result_json))
    if outcome.answer is ClaimAnswer.PROCEED:
        answer.settlement_token = outcome.settlement_token
    return answer


_CLAIM_DOC = "A caller that gets PENDING must not run the action again: it may have happened."


@router.post("/claim", response_model=ClaimOut, response_model_exclude_none=True, description=_CLAIM_DOC)
def claim(body: ClaimBody, request: Request, caller: Caller) -> ClaimOut | Response:
    """Claim an action under a request id: PROCEED once, then PENDING until settled, then SKIP."""
    if body.request_id.startswith(_TEST_PREFIX):
        raise HTTPException(422, detail="the test: prefix is reserved")
    return _claim(request, caller, body.request_id, body.action, test=False)


@router.post("/claim/test", response_model=ClaimOut, response_model_exclude_none=True)
def claim_test(body: TestClaimBody, request: Request, caller: Caller) -> ClaimOut | Response:
    """Claim with a request id derived from agent, action type and scope (answers carry test: true)."""
    request_id = test_request_id(body.agent_id, body.action_type, body.scope)
    return _claim(request, caller, request_id, body.action_type, test=True)


@router.post(
    "/settle/{request_id:tg_any_text}",
    response_model=SettleOut,
    responses={403: {"description": "settlement token missing or wrong"}, 404: {"description": "not found"}},
)
def settle(
    *,
    body: SettleBody,
    request: Request,
    caller: Caller,
    request_id: Annotated[str, Path(min_length=1, max_length=512, pattern=_TEXT)],
    agent_id: Annotated[
        str | None, Query(max_length=64, pattern=_TEXT, description="admin only: whose claim")
    ] = None,
    token: Annotated[str | None, Header(alias=SETTLEMENT_HEADER, max_length=256)] = None,
) -> SettleOut:
    """Store the result of a claimed action; the first result wins.

    Needs the owner's key and the claim's settlement token. An admin key may settle any
    agent's claim (`agent_id`) without the token, for a caller that lost it.
    """
    if token is None and not caller.admin:
        # SafeAgent checks the token before it looks the id up: no token is 403 for any id.
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="settlement token missing or wrong")
    owner = agent_id if agent_id is not None else caller.agent_id
    visible(caller, owner, "request")
    record = _actions(request).get(owner, request_id)
    visible(caller, None if record is None else record.agent_id, "request")
    assert record is not None
    if not record.token_matches(token) and not (caller.admin and token is None):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="settlement token missing or wrong")
    by: dict[str, Any] = {"settled_by": caller.key_id, "admin_without_token": token is None}
    answer = _actions(request).settle(record, body.result, detail=by)
    return SettleOut(status=answer, request_id=request_id)


def _time(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


_Ts = Annotated[
    float | None,
    Query(ge=0, le=_MAX_TS, allow_inf_nan=False, description="Unix seconds, inclusive, on the claim time"),
]


@router.get("/audit", response_model=AuditOut)
def audit(
    *,
    request: Request,
    caller: AuditCaller,
    agent_id: Annotated[str | None, Query(max_length=64, pattern=_TEXT)] = None,
    action: Annotated[str | None, Query(max_length=256, pattern=_TEXT)] = None,
    status_: Annotated[ActionStatus | None, Query(alias="status")] = None,
    from_ts: _Ts = None,
    to_ts: _Ts = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> AuditOut | Response:
    """List action claims newest first: an agent key its own only, an admin key all."""
    if not caller.admin and agent_id not in (None, caller.agent_id):
        # Another agent's rows read as none at all, exactly like an agent that never claimed.
        return AuditOut(items=[], total=0, limit=limit, offset=offset)
    query = ActionQuery(
        agent_id=agent_id if caller.admin else caller.agent_id,
        action=action,
        status=status_,
        from_time=_time(from_ts),
        to_time=_time(to_ts),
    )
    page = _actions(request).page(query, limit=limit, offset=offset)
    # Built as text, each stored result embedded as stored (`_with_stored`); the shape is AuditOut's.
    items = ",".join(
        _with_stored(_item(record).model_dump_json(exclude={"result"}), "result", record.result_json)
        for record in page.items
    )
    rest = AuditOut(items=[], total=page.total, limit=limit, offset=offset).model_dump_json(exclude={"items"})
    return _json(f'{{"items":[{items}],{rest[1:]}')


def _item(record: ActionRecord) -> AuditItem:
    # Every field but the result, which `audit` adds as stored.
    return AuditItem(
        request_id=record.request_id,
        agent_id=record.agent_id,
        action=record.action,
        status=record.status,
        result=None,
        claimed_at=record.claimed_at.timestamp(),
        committed_at=None if record.settled_at is None else record.settled_at.timestamp(),
    )


@router.post("/sweep", response_model=SweepOut, responses={403: {"description": "admin key required"}})
def sweep(request: Request, caller: AuditCaller) -> SweepOut:
    """Count PENDING claims older than the stale age; delete and release nothing (admin only)."""
    if not caller.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="admin key required")
    stale_secs: float = request.app.state.config.stale_pending_secs
    stale = _actions(request).count_stale_pending(stale_secs)
    _audit_log(request).audit(
        AuditAction.RECONCILE,
        agent_id=caller.agent_id,
        reason=f"sweep: {stale} action claims pending over {stale_secs:g}s reported, none changed",
        detail={"via": "safeagent", "stale_pending": stale},
    )
    return SweepOut(swept=0, stale_pending=stale, requires_reconciliation=stale > 0, action="none")


@router.get("/health", response_model=HealthOut)
async def health(request: Request, response: Response) -> HealthOut:
    """Answer ok without a key (a liveness probe: it does not touch the store).

    The `X-Tradeguard-Store` header names the store served (its id, read when the app started).
    """
    identity = getattr(getattr(request.app.state, "store", None), "store_id", None)  # read at start
    if isinstance(identity, str):
        response.headers[STORE_HEADER] = identity
    return HealthOut(status="ok")
