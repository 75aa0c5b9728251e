"""`ClaimStore`: durable claims, their lifecycle, the ledger and the audit log in one database.

A claim is written before its order is sent, with one atomic insert-if-absent; a conflict hands
back the existing claim (G1). Every state change is a compare-and-set on `(state, epoch)` that
writes its audit record in the same transaction (G6); if any of it cannot be written, the
caller gets `StoreError` and must not send (G5).
"""

from __future__ import annotations

import contextlib
import csv
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.url import URL

from tradeguard.clock import Clock, SystemClock
from tradeguard.config import DEFAULT_STORE_URL, Settings
from tradeguard.errors import ClaimInProgress, IntentMismatch, LeaseLost, StoreError
from tradeguard.intents import Intent, Kind, OrderSpec, derive_client_order_id
from tradeguard.lifecycle import ACTIVE_STATES, ClaimState, check_transition
from tradeguard.store import ledger
from tradeguard.store.audit import AuditAction, AuditQuery, AuditRecord, read_page, records_to_dataframe, write_audit
from tradeguard.store.engine import open_engine, parse_url, translate_errors
from tradeguard.store.ledger import LedgerPosition
from tradeguard.store.schema import claims, dedup_windows

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Claim", "ClaimOutcome", "ClaimStore", "new_owner_token"]


def new_owner_token() -> str:
    """Return a fresh worker identity for leases."""
    return uuid.uuid4().hex


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


@dataclass(frozen=True, slots=True)
class Claim:
    """A snapshot of one claim row."""

    key: str
    client_order_id: str
    agent_id: str
    kind: Kind
    symbol: str
    side: str
    intent: str
    payload: dict[str, Any]
    state: ClaimState
    epoch: int
    owner: str
    lease_expires_at: datetime
    order_qty: Decimal | None
    broker_order_id: str | None
    filled_qty: Decimal
    filled_avg_price: Decimal | None
    turn_id: int | None
    attempts: int
    reason: str
    created_at: datetime
    updated_at: datetime

    @property
    def spec(self) -> OrderSpec:
        """Return the order the bot asked for."""
        return OrderSpec.from_payload(self.payload)

    @property
    def is_active(self) -> bool:
        """True while an order may be live at the broker or about to be."""
        return self.state in ACTIVE_STATES

    @property
    def signed_filled_qty(self) -> Decimal:
        """Filled quantity with its effect on the position: buys add, sells subtract."""
        return self.filled_qty if self.side == "buy" else -self.filled_qty

    @classmethod
    def from_row(cls, row: Any) -> Claim:
        """Build a snapshot from a database row."""
        m = row._mapping
        return cls(
            key=m["claim_key"],
            client_order_id=m["client_order_id"],
            agent_id=m["agent_id"],
            kind=Kind(m["kind"]),
            symbol=m["symbol"],
            side=m["side"],
            intent=m["intent"],
            payload=json.loads(m["payload"]),
            state=ClaimState(m["state"]),
            epoch=int(m["epoch"]),
            owner=m["owner"],
            lease_expires_at=m["lease_expires_at"],
            order_qty=_dec(m["order_qty"]),
            broker_order_id=m["broker_order_id"],
            filled_qty=Decimal(m["filled_qty"]),
            filled_avg_price=_dec(m["filled_avg_price"]),
            turn_id=None if m["turn_id"] is None else int(m["turn_id"]),
            attempts=int(m["attempts"]),
            reason=m["reason"],
            created_at=m["created_at"],
            updated_at=m["updated_at"],
        )


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    """The result of `ClaimStore.claim`: the claim, and whether this call created it."""

    claim: Claim
    created: bool


class ClaimStore:
    """Durable claims, ledger and audit log over SQLAlchemy (SQLite by default, or PostgreSQL).

    Args:
        url: A SQLAlchemy URL: ``sqlite:///path.db`` (one host) or
            ``postgresql+psycopg://user@host/db`` (several hosts).
        settings: Lease length, client_order_id prefix, SQLite busy timeout.
        clock: The time source for every timestamp.

    Raises:
        StoreError: The URL is unusable or the database cannot be opened or migrated.
    """

    def __init__(
        self,
        url: str | URL = DEFAULT_STORE_URL,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.clock: Clock = clock or SystemClock()
        self.url = parse_url(url)
        self._engine: Engine = open_engine(self.url, busy_timeout_ms=self.settings.sqlite_busy_timeout_ms)
        dialect = sqlite if self.url.get_backend_name() == "sqlite" else postgresql
        self._insert = dialect.insert

    # -- plumbing --------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """Return "sqlite" or "postgresql"."""
        return self.url.get_backend_name()

    def close(self) -> None:
        """Release every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> ClaimStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ClaimStore({self.url.render_as_string(hide_password=True)!r})"

    @contextlib.contextmanager
    def _tx(self, doing: str) -> Iterator[Connection]:
        with translate_errors(self.url, doing), self._engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def _read(self, doing: str) -> Iterator[Connection]:
        with translate_errors(self.url, doing), self._engine.connect() as raw:
            conn = raw.execution_options(sqlite_begin="DEFERRED")
            with conn.begin():
                yield conn

    def _lease_until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.settings.lease_secs)

    # -- claiming --------------------------------------------------------------------------

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
        """Record `intent` as PENDING unless it exists; return the claim either way.

        One `INSERT ... ON CONFLICT DO NOTHING RETURNING`: no read-then-write window. The new
        claim and its audit record commit together, before anything is sent.

        Raises:
            IntentMismatch: The key exists with a different order payload.
            StoreError: Nothing could be recorded; do not send.
        """
        key = intent.key
        payload = spec.as_payload()
        now = self.clock.now()
        coid = client_order_id or derive_client_order_id(key, self.settings.client_order_id_prefix)
        values = {
            "claim_key": key,
            "client_order_id": coid,
            "agent_id": intent.agent_id,
            "kind": intent.kind.value,
            "symbol": intent.symbol,
            "side": intent.side.value,
            "intent": intent.name,
            "payload": json.dumps(payload, sort_keys=True),
            "payload_hash": spec.payload_hash(),
            "state": ClaimState.PENDING.value,
            "epoch": 1,
            "owner": owner,
            "lease_expires_at": self._lease_until(now),
            "order_qty": None if order_qty is None else str(order_qty),
            "turn_id": turn_id,
            "attempts": 1,
            "reason": reason,
            "created_at": now,
            "updated_at": now,
        }
        stmt = self._insert(claims).values(values).on_conflict_do_nothing().returning(*claims.c)
        with self._tx("recording a claim") as conn:
            row = conn.execute(stmt).first()
            if row is not None:
                write_audit(
                    conn, at=now, agent_id=intent.agent_id, action=AuditAction.CLAIM,
                    kind=intent.kind.value, symbol=intent.symbol, side=intent.side.value,
                    qty=order_qty if order_qty is not None else spec.qty or spec.notional,
                    state=ClaimState.PENDING.value, reason=reason or f"claimed {intent.name}",
                    client_order_id=coid, claim_key=key, detail={"intent": intent.name, **payload},
                )
                return ClaimOutcome(Claim.from_row(row), created=True)
            existing = conn.execute(select(claims).where(claims.c.claim_key == key)).first()
            if existing is None:
                # The conflict was on client_order_id, not the key: a caller reused an id.
                other = conn.execute(select(claims.c.claim_key).where(claims.c.client_order_id == coid)).scalar()
                raise StoreError(
                    f"client_order_id {coid!r} already belongs to another claim ({other}); "
                    "a client_order_id names exactly one decision"
                )
        claim = Claim.from_row(existing)
        if claim.payload != payload:
            raise IntentMismatch(key, claim.payload, payload)
        return ClaimOutcome(claim, created=False)

    def claim_window(self, content_key: str, *, window_secs: float, claim_key: str) -> str:
        """Atomically open a dedup window for `content_key` or return the claim key inside it.

        Returns `claim_key` if this call opened a new window (no identical order in the last
        `window_secs`), else the claim key of the order that holds the live window.
        """
        now = self.clock.now()
        ins = self._insert(dedup_windows).values(
            content_key=content_key, claim_key=claim_key, expires_at=now + timedelta(seconds=window_secs)
        )
        # Insert, or take over an expired window, in one statement: the check is the write.
        stmt = ins.on_conflict_do_update(
            index_elements=[dedup_windows.c.content_key],
            set_={"claim_key": ins.excluded.claim_key, "expires_at": ins.excluded.expires_at},
            where=dedup_windows.c.expires_at <= now,
        ).returning(dedup_windows.c.claim_key)
        with self._tx("opening a dedup window") as conn:
            won = conn.execute(stmt).scalar()
            if won is not None:
                return str(won)
            held = conn.execute(
                select(dedup_windows.c.claim_key).where(dedup_windows.c.content_key == content_key)
            ).scalar_one()
            return str(held)

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: str) -> Claim | None:
        """Return the claim with this key, or None."""
        with self._read("reading a claim") as conn:
            row = conn.execute(select(claims).where(claims.c.claim_key == key)).first()
        return None if row is None else Claim.from_row(row)

    def get_by_client_order_id(self, client_order_id: str) -> Claim | None:
        """Return the claim that owns this client_order_id, or None."""
        with self._read("reading a claim") as conn:
            row = conn.execute(select(claims).where(claims.c.client_order_id == client_order_id)).first()
        return None if row is None else Claim.from_row(row)

    def list_claims(
        self,
        *,
        states: Sequence[ClaimState] | None = None,
        agent_id: str | None = None,
        symbol: str | None = None,
        kind: Kind | None = None,
        updated_before: datetime | None = None,
        limit: int | None = None,
    ) -> list[Claim]:
        """Return claims matching every given filter, oldest first."""
        stmt = select(claims)
        c = claims.c
        if states is not None:
            stmt = stmt.where(c.state.in_([s.value for s in states]))
        if agent_id is not None:
            stmt = stmt.where(c.agent_id == agent_id)
        if symbol is not None:
            stmt = stmt.where(c.symbol == symbol)
        if kind is not None:
            stmt = stmt.where(c.kind == kind.value)
        if updated_before is not None:
            stmt = stmt.where(c.updated_at < updated_before)
        stmt = stmt.order_by(c.created_at, c.claim_key)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read("listing claims") as conn:
            return [Claim.from_row(r) for r in conn.execute(stmt)]

    def exits_in_flight(self, agent_id: str, symbol: str) -> Decimal:
        """Return the unfilled quantity of this agent's exits the broker may not show yet.

        Exits in PENDING or UNKNOWN may be live at the broker without being reflected in its
        `qty_available`; acknowledged exits already are (Alpaca holds their shares).
        """
        active = [ClaimState.PENDING, ClaimState.UNKNOWN]
        total = Decimal(0)
        for claim in self.list_claims(states=active, agent_id=agent_id, symbol=symbol, kind=Kind.EXIT):
            total += (claim.order_qty or Decimal(0)) - claim.filled_qty
        return total

    # -- lifecycle -------------------------------------------------------------------------

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
    ) -> Claim:
        """Move `claim` to `to` if it is still in the state and epoch the caller saw.

        New fills (a `filled_qty` above the recorded one) are added to the ledger in the same
        transaction. `owner` renews the lease for that worker (used when re-sending).

        Raises:
            IllegalTransition: The table forbids the move.
            LeaseLost: The claim changed (another worker took it over or moved it) meanwhile.
            StoreError: Nothing was written.
        """
        check_transition(claim.state, to)
        now = self.clock.now()
        values: dict[str, Any] = {"state": to.value, "updated_at": now, "reason": reason}
        if broker_order_id is not None:
            values["broker_order_id"] = broker_order_id
        if filled_avg_price is not None:
            values["filled_avg_price"] = str(filled_avg_price)
        if order_qty is not None:
            values["order_qty"] = str(order_qty)
        if owner is not None:
            values["owner"] = owner
            values["lease_expires_at"] = self._lease_until(now)
        if to is ClaimState.PENDING:
            values["attempts"] = claims.c.attempts + 1
        delta = Decimal(0)
        if filled_qty is not None and filled_qty != claim.filled_qty:
            if filled_qty < claim.filled_qty:
                raise StoreError(
                    f"claim {claim.client_order_id}: filled qty cannot shrink "
                    f"({claim.filled_qty} -> {filled_qty})"
                )
            values["filled_qty"] = str(filled_qty)
            delta = filled_qty - claim.filled_qty
        stmt = (
            claims.update()
            .where(
                claims.c.claim_key == claim.key,
                claims.c.state == claim.state.value,
                claims.c.epoch == claim.epoch,
            )
            .values(values)
            .returning(*claims.c)
        )
        with self._tx(f"moving claim {claim.client_order_id} to {to}") as conn:
            row = conn.execute(stmt).first()
            if row is None:
                current = conn.execute(
                    select(claims.c.state, claims.c.epoch).where(claims.c.claim_key == claim.key)
                ).first()
                raise LeaseLost(
                    f"claim {claim.client_order_id} is no longer {claim.state}/epoch {claim.epoch} "
                    f"(now {None if current is None else f'{current.state}/epoch {current.epoch}'}); "
                    "re-read it before acting"
                )
            turn_id = claim.turn_id
            if delta:
                signed = delta if claim.side == "buy" else -delta
                turn_id = ledger.apply_fill(
                    conn, claim.agent_id, claim.symbol, signed, now, f"{claim.kind} {claim.client_order_id}"
                )
                if claim.turn_id is None and turn_id is not None:
                    row = conn.execute(
                        claims.update().where(claims.c.claim_key == claim.key)
                        .values(turn_id=turn_id).returning(*claims.c)
                    ).first()
            write_audit(
                conn, at=now, agent_id=claim.agent_id, action=AuditAction.TRANSITION,
                kind=claim.kind.value, symbol=claim.symbol, side=claim.side,
                qty=filled_qty if filled_qty is not None else claim.order_qty,
                state=to.value, prev_state=claim.state.value, reason=reason,
                client_order_id=claim.client_order_id, claim_key=claim.key,
                detail={**(detail or {}), **({"fill_delta": str(delta)} if delta else {})},
            )
        assert row is not None
        return Claim.from_row(row)

    def take_over(self, claim: Claim, owner: str) -> Claim:
        """Take over an active claim whose lease has lapsed; fence out the previous owner.

        The epoch goes up, so the old owner's next compare-and-set fails. A PENDING claim
        becomes UNKNOWN: its previous owner may have sent it, so the new owner must resolve it
        through the broker (lookup by client_order_id) and may never send under a new id.

        Raises:
            ClaimInProgress: The lease is still live, or the claim is not active.
        """
        now = self.clock.now()
        to_state = ClaimState.UNKNOWN if claim.state is ClaimState.PENDING else claim.state
        stmt = (
            claims.update()
            .where(
                claims.c.claim_key == claim.key,
                claims.c.epoch == claim.epoch,
                claims.c.state == claim.state.value,
                claims.c.state.in_([s.value for s in ACTIVE_STATES]),
                claims.c.lease_expires_at <= now,
            )
            .values(
                epoch=claims.c.epoch + 1, owner=owner, lease_expires_at=self._lease_until(now),
                state=to_state.value, updated_at=now,
                reason=f"taken over from {claim.owner[:12]} after lease lapsed",
            )
            .returning(*claims.c)
        )
        with self._tx(f"taking over claim {claim.client_order_id}") as conn:
            row = conn.execute(stmt).first()
            if row is None:
                raise ClaimInProgress(
                    f"claim {claim.client_order_id} is held by a live lease or has moved on; "
                    "another worker is handling this decision"
                )
            write_audit(
                conn, at=now, agent_id=claim.agent_id, action=AuditAction.TAKEOVER,
                kind=claim.kind.value, symbol=claim.symbol, side=claim.side,
                state=to_state.value, prev_state=claim.state.value,
                reason="lease lapsed; resolve through the broker before any send",
                client_order_id=claim.client_order_id, claim_key=claim.key,
                detail={"from_owner": claim.owner, "to_owner": owner, "epoch": claim.epoch + 1},
            )
        return Claim.from_row(row)

    def record_skip(self, claim: Claim | None, *, agent_id: str, reason: str, **fields: Any) -> None:
        """Audit a blocked duplicate or an exit with nothing to sell."""
        self.audit(
            AuditAction.SKIP, agent_id=agent_id, reason=reason,
            kind=claim.kind.value if claim else fields.pop("kind", None),
            symbol=claim.symbol if claim else fields.pop("symbol", None),
            side=claim.side if claim else fields.pop("side", None),
            state=claim.state.value if claim else None,
            client_order_id=claim.client_order_id if claim else None,
            claim_key=claim.key if claim else None,
            **fields,
        )

    def audit(self, action: AuditAction, *, agent_id: str, reason: str, **fields: Any) -> None:
        """Append one audit record in its own transaction."""
        with self._tx("writing an audit record") as conn:
            write_audit(conn, at=self.clock.now(), agent_id=agent_id, action=action, reason=reason, **fields)

    # -- ledger ----------------------------------------------------------------------------

    def position(self, agent_id: str, symbol: str) -> LedgerPosition:
        """Return the agent's ledger position in `symbol` (flat if none)."""
        with self._read("reading the ledger") as conn:
            found = ledger.read_positions(conn, agent_id, symbol)
        return found[0] if found else LedgerPosition(agent_id, symbol, Decimal(0), None, None)

    def positions(self, agent_id: str) -> list[LedgerPosition]:
        """Return every open ledger position of the agent."""
        with self._read("reading the ledger") as conn:
            return ledger.read_positions(conn, agent_id)

    def agents(self) -> list[str]:
        """Return every agent id that has claims or open turns."""
        with self._read("listing agents") as conn:
            return sorted({r[0] for r in conn.execute(select(claims.c.agent_id).distinct())})

    def close_turn(self, agent_id: str, symbol: str, *, reason: str, detail: dict[str, Any] | None = None) -> int | None:
        """Close the agent's open turn in `symbol` (clearing a phantom); return its id."""
        now = self.clock.now()
        with self._tx(f"closing the {symbol} turn") as conn:
            turn_id = ledger.close_turn(conn, agent_id, symbol, now, reason)
            if turn_id is not None and detail:
                write_audit(conn, at=now, agent_id=agent_id, action=AuditAction.RECONCILE,
                            symbol=symbol, reason=reason, detail={"turn_id": turn_id, **detail})
        return turn_id

    def adjust_position(self, agent_id: str, symbol: str, delta: Decimal, *, reason: str) -> int | None:
        """Add `delta` to the agent's position without a claim (adopting an orphan or drift)."""
        now = self.clock.now()
        with self._tx(f"adjusting the {symbol} position") as conn:
            return ledger.apply_fill(conn, agent_id, symbol, delta, now, reason)

    # -- audit -----------------------------------------------------------------------------

    def audit_records(self, query: AuditQuery | None = None, *, page_size: int = 1000) -> Iterator[AuditRecord]:
        """Yield matching audit records oldest first, reading `page_size` rows at a time."""
        query = query or AuditQuery()
        after = 0
        while True:
            with self._read("reading the audit log") as conn:
                page = read_page(conn, query, after_id=after, limit=page_size)
            yield from page
            if len(page) < page_size:
                return
            after = page[-1].id

    def audit_page(self, query: AuditQuery | None = None, *, after_id: int = 0, limit: int = 100) -> list[AuditRecord]:
        """Return one page of records with id above `after_id`."""
        with self._read("reading the audit log") as conn:
            return read_page(conn, query or AuditQuery(), after_id=after_id, limit=limit)

    def audit_count(self, query: AuditQuery | None = None) -> int:
        """Return how many records match."""
        stmt = select(func.count()).select_from((query or AuditQuery()).statement().subquery())
        with self._read("counting audit records") as conn:
            return int(conn.execute(stmt).scalar_one())

    def audit_dataframe(self, query: AuditQuery | None = None) -> pd.DataFrame:
        """Return matching audit records as a pandas DataFrame."""
        return records_to_dataframe(self.audit_records(query))

    def export_audit_csv(self, path: str | Path, query: AuditQuery | None = None) -> int:
        """Write matching audit records to a CSV file; return the number of rows."""
        fields = list(AuditRecord.__dataclass_fields__)
        count = 0
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(fields)
            for rec in self.audit_records(query):
                row = [getattr(rec, f) for f in fields]
                row[fields.index("action")] = rec.action.value
                row[fields.index("at")] = rec.at.isoformat()
                row[fields.index("detail")] = json.dumps(rec.detail, sort_keys=True) if rec.detail else ""
                writer.writerow(row)
                count += 1
        return count
