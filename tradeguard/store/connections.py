"""Driver-level connections for the order path: a tiny pool, transactions and per-commit durability.

SQLAlchemy Core builds the store's queries whose shape varies (audit filters, listings). The few
statements on the order path (claim, duplicate lookup, transition, fills) are fixed SQL run on
the driver's own connection. Measured on a SQLite primary-key lookup: 2.2 µs raw, 15 µs through
Core on an open connection, 60 µs with Core's checkout and transaction (73 µs more on
PostgreSQL for its pre-ping round trip), while a duplicate claim has 50 µs in all. The
connections are still made by the store's SQLAlchemy engine, so they get the same connect-time
set-up (WAL, busy timeout, `synchronous_commit=on`).

Durability (SQLite). Every write transaction says whether it must reach the disk before the
call returns. A durable one commits with `synchronous=FULL` (the WAL is fsynced); the others
with `synchronous=NORMAL` (written to the WAL, fsynced at the next durable commit or checkpoint).
NORMAL commits survive a crash or kill -9 of any process: the WAL is in the OS page cache. Only
a power cut or kernel crash can lose them, and then only a *suffix*: the WAL is one append-only
log, so an fsync for a durable commit also makes every earlier commit durable, and SQLite never
recovers a later commit without the ones before it. `ClaimStore` documents which of its
transactions are durable and why.

Durability (PostgreSQL). A durable transaction runs `SET LOCAL synchronous_commit = on` (the
commit record is flushed before COMMIT returns), the others `SET LOCAL synchronous_commit =
off`, each in the same round trip as its BEGIN; a transaction that is one statement (`Tx.step`)
has its function set the same (`set_config(..., true)`, `Tx.sync`). No session setting is
relied on. The argument is the
one above: a client crash loses nothing (the server holds the commit); a server crash or power
cut can lose only the last few such commits (up to 3 x `wal_writer_delay`), and only a suffix: the
WAL is one sequential log, a durable commit flushes every record before its own, and recovery
never replays a later commit without the earlier ones.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import select
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import SQLAlchemyError

from tradeguard.errors import StoreError
from tradeguard.store.engine import describe, driver_errors, store_error

_T = TypeVar("_T")

__all__ = ["RawPool", "Tx"]

# A pooled PostgreSQL connection idle longer than this is pinged (one round trip) before use: a
# server or network that died without closing the socket leaves nothing to see on it.
PING_AFTER_IDLE_SECS = 5.0


# This process's id, kept current by an at-fork hook in the child: the pool asks on every
# checkout (a child must not use its parent's connections) and a fill asks again
# (`claims._FillGuesses`), and `os.getpid()` is a system call, 4-10 µs each on the reference VM
# (timeit), ~6 of them a claim cycle. Every fork that goes on running Python (os.fork,
# multiprocessing's fork and forkserver) runs the hook before any code of the child's.
_PID = [os.getpid()]


def _after_fork_in_child() -> None:
    _PID[0] = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)


def process_id() -> int:
    """Return `os.getpid()` without the system call (see `_PID`)."""
    return _PID[0]


def _sqlite_ts(value: datetime) -> str:
    # Exactly SQLAlchemy's SQLite DATETIME text (naive UTC, always 6 fraction digits), so Core
    # reads it back and string comparisons in SQL (lease expiry, time ranges) order correctly.
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the claim store; use timezone-aware UTC")
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:-6]  # drop "+00:00"


def _sqlite_dt(value: str) -> datetime:
    return datetime.fromisoformat(value + "+00:00")  # 5x faster than .replace(tzinfo=UTC)


def _pg_ts(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the claim store; use timezone-aware UTC")
    return value


def _pg_dt(value: datetime) -> datetime:
    return value.astimezone(UTC)


# BEGIN travels with the first statements of the transaction (see Tx); SET LOCAL ends with it.
# A durable transaction says so itself rather than trusting the session's setting: behind a
# pooler in transaction mode the session may be one another client set `off` on (G5).
_PG_BEGIN = ("BEGIN", "SET LOCAL synchronous_commit = on")
_PG_BEGIN_ASYNC = ("BEGIN", "SET LOCAL synchronous_commit = off")


@functools.lru_cache(maxsize=256)
def _pg_sql(sql: str) -> str:
    # Statements are written with qmark placeholders; psycopg wants %s.
    return sql.replace("?", "%s")


@functools.lru_cache(maxsize=256)
def _qmark_parts(sql: str) -> tuple[str, ...]:
    # The store's fixed statements hold "?" only as placeholders (no "?" in their literals).
    return tuple(sql.split("?"))


# Rows `Tx.append` holds before writing them: a transaction writes a few records (a fill: two);
# one that writes many (a reconcile pass) sends them this many at a time, far below SQLite's
# limit on parameters in one statement, with few distinct statement texts to prepare and cache.
_MAX_ROWS = 16


@functools.lru_cache(maxsize=_MAX_ROWS * 4)
def _many_rows(insert: str, n: int) -> str:
    """Return `insert` (``INSERT ... VALUES (?, ...)``, one row) made an INSERT of `n` rows."""
    if n == 1:
        return insert
    head, sep, row = insert.rpartition(" VALUES ")
    if not sep or not row.startswith("(") or not row.endswith(")"):
        raise ValueError(f"expected a statement ending in one row of values, got {insert!r}")
    return head + sep + ", ".join([row] * n)


def _literal(value: Any) -> str | None:
    """Return `value` as a PostgreSQL literal for the types the store binds, or None for others.

    Strings are escape-string literals (`E'...'`, backslash and quote escaped), which read the
    same whatever the session's `standard_conforming_strings` is: behind a pooler in transaction
    mode a session setting made at connect is not reliable.
    """
    kind = type(value)
    if value is None:
        return "NULL"
    if kind is str:
        text: str = value
        if "\x00" in text:
            return None
        return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
    if kind is int:
        return str(value)
    if kind is datetime and value.tzinfo is not None:
        return f"'{value.isoformat()}'::timestamptz"
    return None


def _bind(conn: _Conn, sql: str, params: Sequence[Any]) -> str:
    """Return `sql` with its qmark parameters bound as literals (psycopg's mogrify for other types).

    Several statements then travel as one simple query. Hand-binding the store's few types costs
    a few µs a statement; `ClientCursor.mogrify` costs 20-50.
    """
    parts = _qmark_parts(sql)
    if len(parts) != len(params) + 1:
        raise ValueError(f"{len(params)} parameters for {len(parts) - 1} placeholders")
    out = [parts[0]]
    for value, part in zip(params, parts[1:], strict=True):
        text = _literal(value)
        if text is None:
            return str(conn.client.mogrify(_pg_sql(sql), params))
        out.append(text)
        out.append(part)
    return "".join(out)


def _pg_rows(cur: Any) -> list[Any]:
    """Return the rows of the cursor's current result ([] for a statement that returns none).

    Asks the result itself how many columns it has: psycopg's `description` builds a `Column`
    object per column on every call (23 for a claim row, ~60 µs a claim).
    """
    result = cur.pgresult
    return cur.fetchall() if result is not None and result.nfields else []


def _readable(fd: int) -> bool:
    """True when `fd` has data or EOF waiting (an idle connection's server spoke or hung up)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _Conn:
    """A driver connection and the little state the pool tracks about it."""

    __slots__ = ("client", "cursor", "dbapi", "durable", "file", "idle_since", "steps")

    def __init__(self, dbapi: Any, postgres: bool) -> None:
        self.dbapi = dbapi
        self.file: tuple[int, int] | None = None  # SQLite: (device, inode) of the file it opened
        self.cursor = dbapi.cursor()
        self.durable: bool | None = None  # SQLite: the `synchronous` level last set (FULL: True)
        # PostgreSQL: binds parameters into statement text, so several statements travel in one
        # simple query (one round trip); the plain cursor keeps server-side binding for the rest.
        self.client: Any = _client_cursor(dbapi) if postgres else None
        # PostgreSQL: a step statement (`Tx.step`) goes to libpq directly (see pg_step.py).
        self.steps: Any = _step_conn(dbapi) if postgres else None
        self.idle_since = time.monotonic()  # when it last went back to the pool


def _file_id(path: str) -> tuple[int, int] | None:
    """The (device, inode) of the file at `path`, or None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _client_cursor(dbapi: Any) -> Any:
    import psycopg  # noqa: PLC0415 - the PostgreSQL driver is an optional dependency

    return psycopg.ClientCursor(dbapi)


def _step_conn(dbapi: Any) -> Any:
    from tradeguard.store.pg_step import StepConn  # noqa: PLC0415 - the driver is optional

    return StepConn(dbapi)


def _pg_step(conn: _Conn, sql: str, params: Sequence[Any]) -> list[Any]:
    """PostgreSQL: run one step statement on `conn` (one round trip); return its rows."""
    return conn.steps.call(conn.cursor, sql, params)  # type: ignore[no-any-return]


class Tx:
    """Statements inside one write transaction, with the backend's datetime codecs.

    On PostgreSQL every statement is a network round trip (~80 µs on loopback), so statements
    wait (`later`) and travel together, in order, when a result is needed (`flush`, `all`, `one`,
    `changed`) or with the COMMIT; BEGIN travels with the first batch. On SQLite `later` runs the
    statement at once. Either way `flush` returns the results of the statements queued with
    `keep=True`, in order.

    Attributes:
        dt: Decode a stored datetime to aware UTC.
        postgres: True on PostgreSQL (row and advisory locks matter there; SQLite writers are serial).
        committed: True once `flush(commit=True)` committed the transaction.
        reran: PostgreSQL: the first batch was run again on a fresh connection after the pooled
            one died before answering (see `flush`'s `rerunnable`).
    """

    __slots__ = (
        "_begin", "_conn", "_fresh", "_kept", "_last", "_last_enc", "_pending", "_pool", "_rows", "_rows_sql",
        "committed", "dt", "postgres", "reran", "sync",
    )  # fmt: skip

    def __init__(self, conn: _Conn, pool: RawPool, begin: tuple[str, ...]) -> None:
        self._conn = conn
        self._pool = pool
        self._begin = begin
        self.postgres = not pool.sqlite
        self._last: datetime | None = None
        self._last_enc: Any = None
        # PostgreSQL: statement texts not sent yet, each with whether its result is kept.
        self._pending: list[tuple[str, bool]] = [(text, False) for text in begin]
        self._fresh = True  # nothing queued or sent yet (a `step` may run)
        self._kept: list[Result] = []  # SQLite: results of `keep` statements since the last flush
        # SQLite: rows queued by `append` (all of one INSERT), written together before COMMIT.
        self._rows: list[Sequence[Any]] = []
        self._rows_sql = ""
        self.committed = False
        # PostgreSQL: the first batch ran again on a fresh connection (the pooled one died with
        # it unanswered: a committing batch may have committed on its first run).
        self.reran = False
        self.dt = pool.dt
        # PostgreSQL: the transaction's `synchronous_commit`, for a step that sets it itself.
        self.sync = "off" if begin is _PG_BEGIN_ASYNC else "on"

    @property
    def conn(self) -> _Conn:
        """The connection the transaction runs on (PostgreSQL may swap a dead one at BEGIN)."""
        return self._conn

    def ts(self, value: datetime) -> Any:
        """Encode an aware datetime for this backend (a transaction stamps one `now` many times)."""
        if value is not self._last:
            self._last, self._last_enc = value, self._pool.ts(value)
        return self._last_enc

    def later(self, sql: str, params: Sequence[Any] = (), *, keep: bool = False) -> None:
        """Queue a statement; with `keep`, the next `flush` returns its result."""
        self._fresh = False
        if self.postgres:
            self._pending.append((_bind(self._conn, sql, params) if params else sql, keep))
            return
        cur = self._conn.cursor
        cur.execute(sql, params)
        if keep:
            self._kept.append(Result(cur.fetchall() if cur.description is not None else [], cur.rowcount))

    def append(self, insert: str, values: Sequence[Any]) -> None:
        """Queue one row of `insert` (an ``INSERT ... VALUES (?, ...)`` of one row), written before COMMIT.

        For rows nothing in the transaction reads back (audit records). PostgreSQL: `later`. SQLite:
        the rows wait and go as one multi-row INSERT right before the COMMIT, in the order they
        were appended (the ids they get are the ones statement-by-statement inserts would give):
        one statement where a fill's ledger record and its transition's record took two, each
        statement costing the driver's binding, a GIL round trip and SQLite's set-up. A failure
        there fails the commit; the transaction is rolled back as if a statement before had failed.
        Rows of another INSERT than the queued ones' send those first.
        """
        if self.postgres:
            self.later(insert, values)
            return
        self._fresh = False
        if self._rows_sql is not insert:
            if self._rows:
                self._write_rows()
            self._rows_sql = insert
        self._rows.append(values)
        if len(self._rows) >= _MAX_ROWS:
            self._write_rows()

    def _write_rows(self) -> None:
        """SQLite: write the rows `append` queued, as one statement."""
        rows, self._rows = self._rows, []
        params = rows[0] if len(rows) == 1 else list(itertools.chain.from_iterable(rows))
        self._conn.cursor.execute(_many_rows(self._rows_sql, len(rows)), params)

    def flush(self, *, commit: bool = False, rerunnable: bool = False) -> list[Result]:
        """Send every queued statement (and COMMIT); return the kept results in order.

        `rerunnable`: the batch may run twice (an insert-if-absent that reads its row back: a
        second run finds the first run's row and says so), so even a committing first batch is
        re-run on a fresh connection if the pooled one died.
        """
        if not self.postgres:
            kept, self._kept = self._kept, []
            if commit:
                if self._rows:
                    self._write_rows()
                self._conn.cursor.execute("COMMIT")
                self.committed = True
            return kept
        self._fresh = False
        batch = self._pending
        if commit:
            batch.append(("COMMIT", False))
        self._pending = []
        if not batch:
            return []
        text = ";\n".join(t for t, _ in batch)
        if batch[0][0].startswith("BEGIN") and (rerunnable or not commit):
            # Nothing sent yet has an effect until a later COMMIT: safe to run again on a fresh
            # connection if this one died. Other batches that commit are never run twice: the
            # server may have committed one before the connection dropped (StoreError instead).
            first = self._conn
            self._conn, cur = self._pool.first_statement(first, text)
            self.reran = self._conn is not first
        else:
            cur = self._conn.cursor
            cur.execute(text)
        kept = []
        for i, (_text, keep) in enumerate(batch):
            if i:
                cur.nextset()
            if keep:
                kept.append(Result(_pg_rows(cur), cur.rowcount))
        self.committed = commit
        return kept

    def step(self, sql: str, params: Sequence[Any], *, rerunnable: bool = False) -> list[Any]:
        """PostgreSQL: run the whole transaction as one statement in autocommit; return its rows.

        For a statement that is a transaction by itself and sets its own durability (migration
        0009's functions take `sync`): no BEGIN, SET LOCAL or COMMIT travels, and the parameters
        are bound by the server. It goes to libpq directly, not through a psycopg cursor
        (pg_step.py: ~25 µs of client CPU less a step), prepared once per connection after
        `prepare_threshold` runs, so the server plans it once. Nothing may be queued before it.
        `rerunnable` as in `flush`: only a statement whose second run finds what the first one
        did (an insert-if-absent that reads its row back; a compare-and-set that then fails) may
        run again on a fresh connection after the pooled one died unanswered (`reran` then says
        so, even when the second run raised); any other statement's failure is the caller's
        StoreError (it may have committed).

        A statement that raises leaves nothing behind (its transaction was rolled back by the
        server) and this transaction as it was: it may go on another way (BEGIN then travels
        with its first batch).
        """
        if not self._fresh:
            raise RuntimeError("a step runs alone: statements were queued or sent before it")
        if rerunnable:
            first = self._conn
            try:
                self._conn, rows = self._pool.first_step(first, sql, params)
            finally:
                # Run again on a fresh connection (the first one died unanswered: it may have
                # committed), whether or not the second run succeeded.
                self.reran = bool(first.dbapi.closed)
        else:
            rows = _pg_step(self._conn, sql, params)
        self._pending = []
        self._fresh = False
        self.committed = True
        return rows

    def restart(self) -> None:
        """PostgreSQL: roll back what was sent and begin again, with the same durability.

        For a batch that a guard inside it aborted (the transaction is then unusable until rolled
        back); the caller goes on with another way to the same writes. The ROLLBACK travels with
        the next batch (no round trip of its own).
        """
        self._pending = [("ROLLBACK", False), *((text, False) for text in self._begin)]
        self._fresh = False
        self.committed = False

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run `sql` (after anything queued) and return every row."""
        if self.postgres and not self._pending:
            cur = self._conn.cursor
            cur.execute(_pg_sql(sql), params)
            return _pg_rows(cur)
        self.later(sql, params, keep=True)
        return self.flush()[-1].rows

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run `sql` and return its first row, or None."""
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def changed(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement without RETURNING and return how many rows it changed."""
        if not self.postgres:
            cur = self._conn.cursor
            cur.execute(sql, params)
            return int(cur.rowcount)
        self.later(sql, params, keep=True)
        return self.flush()[-1].count

    @property
    def fresh(self) -> bool:
        """True while nothing was queued or sent: the transaction may be one `step`."""
        return self._fresh

    def commit(self) -> None:
        """Commit, with any statements still queued."""
        if not self.committed:
            self.flush(commit=True)


class Result:
    """One statement's rows and row count, read before the statements after it ran."""

    __slots__ = ("count", "rows")

    def __init__(self, rows: list[Any], count: int) -> None:
        self.rows = rows
        self.count = count


class WriteTx:
    """Context manager: one write transaction on a pooled connection; StoreError on failure."""

    __slots__ = ("_doing", "_durable", "_pool", "_tx")

    def __init__(self, pool: RawPool, doing: str, durable: bool) -> None:
        self._pool = pool
        self._doing = doing
        self._durable = durable
        self._tx: Tx | None = None

    def __enter__(self) -> Tx:
        pool = self._pool
        conn = None
        try:
            conn = pool.checkout()
            self._tx = tx = pool.begin(conn, self._durable)
        except BaseException as exc:
            if conn is not None:
                pool.release(conn)
            if isinstance(exc, pool.errors):
                raise store_error(pool.url, self._doing, exc) from exc
            raise
        return tx

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        tx = self._tx
        assert tx is not None
        pool = self._pool
        try:
            if exc_type is None:
                try:
                    tx.commit()
                except pool.errors as failed:
                    pool.rollback_quietly(tx.conn)
                    raise store_error(pool.url, self._doing, failed) from failed
            else:
                if not tx.committed:
                    pool.rollback_quietly(tx.conn)
                if exc is not None and isinstance(exc, pool.errors):
                    raise store_error(pool.url, self._doing, exc) from exc
        finally:
            pool.release(tx.conn)


# Connections a pool keeps open while idle. A burst of N threads opens N connections; keeping
# them all would hold that many server slots for good (PostgreSQL allows 100 by default, and a
# service process has several pools), so the surplus is closed as it comes back.
MAX_IDLE = 8


class RawPool:
    """A LIFO pool of driver connections made by `engine`, safe across threads and forks.

    Checkout is a list pop (a connection serves one thread at a time), and LIFO keeps a single
    thread on the same connection: SQLite drops a connection's page cache whenever another
    connection wrote since its last transaction, so alternating connections (say, one per
    durability level) costs ~30 page reads per claim cycle; switching `synchronous` on the one
    connection costs two 3 µs pragmas. A process that forked starts a fresh pool and never
    touches the parent's connections (closing an inherited SQLite handle could drop the
    parent's locks).

    Attributes:
        ts: Encode an aware datetime for this backend.
        dt: Decode a stored datetime to aware UTC.
    """

    def __init__(self, engine: Engine, url: URL) -> None:
        self._engine = engine
        self.url = url
        self.sqlite = url.get_backend_name() == "sqlite"
        self.driver_errors = driver_errors(engine)
        # What a failure may raise here: the driver's errors, and SQLAlchemy's when the engine
        # makes a new connection (a server gone after the store opened).
        self.errors: tuple[type[Exception], ...] = (*self.driver_errors, SQLAlchemyError, OSError)
        self.ts: Callable[[datetime], Any] = _sqlite_ts if self.sqlite else _pg_ts
        self.dt: Callable[[Any], datetime] = _sqlite_dt if self.sqlite else _pg_dt
        # A SQLite store on a file: each write checks that the path still names the file the
        # connection opened (see `_same_file`).
        path = url.database or ""
        on_file = self.sqlite and path not in ("", ":memory:") and not path.startswith("file:")
        self._path = path if on_file else None
        self._idle: list[_Conn] = []
        self._pid = process_id()
        self._closed = False
        self._inherited: list[_Conn] = []

    # -- connections ------------------------------------------------------------------------

    def _connect(self) -> _Conn:
        fairy = self._engine.raw_connection()
        dbapi = fairy.dbapi_connection
        assert dbapi is not None
        fairy.detach()  # ours from now on: the engine's pool neither reuses nor closes it
        if not self.sqlite:
            dbapi.autocommit = True  # transactions are explicit BEGIN ... COMMIT
        conn = _Conn(dbapi, not self.sqlite)
        if self._path is not None:
            conn.file = _file_id(self._path)
        return conn

    def checkout(self) -> _Conn:
        """Return the most recently used idle connection, or a new one."""
        self.check_open()
        if process_id() != self._pid:
            self._inherited += self._idle
            self._idle, self._pid = [], process_id()
        try:
            conn = self._idle.pop()
        except IndexError:
            return self._connect()
        if self.sqlite or self._alive(conn):
            return conn
        self._close(conn)
        return self._connect()

    def _alive(self, conn: _Conn) -> bool:
        """True unless a PostgreSQL connection is found dead before anything of a transaction is sent.

        A batch that commits cannot be re-run after a failure (it may have committed), so a
        connection that died while idle (server restart, failover, `pg_terminate_backend`) must
        be found out before the batch goes. A server that ends a session sends its error and
        closes the socket, which then polls readable with no request outstanding: that costs
        one `poll`, no round trip. A connection idle past `PING_AFTER_IDLE_SECS` (or readable)
        is also pinged, for a peer that vanished without closing.
        """
        dbapi = conn.dbapi
        if dbapi.closed or dbapi.broken:
            return False
        stale = time.monotonic() - conn.idle_since > PING_AFTER_IDLE_SECS
        if not stale and not _readable(dbapi.fileno()):
            return True
        try:
            conn.cursor.execute("SELECT 1")
        except self.driver_errors:
            return False
        return bool(dbapi.info.transaction_status == 0)

    def _reusable(self, conn: _Conn) -> bool:
        dbapi = conn.dbapi
        if self.sqlite:
            return not dbapi.in_transaction and (self._path is None or conn.file is not None)
        # Idle: open and outside any transaction (a closed or broken connection's status is
        # UNKNOWN). Asked of libpq's handle: `info` builds an object per call.
        return bool(dbapi.pgconn.transaction_status == 0)

    def release(self, conn: _Conn) -> None:
        """Return `conn` to the pool, or close it if it is unusable, surplus or the pool is closed."""
        if self._is_closed() or not self._reusable(conn) or len(self._idle) >= MAX_IDLE:
            self._close(conn)
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)
        if self._is_closed():  # close() ran while we appended
            self._drain()

    def _is_closed(self) -> bool:
        return self._closed

    @property
    def closed(self) -> bool:
        """True once `close` ran: the store's connections are closed and no new one is made."""
        return self._is_closed()

    def check_open(self) -> None:
        """Raise StoreError if the pool was closed (the store must not reconnect behind its owner)."""
        if self._is_closed():
            raise StoreError(f"claim store {describe(self.url)} is closed")

    def _close(self, conn: _Conn) -> None:
        with contextlib.suppress(*self.driver_errors):
            conn.dbapi.close()

    def _drain(self) -> None:
        while self._idle:
            self._close(self._idle.pop())

    def close(self) -> None:
        """Close every idle connection; connections in use close when released."""
        self._closed = True
        self._drain()

    # -- transactions -----------------------------------------------------------------------

    def begin(self, conn: _Conn, durable: bool) -> Tx:
        """Start a write transaction on `conn` (PostgreSQL: BEGIN travels with the first statement)."""
        if self.sqlite:
            if self._path is not None:
                self._same_file(conn)
            _set_durable(conn, durable)
            # IMMEDIATE takes the write lock up front: a read-then-write transaction could
            # otherwise fail on lock upgrade with SQLITE_BUSY, which the busy timeout skips.
            conn.cursor.execute("BEGIN IMMEDIATE")
            return Tx(conn, self, ())
        return Tx(conn, self, _PG_BEGIN if durable else _PG_BEGIN_ASYNC)

    def _same_file(self, conn: _Conn) -> None:
        """Refuse to write through a connection whose file is no longer the store's path.

        An open SQLite connection keeps writing to its file after the file was moved, replaced
        or deleted (an operator's `mv`, a restore, a cleanup): every claim and answer would go
        to a file no process opens again, and the next process on the path, finding no claim,
        would send a decision's order a second time (G1). One `stat` per write transaction.
        """
        assert self._path is not None
        now = _file_id(self._path)
        if now is None or now != conn.file:
            conn.file = None  # never matches again: the pool closes it on release
            what = "moved or deleted" if now is None else "replaced by another file"
            raise StoreError(
                f"claim store {describe(self.url)}: the file was {what} while the store was open; "
                "nothing was written and nothing sent: open the store again on the right file"
            )

    def first_statement(self, conn: _Conn, text: str) -> tuple[_Conn, Any]:
        """Run the first statements of a transaction (unbound text), on a fresh connection if `conn` died."""
        return self._pg_first(conn, text, None)

    def first_step(self, conn: _Conn, sql: str, params: Sequence[Any]) -> tuple[_Conn, list[Any]]:
        """Run a step statement (`Tx.step`) on `conn`, or on a fresh connection if `conn` died; its rows."""
        # For a step its caller lets run twice (`Tx.step`'s `rerunnable`).
        return self._on_live(conn, lambda live: _pg_step(live, sql, params))

    def _pg_first(self, conn: _Conn, sql: str, params: Sequence[Any] | None) -> tuple[_Conn, Any]:
        sql = sql if params is None else _pg_sql(sql)
        return self._on_live(conn, lambda live: live.cursor.execute(sql, params))

    def _on_live(self, conn: _Conn, run: Callable[[_Conn], _T]) -> tuple[_Conn, _T]:
        """Return `run(conn)`, or `run` of a fresh connection if `conn` is found dead; and the one used.

        A pooled PostgreSQL connection may have died with a server restart or failover. The
        first statement of a transaction has no effect yet (nor do those sent with it, inside
        the uncommitted transaction), so running it once more on a new connection is what
        SQLAlchemy's pre-ping would have done, without its round trip.
        """
        try:
            return conn, run(conn)
        except self.driver_errors:
            if not (conn.dbapi.closed or conn.dbapi.broken):
                raise
        self._close(conn)
        fresh = self._connect()
        try:
            return fresh, run(fresh)
        except BaseException:
            self._close(fresh)
            raise

    def rollback_quietly(self, conn: _Conn) -> None:
        """Roll back after a failure; a connection that cannot is dropped on release.

        PostgreSQL: nothing to do on a session outside any transaction (nothing was sent, or a
        `Tx.step` failed: the server rolled its statement back).
        """
        if not self.sqlite and conn.dbapi.pgconn.transaction_status == 0:
            return
        with contextlib.suppress(*self.driver_errors):
            conn.cursor.execute("ROLLBACK")

    def read(self, doing: str, sql: str, params: Sequence[Any]) -> list[Any]:
        """Run one read statement on its own (one consistent snapshot) and return its rows."""
        conn = None
        try:
            conn = self.checkout()
            if self.sqlite:
                cur = conn.cursor
                cur.execute(sql, params)
            else:
                conn, cur = self._pg_first(conn, sql, params)
            rows: list[Any] = cur.fetchall()
        except self.errors as exc:
            raise store_error(self.url, doing, exc) from exc
        finally:
            if conn is not None:
                self.release(conn)
        return rows

    def write(self, doing: str, *, durable: bool) -> WriteTx:
        """Return a context manager for one write transaction; see the module docstring."""
        return WriteTx(self, doing, durable)

    def write_one(self, doing: str, sql: str, params: Sequence[Any], *, durable: bool) -> None:
        """Run one write statement as a transaction of its own (an insert that goes with no other change).

        What `write` with that one statement does, for less: on SQLite the statement runs alone
        in autocommit, which SQLite makes a transaction of its own (taking the write lock, and
        waiting for it up to the busy timeout, as BEGIN IMMEDIATE does), at the `synchronous`
        level of `durable`, after the file check every write makes; two statements (BEGIN,
        COMMIT) and a `Tx` fewer. On PostgreSQL it is `write`'s one round trip (BEGIN, SET LOCAL,
        the statement, COMMIT): the session's own `synchronous_commit` is not relied on.
        """
        if not self.sqlite:
            with self.write(doing, durable=durable) as tx:
                tx.later(sql, params)
            return
        conn = None
        try:
            conn = self.checkout()
            if self._path is not None:
                self._same_file(conn)
            _set_durable(conn, durable)
            conn.cursor.execute(sql, params)
        except self.errors as exc:
            raise store_error(self.url, doing, exc) from exc
        finally:
            if conn is not None:
                self.release(conn)


def _set_durable(conn: _Conn, durable: bool) -> None:
    """SQLite: set the connection's `synchronous` level for the next commit (FULL when durable)."""
    if conn.durable is not durable:
        conn.cursor.execute("PRAGMA synchronous = FULL" if durable else "PRAGMA synchronous = NORMAL")
        conn.durable = durable
