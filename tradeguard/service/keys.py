"""API keys of the claim service: one per agent (or admin), created once, stored only as a hash.

A key reads `tgk_<key_id>_<secret>`: the id is public (it names the key in `keys list` and in the
audit log), the secret is 32 random bytes shown once at creation. The store keeps the SHA-256 of
the secret: a secret of 256 random bits needs no slow hash (nothing to brute-force), and a leaked
table gives no usable key. Verification looks the row up by id and compares hashes in constant
time, so a wrong key and an unknown id cost the same.

This module needs SQLAlchemy only (not FastAPI): `tradeguard keys` works without the `service`
extra.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.engine import URL

from tradeguard.clock import Clock, SystemClock
from tradeguard.config import Settings
from tradeguard.errors import ConfigError
from tradeguard.store.engine import open_engine, parse_url, translate_errors
from tradeguard.store.schema import api_keys

__all__ = ["KEY_PREFIX", "ApiKey", "KeyRing", "UnknownKey"]

KEY_PREFIX = "tgk_"
_KEY_RE = re.compile(r"^tgk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_AGENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")


class UnknownKey(ConfigError):
    """No key has that id (revoking or inspecting a key that was never created)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key's public record (never its secret)."""

    key_id: str
    agent_id: str
    admin: bool
    label: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Return True while the key has not been revoked."""
        return self.revoked_at is None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def check_agent_id(agent_id: str) -> str:
    """Return `agent_id` if it is a usable agent id (1-64 of letters, digits, `._:@-`).

    Raises:
        ConfigError: It is empty, too long or has other characters.
    """
    if not _AGENT_RE.fullmatch(agent_id):
        raise ConfigError(
            f"agent id {agent_id!r} is not usable: 1-64 characters of letters, digits and ._:@- "
            "starting with a letter or digit"
        )
    return agent_id


class KeyRing:
    """The service's API keys in a claim store's database.

    Args:
        url: The claim store's URL (the keys live in its `tg_api_keys` table).
        clock: The time source for creation and revocation times.
        settings: The store's settings: SQLite's busy timeout and PostgreSQL's session limits
            and prepared statements, as the claim store on the same URL keeps them.

    Raises:
        StoreError: The store cannot be opened.
    """

    def __init__(
        self, url: str | URL, *, clock: Clock | None = None, settings: Settings | None = None
    ) -> None:
        self.url = parse_url(url)
        self._clock: Clock = clock or SystemClock()
        s = settings or Settings()
        self._engine: Engine = open_engine(
            self.url, busy_timeout_ms=s.sqlite_busy_timeout_ms, pg_prepare_after=s.pg_prepare_after,
            pg_stuck_transaction_secs=s.pg_stuck_transaction_secs, pg_lock_timeout_ms=s.pg_lock_timeout_ms,
            pg_answer_timeout_secs=s.pg_answer_timeout_secs,
        )  # fmt: skip

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def __enter__(self) -> KeyRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now(self) -> datetime:
        return self._clock.now().astimezone(UTC)

    @contextlib.contextmanager
    def _reading(self, doing: str) -> Iterator[Connection]:
        # SQLite: a plain BEGIN for reads. The engine starts every transaction IMMEDIATE unless
        # told otherwise, and every request's key check is a read: taking the write lock for it
        # queued each request behind any writer on the file (another bot, a CLI, the claim
        # itself) and answered 503 when one held it past the busy timeout (audit 28).
        with translate_errors(self.url, doing), self._engine.connect() as conn:
            yield conn.execution_options(sqlite_begin="DEFERRED")

    def create(self, agent_id: str, *, admin: bool = False, label: str = "") -> tuple[ApiKey, str]:
        """Create a key for `agent_id`; return its record and the full key text (shown once).

        Raises:
            ConfigError: The agent id is not usable.
            StoreError: The key could not be recorded.
        """
        check_agent_id(agent_id)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = ApiKey(key_id, agent_id, admin, label, self._now(), None)
        with translate_errors(self.url, "creating an API key"), self._engine.begin() as conn:
            conn.execute(
                insert(api_keys).values(
                    key_id=key_id,
                    agent_id=agent_id,
                    is_admin=int(admin),
                    secret_hash=_hash(secret),
                    label=label,
                    created_at=record.created_at,
                )
            )
        return record, f"{KEY_PREFIX}{key_id}_{secret}"

    def verify(self, token: str) -> ApiKey | None:
        """Return the active key that `token` is, or None (malformed, unknown, wrong or revoked).

        Raises:
            StoreError: The store cannot be read (never taken as "no such key": the caller
                answers 503, not 401).
        """
        match = _KEY_RE.fullmatch(token.strip())
        if match is None:
            return None
        key_id, secret = match.groups()
        with self._reading("checking an API key") as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        stored = row.secret_hash if row is not None else "0" * 64
        # Compare even when the id is unknown: an unknown id and a wrong secret take the same time.
        good = hmac.compare_digest(stored, _hash(secret))
        if row is None or not good or row.revoked_at is not None:
            return None
        return _record(row)

    def get(self, key_id: str) -> ApiKey:
        """Return the key `key_id`.

        Raises:
            UnknownKey: No key has that id.
        """
        with self._reading("reading an API key") as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        if row is None:
            raise UnknownKey(f"no API key with id {key_id!r}")
        return _record(row)

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        """Return every key, oldest first."""
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        with self._reading("listing API keys") as conn:
            return [_record(row) for row in conn.execute(query)]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke `key_id` (idempotent: a revoked key keeps its first revocation time).

        Raises:
            UnknownKey: No key has that id.
        """
        with translate_errors(self.url, "revoking an API key"), self._engine.begin() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=self._now())
            )
        return self.get(key_id)


def _record(row: Any) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,
        agent_id=row.agent_id,
        admin=bool(row.is_admin),
        label=row.label,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
