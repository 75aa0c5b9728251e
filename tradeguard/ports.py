"""The ports: the narrow interfaces the gateway and reconciler call, that adapters implement.

`Broker` is the port to a venue (AlpacaBroker, PaperBroker, FaultyBroker around either).
`ClaimLedger` is the port to the claims, ledger and audit log (ClaimStore over SQLAlchemy,
MemoryClaimStore in process).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from tradeguard.clock import Clock
from tradeguard.config import Settings
from tradeguard.domain.audit import AuditAction
from tradeguard.domain.claims import Claim, ClaimOutcome
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.ledger import ExitRoom, LedgerPosition
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.domain.orders import BrokerOrder, BrokerPosition, OrderRequest, RejectKind, ReplaceRequest

__all__ = [
    "EVERY_OPEN_ORDER",
    "Broker",
    "ClaimLedger",
    "ForwardingBroker",
    "account_key_from_id",
    "account_key_of",
    "coid_scope",
    "same_account",
]

# How deep `account_key_of` follows `.inner` (recording around faults around a paper broker is 3).
_MAX_WRAPPERS = 16


def account_key_of(broker: object) -> str:
    """Return the key naming the broker account `broker` trades, or "" when it is not known.

    A broker may carry a short stable `account_key` string, `account_key_from_id` of the account's
    own id (`AlpacaBroker`: read once from `GET /v2/account`; `PaperBroker`: from the id kept in
    its state file). Wrappers (`ForwardingBroker`, `FaultyBroker`, `RecordingBroker`) have none
    and are followed through `.inner`. It is not a member of the `Broker` port.
    """
    for _ in range(_MAX_WRAPPERS):
        key = getattr(broker, "account_key", None)
        if isinstance(key, str):
            return key
        broker = getattr(broker, "inner", None)
        if broker is None:
            break
    return ""


ACCOUNT_KEY_SCHEME = "acct:"


def account_key_from_id(account_id: str) -> str:
    """Return the account key of the broker account whose id (Alpaca's `GET /v2/account` "id") is given.

    The account's own id, not the credentials that reach it: a rotated key id, another base
    URL spelling or an operator's CLI with its own keys all name the same account.
    """
    return ACCOUNT_KEY_SCHEME + hashlib.sha256(account_id.encode()).hexdigest()[:16]


def same_account(mine: str | None, theirs: str | None) -> bool:
    """Whether two agents' account keys may name one broker account.

    An unknown key ("" or None: an unregistered agent, a broker with no key) may be any account,
    so it counts as the same one: other agents' shares are then held back, the old conservative
    sizing, never sold. So does a pair named by different rules (a key registered before keys
    came from the account id, beside one that did): they cannot be compared.
    """
    if not mine or not theirs:
        return True
    if mine.startswith(ACCOUNT_KEY_SCHEME) != theirs.startswith(ACCOUNT_KEY_SCHEME):
        return True
    return mine == theirs


def coid_scope(account_key: str | None) -> str:
    """Return the scope in which a claim's client_order_id must be unique: its account, or "" for all.

    Alpaca refuses a client_order_id already used on the same account, and only there; the claim
    store refuses one alike (`tg_claims.coid_scope`, migration 0012). A key of the account's own
    id (`ACCOUNT_KEY_SCHEME`) is its scope. Any other key (unknown, or of the older rule, which
    `same_account` never tells apart from any account) is "": may be any account, so its ids
    are unique across every account in the store, and no account may reuse them (fail-safe: a
    refused id sends nothing, a shared one could let one agent adopt another's order).
    """
    if account_key and account_key.startswith(ACCOUNT_KEY_SCHEME):
        return account_key
    return ""


# A `list_orders` limit for "every open order, however many": far beyond any account's open
# orders (the port never truncates a listing: past its limit it raises instead).
EVERY_OPEN_ORDER = 1_000_000


@runtime_checkable
class Broker(Protocol):
    """The port to a broker: eight calls over the value types above.

    Every method raises only `tradeguard.errors.BrokerError` subclasses:

    - `OrderRejected`: the broker answered definitely no; nothing was placed.
    - `OutcomeUnknown`: the request may have been acted on (timeout after sending, reset, 5xx,
      429 after a retry). Callers resolve it with `get_order_by_client_id`, never a blind resend.
    - `BrokerUnavailable`: the request never left this process.

    `submit_order` must be safe to call again with the same `client_order_id`: the broker refuses
    a second copy (Alpaca: 422 "client_order_id must be unique"), and an adapter that sees that
    answer looks the order up and returns it. Read methods never return a partial result: a
    failed or truncated read raises, so an error is never mistaken for "flat" (G4).

    An order that was replaced is followed to its replacement: `get_order_by_client_id` returns
    the live order of that decision (the last of the chain `replaced_by` leads to), so a claim
    keeps one client_order_id however often its order is replaced. Orders with legs (bracket,
    OTO, OCO) carry them in `BrokerOrder.legs`.
    """

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Place an order; return it as the broker acknowledged it."""
        ...

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """Return the order with this client_order_id, or None if the broker has none."""
        ...

    def get_order(self, order_id: str) -> BrokerOrder | None:
        """Return the order with this broker id, or None if the broker has none."""
        ...

    def list_orders(
        self,
        *,
        status: str = "open",
        symbols: list[str] | None = None,
        after: datetime | None = None,
        limit: int = 500,
    ) -> list[BrokerOrder]:
        """List orders; `status` is "open", "closed" or "all"."""
        ...

    def list_positions(self) -> list[BrokerPosition]:
        """Return every open position."""
        ...

    def get_position(self, symbol: str) -> BrokerPosition | None:
        """Return the position in `symbol`, or None when flat."""
        ...

    def cancel_order(self, order_id: str) -> None:
        """Request cancellation of an open order."""
        ...

    def replace_order(self, order_id: str, request: ReplaceRequest) -> BrokerOrder:
        """Replace an open order; return the new order (the old one becomes REPLACED)."""
        ...


class ForwardingBroker:
    """A `Broker` that passes every call to `inner`: subclass it and override what you wrap.

    For wrappers that change one or two calls (recording a submit's answer, counting sends);
    assigning `inner` later switches where calls go.
    """

    def __init__(self, inner: Broker) -> None:
        self.inner = inner

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Pass through."""
        return self.inner.submit_order(request)

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """Pass through."""
        return self.inner.get_order_by_client_id(client_order_id)

    def get_order(self, order_id: str) -> BrokerOrder | None:
        """Pass through."""
        return self.inner.get_order(order_id)

    def list_orders(
        self,
        *,
        status: str = "open",
        symbols: list[str] | None = None,
        after: datetime | None = None,
        limit: int = 500,
    ) -> list[BrokerOrder]:
        """Pass through."""
        return self.inner.list_orders(status=status, symbols=symbols, after=after, limit=limit)

    def list_positions(self) -> list[BrokerPosition]:
        """Pass through."""
        return self.inner.list_positions()

    def get_position(self, symbol: str) -> BrokerPosition | None:
        """Pass through."""
        return self.inner.get_position(symbol)

    def cancel_order(self, order_id: str) -> None:
        """Pass through."""
        self.inner.cancel_order(order_id)

    def replace_order(self, order_id: str, request: ReplaceRequest) -> BrokerOrder:
        """Pass through."""
        return self.inner.replace_order(order_id, request)


@runtime_checkable
class ClaimLedger(Protocol):
    """The port to the claims, the ledger and the audit log.

    Exactly what the gateway, `send_claim`, the reconciler and the drop-in client call.
    Implementations: `ClaimStore` (SQLite or PostgreSQL, durable, shared between processes and
    hosts), `RemoteClaimLedger` (the claim service's `/v1` routes over HTTP, for hosts without
    database access) and `MemoryClaimStore` (one process, for replays, chaos runs and tests).
    Each keeps this contract, and `tests/test_store_contract.py` holds all three to it:

    - `claim` is an atomic insert-if-absent on the claim key: of two racing callers exactly one
      creates the claim, the other gets it back (`created=False`). The same key with another
      payload raises `IntentMismatch`; a client_order_id names one claim only (`StoreError`).
    - Every `transition` is checked against `lifecycle.TRANSITIONS` (`IllegalTransition`) and is
      a compare-and-set on the caller's `(state, epoch, attempts, filled_qty)`: if the claim
      moved, nothing changes and `LeaseLost` is raised. The claim's new version, its audit
      record and the ledger change from any new fill (a `filled_qty` above the recorded one)
      are applied in the same atomic step: all of them or none.
    - `take_over` (lease lapsed) and `renew_lease` (inside `fence_before_send`) raise the epoch,
      fencing out every holder of an older snapshot; a taken-over PENDING claim becomes UNKNOWN.
    - Exit sizing and claiming is one atomic step per symbol (`claim_exit`, `resend_exit`):
      no fill, exit or correction in the symbol lands between reading what is held and in flight
      and writing the exit, so two exits are never sized from the same shares (G3).
    - Corrections are compare-and-sets on the position the caller read (`close_turn` and
      `correct_position` with `expect`): if the ledger moved since, nothing changes.
    - `claim_window` opens a dedup window atomically (the test is the write); an expired window
      passes to a new order only once its claim is neither PENDING nor UNKNOWN. `window_holder`
      reads which claim holds a live window, writing nothing.
    - Claims are never deleted; every change and skip leaves an audit record (G6). A store that
      cannot record a claim raises `StoreError` and the caller sends nothing (G5).

    Claims, positions and outcomes returned are frozen snapshots as of the call.
    """

    @property
    def settings(self) -> Settings:
        """The settings the store was opened with (lease length, client_order_id prefix)."""
        ...

    @property
    def clock(self) -> Clock:
        """The time source of every timestamp the store writes."""
        ...

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
        """Record `intent` as PENDING unless it exists; return the claim either way."""
        ...

    def claim_window(self, content_key: str, *, window_secs: float, claim_key: str) -> str:
        """Open a dedup window for `content_key` (return `claim_key`) or return the holder's key."""
        ...

    def window_holder(self, content_key: str) -> str | None:
        """Return the claim key holding the live (unexpired) window of `content_key`, or None.

        A read: no window is opened. A live window cannot change hands before it expires, so the
        answer is the key `claim_window` would return for it.
        """
        ...

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
        """Move `claim` to `to` if it is still the version the caller saw; apply new fills.

        `payload` replaces the order's terms (a replacement at the broker); it must keep the
        terms first asked under ``"first"`` so a retry of the original call still matches
        (`domain.claims.same_order`).
        """
        ...

    def take_over(self, claim: Claim, owner: str) -> Claim:
        """Take over an active claim whose lease lapsed (`ClaimInProgress` if it has not)."""
        ...

    def fence_before_send(self, claim: Claim) -> Claim:
        """Return `claim` with a lease that outlasts one request (`LeaseLost`: do not send)."""
        ...

    def record_skip(self, claim: Claim | None, *, agent_id: str, reason: str, **fields: Any) -> None:
        """Audit a blocked duplicate or an exit with nothing to sell."""
        ...

    def audit(self, action: AuditAction, *, agent_id: str, reason: str, **fields: Any) -> None:
        """Append one audit record."""
        ...

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
        """Size an exit and claim it in one atomic step; None when there is nothing to sell.

        An existing claim for the key is returned as it is, with no sizing (None). A
        `client_order_id` given by the caller (the drop-in: the bot's own id) replaces the derived one.
        `broker_read_at`: when `broker_available` was read (just before the read); an exit whose
        claim moved after it counts as one the read may not show (`acknowledged_before`).
        """
        ...

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
        ...

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
        ...

    def correct_position(
        self, expect: LedgerPosition, delta: Decimal, *, reason: str, detail: dict[str, Any]
    ) -> bool:
        """Add `delta` to a position read as `expect`; False, and no change, if it moved."""
        ...

    # -- reads ------------------------------------------------------------------------------

    def adopt_position(
        self, agent_id: str, symbol: str, broker_qty: Decimal, *, why: str, top_up: bool = False
    ) -> LedgerPosition:
        """Book into the agent's ledger the part of `broker_qty` no agent on its account holds.

        Atomic: two agents adopting at once never both take the same shares. A flat ledger
        adopts; one holding on the broker's side only with `top_up` (the shares beyond every
        ledger). Nothing while another agent's order in the symbol is in motion or its ledger
        there moved within `position_settle_secs`, or while the agent's own orders may make the
        read overstate the orphan (`domain.ledger.own_moves_hide_the_orphan`). Audited; returns
        the agent's position after (unchanged when nothing was adopted).
        """
        ...

    def get(self, key: str) -> Claim | None:
        """Return the claim with this key, or None."""
        ...

    def get_by_client_order_id(self, client_order_id: str, *, account_key: str | None = None) -> Claim | None:
        """Return the claim that owns this client_order_id on `account_key`'s account, or None.

        Ids are unique per broker account (`coid_scope`): a known account finds its own claim
        or one of unknown account; an unknown one (None, "") reads across every account, the
        oldest claim first.
        """
        ...

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
        ...

    def agents(self) -> list[str]:
        """Return every agent id that has claims, sorted."""
        ...

    def register_account(self, agent_id: str, account_key: str) -> None:
        """Record which broker account the agent trades (`account_key_of`; audited when it changes).

        Exit sizing and reconciliation count other agents' shares only when they are on the same
        account (`same_account`); an agent that never registered counts as on every account.
        """
        ...

    def agent_accounts(self) -> dict[str, str]:
        """Return the registered account key of every agent (a remote agent key: its own)."""
        ...

    def symbols_in_motion(self, *, excluding_agent: str | None = None) -> set[str]:
        """Return the symbols with an active claim, leaving out `excluding_agent`'s."""
        ...

    def position(self, agent_id: str, symbol: str) -> LedgerPosition:
        """Return the agent's ledger position in `symbol` (flat if none)."""
        ...

    def positions(self, agent_id: str) -> list[LedgerPosition]:
        """Return every open ledger position of the agent, by symbol."""
        ...

    def all_positions(self) -> list[LedgerPosition]:
        """Return every agent's open ledger positions, by agent and symbol."""
        ...

    def cleared_turns(self, since: datetime) -> list[LedgerPosition]:
        """Return turns closed since `since` while still holding shares, newest first."""
        ...

    def moved_turns(self, since: datetime) -> list[LedgerPosition]:
        """Return every turn, open or closed, that a fill or correction moved after `since`.

        `updated_at` is when; a closed turn reads flat.
        """
        ...

    def latest_turn_id(self, agent_id: str, symbol: str) -> int | None:
        """Return the id of the agent's most recent turn in `symbol`, open or closed, or None."""
        ...

    def close(self) -> None:
        """Release the store's resources; it is not used afterwards."""
        ...
