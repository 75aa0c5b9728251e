"""Opening a claim-store database: engine set-up, migrations, and SQLAlchemy error translation.

SQLite (one host, many processes) runs in WAL mode with `synchronous=FULL` and a busy timeout,
and every write transaction starts with `BEGIN IMMEDIATE` so two writers queue on the lock
instead of failing to upgrade it. PostgreSQL (several hosts) runs with `synchronous_commit=on`.
Every SQLAlchemy or OS error from the store passes through `translate_errors`, the one place
that turns it into `StoreError`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from tradeguard.errors import StoreError
from tradeguard.store.schema import SCHEMA_HEAD

if TYPE_CHECKING:
    # Alembic is imported when a schema must be checked or upgraded, not to open a store at head.
    from alembic.config import Config
    from alembic.runtime.migration import RevisionStep
    from alembic.script import ScriptDirectory

__all__ = [
    "describe",
    "driver_errors",
    "is_store_file",
    "open_engine",
    "parse_url",
    "read_only",
    "store_error",
    "translate_errors",
]

# Any fixed 64-bit number: the advisory lock that serialises migrations across PostgreSQL hosts.
_PG_MIGRATION_LOCK = 0x7467_6D69_6772_6174

_SQLITE_HINTS = {
    "file is not a database": "the file is not a SQLite database or is corrupt",
    "database disk image is malformed": "the database file is corrupt",
    "readonly database": "the database file or its folder is read-only",
    "disk is full": "the disk is full",
    "unable to open database file": "the file or its folder cannot be opened (missing or no permission)",
    "database is locked": "another process held the database lock past the busy timeout",
}


def describe(url: URL) -> str:
    """Return the URL as text without its password (a SQLite path as written, unescaped)."""
    if url.get_backend_name() == "sqlite":
        query = "&".join(f"{k}={v}" for k, v in url.query.items())
        return f"sqlite:///{url.database or ''}" + (f"?{query}" if query else "")
    return url.render_as_string(hide_password=True)


def store_error(url: URL, doing: str, exc: BaseException) -> StoreError:
    """Return the StoreError for a SQLAlchemy, driver or OS failure while `doing`, naming the store."""
    cause = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
    hint = next((h for k, h in _SQLITE_HINTS.items() if k in cause.lower()), None)
    what = f"{hint} ({cause})" if hint else cause
    return StoreError(f"claim store {describe(url)}: {doing} failed: {what}; nothing was sent")


def driver_errors(engine: Engine) -> tuple[type[Exception], ...]:
    """Return the base error class of the engine's driver (for code that calls the driver directly)."""
    return (engine.dialect.loaded_dbapi.Error,)


# What the store translates: SQLAlchemy's errors, the drivers' own (raised where the order path
# calls the driver directly, see connections.py) and the OS's.
_FOREIGN: tuple[type[Exception], ...] = (SQLAlchemyError, OSError, sqlite3.Error)


@contextlib.contextmanager
def translate_errors(url: URL, doing: str, extra: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Turn SQLAlchemy, driver (`extra`) and OS failures inside the block into StoreError."""
    try:
        yield
    except StoreError:
        raise
    except _FOREIGN + extra as exc:
        raise store_error(url, doing, exc) from exc


def parse_url(url: str | URL) -> URL:
    """Parse a SQLAlchemy URL, or raise StoreError saying what is wrong with it."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"claim store URL {url!r} is not a valid SQLAlchemy URL: {exc}") from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(
            f"claim store URL {describe(parsed)}: backend {parsed.get_backend_name()!r} is not "
            "supported; use sqlite:///path.db or postgresql+psycopg://user@host/db"
        )
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # psycopg 3 is the driver the `postgres` extra installs.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def is_store_file(path: str | os.PathLike[str], url: str | URL) -> bool:
    """True when `path` is a file of the SQLite store at `url` (the database, its WAL, shm or journal).

    An export written there would truncate the store it reads (every claim and audit record
    lost), so the commands and methods that write a file refuse such a path. Links count: the
    test is on the files themselves.
    """
    parsed = parse_url(url)
    database = (parsed.database or "").removeprefix("file:")
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or not os.path.exists(path):
        return False
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(database + suffix) and os.path.samefile(path, database + suffix):
            return True
    return False


def _uri_flag(url: URL, name: str) -> str:
    value = url.query.get(name, "")
    return (value if isinstance(value, str) else value[-1]).lower()


def read_only(url: URL) -> bool:
    """True when a SQLite URL asks for a read-only connection (`?mode=ro&uri=true`)."""
    return (
        url.get_backend_name() == "sqlite"
        and _uri_flag(url, "uri") in ("true", "1")
        and _uri_flag(url, "mode") == "ro"
    )


# The sqlite3 module binds str, int, float and bytes as they are, but sends every other parameter,
# None included, through its adapter lookup: with no adapter registered for None, that ends in
# two failed attribute lookups (`__adapt__` on its protocol, `__conform__` on None), one of which
# formats an AttributeError, ~3k instructions for each NULL bound; a claim cycle binds about 30
# (unset columns of transitions and records), ~7 % of its instructions. An adapter for None that
# returns None binds the same NULL after one dict hit. `{}.get` is that adapter as a C call (a
# Python function costs a frame): it returns None for any argument. The registry is the sqlite3
# module's, for the whole process: one for None that someone registered first is left in place.
_NULL_KEY = (type(None), sqlite3.PrepareProtocol)
_BIND_NULL: Any = {}.get


def _bind_none_directly() -> None:
    """Register `_BIND_NULL` for None parameters unless an adapter for None exists (see above)."""
    sqlite3.adapters.setdefault(_NULL_KEY, _BIND_NULL)


def _sqlite_engine(url: URL, busy_timeout_ms: int) -> Engine:
    _bind_none_directly()
    database = url.database or ""
    if _uri_flag(url, "uri") in ("true", "1") and database.startswith("file:"):
        database = database[len("file:") :]  # sqlite:///file:path.db?mode=ro&uri=true
    if database in ("", ":memory:") or database.startswith(":memory:") or _uri_flag(url, "mode") == "memory":
        raise StoreError(
            f"claim store {describe(url)}: an in-memory SQLite database is not durable and not "
            "shared between processes; give a file path, e.g. sqlite:///tradeguard.db"
        )
    folder = os.path.dirname(os.path.abspath(database))
    if not os.path.isdir(folder):
        raise StoreError(f"claim store {describe(url)}: folder {folder} does not exist")
    if os.path.isdir(database):
        raise StoreError(f"claim store {describe(url)}: {database} is a folder; name a file in it")
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        # A new, empty file only (a no-op on an existing store): a claim cycle rewrites a few
        # rows and index entries, and every changed page goes to the WAL whole, so 1 KiB pages
        # write about a third of the WAL bytes of 4 KiB pages per cycle.
        cur.execute("PRAGMA page_size = 1024")
        mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"claim store {describe(url)}: cannot switch to WAL (got {mode})")
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front: a read-then-write transaction could otherwise
        # fail with SQLITE_BUSY on lock upgrade, which the busy timeout does not cover.
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


# libpq's defaults wait for a dead server forever: a request whose path went dark (a network
# partition, a host that died without closing its sockets) would hang the bot. TCP keepalives
# find a silent peer within about 20 s and an unacknowledged send fails after 30 s; both end in
# a driver error, so the caller gets StoreError (and sends nothing) instead of waiting. Options
# the URL gives win. Ignored on a Unix-domain socket, whose peer cannot vanish that way.
_PG_CONNECT_ARGS: dict[str, int] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 2,
    "tcp_user_timeout": 30_000,
}


def _postgres_engine(
    url: URL,
    prepare_after: int,
    stuck_transaction_secs: float,
    lock_timeout_ms: int,
    answer_timeout_secs: float,
) -> Engine:
    from tradeguard.store.pg_answer import AnswerBoundConnection  # noqa: PLC0415 - optional driver

    connect_args = {name: value for name, value in _PG_CONNECT_ARGS.items() if name not in url.query}
    engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    bound = answer_timeout_secs or None  # 0: no limit

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        # A frozen server (or a silent path to it) hangs libpq without end: see store/pg_answer.py.
        conn = AnswerBoundConnection.connect(*cargs, **cparams)
        conn.answer_timeout_secs = bound
        return conn

    stuck_ms = round(stuck_transaction_secs * 1000)
    # A lock_timeout the URL sets (`options=-c lock_timeout=...`) is the operator's choice.
    options = url.query.get("options", "")
    set_lock_timeout = "lock_timeout" not in (options if isinstance(options, str) else " ".join(options))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Server-side prepared statements after `prepare_after` runs (Settings.pg_prepare_after);
        # 0: never (psycopg's None), for a pooler that cannot route them.
        dbapi_conn.prepare_threshold = prepare_after or None
        with dbapi_conn.cursor() as cur:
            cur.execute("SET synchronous_commit = on")
            # A process frozen between two statements of a transaction would hold the symbol's
            # lock (and its rows) until it came back: every other writer in that symbol waits
            # meanwhile (Settings.pg_stuck_transaction_secs). 0 is PostgreSQL's "no limit" too.
            cur.execute(f"SET idle_in_transaction_session_timeout = {int(stuck_ms)}")
            if set_lock_timeout:
                # A lock another session holds (an operator's transaction, a migration) would
                # stall the order path without end, also after a POST: fail instead, as SQLite's
                # busy timeout does (Settings.pg_lock_timeout_ms). 0 is "no limit" here too.
                cur.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
        dbapi_conn.commit()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Each transaction durable, whatever the session's setting: behind a pooler in
        # transaction mode another client may have turned it off since `_on_connect` (the claim
        # service's action claims and keys run here; the claim store's own pool sets it per
        # transaction too, see store/connections.py).
        conn.exec_driver_sql("SET LOCAL synchronous_commit = on")

    return engine


def _alembic_config() -> Config:
    from alembic.config import Config  # noqa: PLC0415 - see the TYPE_CHECKING imports

    cfg = Config()
    location = resources.files("tradeguard.store") / "migrations"
    cfg.set_main_option("script_location", str(location))
    return cfg


# One lock for all of this process's Alembic work. Reading the migrations once (`functools.cache`
# may run a first call twice in two threads), and migrating: Alembic runs a migration through
# module-wide proxies (`alembic.context`, `alembic.op`), one per process, so two threads migrating
# two stores at once ran each other's DDL on the wrong connection (or on none, once the other's
# proxy was removed), and both stores were refused. Reentrant: migrating reads the migrations.
_ALEMBIC_LOCK = threading.RLock()


def _fresh_lock_in_child() -> None:
    # A process forked while another of its threads held the lock would hang on its first store
    # open: the child has the lock and not the thread that would release it.
    global _ALEMBIC_LOCK  # noqa: PLW0603 - the one module lock, made anew in a forked child
    _ALEMBIC_LOCK = threading.RLock()


os.register_at_fork(after_in_child=_fresh_lock_in_child)


@functools.cache
def _scripts() -> ScriptDirectory:
    """The shipped migrations, read once per process.

    Reading them executes every revision file (≈ 0.1 s of CPU for ten): done per store opened, it
    was most of the cost of opening one, in every CLI command, service worker and subprocess.
    """
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - see the TYPE_CHECKING imports

    with _ALEMBIC_LOCK:
        script = ScriptDirectory.from_config(_alembic_config())
        script.get_revisions("heads")  # loads the revision map now, under the lock
        return script


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every schema revision this tradeguard ships (a store at another one is newer)."""
    return frozenset(rev.revision for rev in _scripts().walk_revisions())


def _upgrade(conn: Connection) -> None:
    """Upgrade the schema on `conn` to head, as `alembic upgrade head` would, within its transaction."""
    from alembic.runtime.environment import EnvironmentContext  # noqa: PLC0415 - as above

    with _ALEMBIC_LOCK:
        script = _scripts()

        def steps(current: Any, _context: Any) -> list[RevisionStep]:
            # What `alembic.command.upgrade` runs; that command reads every revision file again.
            return script._upgrade_revs("head", current)

        with EnvironmentContext(_alembic_config(), script, fn=steps, destination_rev="head") as env:
            # As migrations/env.py configures it (that file serves `command.upgrade` in tests).
            env.configure(connection=conn, target_metadata=None, transactional_ddl=True)
            with env.begin_transaction():
                env.run_migrations()


def _migrate_when_free(engine: Engine, url: URL, busy_timeout_ms: int) -> None:
    """`_migrate`, run again while SQLite answers "database is locked" at once, within the busy timeout.

    Bots started together on a store nobody created yet race for the new file: switching it to
    WAL, or opening a WAL file another connection is still setting up, can answer SQLITE_BUSY at
    once, without the busy handler's wait, and one bot failed to start (StoreError, nothing sent).
    Nothing is written before the migration's own transaction commits, so running it again is safe.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            _migrate(engine, url)
            return
        except (OperationalError, sqlite3.OperationalError) as exc:
            cause = exc.orig if isinstance(exc, OperationalError) else exc  # a connect hook's own
            locked = isinstance(cause, sqlite3.OperationalError) and "locked" in str(cause)
            if not locked or time.monotonic() >= deadline:
                raise
        time.sleep(0.02)


def _schema_version(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if version is None else str(version)


def _migrate(engine: Engine, url: URL) -> None:
    if engine.dialect.name == "postgresql":
        # A store at head (the common case) is read without the migration lock: the lock is one
        # for the whole database, and a long migration of another schema in it would otherwise
        # hold every bot's start (and fail it past `lock_timeout`).
        with engine.connect() as conn, _unbounded(conn):
            at_head = _schema_version(conn) == SCHEMA_HEAD
            conn.rollback()
    else:
        at_head = False  # SQLite reads under its write lock anyway (BEGIN IMMEDIATE): read once, below
    if not at_head:
        with engine.begin() as conn, _unbounded(conn):
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            current = _schema_version(conn)
            # At head, nothing of Alembic's is needed, not even imported.
            if current != SCHEMA_HEAD:
                if current is not None and current not in known_revisions():
                    raise StoreError(
                        f"claim store {describe(url)} has schema version {current}, newer than this "
                        f"tradeguard understands (it ships up to {SCHEMA_HEAD}); upgrade tradeguard"
                    )
                _upgrade(conn)
    if not read_only(url):
        _probe_writable(engine)


@contextlib.contextmanager
def _unbounded(conn: Connection) -> Iterator[None]:
    """Let a PostgreSQL connection wait without end while migrating (an index build may take long)."""
    dbapi = conn.connection.dbapi_connection
    bound = getattr(dbapi, "answer_timeout_secs", None)
    if bound is None:
        yield
        return
    dbapi.answer_timeout_secs = None  # type: ignore[union-attr]
    try:
        yield
    finally:
        dbapi.answer_timeout_secs = bound  # type: ignore[union-attr]


def _probe_writable(engine: Engine) -> None:
    # Fail at open, not at the first order, when the database cannot be written (a read-only
    # file or mount, `chattr +i`, a hot-standby PostgreSQL): a no-op update, rolled back, is
    # the cheapest statement that makes SQLite open the file for writing.
    with engine.connect() as conn, conn.begin() as tx:
        conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
        tx.rollback()


def open_engine(
    url: str | URL,
    *,
    busy_timeout_ms: int = 30_000,
    migrate: bool = True,
    pg_prepare_after: int = 5,
    pg_stuck_transaction_secs: float = 10.0,
    pg_lock_timeout_ms: int = 30_000,
    pg_answer_timeout_secs: float = 45.0,
) -> Engine:
    """Create the engine for `url`, apply pending migrations, and check the schema version.

    `pg_prepare_after`, `pg_stuck_transaction_secs`, `pg_lock_timeout_ms`,
    `pg_answer_timeout_secs`: see `Settings` (PostgreSQL only).

    Raises:
        StoreError: The URL is unusable, the database cannot be opened, is corrupt, or was
            written by a newer tradeguard.
    """
    parsed = parse_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = _sqlite_engine(parsed, busy_timeout_ms)
        else:
            engine = _postgres_engine(
                parsed,
                pg_prepare_after,
                pg_stuck_transaction_secs,
                pg_lock_timeout_ms,
                pg_answer_timeout_secs,
            )
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise StoreError(
            f"claim store {describe(parsed)}: its database driver is not installed ({exc}); "
            "for PostgreSQL install tradeguard[postgres]"
        ) from exc
    except ArgumentError as exc:
        raise StoreError(f"claim store {describe(parsed)}: {exc}") from exc
    if migrate:
        try:
            with translate_errors(parsed, "opening and migrating the schema"):
                _migrate_when_free(engine, parsed, busy_timeout_ms)
        except BaseException:
            engine.dispose()  # a refused store must not leave its connection open
            raise
    return engine
