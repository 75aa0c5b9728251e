"""The read half of `RemoteClaimLedger`: claims, ledger and audit log read over the `/v1` routes.

Every read is safe to retry. An agent key reads its own agent's records and those of the agents
registered on the same broker account (`tradeguard.service.native_base.peers`); of any other
agent a claim reads as None, a position raises `ConfigError` (the service answers 404), and
account-wide reads (`all_positions`, `agents`, `agent_accounts`, `cleared_turns`, `moved_turns`,
`symbols_in_motion`) leave it out. Its audit reads hold only its own agent's records.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from tradeguard.domain.audit import AuditAction, AuditRecord
from tradeguard.domain.claims import Claim
from tradeguard.domain.intents import Kind
from tradeguard.domain.ledger import LedgerPosition
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import ConfigError, StoreError, TradeguardError
from tradeguard.service import codec
from tradeguard.store.audit import AuditQuery, pages

__all__ = ["RemoteReads"]


def _audit_params(query: AuditQuery | None) -> dict[str, Any]:
    q = query or AuditQuery()
    params = {
        "agent_id": q.agent_id, "kind": q.kind, "state": q.state, "symbol": q.symbol,
        "since": codec.ts(q.since), "until": codec.ts(q.until), "client_order_id": q.client_order_id,
        "action": [AuditAction(a).value for a in q.actions] or None,
    }  # fmt: skip
    return {k: v for k, v in params.items() if v is not None}


class RemoteReads:
    """Reads of the `ClaimLedger` port (and the store's audit reads) over HTTP."""

    url: str  # the service, for messages

    def _call(
        self,
        method: str,
        path: str,
        doing: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        missing: type[TradeguardError] | None = None,
    ) -> Any:
        raise NotImplementedError  # RemoteClaimLedger sends the request

    def _same_claim(self, data: Any, key: str, doing: str, *, state: ClaimState | None = None) -> Claim:
        """Return the answered claim if it is the one asked for (`key`, and `state` when given).

        An answer about another claim (a proxy that answers from a cache or mixes up replies,
        a service of another store) is a `StoreError`: taken as this decision's, a new claim
        was reported as a duplicate of another and its order never sent, or another claim's
        order was sent in its place.
        """
        claim = codec.claim_from_json(data)
        claim.spec  # noqa: B018 - its order is read now: one the caller cannot send is a bad answer
        if claim.key != key or (state is not None and claim.state is not state):
            raise StoreError(
                f"claim service {self.url} answered {doing} with claim {claim.client_order_id} in "
                f"{claim.state}, which is not what was asked for (a proxy's cached answer, or another "
                "service?); if it was a write, it may or may not have been recorded"
            )
        return claim

    @staticmethod
    def _key(key: str) -> str:
        # "." and ".." are path steps an HTTP client folds away (reaching another route): a
        # client_order_id may be either, so its dots go percent-encoded, which no client folds.
        return quote(key, safe="").replace(".", "%2E")

    # -- reads ------------------------------------------------------------------------------

    def get(self, key: str) -> Claim | None:
        """Return the claim with this key, or None (missing, or another agent's)."""
        found = self._call("GET", f"/v1/claims/{self._key(key)}", "reading a claim")
        return None if found is None else self._same_claim(found, key, "reading a claim")

    def get_by_client_order_id(self, client_order_id: str, *, account_key: str | None = None) -> Claim | None:
        """Return the claim that owns this client_order_id on `account_key`'s account, or None.

        The service reads it in that account's scope (`ports.coid_scope`); without one, in the
        scope of the agent key's own registered account (an admin key: every account's).
        """
        path = f"/v1/claims/by-client-order-id/{self._key(client_order_id)}"
        params = None if account_key is None else {"account_key": account_key}
        found = self._call("GET", path, "reading a claim", params=params)
        if found is None:
            return None
        # The claim is known by its id only: an answer under another id is another claim's.
        key = codec.claim_from_json(found).key if found.get("client_order_id") == client_order_id else ""
        return self._same_claim(found, key, "reading a claim")

    def list_claims(
        self,
        *,
        states: Sequence[ClaimState] | None = None,
        agent_id: str | None = None,
        symbol: str | None = None,
        kind: Kind | None = None,
        updated_before: datetime | None = None,
        updated_since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Claim]:
        """Return claims matching every given filter, oldest first."""
        if states is not None and not states:
            return []
        params = {
            "state": None if states is None else [ClaimState(s).value for s in states],
            "agent_id": agent_id, "symbol": symbol, "kind": None if kind is None else Kind(kind).value,
            "updated_before": codec.ts(updated_before), "updated_since": codec.ts(updated_since),
            "limit": limit,
        }  # fmt: skip
        params = {k: v for k, v in params.items() if v is not None}
        answer = self._call("GET", "/v1/claims", "listing claims", params=params)
        return [codec.claim_from_json(c) for c in answer["items"]]

    def exits_in_flight(self, agent_id: str, symbol: str) -> Decimal:
        """Return the unfilled quantity of this agent's exits the broker may not show yet."""
        params = {"agent_id": agent_id, "symbol": symbol}
        answer = self._call(
            "GET",
            "/v1/position/exits-in-flight",
            "reading exits in flight",
            params=params,
            missing=ConfigError,
        )
        return Decimal(answer["qty"])

    def agents(self) -> list[str]:
        """Return every agent id that has claims (that this key may see), sorted."""
        return [str(a) for a in self._call("GET", "/v1/agents", "listing agents")["items"]]

    def agent_accounts(self) -> dict[str, str]:
        """Return the registered broker account key of every agent this key may see."""
        answer = self._call("GET", "/v1/agents/accounts", "reading the agents' accounts")
        return {str(a): str(k) for a, k in answer["items"].items()}

    def symbols_in_motion(self, *, excluding_agent: str | None = None) -> set[str]:
        """Return the symbols with an active claim, leaving out `excluding_agent`'s."""
        params = {} if excluding_agent is None else {"excluding_agent": excluding_agent}
        answer = self._call("GET", "/v1/symbols-in-motion", "listing symbols in motion", params=params)
        return {str(s) for s in answer["items"]}

    def position(self, agent_id: str, symbol: str) -> LedgerPosition:
        """Return the agent's ledger position in `symbol` (flat if none)."""
        params = {"agent_id": agent_id, "symbol": symbol}
        answer = self._call("GET", "/v1/position", "reading the ledger", params=params, missing=ConfigError)
        return codec.position_from_json(answer)

    def positions(self, agent_id: str) -> list[LedgerPosition]:
        """Return every open ledger position of the agent, by symbol."""
        answer = self._call(
            "GET", "/v1/positions", "reading the ledger", params={"agent_id": agent_id}, missing=ConfigError
        )
        return [codec.position_from_json(p) for p in answer["items"]]

    def all_positions(self) -> list[LedgerPosition]:
        """Return every open ledger position this key may see (an agent key: its own)."""
        answer = self._call("GET", "/v1/positions", "reading the ledger")
        return [codec.position_from_json(p) for p in answer["items"]]

    def cleared_turns(self, since: datetime) -> list[LedgerPosition]:
        """Return turns closed since `since` while still holding shares, newest first."""
        answer = self._call(
            "GET", "/v1/turns/cleared", "reading the ledger", params={"since": codec.ts(since)}
        )
        return [codec.position_from_json(p) for p in answer["items"]]

    def moved_turns(self, since: datetime) -> list[LedgerPosition]:
        """Return every turn, open or closed, that a fill or correction moved after `since`."""
        answer = self._call("GET", "/v1/turns/moved", "reading the ledger", params={"since": codec.ts(since)})
        return [codec.position_from_json(p) for p in answer["items"]]

    def latest_turn_id(self, agent_id: str, symbol: str) -> int | None:
        """Return the id of the agent's most recent turn in `symbol`, open or closed, or None."""
        params = {"agent_id": agent_id, "symbol": symbol}
        answer = self._call(
            "GET", "/v1/position/latest-turn", "reading the ledger", params=params, missing=ConfigError
        )
        return None if answer["turn_id"] is None else int(answer["turn_id"])

    # -- audit -----------------------------------------------------------------------------

    def audit_records(
        self, query: AuditQuery | None = None, *, page_size: int = 1000
    ) -> Iterator[AuditRecord]:
        """Yield matching audit records oldest first, one page per request."""
        return pages(self.audit_page, query or AuditQuery(), min(page_size, 1000))

    def audit_page(
        self, query: AuditQuery | None = None, *, after_id: int = 0, limit: int = 100
    ) -> list[AuditRecord]:
        """Return one page of records with id above `after_id`."""
        params = {**_audit_params(query), "after_id": after_id, "limit": limit}
        answer = self._call("GET", "/v1/audit", "reading the audit log", params=params)
        return [codec.record_from_json(r) for r in answer["items"]]

    def audit_count(self, query: AuditQuery | None = None) -> int:
        """Return how many records match."""
        return int(
            self._call("GET", "/v1/audit/count", "counting audit records", params=_audit_params(query))[
                "count"
            ]
        )
