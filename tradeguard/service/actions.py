"""SafeAgent-compatible action claims (`tg_actions`): claim once, settle once, report, never delete.

An action is a generic side effect a caller guards by its own request id: `claim` records it
PENDING with one atomic insert-if-absent (`INSERT ... ON CONFLICT DO NOTHING`, on SQLite and
PostgreSQL alike), so of any number of racing callers exactly one inserts the row and is told to
proceed; the others read the row that won. `settle` moves it to COMMITTED with its result by a
compare-and-set on the status, so the first result wins. Nothing ever moves a row back or
deletes it: a PENDING row stays PENDING until its owner (or an admin) settles it, whatever its
age (the original SafeAgent's retry-settles-with-a-made-up-result and sweep-deletes are exactly
what re-runs an action).

Tenancy: the primary key is the SHA-256 of the agent id and the request id, so two agents using
the same request id have two rows and never see each other's. The settlement token is a fresh
256-bit secret per claim; only its SHA-256 is stored (as with API keys).

Audit (G6): every claim, duplicate, conflict and settle appends its record to the claim store's
log (`tg_audit`, in the same database) inside the transaction that makes or reads the change, so
a claim or a result is never stored without its record: if the record cannot be written, the
claim or settle is rolled back and the caller is told that nothing was decided (G5).

This module needs SQLAlchemy only; every database failure comes out as `StoreError`.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL

from tradeguard.clock import Clock, SystemClock
from tradeguard.config import Settings
from tradeguard.domain.audit import AuditAction
from tradeguard.store.engine import open_engine, parse_url, translate_errors
from tradeguard.store.schema import actions, audit

__all__ = [
    "ActionPage",
    "ActionQuery",
    "ActionRecord",
    "ActionStatus",
    "ActionStore",
    "ClaimAnswer",
    "ClaimResult",
    "MAX_RESULT_DEPTH",
    "SettleAnswer",
    "action_key",
    "deeper_than",
    "standard_json",
]


class ActionStatus(enum.StrEnum):
    """Where an action claim is: claimed and unsettled, or settled with its result."""

    PENDING = "PENDING"
    COMMITTED = "COMMITTED"


class ClaimAnswer(enum.StrEnum):
    """What a claim call tells its caller (SafeAgent's three statuses)."""

    PROCEED = "PROCEED"  # this call created the claim: do the action, then settle
    PENDING = "PENDING"  # claimed and not settled: do NOT do it again; find out what happened
    SKIP = "SKIP"  # settled: reuse the stored result


class SettleAnswer(enum.StrEnum):
    """What a settle call did."""

    COMMITTED = "committed"
    ALREADY_COMMITTED = "already_committed"


def action_key(agent_id: str, request_id: str) -> str:
    """Return the stored key of `request_id` for `agent_id` (agents never share a key)."""
    # A NUL separator: neither part can contain one in JSON text, so no two pairs collide.
    return hashlib.sha256(f"{agent_id}\x00{request_id}".encode()).hexdigest()


# How deeply a settle result may nest objects and arrays (the result itself is level 1). Far more
# than a result needs, and far below every parser's and serializer's own limit (pydantic's is
# 255, Python's JSON modules stop near 1,000), so a stored result can always be read and sent.
MAX_RESULT_DEPTH = 64


def standard_json(result: dict[str, Any]) -> str:
    r"""Return `result` as the standard JSON text that is stored, or say why it cannot be.

    Python's JSON reader accepts what standard JSON does not: NaN and Infinity (stored as such,
    they would come back as null: the result silently changed) and lone surrogates (`"\ud800"`,
    which no database driver can encode as UTF-8). Nesting deeper than `MAX_RESULT_DEPTH` is
    refused too.

    Raises:
        ValueError: A one-line reason the result cannot be stored.
    """
    if deeper_than(result, MAX_RESULT_DEPTH):
        raise ValueError(f"nested too deeply: at most {MAX_RESULT_DEPTH} levels of objects and arrays")
    try:
        text = json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not standard JSON: it holds a lone surrogate (text that is not Unicode)") from None
    except ValueError:
        raise ValueError("not standard JSON: NaN and Infinity are not JSON numbers") from None
    return text


def deeper_than(value: object, limit: int) -> bool:
    """True when `value` nests objects and arrays more than `limit` levels deep (itself level 1).

    Iterative, not recursive: the value may be nested as deeply as its parser allowed.
    """
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One action claim as stored (never its settlement token).

    `result_json` is the stored result's JSON text, kept as text: answers embed it as it is
    (never parsed and serialized again, so no nesting a database holds can fail an answer).
    """

    key: str
    agent_id: str
    request_id: str
    action: str
    status: ActionStatus
    result_json: str | None
    claimed_at: datetime
    settled_at: datetime | None
    token_hash: str

    def token_matches(self, token: str | None) -> bool:
        """Return True if `token` is this claim's settlement token (constant-time compare)."""
        return hmac.compare_digest(self.token_hash, _hash(token or ""))


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """The outcome of `ActionStore.claim`: the row, and the token when this call created it."""

    answer: ClaimAnswer
    record: ActionRecord
    settlement_token: str | None = None


@dataclass(frozen=True, slots=True)
class ActionQuery:
    """Filters of `ActionStore.page` (all optional; times inclusive, on the claim time)."""

    agent_id: str | None = None
    action: str | None = None
    status: ActionStatus | None = None
    from_time: datetime | None = None
    to_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class ActionPage:
    """One page of action claims, newest first, and how many match in all."""

    items: list[ActionRecord]
    total: int


class ActionStore:
    """Action claims in a claim store's database (`tg_actions`).

    Args:
        url: The claim store's URL.
        clock: The time source for claim and settle times.
        settings: The store's settings: SQLite's busy timeout and PostgreSQL's session limits
            and prepared statements, as the claim store on the same URL keeps them (behind a
            pooler that cannot route prepared statements, `pg_prepare_after=0` must reach the
            claim path here too: it prepared its statements after five claims on a connection).

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
        dialect = sqlite if self.url.get_backend_name() == "sqlite" else postgresql
        self._insert = dialect.insert

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def _now(self) -> datetime:
        return self._clock.now().astimezone(UTC)

    @contextlib.contextmanager
    def _reading(self, doing: str) -> Iterator[Connection]:
        # SQLite: a plain BEGIN for reads, so they do not queue behind writers for the write lock
        # (the engine starts every transaction IMMEDIATE unless told otherwise).
        with translate_errors(self.url, doing), self._engine.connect() as conn:
            yield conn.execution_options(sqlite_begin="DEFERRED")

    def get(self, agent_id: str, request_id: str) -> ActionRecord | None:
        """Return `agent_id`'s claim of `request_id`, or None."""
        key = action_key(agent_id, request_id)
        with self._reading("reading an action claim") as conn:
            row = conn.execute(select(actions).where(actions.c.action_key == key)).first()
        return None if row is None else _record(row)

    def claim(self, agent_id: str, request_id: str, action: str) -> ClaimResult:
        """Claim `request_id` for `agent_id` unless claimed; say what the caller must do.

        One `INSERT ... ON CONFLICT DO NOTHING`: of racing callers exactly one inserts. A row
        that exists is read back and answered as it is (PENDING stays PENDING). The call's audit
        record (a claim, a skip, or an error when the row is for another action) is written in
        the same transaction; the caller compares `record.action` to answer a conflict.

        Raises:
            StoreError: Nothing could be recorded or read (never read as "lost the race"); no
                claim was made.
        """
        key = action_key(agent_id, request_id)
        token = secrets.token_urlsafe(32)
        now = self._now()
        statement = (
            self._insert(actions)
            .values(
                action_key=key, agent_id=agent_id, request_id=request_id, action=action,
                status=ActionStatus.PENDING.value, token_hash=_hash(token), claimed_at=now,
            )
            .on_conflict_do_nothing(index_elements=[actions.c.action_key])
            .returning(actions.c.action_key)
        )  # fmt: skip
        with translate_errors(self.url, "recording an action claim"), self._engine.begin() as conn:
            # RETURNING, not rowcount: a row comes back only from the insert that happened.
            inserted = conn.execute(statement).first() is not None
            if inserted:
                record = ActionRecord(
                    key, agent_id, request_id, action, ActionStatus.PENDING, None, now, None, _hash(token)
                )
                outcome = ClaimResult(ClaimAnswer.PROCEED, record, token)
            else:
                row = conn.execute(select(actions).where(actions.c.action_key == key)).first()
                if row is None:  # claims are never deleted: a conflict with no row is a broken store
                    raise RuntimeError(f"action claim {key} conflicted but cannot be read")
                record = _record(row)
                committed = record.status is ActionStatus.COMMITTED
                outcome = ClaimResult(ClaimAnswer.SKIP if committed else ClaimAnswer.PENDING, record)
            # In the claim's transaction: a claim whose record cannot be written is not made.
            what, reason = _claim_note(outcome, action)
            self._note(conn, now, record, what, reason=reason, state=record.status)
        return outcome

    def settle(self, record: ActionRecord, result: dict[str, Any], *, detail: dict[str, Any]) -> SettleAnswer:
        """Store `result` on a PENDING claim (compare-and-set on the status); the first wins.

        The caller has already checked who may settle (the owner with the token, or an admin).
        The audit record (with `detail`: who settled) is written in the same transaction.

        Raises:
            ValueError: `result` is not standard JSON (`standard_json`); nothing is stored.
            StoreError: The result could not be recorded (nor its audit record): nothing changed.
        """
        text = standard_json(result)
        now = self._now()
        statement = (
            update(actions)
            .where(actions.c.action_key == record.key, actions.c.status == ActionStatus.PENDING.value)
            .values(status=ActionStatus.COMMITTED.value, result=text, settled_at=now)
        )
        with translate_errors(self.url, "settling an action claim"), self._engine.begin() as conn:
            changed = conn.execute(statement).rowcount == 1
            if changed:
                reason = f"request {record.request_id!r} settled"
                self._note(
                    conn, now, record, AuditAction.TRANSITION, reason=reason, state=ActionStatus.COMMITTED,
                    prev_state=ActionStatus.PENDING, **detail,
                )  # fmt: skip
            else:
                reason = f"request {record.request_id!r} settled again: first result kept"
                self._note(
                    conn, now, record, AuditAction.SKIP, reason=reason, state=ActionStatus.COMMITTED, **detail
                )
        return SettleAnswer.COMMITTED if changed else SettleAnswer.ALREADY_COMMITTED

    @staticmethod
    def _note(
        conn: Connection,
        at: datetime,
        record: ActionRecord,
        action: AuditAction,
        *,
        reason: str,
        state: ActionStatus,
        prev_state: ActionStatus | None = None,
        **fields: Any,
    ) -> None:
        # The claim store's audit log, written on this connection so it shares the transaction.
        detail = {"request_id": record.request_id, "action": record.action, "via": "safeagent", **fields}
        conn.execute(
            insert(audit).values(
                at=at, agent_id=record.agent_id, action=action.value, reason=reason, state=state.value,
                prev_state=None if prev_state is None else prev_state.value, claim_key=record.key,
                detail=json.dumps(detail, sort_keys=True, default=str),
            )
        )  # fmt: skip

    def page(self, query: ActionQuery, *, limit: int, offset: int) -> ActionPage:
        """Return matching claims newest first (`limit` from `offset`) and the total count."""
        conditions = []
        if query.agent_id is not None:
            conditions.append(actions.c.agent_id == query.agent_id)
        if query.action is not None:
            conditions.append(actions.c.action == query.action)
        if query.status is not None:
            conditions.append(actions.c.status == query.status.value)
        if query.from_time is not None:
            conditions.append(actions.c.claimed_at >= query.from_time)
        if query.to_time is not None:
            conditions.append(actions.c.claimed_at <= query.to_time)
        rows_query = (
            select(actions)
            .where(*conditions)
            .order_by(actions.c.claimed_at.desc(), actions.c.action_key)
            .limit(limit)
            .offset(offset)
        )
        count_query = select(func.count()).select_from(actions).where(*conditions)
        with self._reading("reading action claims") as conn:
            total = conn.execute(count_query).scalar_one()
            items = [_record(row) for row in conn.execute(rows_query)]
        return ActionPage(items, int(total))

    def count_stale_pending(self, older_than_secs: float, agent_id: str | None = None) -> int:
        """Return how many claims are still PENDING `older_than_secs` after being claimed."""
        cutoff = self._now() - timedelta(seconds=older_than_secs)
        query = (
            select(func.count())
            .select_from(actions)
            .where(actions.c.status == ActionStatus.PENDING.value, actions.c.claimed_at < cutoff)
        )
        if agent_id is not None:
            query = query.where(actions.c.agent_id == agent_id)
        with self._reading("counting stale action claims") as conn:
            return int(conn.execute(query).scalar_one())


def _claim_note(outcome: ClaimResult, action: str) -> tuple[AuditAction, str]:
    # The audit record of one claim call: what it did and why.
    record = outcome.record
    request_id = record.request_id
    if record.action != action:
        return AuditAction.ERROR, f"request {request_id!r} claimed again for {action!r}"
    if outcome.answer is ClaimAnswer.PROCEED:
        return AuditAction.CLAIM, f"claimed {action!r} for request {request_id!r}"
    if outcome.answer is ClaimAnswer.SKIP:
        return AuditAction.SKIP, f"request {request_id!r} already committed: result reused"
    return AuditAction.SKIP, f"request {request_id!r} still pending: not run again"


def _record(row: Any) -> ActionRecord:
    return ActionRecord(
        key=row.action_key,
        agent_id=row.agent_id,
        request_id=row.request_id,
        action=row.action,
        status=ActionStatus(row.status),
        result_json=row.result,
        claimed_at=row.claimed_at,
        settled_at=row.settled_at,
        token_hash=row.token_hash,
    )
