"""Settings: one frozen object, passed explicitly, units in the field names.

The environment is read only at the edge (the CLI, `Settings.from_env`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from tradeguard.errors import ConfigError

__all__ = ["DEFAULT_STORE_URL", "MIN_DEDUP_WINDOW_SECS", "Settings"]

DEFAULT_STORE_URL = "sqlite:///tradeguard.db"

MIN_DEDUP_WINDOW_SECS = 1.0
"""The shortest dedup window: a sender held up past half of it sends nothing."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Tunable behaviour of the store, gateway and reconciler.

    Attributes:
        lease_secs: How long a worker owns a claim before another may take it over to resolve it.
        request_timeout_secs: Read timeout of one broker request.
        connect_timeout_secs: Connect timeout of one broker request.
        unknown_grace_secs: How long an UNKNOWN claim must age before "absent at the broker" may
            be believed (a POST still in flight can land after a 404). Request timeout + margin.
        unknown_probe_gap_secs: Gap between the two lookups that must both miss.
        dedup_window_secs: Drop-in mode without a client_order_id: identical orders within this
            window are one decision (at least `MIN_DEDUP_WINDOW_SECS`).
        reconcile_interval_secs: The longest the guard's view may differ from the broker's (G4):
            passes start every `reconcile_every_secs`, so that a pass confirming a phantom
            with its second read still decides within this interval.
        settle_delay_secs: Gap between the two broker reads that confirm a phantom position.
        recent_activity_secs: The reconciler leaves claims younger than this alone.
        position_settle_secs: A symbol whose ledger moved (a fill, a correction) more recently than
            this is never cleared or trimmed on position reads alone: Alpaca's positions
            endpoint trails fills by seconds. It must exceed the longest such lag: a read that
            trails a fill by more than this is taken as the position (measured: with the
            default 30 s, lags up to 35 s held; a 45 s lag trimmed a real position).
        not_sent_probe_secs: How long the reconciler keeps looking up NOT_SENT claims by
            client_order_id (a frozen sender may still place the order late).
        exit_resize_after_secs: An exit whose POST comes longer than this after the position
            read it was sized from (its sender froze or stalled in between, before or after the
            sizing) is re-sized against a fresh position read
            first: meanwhile the position may have been closed outside the bots and another
            agent's re-entry could be sold (G3). A healthy sender takes well under a second.
        client_order_id_prefix: Prefix of derived client_order_ids (ASCII, short).
        sqlite_busy_timeout_ms: How long SQLite waits for a lock held by another process.
        pg_prepare_after: PostgreSQL: a statement the store runs this many times on one
            connection is prepared on the server (psycopg's `prepare_threshold`), so each step
            of the order path (one statement: see docs/architecture.md) is parsed and planned
            once per connection. 0 never prepares: for a pooler in transaction mode that cannot
            route prepared statements (PgBouncer before 1.21, or with `max_prepared_statements
            = 0`). Every step then costs the server a parse and a plan (a claim cycle took about
            a fifth longer on a loopback server).
        pg_stuck_transaction_secs: PostgreSQL: a session of the store that sits idle inside an
            open transaction this long (its process froze, was stopped, or lost its network
            between two statements of one transaction) is ended by the server, which rolls the
            transaction back and frees the symbol locks it held. Other processes' exits and
            fills in that symbol then wait at most this long, where they waited until the
            frozen process came back; the frozen process, when it resumes, gets `StoreError`
            and sends nothing (its claim was never committed). The store's transactions idle
            for milliseconds between statements; 0 turns the limit off.
        pg_lock_timeout_ms: PostgreSQL: how long a statement of the store waits for a lock held
            by another session (an operator's long transaction, a migration, a stuck client that
            is not idle) before it fails with `StoreError`, as `sqlite_busy_timeout_ms` bounds
            SQLite's waits. Without it the order path waited without end, also right after a
            POST (its answer then unrecorded for as long). The store's own locks are held for
            milliseconds, and a frozen holder is ended after `pg_stuck_transaction_secs`; 0 turns
            the limit off; a `lock_timeout` in the URL's `options` wins.
        pg_answer_timeout_secs: PostgreSQL: how long the store waits for the server to answer
            one request before it drops the connection and fails with `StoreError` (nothing
            sent) or, right after a POST, `UnrecordedOrder`. A server process that froze or a
            proxy on the path that stopped forwarding keeps the TCP connection acknowledged, so
            without it the bot hung inside its claim without end. Must exceed
            `pg_lock_timeout_ms` (a statement may wait that long for a lock); migrations are not
            bounded; 0 turns the limit off.
    """

    lease_secs: float = 30.0
    request_timeout_secs: float = 10.0
    connect_timeout_secs: float = 3.05
    unknown_grace_secs: float = 15.0
    unknown_probe_gap_secs: float = 2.0
    dedup_window_secs: float = 60.0
    reconcile_interval_secs: float = 60.0
    settle_delay_secs: float = 2.0
    recent_activity_secs: float = 5.0
    position_settle_secs: float = 30.0
    not_sent_probe_secs: float = 3600.0
    exit_resize_after_secs: float = 0.5
    client_order_id_prefix: str = "tg"
    sqlite_busy_timeout_ms: int = 30_000
    pg_prepare_after: int = 5
    pg_stuck_transaction_secs: float = 10.0
    pg_lock_timeout_ms: int = 30_000
    pg_answer_timeout_secs: float = 45.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                # float() reads "nan" and "inf": a lease of inf seconds is no timedelta, and a
                # reconcile interval of nan is never due (a guard that never reconciles).
                if not math.isfinite(value):
                    raise ConfigError(f"setting {f.name} must be a finite number, got {value!r}")
                if value < 0:
                    raise ConfigError(f"setting {f.name} must not be negative, got {value!r}")
        if self.dedup_window_secs < MIN_DEDUP_WINDOW_SECS:
            # A sender held up past half the window sends nothing (G1: the window may have
            # passed to another identical order), so a window near zero would refuse every
            # order without a client_order_id, exits included.
            raise ConfigError(
                f"dedup_window_secs must be at least {MIN_DEDUP_WINDOW_SECS:g} s, got "
                f"{self.dedup_window_secs!r}; to make each order its own decision give it a "
                "client_order_id, or pass "
                "new_decision=True to the drop-in client's submit_order"
            )
        answer, lock = self.pg_answer_timeout_secs, self.pg_lock_timeout_ms / 1000
        if answer and lock and answer <= lock:
            # A statement waiting its full lock timeout would be cut off as a silent server.
            raise ConfigError(
                f"pg_answer_timeout_secs ({answer:g} s) must exceed pg_lock_timeout_ms ({lock:g} s)"
            )
        prefix = self.client_order_id_prefix
        if not (1 <= len(prefix) <= 8 and prefix.isascii() and prefix.replace("-", "").isalnum()):
            raise ConfigError(f"client_order_id_prefix must be 1-8 ASCII letters/digits, got {prefix!r}")

    @property
    def reconcile_every_secs(self) -> float:
        """How often a reconcile pass starts (the background reconciler, `reconcile_if_due`).

        A phantom that appears just after a pass's read is read by the next pass and confirmed by
        a second read `settle_delay_secs` later, so passes start that much more often than
        `reconcile_interval_secs`, the bound G4 promises (never more often than twice per interval).
        """
        interval = self.reconcile_interval_secs
        return max(interval - self.settle_delay_secs, interval / 2)

    @property
    def readopt_window_secs(self) -> float:
        """How long after a phantom clear a position of exactly its size may be re-adopted.

        A clear waits until the turn's ledger has not moved for `position_settle_secs`; a
        positions read that trailed the fills by more than that shows the shares again within
        about another settle horizon, and a pass reads them within one reconcile interval. Any
        later, a position of that size is someone else's (a manual or unguarded trade) until an
        operator says otherwise.
        """
        return self.position_settle_secs + self.reconcile_interval_secs

    @property
    def one_request_secs(self) -> float:
        """How long one broker request may take (connect + read): a lease must outlast it."""
        return self.request_timeout_secs + self.connect_timeout_secs

    def lease_outlasts_one_request(self, lease_expires_at: datetime, now: datetime) -> bool:
        """Whether a lease ending at `lease_expires_at` outlasts one request started `now`."""
        # `one_request_secs`, spelled out: a send checks its lease twice.
        return (
            lease_expires_at - now
        ).total_seconds() > self.request_timeout_secs + self.connect_timeout_secs

    def with_changes(self, **changes: Any) -> Settings:
        """Return a copy with some fields changed."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `TRADEGUARD_<FIELD>` variables (e.g. TRADEGUARD_LEASE_SECS)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"TRADEGUARD_{f.name.upper()}")
            if raw is None:
                continue
            kind = type(getattr(cls(), f.name))
            try:
                values[f.name] = value = kind(raw)
            except ValueError:
                raise ConfigError(
                    f"TRADEGUARD_{f.name.upper()}={raw!r} is not a valid {kind.__name__}"
                ) from None
            try:
                cls(**{f.name: value})  # checked alone, so the error names its variable
            except ConfigError as exc:
                raise ConfigError(f"{exc} (env TRADEGUARD_{f.name.upper()})") from None
        return cls(**values)
