"""The claim store's tables: claims, turns (ledger), dedup windows, audit log, keys, actions, identity.

This module describes the *current* schema for queries; the Alembic migrations in
`tradeguard/store/migrations/versions` create and evolve it and are the source of truth on disk.
Quantities and prices are stored as decimal strings so no backend rounds them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeDecorator

__all__ = [
    "SCHEMA_HEAD",
    "UTCDateTime",
    "actions",
    "agent_accounts",
    "api_keys",
    "audit",
    "claims",
    "dedup_windows",
    "metadata",
    "store_identity",
    "turns",
]

# The Alembic revision this code reads and writes. A database at any other revision that this
# package does not ship is refused (it was written by a newer tradeguard).
SCHEMA_HEAD = "0015"


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive, as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Normalise to UTC; strip the zone for SQLite, which cannot hold one."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the claim store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

claims = Table(
    "tg_claims",
    metadata,
    Column("claim_key", String(64), primary_key=True),
    Column("client_order_id", String(128), nullable=False),
    Column("agent_id", String(64), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("side", String(4), nullable=False),
    Column("intent", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("payload_hash", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("owner", String(64), nullable=False),
    Column("lease_expires_at", UTCDateTime, nullable=False),
    Column("order_qty", String(40)),
    Column("broker_order_id", String(64)),
    Column("filled_qty", String(40), nullable=False, server_default=text("'0'")),
    Column("filled_avg_price", String(40)),
    Column("turn_id", BigInteger),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("reason", Text, nullable=False, server_default=text("''")),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("reject_kind", String(24)),  # RejectKind of a REJECTED claim (migration 0002)
    # Where the id must be unique (migration 0012, `ports.coid_scope`): the claiming agent's
    # account key, or "" (unknown account, or claimed before 0012): unique across every scope.
    Column("coid_scope", String(64), nullable=False, server_default=text("''")),
    # A client_order_id names one claim per broker account, as at Alpaca (migration 0012).
    Index("ux_tg_claims_coid_scope", "client_order_id", "coid_scope", unique=True),
    # One agent's claims in a state (reconciler, exits in flight): flat as history grows (0004).
    Index("ix_tg_claims_state_agent", "state", "agent_id", "updated_at"),
    Index("ix_tg_claims_agent_symbol", "agent_id", "symbol"),
)

turns = Table(
    "tg_turns",
    metadata,
    Column("turn_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("agent_id", String(64), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("qty", String(40), nullable=False),
    Column("is_open", Integer, nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime),
    Column("close_reason", Text),
    Column("updated_at", UTCDateTime),  # last fill or correction (migration 0002)
    # At most one open turn per agent and symbol: the ledger's invariant, enforced by the database.
    Index(
        "ux_tg_turns_open",
        "agent_id",
        "symbol",
        unique=True,
        sqlite_where=text("is_open = 1"),
        postgresql_where=text("is_open = 1"),
    ),
    # Closed turns by when they last moved (closing sets updated_at = closed_at; a closed turn
    # never moves again): the "moved lately" reads seek it instead of scanning the history
    # (migration 0010). Partial, so fills into an open turn never write to it.
    # An agent's latest turn in a symbol by one seek (migration 0010); its columns never change.
    Index("ix_tg_turns_agent_symbol", "agent_id", "symbol", "turn_id"),
    Index(
        "ix_tg_turns_closed_moved",
        "updated_at",
        sqlite_where=text("is_open = 0"),
        postgresql_where=text("is_open = 0"),
    ),
)

dedup_windows = Table(
    "tg_dedup_windows",
    metadata,
    Column("content_key", String(64), primary_key=True),
    Column("claim_key", String(64), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

audit = Table(
    "tg_audit",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("agent_id", String(64), nullable=False),
    Column("action", String(24), nullable=False),
    Column("kind", String(8)),
    Column("symbol", String(32)),
    Column("side", String(4)),
    Column("qty", String(40)),
    Column("state", String(16)),
    Column("prev_state", String(16)),
    Column("reason", Text, nullable=False),
    Column("client_order_id", String(128)),
    Column("claim_key", String(64)),
    Column("detail", Text),
    # No secondary index (migration 0005 dropped the one on `at`): each is a page written by
    # every audit insert, and nothing on the order path reads the log. Time ranges scan in id order.
)

# The HTTP service's tables (migration 0003): per-agent API keys, stored as SHA-256 of the secret,
# and SafeAgent-compatible action claims (`POST /claim`), which are not order claims.
api_keys = Table(
    "tg_api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("agent_id", String(64), nullable=False),
    Column("is_admin", Integer, nullable=False, server_default=text("0")),
    Column("secret_hash", String(64), nullable=False),
    Column("label", Text, nullable=False, server_default=text("''")),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
)

actions = Table(
    "tg_actions",
    metadata,
    Column("action_key", String(64), primary_key=True),
    Column("agent_id", String(64), nullable=False),
    Column("request_id", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("result", Text),
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("settled_at", UTCDateTime),
    Index("ix_tg_actions_agent_claimed", "agent_id", "claimed_at"),
)

# Which broker account each agent trades (migration 0006): "other agents' shares" in exit
# sizing and reconciliation are those of agents on the same account (or of unknown account).
agent_accounts = Table(
    "tg_agent_accounts",
    metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("account_key", String(64), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# The store's identity (migration 0011): one row, an id made once when the store is created (or
# migrated from before 0011) and never changed. The claim service names it on every answer, and
# a remote ledger refuses a service that answers from another store (`RemoteClaimLedger`).
store_identity = Table(
    "tg_store",
    metadata,
    Column("store_id", String(32), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
)


def row_dict(row: Any) -> dict[str, Any]:
    """Return a SQLAlchemy Row as a plain dict."""
    return dict(row._mapping)
