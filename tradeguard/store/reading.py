"""The read side of `ClaimStore`: claims, ledger positions and the audit log.

Point reads on the order path (a claim by key or client_order_id, a position, exits in flight)
are one fixed statement on the driver, each its own consistent snapshot. Listings and audit
queries, whose filters vary, are built with SQLAlchemy Core and read in one transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.engine.url import URL

from tradeguard.domain import AuditRecord, LedgerPosition
from tradeguard.domain.claims import Claim
from tradeguard.domain.intents import Kind
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import ConfigError
from tradeguard.ports import coid_scope
from tradeguard.store import ledger
from tradeguard.store import statements as sql
from tradeguard.store.audit import AuditQuery, pages, read_page, records_to_csv, records_to_dataframe
from tradeguard.store.connections import RawPool
from tradeguard.store.engine import is_store_file, translate_errors
from tradeguard.store.model import decode_claim
from tradeguard.store.schema import claims

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["StoreReader"]


class StoreReader:
    """Reads over a claim store's connections; `ClaimStore` adds the writes."""

    url: URL
    _engine: Engine
    _pool: RawPool

    @contextlib.contextmanager
    def _read(self, doing: str) -> Iterator[Connection]:
        # A closed store refuses, as the order path's pool does: `close` disposed the engine, and
        # SQLAlchemy refills a disposed engine's pool on the next connect, so a read after close
        # (an `audit_records` iterator consumed after the `with` block) opened a connection no
        # one closed, left to the garbage collector (a ResourceWarning, an idle server session).
        self._pool.check_open()
        with translate_errors(self.url, doing, self._pool.driver_errors), self._engine.connect() as raw:
            try:
                conn = raw.execution_options(sqlite_begin="DEFERRED")
                with conn.begin():
                    yield conn
            finally:
                if self._pool.closed:
                    # The store closed while this read ran (another thread): the engine's pool
                    # that lent this connection is gone, and would keep it open until collected.
                    raw.invalidate()

    # -- claims ----------------------------------------------------------------------------

    def get(self, key: str) -> Claim | None:
        """Return the claim with this key, or None."""
        rows = self._pool.read("reading a claim", sql.BY_KEY, (key,))
        return decode_claim(rows[0], self._pool.dt) if rows else None

    def get_by_client_order_id(self, client_order_id: str, *, account_key: str | None = None) -> Claim | None:
        """Return the claim that owns this client_order_id on `account_key`'s account, or None.

        A known account (`ports.coid_scope`) finds its own claim, or one of unknown account (the
        two cannot both exist); an unknown one reads every account's, the oldest first.
        """
        scope = coid_scope(account_key)
        if scope:
            rows = self._pool.read("reading a claim", sql.BY_COID, (client_order_id, scope))
        else:
            rows = self._pool.read("reading a claim", sql.BY_COID_ANY, (client_order_id,))
        return decode_claim(rows[0], self._pool.dt) if rows else None

    def claims_by_client_order_id(self, client_order_id: str) -> list[Claim]:
        """Return every claim that holds this client_order_id (one per account scope), the oldest first.

        For an operator who names a claim by its id without naming the account (`tradeguard
        claims show`): ids are unique per broker account, so several claims may hold one.
        """
        rows = self._pool.read("reading claims", sql.BY_COID_EVERY, (client_order_id,))
        return [decode_claim(row, self._pool.dt) for row in rows]

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
        """Return claims matching every given filter, oldest first.

        One statement on the driver (a Core connection costs a pre-ping and a BEGIN/COMMIT round
        trip each on PostgreSQL): the reconciler's "this agent's active claims" is an index seek
        on `(state, agent_id)` and should cost what its few rows cost, at any store size.
        """
        where: list[str] = []
        params: list[object] = []
        if states is not None:
            if not states:
                return []
            where.append(f"state IN ({', '.join('?' * len(states))})")
            params += [ClaimState(s).value for s in states]
        for column, value in (("agent_id", agent_id), ("symbol", symbol)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind.value)
        pool = self._pool
        if updated_before is not None:
            where.append("updated_at < ?")
            params.append(pool.ts(updated_before))
        if updated_since is not None:
            where.append("updated_at >= ?")
            params.append(pool.ts(updated_since))
        text = (
            sql.LIST + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY created_at, claim_key"
        )
        if limit is not None:
            text += f" LIMIT {int(limit)}"
        return [decode_claim(r, pool.dt) for r in pool.read("listing claims", text, params)]

    def exits_in_flight(self, agent_id: str, symbol: str) -> Decimal:
        """Return the unfilled quantity of this agent's exits the broker may not show yet.

        Exits in PENDING or UNKNOWN may be live at the broker without being reflected in its
        `qty_available`; acknowledged exits already are (Alpaca holds their shares).
        """
        rows = self._pool.read("reading exits in flight", sql.IN_FLIGHT, (agent_id, symbol))
        return sum((Decimal(q or 0) - Decimal(f) for q, f in rows), Decimal(0))

    def agents(self) -> list[str]:
        """Return every agent id that has claims, sorted (ledger-only agents: `all_positions`)."""
        with self._read("listing agents") as conn:
            return sorted({r[0] for r in conn.execute(select(claims.c.agent_id).distinct())})

    def agent_accounts(self) -> dict[str, str]:
        """Return the registered broker account key of every agent that registered one."""
        rows = self._pool.read("reading the agents' accounts", ledger.ACCOUNTS_SQL, ())
        return {str(agent): str(key) for agent, key in rows}

    def symbols_in_motion(self, *, excluding_agent: str | None = None) -> set[str]:
        """Return the symbols with an active claim (PENDING, SUBMITTED, PARTIALLY_FILLED, UNKNOWN).

        `excluding_agent` leaves that agent's claims out (a one-agent reconcile pass asks which
        symbols other agents have orders in motion in).
        """
        rows = self._pool.read("listing symbols in motion", sql.SYMBOLS_IN_MOTION, (excluding_agent or "",))
        return {r[0] for r in rows}

    # -- ledger ----------------------------------------------------------------------------

    def position(self, agent_id: str, symbol: str) -> LedgerPosition:
        """Return the agent's ledger position in `symbol` (flat if none)."""
        rows = self._pool.read("reading the ledger", ledger.POSITION_SQL, (agent_id, symbol))
        found = ledger.positions_from_rows(rows, self._pool.dt)
        return found[0] if found else LedgerPosition(agent_id, symbol, Decimal(0), None, None)

    def positions(self, agent_id: str) -> list[LedgerPosition]:
        """Return every open ledger position of the agent."""
        rows = self._pool.read("reading the ledger", ledger.POSITIONS_SQL, (agent_id,))
        return ledger.positions_from_rows(rows, self._pool.dt)

    def all_positions(self) -> list[LedgerPosition]:
        """Return every agent's open ledger positions (the account-wide view the reconciler needs)."""
        rows = self._pool.read("reading the ledger", ledger.ALL_POSITIONS_SQL, ())
        return ledger.positions_from_rows(rows, self._pool.dt)

    def cleared_turns(self, since: datetime) -> list[LedgerPosition]:
        """Return turns closed since `since` while still holding shares (phantom clears), newest first."""
        at = self._pool.ts(since)
        rows = self._pool.read("reading the ledger", ledger.CLEARED_TURNS_SQL, (at, at))
        return ledger.positions_from_rows(rows, self._pool.dt)

    def moved_turns(self, since: datetime) -> list[LedgerPosition]:
        """Return every turn, open or closed, that a fill or correction moved after `since`.

        `updated_at` is when; a closed turn reads flat. The reconciler puts off a symbol while a
        turn in it moved that recently: the positions endpoint may not show the move yet.
        """
        at = self._pool.ts(since)
        rows = self._pool.read("reading the ledger", ledger.MOVED_TURNS_SQL, (at, at))
        return ledger.positions_from_rows(rows, self._pool.dt)

    def latest_turn_id(self, agent_id: str, symbol: str) -> int | None:
        """Return the id of the agent's most recent turn in `symbol`, open or closed, or None."""
        rows = self._pool.read("reading the ledger", ledger.LATEST_TURN_SQL, (agent_id, symbol))
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    # -- audit -----------------------------------------------------------------------------

    def audit_records(
        self, query: AuditQuery | None = None, *, page_size: int = 1000
    ) -> Iterator[AuditRecord]:
        """Yield matching audit records oldest first, reading `page_size` rows at a time."""
        return pages(self.audit_page, query or AuditQuery(), page_size)

    def audit_page(
        self, query: AuditQuery | None = None, *, after_id: int = 0, limit: int = 100
    ) -> list[AuditRecord]:
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
        """Write matching audit records to a CSV file; return the number of rows.

        Raises:
            ConfigError: `path` is a file of this very store (writing it would destroy the store).
        """
        if is_store_file(path, self.url):
            raise ConfigError(f"refusing to write {path}: it is a file of the claim store being read")
        return records_to_csv(self.audit_records(query), path)
