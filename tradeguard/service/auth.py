"""Who is calling: the API key on a request, checked against the key ring, as a `Principal`.

Keys come as `Authorization: Bearer KEY` (every route) or SafeAgent's `X-SafeAgent-Api-Key`
header (accepted everywhere, so a SafeAgent client moves by changing its base URL only), or
SafeAgent's admin header `X-SafeAgent-Audit-Token` (which must then hold an admin key to act as
one). On SafeAgent's admin routes (`/audit`, `/sweep`: `audit_principal`) a valid admin key in
`X-SafeAgent-Audit-Token` wins over a tenant key sent with it, as in SafeAgent, where the admin
token gives the admin view whatever tenant key comes along.

A missing, malformed, unknown or revoked key is one answer, 401, whatever the reason: the answer
never tells which keys exist. Two different keys in `Authorization` and `X-SafeAgent-Api-Key`
are 401 too: a request names one caller, never whichever header is read first. An agent key
moves only its own agent's records, and reads those and the records of agents on its own broker
account (`native_base.peers`); an admin key sees all. Resources of an agent the caller may not
see answer 404 exactly like missing ones (`visible`), so a caller cannot even learn that such an
agent's claim exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request, status

from tradeguard.service.keys import ApiKey, KeyRing
from tradeguard.service.limits import RateLimiter, retry_after

__all__ = [
    "SAFEAGENT_AUDIT_HEADER",
    "SAFEAGENT_KEY_HEADER",
    "Principal",
    "audit_principal",
    "current_principal",
    "key_ring",
    "visible",
]

SAFEAGENT_KEY_HEADER = "X-SafeAgent-Api-Key"
# SafeAgent's admin header for /audit and /sweep: here it carries an admin API key.
SAFEAGENT_AUDIT_HEADER = "X-SafeAgent-Audit-Token"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request: the agent its key acts for, and whether it is an admin key."""

    agent_id: str
    admin: bool
    key_id: str

    def may_act_for(self, agent_id: str) -> bool:
        """Return True if this caller may read or move records of `agent_id`."""
        return self.admin or self.agent_id == agent_id


def key_ring(request: Request) -> KeyRing:
    """Return the app's key ring (set by the app factory on `app.state.keys`)."""
    ring: KeyRing = request.app.state.keys
    return ring


def _presented_key(request: Request) -> str | None:
    """Return the key the request acts with, or None; refuse two different ones (401).

    A request naming two agents (Authorization for one, X-SafeAgent-Api-Key for another, or a
    header given twice) must not be served as whichever header is read first.
    """
    header = request.headers.get("authorization")
    bearer: str | None = None
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and not token.strip():
            return None
        # Another scheme (a proxy's Basic credentials) carries no key of ours: SafeAgent ignores
        # Authorization, so its client's X-SafeAgent-Api-Key still names the caller.
        bearer = token.strip() if scheme.lower() == "bearer" else None
    sent = {bearer} if bearer else set()
    sent.update(v for v in request.headers.getlist(SAFEAGENT_KEY_HEADER) if v)
    sent.update(_bearer(v) for v in request.headers.getlist("authorization")[1:])
    if len(sent) > 1:
        raise _refuse(request, "two different API keys in one request: send one")
    if sent:
        return sent.pop()
    return request.headers.get(SAFEAGENT_AUDIT_HEADER) or None


def _bearer(header: str) -> str:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else header


def _limit(request: Request, name: str) -> None:
    limiter: RateLimiter | None = getattr(request.app.state, "limiter", None)
    wait = 0.0 if limiter is None else limiter.take(name)
    if wait > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail="rate limit exceeded; retry later",
            headers={"Retry-After": retry_after(wait)},
        )


def _refuse(request: Request, detail: str) -> HTTPException:
    # Failed authentications share one bucket per client address: guessing keys costs time.
    _limit(request, f"addr:{request.client.host if request.client else '-'}")
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _verify(request: Request, token: str) -> ApiKey | None:
    # A store outage is never read as "no such key" (or worse, as a pass): `KeyRing.verify`
    # raises StoreError, which the app answers as every outage (503 with Retry-After, logged).
    return key_ring(request).verify(token)


def _principal(request: Request, key: ApiKey) -> Principal:
    _limit(request, f"key:{key.key_id}")
    return Principal(agent_id=key.agent_id, admin=key.admin, key_id=key.key_id)


def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the caller's `Principal`, or 401 (no usable key) / 429 / 503 (store down).

    A sync dependency on purpose: FastAPI runs it in its thread pool, so the key lookup (a
    database read) never blocks the event loop. Each verified key draws from its own rate
    bucket (`app.state.limiter`, when set).
    """
    token = _presented_key(request)
    if token is None:
        raise _refuse(request, "missing API key: send Authorization: Bearer KEY")
    key = _verify(request, token)
    if key is None:
        raise _refuse(request, "invalid or revoked API key")
    return _principal(request, key)


def audit_principal(request: Request) -> Principal:
    """FastAPI dependency of SafeAgent's admin routes: an admin `X-SafeAgent-Audit-Token` wins.

    A SafeAgent client may send its tenant key and the admin token together; SafeAgent answers
    such a request as the admin, and so does this. An audit token that is not a valid admin key
    changes nothing: the request is answered for the key `current_principal` picks.
    """
    token = request.headers.get(SAFEAGENT_AUDIT_HEADER)
    if token and token != _presented_key(request):
        key = _verify(request, token)
        if key is not None and key.admin:
            return _principal(request, key)
    return current_principal(request)


def visible(principal: Principal, owner_agent_id: str | None, what: str) -> None:
    """Raise the same 404 for a record of another agent as for a missing one.

    Args:
        principal: The caller.
        owner_agent_id: The record's agent, or None when the record does not exist.
        what: The record's name in the error ("claim", "request").

    Raises:
        HTTPException: 404 when the record is missing or belongs to another agent.
    """
    if owner_agent_id is None or not principal.may_act_for(owner_agent_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what} not found")
