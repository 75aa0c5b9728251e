"""`RemoteClaimLedger`: the `ClaimLedger` port over HTTP, against `tradeguard serve`'s `/v1` routes.

Every call is one request with explicit connect and read timeouts and no hidden retry. The
service keeps the claims in its own `ClaimStore` (SQLite or PostgreSQL), so the guarantees are
the store's: insert-if-absent by key, compare-and-set moves, atomic exit sizing. What this module
adds is failing closed (G5): a request that cannot be sent, times out, or gets a 5xx raises
`StoreError` naming the service, and the gateway sends nothing. A 4xx answer carries a `code`
(`tradeguard.service.codec.ErrorCode`) that becomes the same exception a local store raises
(`IntentMismatch`, `LeaseLost`, `ClaimInProgress`, `IllegalTransition`, `StoreError`;
`ConfigError` for a refused key or a bad argument).

Which calls may be retried after a `StoreError` (the request may or may not have landed):

- Safe: every read; `claim` and `claim_exit` (insert-if-absent by key: a retry returns the claim
  the first attempt created, with ``created=False``); `claim_window` (a retry finds the window
  the first attempt opened, held by the same claim key), `window_holder` (a read).
- Not blindly: `transition`, `take_over`, `fence_before_send`, `renew_lease`, `resend_exit`,
  `correct_position`, `close_turn` are compare-and-sets on the version the caller read. They are
  never applied twice, but when the first attempt landed the retry answers `LeaseLost` (or
  "moved"): re-read the claim or position with `get` / `position` and decide from what it says.
  `audit`, `record_skip`, `settle_position` and `adjust_position` are not idempotent: a retry
  may write a second record or apply a delta twice.

The API key travels only in the `Authorization` header; it is never logged nor put in an
exception or `repr`. The service's clock stamps every record; `clock` here is the caller's.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
import threading
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from types import FunctionType
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import requests

from tradeguard.clock import Clock, SystemClock
from tradeguard.config import Settings
from tradeguard.domain.audit import AuditAction
from tradeguard.domain.claims import Claim, ClaimOutcome
from tradeguard.domain.intents import Intent, OrderSpec
from tradeguard.domain.ledger import ExitRoom, LedgerPosition
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.domain.orders import RejectKind
from tradeguard.errors import ClaimInProgress, ConfigError, LeaseLost, StoreError, TradeguardError
from tradeguard.ports import ClaimLedger
from tradeguard.service import codec
from tradeguard.store.remote_reads import RemoteReads

__all__ = ["RemoteClaimLedger", "open_ledger"]

_Missing = type[TradeguardError] | None
_T = TypeVar("_T")
# What decoding an answer of the wrong shape raises (a missing field, a bad number or time).
_DECODING = (KeyError, IndexError, TypeError, ValueError, ArithmeticError, AttributeError)


def _answers_checked(cls: type[_T]) -> type[_T]:
    """Make a 2xx answer the caller cannot decode a `StoreError` in every public method of `cls`.

    A proxy, another service or a redirect's target may answer 200 with something else; without
    this the caller got a `KeyError` (or a `JSONDecodeError`), and after a send a bare exception
    in place of `UnrecordedOrder` (`execution` translates only `StoreError`). Only errors raised
    after an answer came back are translated (`_call` notes it), so a bad argument stays the
    caller's error.
    """
    for name in dir(cls):
        method = inspect.getattr_static(cls, name)
        if not name.startswith("_") and isinstance(method, FunctionType):
            setattr(cls, name, _checked(method))
    return cls


def _checked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: RemoteClaimLedger, *args: Any, **kwargs: Any) -> Any:
        self._answered.value = False
        try:
            return method(self, *args, **kwargs)
        except TradeguardError:
            raise
        except _DECODING as exc:
            if not self._answered.value:
                raise
            raise StoreError(
                f"claim service {self.url} answered {method.__name__} with something that is not a "
                f"claim service answer ({type(exc).__name__}: {exc}); if it was a write, it may or "
                "may not have been recorded"
            ) from exc

    return call


def _version(claim: Claim) -> dict[str, Any]:
    """The version a move compares against: what the caller read."""
    return {
        "state": claim.state.value, "epoch": claim.epoch, "attempts": claim.attempts,
        "filled_qty": codec.num(claim.filled_qty), "owner": claim.owner,
        "lease_expires_at": codec.ts(claim.lease_expires_at),
    }  # fmt: skip


@_answers_checked
class RemoteClaimLedger(RemoteReads):
    """The claim ledger of a `tradeguard serve` service, over HTTP.

    Args:
        base_url: The service, e.g. ``https://claims.internal:8787`` (http or https).
        api_key: The agent's (or an admin's) key from `tradeguard keys create`.
        settings: This process's settings; None reads the service's own (lease length,
            client_order_id prefix) with one request.
        clock: The caller's time source (the service stamps records with its own).
        timeout_secs: Read timeout of every request.
        connect_timeout_secs: Connect timeout of every request.
        store_id: The store the service must answer from (`tradeguard db check` and `tradeguard
            serve` print it), pinned before the first request; also given in the URL as
            ``?store_id=...``. Without it the store of the first answer is pinned, so a service
            moved to another database before this ledger's first call would go unnoticed.

    Raises:
        ConfigError: The URL is not http(s), has a query other than ``store_id``, or the key or
            the store id is empty or malformed.
        StoreError: `settings` was None and the service could not be read.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        settings: Settings | None = None,
        clock: Clock | None = None,
        timeout_secs: float = 10.0,
        connect_timeout_secs: float = 3.05,
        store_id: str | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"claim service URL must be http(s)://host:port, got {base_url!r}")
        if not api_key or not api_key.strip():
            raise ConfigError("a remote claim store needs an api_key (tradeguard keys create)")
        store_id = _configured_store(base_url, parts.query, store_id)
        self.url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")).rstrip("/")
        self._answered = threading.local()  # `_call` got a 2xx answer (see `_answers_checked`)
        self.clock: Clock = clock or SystemClock()
        self._timeout = (connect_timeout_secs, timeout_secs)
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {api_key.strip()}"
        self._session.headers["Content-Type"] = "application/json"
        # The store the service answered from first (`codec.STORE_HEADER`), or the one configured;
        # see `_from_store`.
        self._store_id: str | None = store_id
        self._configured = store_id is not None
        self._pinning = threading.Lock()
        self.settings = settings or self._service_settings()

    # -- plumbing --------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """Return "remote"."""
        return "remote"

    @property
    def store_id(self) -> str | None:
        """The id of the store the service answered from first (pinned), None before any answer.

        Also None while the service names no store (a tradeguard from before store ids).
        """
        return self._store_id

    def close(self) -> None:
        """Close the HTTP connections."""
        self._session.close()

    def _from_store(self, served: str | None, doing: str) -> None:
        """Pin the store the service names on its first answer; refuse an answer from another.

        The service names its store on every answer (`codec.STORE_HEADER`, `ClaimStore.store_id`).
        A service restarted on another database (a relative SQLite path read from another working
        directory, a failover to an empty server) answered as if it were the same: this gateway's
        decisions looked new and its exits saw a flat ledger. Such an answer is a `StoreError`,
        which after a send the gateway reports as `UnrecordedOrder`. A service that names no store
        (a tradeguard from before store ids) is accepted as before, until it names one: that is
        then pinned; once pinned, an answer that names none is refused too. Once pinned, every
        request names the store (the same header), and a service of another store refuses it
        before it records anything (an older service ignores the header).
        """
        pinned = self._store_id
        if served is None:
            if pinned is None:
                return
            raise StoreError(
                f"claim service {self.url} answered {doing} without naming its store, after it "
                f"answered from store {pinned}: another service (an older tradeguard, a proxy's own "
                "answer) now answers at this address, and nothing of its answer is used; if it was a "
                f"write, it may or may not have been recorded. Serve store {pinned} at this address again"
            )
        if pinned is None:
            with self._pinning:
                if self._store_id is None:
                    self._store_id = served
                pinned = self._store_id
        if served != pinned:
            mine = "it was configured with (store_id)" if self._configured else "this ledger started on"
            raise StoreError(
                f"the claim service {self.url} now serves another store ({served[:64]!r}), not the "
                f"store {pinned} {mine}, while {doing}: it was restarted on another "
                "database (a relative SQLite path read from another working directory, another "
                "server), whose claims and positions are not this gateway's. Nothing of its answer "
                "is used; if it was a write, it may have been recorded in that other store. Restart "
                f"the service on store {pinned}'s database (tradeguard serve logs the store id it "
                "serves); if the move is meant, reconcile with the broker and start the gateway again"
            )

    def __enter__(self) -> RemoteClaimLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteClaimLedger({self.url!r})"

    def _call(
        self,
        method: str,
        path: str,
        doing: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        missing: _Missing = None,
    ) -> Any:
        """Send one request; return its JSON (None for 204, or 404 when `missing` is None).

        `missing`: the exception a 404 stands for (the claim is gone or another agent's).
        """
        data = None if body is None else json.dumps(body, default=str)
        pinned = self._store_id
        # The store pinned goes with the request: a service of another store refuses it unrun.
        headers = None if pinned is None else {codec.STORE_HEADER: pinned}
        try:
            # No redirects: one turns a POST into a GET of another route, answered 200.
            resp = self._session.request(
                method, self.url + path, data=data, params=params, headers=headers,
                timeout=self._timeout, allow_redirects=False,
            )  # fmt: skip
        except requests.RequestException as exc:
            raise StoreError(
                f"claim service {self.url} could not be reached while {doing} ({type(exc).__name__}); "
                "nothing was recorded by this call, or its answer was lost"
            ) from exc
        served = resp.headers.get(codec.STORE_HEADER)
        if served is not None:
            self._from_store(served, doing)
        if resp.status_code < 300:
            self._from_store(served, doing)  # an answer used: one that names no store, too
            if resp.status_code == 204:
                return None
            try:
                answer = resp.json()
            except ValueError as exc:
                raise StoreError(
                    f"claim service {self.url} answered {resp.status_code} with no JSON while {doing} "
                    "(a proxy or another service?); if it was a write, it may or may not have been recorded"
                ) from exc
            self._answered.value = True
            return answer
        try:
            answer = resp.json()
        except ValueError:
            answer = {}
        answer = answer if isinstance(answer, dict) else {}
        message = str(answer.get("message") or answer.get("detail") or resp.reason)
        code = str(answer.get("code") or "")
        if resp.status_code >= 500 or code == codec.ErrorCode.STORE_UNAVAILABLE:
            raise StoreError(f"claim service {self.url} failed while {doing}: {resp.status_code} {message}")
        if resp.status_code == 429:  # past the key's rate: retry later, never "a bad argument"
            wait = resp.headers.get("Retry-After")
            raise StoreError(
                f"claim service {self.url} answered 429 while {doing}: {message}"
                + ("" if wait is None else f" (Retry-After: {wait[:32]})")
            )
        self._from_store(served, doing)  # an answer used from here on: one that names no store, too
        if resp.status_code == 404 and missing is not None:
            raise missing(
                f"{doing}: the claim service {self.url} has no such record for this key ({message})"
            )
        if resp.status_code == 404 and code == codec.ErrorCode.NOT_FOUND:
            return None
        if not code:  # not an answer of the native routes: a proxy, another service, an old version
            raise StoreError(f"claim service {self.url} answered {resp.status_code} while {doing}: {message}")
        if resp.status_code in (401, 403):
            message = f"claim service {self.url} refused the API key while {doing}: {message}"
        codec.raise_error(code, message, answer)

    def _service_settings(self) -> Settings:
        data = self._call("GET", "/v1/settings", "reading the service's settings") or {}
        known = {f.name for f in dataclasses.fields(Settings)}
        return Settings(**{k: v for k, v in data.items() if k in known})

    # -- claims and their lifecycle ---------------------------------------------------------

    def claim(
        self,
        intent: Intent,
        spec: OrderSpec,
        *,
        owner: str,
        client_order_id: str | None = None,
        order_qty: Decimal | None = None,
        turn_id: int | None = None,
        reason: str = "",
    ) -> ClaimOutcome:
        """Record `intent` as PENDING unless it exists; return the claim either way (safe to retry)."""
        body = {
            "intent": codec.intent_json(intent), "order": spec.as_payload(), "owner": owner,
            "client_order_id": client_order_id, "order_qty": codec.num(order_qty), "turn_id": turn_id,
            "reason": reason,
        }  # fmt: skip
        answer = self._call("POST", "/v1/claims", "recording a claim", body=body)
        claim = self._same_claim(answer["claim"], intent.key, "recording a claim")
        return ClaimOutcome(claim, bool(answer["created"]))

    def claim_window(self, content_key: str, *, window_secs: float, claim_key: str) -> str:
        """Open a dedup window for `content_key` (return `claim_key`) or return the holder's key."""
        body = {"content_key": content_key, "window_secs": window_secs, "claim_key": claim_key}
        return str(self._call("POST", "/v1/windows", "opening a dedup window", body=body)["claim_key"])

    def window_holder(self, content_key: str) -> str | None:
        """Return the claim key holding the live window of `content_key`, or None (a read only)."""
        params = {"content_key": content_key}
        holder = self._call("GET", "/v1/windows", "reading a dedup window", params=params)["claim_key"]
        return None if holder is None else str(holder)

    def transition(
        self,
        claim: Claim,
        to: ClaimState,
        *,
        reason: str,
        broker_order_id: str | None = None,
        filled_qty: Decimal | None = None,
        filled_avg_price: Decimal | None = None,
        order_qty: Decimal | None = None,
        owner: str | None = None,
        detail: dict[str, Any] | None = None,
        reject_kind: RejectKind | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Claim:
        """Move `claim` to `to` if it is still the version the caller saw (not blindly retried)."""
        body = {
            "expect": _version(claim), "to": to.value, "reason": reason,
            "broker_order_id": broker_order_id, "filled_qty": codec.num(filled_qty),
            "filled_avg_price": codec.num(filled_avg_price), "order_qty": codec.num(order_qty),
            "owner": owner, "detail": detail,
            "reject_kind": None if reject_kind is None else reject_kind.value, "payload": payload,
        }  # fmt: skip
        path = f"/v1/claims/{self._key(claim.key)}/transitions"
        doing = f"moving claim {claim.client_order_id} to {to}"
        answer = self._call("POST", path, doing, body=body, missing=LeaseLost)
        return self._same_claim(answer, claim.key, doing, state=to)

    def take_over(self, claim: Claim, owner: str) -> Claim:
        """Take over an active claim whose lease lapsed (`ClaimInProgress` if it has not)."""
        path = f"/v1/claims/{self._key(claim.key)}/takeover"
        body = {"expect": _version(claim), "owner": owner}
        doing = f"taking over claim {claim.client_order_id}"
        answer = self._call("POST", path, doing, body=body, missing=ClaimInProgress)
        return self._same_claim(answer, claim.key, doing)

    def fence_before_send(self, claim: Claim) -> Claim:
        """Return `claim` if its lease outlasts one request, else the renewed claim (`LeaseLost`).

        The service decides on its own clock (the one the lease was written with).
        """
        path = f"/v1/claims/{self._key(claim.key)}/fence"
        doing = f"fencing claim {claim.client_order_id} before its send"
        answer = self._call("POST", path, doing, body=_version(claim), missing=LeaseLost)
        return self._same_claim(answer["claim"], claim.key, doing) if answer["renewed"] else claim

    def renew_lease(self, claim: Claim, owner: str) -> Claim:
        """Renew this worker's lease on its PENDING claim (`LeaseLost`: do not send)."""
        path = f"/v1/claims/{self._key(claim.key)}/lease"
        body = {"expect": _version(claim), "owner": owner}
        doing = f"renewing the lease of {claim.client_order_id}"
        answer = self._call("POST", path, doing, body=body, missing=LeaseLost)
        return self._same_claim(answer, claim.key, doing)

    def record_skip(self, claim: Claim | None, *, agent_id: str, reason: str, **fields: Any) -> None:
        """Audit a blocked duplicate or an exit with nothing to sell; the claim's fields win."""
        body = {"agent_id": agent_id, "reason": reason, "claim_key": claim and claim.key, "fields": fields}
        self._call("POST", "/v1/skips", "auditing a skip", body=body, missing=StoreError)

    def audit(self, action: AuditAction, *, agent_id: str, reason: str, **fields: Any) -> None:
        """Append one audit record."""
        body = {"action": AuditAction(action).value, "agent_id": agent_id, "reason": reason, "fields": fields}
        self._call("POST", "/v1/audit", "writing an audit record", body=body, missing=StoreError)

    # -- exits and ledger corrections -------------------------------------------------------

    def claim_exit(
        self,
        intent: Intent,
        spec: OrderSpec,
        *,
        owner: str,
        broker_available: Decimal,
        reason: str,
        client_order_id: str | None = None,
        broker_read_at: datetime | None = None,
    ) -> tuple[ClaimOutcome | None, ExitRoom | None]:
        """Size an exit and claim it in one atomic step on the service (safe to retry)."""
        body = {
            "intent": codec.intent_json(intent), "order": spec.as_payload(), "owner": owner,
            "broker_available": codec.num(broker_available), "reason": reason,
            "client_order_id": client_order_id, "broker_read_at": codec.ts(broker_read_at),
        }  # fmt: skip
        answer = self._call("POST", "/v1/exits", f"claiming an exit of {intent.symbol}", body=body)
        outcome, room = answer["outcome"], answer["room"]
        sized = None if room is None else codec.room_from_json(room)
        if outcome is None:
            return None, sized
        claim = self._same_claim(outcome["claim"], intent.key, f"claiming an exit of {intent.symbol}")
        return ClaimOutcome(claim, bool(outcome["created"])), sized

    def resend_exit(
        self,
        claim: Claim,
        *,
        owner: str,
        broker_available: Decimal,
        reason: str,
        detail: dict[str, Any],
        broker_read_at: datetime | None = None,
    ) -> tuple[Claim | None, ExitRoom]:
        """Re-size an exit that placed nothing and move it back to PENDING, in one atomic step."""
        body = {
            "expect": _version(claim), "owner": owner, "broker_available": codec.num(broker_available),
            "reason": reason, "detail": detail, "broker_read_at": codec.ts(broker_read_at),
        }  # fmt: skip
        path = f"/v1/claims/{self._key(claim.key)}/exit-resend"
        answer = self._call(
            "POST", path, f"re-sizing exit {claim.client_order_id}", body=body, missing=LeaseLost
        )
        moved = answer["claim"]
        doing = f"re-sizing exit {claim.client_order_id}"
        room = codec.room_from_json(answer["room"])
        if moved is None:
            return None, room
        return self._same_claim(moved, claim.key, doing, state=ClaimState.PENDING), room

    def close_turn(
        self,
        agent_id: str,
        symbol: str,
        *,
        reason: str,
        detail: dict[str, Any] | None = None,
        expect: LedgerPosition | None = None,
    ) -> int | None:
        """Close the agent's open turn (a phantom), only while it is `expect`; return its id."""
        body = {
            "agent_id": agent_id, "symbol": symbol, "reason": reason, "detail": detail,
            "expect": None if expect is None else codec.position_json(expect),
        }  # fmt: skip
        answer = self._call(
            "POST", "/v1/position/close", f"closing the {symbol} turn", body=body, missing=ConfigError
        )
        turn_id = answer["turn_id"]
        return None if turn_id is None else int(turn_id)

    def correct_position(
        self, expect: LedgerPosition, delta: Decimal, *, reason: str, detail: dict[str, Any]
    ) -> bool:
        """Add `delta` to a position read as `expect`; False, and no change, if it moved."""
        body = {
            "expect": codec.position_json(expect),
            "delta": codec.num(delta),
            "reason": reason,
            "detail": detail,
        }
        doing = f"correcting the {expect.symbol} position"
        return bool(
            self._call("POST", "/v1/position/corrections", doing, body=body, missing=ConfigError)["applied"]
        )

    def settle_position(
        self, agent_id: str, symbol: str, qty: Decimal, *, reason: str, actor: str
    ) -> Decimal:
        """Set the agent's position in `symbol` to `qty`, audited with who and why; return the old qty."""
        body = {
            "agent_id": agent_id,
            "symbol": symbol,
            "qty": codec.num(qty),
            "reason": reason,
            "actor": actor,
        }
        doing = f"settling the {symbol} position of {agent_id}"
        return Decimal(
            self._call("POST", "/v1/position/settle", doing, body=body, missing=ConfigError)["before"]
        )

    def adjust_position(self, agent_id: str, symbol: str, delta: Decimal, *, reason: str) -> int | None:
        """Add `delta` to the agent's position without a claim; return the open turn id after it."""
        body = {"agent_id": agent_id, "symbol": symbol, "delta": codec.num(delta), "reason": reason}
        doing = f"adjusting the {symbol} position"
        turn_id = self._call("POST", "/v1/position/adjustments", doing, body=body, missing=ConfigError)[
            "turn_id"
        ]
        return None if turn_id is None else int(turn_id)

    def adopt_position(
        self, agent_id: str, symbol: str, broker_qty: Decimal, *, why: str, top_up: bool = False
    ) -> LedgerPosition:
        """Book the broker's orphan shares into the agent's ledger, atomically at the service."""
        body: dict[str, Any] = {
            "agent_id": agent_id, "symbol": symbol, "broker_qty": codec.num(broker_qty), "why": why,
        }  # fmt: skip
        if top_up:  # only then: a service from before top-ups takes the rest as it did
            body["top_up"] = True
        doing = f"adopting the {symbol} position of {agent_id}"
        answer = self._call("POST", "/v1/position/adoptions", doing, body=body, missing=ConfigError)
        return codec.position_from_json(answer)

    def register_account(self, agent_id: str, account_key: str) -> None:
        """Record the broker account the agent trades (an agent key: its own agent only)."""
        body = {"agent_id": agent_id, "account_key": account_key}
        self._call("POST", "/v1/agents/account", f"registering the account of {agent_id}", body=body)


def _configured_store(base_url: str, query: str, given: str | None) -> str | None:
    """Return the store id a claim service URL (``?store_id=``) or the caller names, checked."""
    named = parse_qs(query, keep_blank_values=True, strict_parsing=False) if query else {}
    other = sorted(set(named) - {"store_id"})
    if other:
        raise ConfigError(f"claim service URL {base_url!r} takes only ?store_id=..., not {', '.join(other)}")
    in_url = named.get("store_id", [])
    if len(in_url) > 1 or (in_url and given is not None and in_url[0] != given):
        raise ConfigError(f"claim service URL {base_url!r} names another store_id than store_id={given!r}")
    store_id = in_url[0] if in_url else given
    if store_id is not None and not _STORE_ID.fullmatch(store_id):
        raise ConfigError(
            f"store_id {store_id!r} is not a store id (tradeguard db check prints the store's: "
            "letters, digits, '-' and '_', at most 64)"
        )
    return store_id


_STORE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def open_ledger(
    url: str,
    *,
    settings: Settings | None = None,
    clock: Clock | None = None,
    api_key: str | None = None,
) -> ClaimLedger:
    """Open the claim ledger a URL names: a claim service (http/https) or a database (SQLAlchemy URL).

    Args:
        url: ``https://host:8787`` for `RemoteClaimLedger` (``?store_id=...`` names the store it
            must serve), else a `ClaimStore` URL (``sqlite:///claims.db``,
            ``postgresql+psycopg://user@host/db``).
        settings: Settings for the ledger (None: the service's own, or the defaults).
        clock: The time source.
        api_key: The service's API key; required for a service URL, refused for a database.

    Raises:
        ConfigError: A service URL without a key, or a key with a database URL.
        StoreError: The store cannot be opened.
    """
    if urlsplit(url).scheme.lower() in ("http", "https"):
        if api_key is None:
            raise ConfigError(f"claim service {url} needs api_key= (tradeguard keys create --agent-id ...)")
        if settings is None:
            return RemoteClaimLedger(url, api_key=api_key, clock=clock)
        return RemoteClaimLedger(
            url, api_key=api_key, settings=settings, clock=clock,
            timeout_secs=settings.request_timeout_secs, connect_timeout_secs=settings.connect_timeout_secs,
        )  # fmt: skip
    if api_key is not None:
        raise ConfigError("api_key is for a claim service URL (http or https); a database URL takes none")
    from tradeguard.store.claims import ClaimStore  # noqa: PLC0415 - store/__init__ imports this module

    return ClaimStore(url, settings=settings, clock=clock)
