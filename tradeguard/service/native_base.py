"""What every native `/v1` route shares: the error-answering route class and the visibility rules.

An agent key acts only for its own agent: another agent's record answers 404 exactly as a missing
one does (`not_found`, `visible_claim`), and a request that names another agent answers 403
(`acting_for`): the caller named the agent, so the answer reveals nothing.

Reading is wider than acting: an agent key may also read the claims and positions of the agents
on its own broker account (`peers`, `readable_claim`), those that registered the same non-empty
account key (`POST /v1/agents/account`) as the key's agent. They trade the same account, whose
orders and positions the agent's broker credentials already show; and a gateway cannot keep G3
(an exit never sells another agent's shares) or G4 (reconcile against every ledger on the
account) without them. Agents on other accounts stay invisible (404, or left out of lists), and
an agent whose account is unknown ("" or never registered) reads only itself: an unknown account
may be anyone's, so it is shown no one.

Writing shares is narrower still (`books_shares`): a store counts an agent of unknown account
(or of a key named by the older rule) as on *every* account (`ports.same_account`), so through
an agent key such an agent could book a position that holds back every other tenant's exits in
that symbol (audit 14a D1). An agent key therefore claims and books only once its agent has
registered its account by the account's own id (`ports.ACCOUNT_KEY_SCHEME`), and may not make
that account unknown again (`may_register`). Admin keys are the operator's and stay unchecked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine, Set
from dataclasses import replace
from datetime import UTC
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from tradeguard.domain.claims import Claim
from tradeguard.errors import TradeguardError
from tradeguard.ports import ACCOUNT_KEY_SCHEME, ClaimLedger
from tradeguard.service import codec
from tradeguard.service.auth import Principal, current_principal
from tradeguard.service.codec import ErrorCode
from tradeguard.service.wire import ErrorOut, VersionIn

__all__ = [
    "ERROR_RESPONSES",
    "router",
    "NativeRoute",
    "acting_for",
    "as_seen",
    "books_shares",
    "may_register",
    "not_found",
    "peers",
    "readable",
    "readable_claim",
    "served_store",
    "store_of",
    "visible_claim",
]

Caller = Annotated[Principal, Depends(current_principal)]
"""A route parameter: the caller, from its API key (401 without a usable one)."""

_HTTP_CODES: dict[int, str] = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    429: ErrorCode.RATE_LIMITED,
}


async def _has_nul(request: Request) -> bool:
    """True when the path, the query or the JSON body carries a NUL character."""
    if "\x00" in request.url.path or "%00" in str(request.url.query) or "\x00" in request.url.query:
        return True
    return b"\\u0000" in (await request.body()).lower()


# A lone surrogate can only come as a `\uD800`-`\uDFFF` escape (raw ones are not UTF-8), and a
# NaN or an Infinity only as those words: a body without either skips the full check below.
_SUSPECT = re.compile(rb"\\u[dD][89a-fA-F]|NaN|Infinity")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def _not_standard_json(request: Request) -> str | None:
    """Say what in the JSON body standard JSON has not (NaN, Infinity, a lone surrogate), or None.

    Python's JSON reader takes them; stored, NaN comes back as null and a lone surrogate makes
    every later read of the record fail (or, on PostgreSQL, the write fail as an outage).
    """
    body = await request.body()
    if _SUSPECT.search(body) is None:
        return None
    try:
        json.dumps(json.loads(body, parse_constant=_refuse_constant), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a ValueError too: caught first
        return "a lone surrogate (text that is not Unicode) is not allowed"
    except json.JSONDecodeError:
        return None  # bad JSON: FastAPI says so
    except ValueError as exc:
        return str(exc)
    except RecursionError:
        return None
    return None


def served_store(request: Request) -> str | None:
    """Return the identity of the store the app serves (`ClaimStore.store_id`), None if it has none.

    Read once per store (the store keeps it); the app reads it at start.

    Raises:
        StoreError: The store's identity cannot be read.
    """
    store = getattr(request.app.state, "store", None)
    identity = getattr(store, "store_id", None)
    return identity if isinstance(identity, str) else None


class NativeRoute(APIRoute):
    """A route whose failures answer `{"code", "message"}`, whatever handlers the app installs.

    Every answer, an error's too, names the store it comes from (`codec.STORE_HEADER`), read
    before the handler runs: an identity that cannot be read is a 503 with nothing done. A
    request that names another store in the same header (a remote ledger names the store it
    pinned) is refused with 409 before the handler runs: nothing is recorded in this store.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler: library errors, HTTP errors and validation errors become error bodies."""
        answer = self._answer_handler()

        async def named(request: Request) -> Response:
            try:
                identity = served_store(request)
            except TradeguardError as exc:
                status_code, body = codec.error_body(exc)
                return JSONResponse(body, status_code=status_code)
            expected = request.headers.get(codec.STORE_HEADER)
            if identity is not None and expected is not None and expected != identity:
                message = (
                    f"this claim service serves store {identity}, not store {expected[:64]!r} the "
                    "caller expects; nothing was done"
                )
                response: Response = JSONResponse(
                    {"code": ErrorCode.STORE_CONFLICT, "message": message}, status_code=409
                )
            else:
                response = await answer(request)
            if identity is not None:
                response.headers[codec.STORE_HEADER] = identity
            return response

        return named

    def _answer_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            if await _has_nul(request):
                # PostgreSQL text cannot hold NUL: refuse it here rather than fail in the store.
                body = {"code": ErrorCode.INVALID, "message": "NUL characters are not allowed"}
                return JSONResponse(body, status_code=422)
            problem = await _not_standard_json(request)
            if problem is not None:
                return JSONResponse({"code": ErrorCode.INVALID, "message": problem}, status_code=422)
            try:
                return await handler(request)
            except (TradeguardError, ValueError, OverflowError) as exc:
                code, body = codec.error_body(exc)
                return JSONResponse(body, status_code=code)
            except HTTPException as exc:
                fallback = ErrorCode.STORE_UNAVAILABLE if exc.status_code >= 500 else ErrorCode.INVALID
                name = _HTTP_CODES.get(exc.status_code, fallback)
                body = {"code": name, "message": str(exc.detail)}
                return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
                )
                return JSONResponse({"code": ErrorCode.INVALID, "message": problems}, status_code=422)

        return answer


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorOut} for s in (401, 403, 404, 409, 422, 429, 503)
}


def store_of(request: Request) -> ClaimLedger:
    """Return the app's claim store (`app.state.store`)."""
    store: ClaimLedger = request.app.state.store
    return store


def not_found(what: str = "claim") -> HTTPException:
    """The one 404 for a missing record and for another agent's."""
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what} not found")


def acting_for(principal: Principal, agent_id: str) -> None:
    """Raise 403 unless the caller may act for `agent_id` (a request that names the agent itself)."""
    if not principal.may_act_for(agent_id):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail=f"this key acts for agent {principal.agent_id} only"
        )


def visible_claim(store: ClaimLedger, principal: Principal, key: str) -> Claim:
    """Return the stored claim, or 404 when it is missing or another agent's."""
    found = store.get(key)
    if found is None or not principal.may_act_for(found.agent_id):
        raise not_found()
    return found


def peers(store: ClaimLedger, principal: Principal) -> Set[str] | None:
    """Return the agents whose records the caller may read, or None for every agent (an admin key).

    The caller's own agent, and every agent registered on the same non-empty account key as it.
    Keys that `ports.same_account` only cannot tell apart (one unknown, or named by two rules)
    do not count: reading another agent's records needs the account to be known equal.
    """
    if principal.admin:
        return None
    accounts = store.agent_accounts()
    mine = accounts.get(principal.agent_id, "")
    same = {agent for agent, key in accounts.items() if mine and key == mine}
    return frozenset(same | {principal.agent_id})


def books_shares(store: ClaimLedger, principal: Principal) -> None:
    """403 unless the caller may claim or book shares: an admin key, or an agent of known account.

    Known means registered by the account's own id (`ports.ACCOUNT_KEY_SCHEME`): any other key
    counts as on every account in every other agent's exit sizing and adoption.
    """
    if principal.admin:
        return
    key = store.agent_accounts().get(principal.agent_id, "")
    if not key.startswith(ACCOUNT_KEY_SCHEME):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=(
                f"agent {principal.agent_id} has no known broker account: an agent key claims and books "
                "only after POST /v1/agents/account with the key of its account's id (a gateway does "
                "it at start; a custom broker needs an account_key)"
            ),
        )


def may_register(store: ClaimLedger, principal: Principal, account_key: str) -> None:
    """403 when an agent key would make its agent's known account unknown (or of the older rule).

    Its shares would then count on every account, holding back every other tenant's exits.
    """
    if principal.admin or account_key.startswith(ACCOUNT_KEY_SCHEME):
        return
    before = store.agent_accounts().get(principal.agent_id, "")
    if before.startswith(ACCOUNT_KEY_SCHEME):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"agent {principal.agent_id}'s account is known; an agent key cannot make it unknown",
        )


def readable(store: ClaimLedger, principal: Principal, agent_id: str) -> bool:
    """Return True if the caller may read records of `agent_id` (its own, or a peer's: `peers`)."""
    if principal.may_act_for(agent_id):
        return True  # no account lookup for the common case, a key reading its own agent
    found = peers(store, principal)
    return found is None or agent_id in found


def readable_claim(store: ClaimLedger, principal: Principal, found: Claim | None) -> Claim:
    """Return the claim when the caller may read it (`readable`), else the 404 of a missing one."""
    if found is None or not readable(store, principal, found.agent_id):
        raise not_found()
    return found


def as_seen(stored: Claim, expect: VersionIn) -> Claim:
    """The snapshot the caller read: the stored claim at the version the caller names."""
    return replace(
        stored,
        state=expect.state,
        epoch=expect.epoch,
        attempts=expect.attempts,
        filled_qty=Decimal(expect.filled_qty),
        owner=stored.owner if expect.owner is None else expect.owner,
        lease_expires_at=(
            stored.lease_expires_at
            if expect.lease_expires_at is None
            else expect.lease_expires_at.astimezone(UTC)
        ),
    )


router = APIRouter(prefix="/v1", tags=["native"], route_class=NativeRoute, responses=ERROR_RESPONSES)
"""The one router of the native routes: `native` (claims) and `native_ledger` (the rest) add to it."""
