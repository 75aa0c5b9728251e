"""Another process that holds the claim store's write lock: a store that reads but cannot write.

`blocked_writes(url)` starts a real child process that takes the write lock of the store at
`url` and holds it until the block ends: SQLite's `BEGIN IMMEDIATE` (the store's writers wait out
their busy timeout, then fail "database is locked"); PostgreSQL's `LOCK TABLE ... IN EXCLUSIVE
MODE` on the store's tables (reads go on, writes wait out the `lock_timeout` the URL sets, then
fail). Readers are not blocked on either, as with an operator's long transaction or a stuck
migration. Run as ``python -m tests.store_blocker URL``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tests.store_workers import subprocess_env

__all__ = ["blocked_writes", "with_lock_timeout"]

_PG_TABLES = "tg_claims, tg_turns, tg_audit, tg_dedup_windows, tg_agent_accounts"


def with_lock_timeout(url: str, ms: int = 300) -> str:
    """Return a PostgreSQL store URL whose sessions give up waiting for a lock after `ms`."""
    if not url.startswith("postgresql"):
        return url
    sep = "&" if "?" in url else "?"
    return (
        f"{url}{sep}options=-clock_timeout%3D{ms}"
        if "options=" not in url
        else url.replace("options=", f"options=-clock_timeout%3D{ms}%20", 1)
    )


def _hold(url: str) -> None:
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
    else:
        import sqlalchemy as sa

        from tradeguard.store.engine import parse_url

        engine = sa.create_engine(parse_url(url))
        held = engine.connect()
        held.begin()
        held.execute(sa.text(f"LOCK TABLE {_PG_TABLES} IN EXCLUSIVE MODE"))
    print("locked", flush=True)
    sys.stdin.readline()  # held until the parent says so (or dies: EOF)


@contextmanager
def blocked_writes(url: str) -> Iterator[None]:
    """Hold the store's write lock from another process for the `with` block."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.store_blocker", url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=subprocess_env(),
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked", "no lock taken"
        yield
    finally:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.close()
        child.wait(30)
        child.stdout.close()


if __name__ == "__main__":
    _hold(sys.argv[1])
