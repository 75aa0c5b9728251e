"""What opening a claim store costs: a new store (migrated) and one at head, beside what it cost before.

Usage: python bench/store_open.py [--n 30] [--rounds 3] [--repeats 3] [--pg-url URL] [--dir DIR]

Every bot start, CLI command, service worker and chaos restart opens a store (G5: the claim must
be durable before anything is sent, so the store is opened first). Cases, interleaved, each the
median of ``--repeats`` runs:

* ``new store``: ``ClaimStore`` on a new SQLite file (every migration applied), closed;
* ``new store, alembic.command.upgrade``: the same file migrated the way every open did before
  (``alembic.command.upgrade``, which reads every revision file again) — the same-run baseline;
* ``store at head``: ``ClaimStore`` on an up-to-date file (no migration), closed;
* ``sqlite3 connect + version read``: the floor: the driver opening the file and reading
  ``alembic_version``;
* with ``--pg-url``: the first three on PostgreSQL (a new schema each), beside psycopg's own
  connect and version read.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sqlite3
import statistics
import sys
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from claims_kit import Op, psycopg_url, run_interleaved

from tradeguard import ClaimStore


def _old_upgrade(url: str) -> None:
    """Migrate a new store as every open did before: `alembic.command.upgrade` (re-reads the files)."""
    from alembic import command
    from sqlalchemy import create_engine

    from tradeguard.store.engine import _alembic_config, parse_url

    engine = create_engine(parse_url(url))
    try:
        cfg = _alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()


def sqlite_cases(folder: Path) -> dict[str, Op]:
    """The SQLite cases, each on files of its own in `folder`."""
    fresh = itertools.count()
    head = f"sqlite:///{folder / 'head.db'}"
    ClaimStore(head).close()

    def new_store(_i: int) -> None:
        ClaimStore(f"sqlite:///{folder / f'new-{next(fresh)}.db'}").close()

    def old_new_store(_i: int) -> None:
        _old_upgrade(f"sqlite:///{folder / f'old-{next(fresh)}.db'}")

    def at_head(_i: int) -> None:
        ClaimStore(head).close()

    def floor(_i: int) -> None:
        conn = sqlite3.connect(folder / "head.db")
        try:
            conn.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            conn.close()

    return {
        "new store, sqlite": new_store,
        "new store, alembic.command.upgrade, sqlite": old_new_store,
        "store at head, sqlite": at_head,
        "sqlite3 connect + version read": floor,
    }


def pg_cases(stack: ExitStack, base: str) -> dict[str, Op]:
    """The PostgreSQL cases: a new schema per new store (all dropped with `stack`), one at head."""
    import psycopg
    import sqlalchemy as sa

    admin = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
    made: list[str] = []

    def drop_all() -> None:
        with admin.begin() as conn:
            for name in made:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()

    stack.callback(drop_all)
    sep = "&" if "?" in base else "?"

    def schema() -> str:
        name = f"tg_bench_open_{uuid.uuid4().hex[:10]}"
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        made.append(name)
        return f"{base}{sep}options=-csearch_path%3D{name}"

    head = schema()
    ClaimStore(head).close()

    def new_store(_i: int) -> None:
        ClaimStore(schema()).close()

    def old_new_store(_i: int) -> None:
        _old_upgrade(schema())

    def at_head(_i: int) -> None:
        ClaimStore(head).close()

    def floor(_i: int) -> None:
        options = head.rsplit("options=", 1)[1].replace("%3D", "=")
        with psycopg.connect(psycopg_url(base.split("?", maxsplit=1)[0]), options=options) as conn:
            conn.execute("SELECT version_num FROM alembic_version").fetchone()

    return {
        "new store, postgresql": new_store,
        "new store, alembic.command.upgrade, postgresql": old_new_store,
        "store at head, postgresql": at_head,
        "psycopg connect + version read": floor,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=30, help="timed opens per case and run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved slices per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs; every figure is their median")
    parser.add_argument("--pg-url", help="also measure PostgreSQL (a throw-away schema per new store)")
    parser.add_argument("--dir", help="folder for the SQLite files (default: a temporary one)")
    args = parser.parse_args()
    runs: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        folder = Path(tempfile.mkdtemp(prefix="tg-open-", dir=args.dir))
        try:
            with ExitStack() as stack:
                cases = sqlite_cases(folder)
                if args.pg_url:
                    cases |= pg_cases(stack, args.pg_url)
                for name, samples in run_interleaved(cases, args.n, args.rounds).items():
                    runs.setdefault(name, []).append(statistics.median(samples) * 1000)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    p50 = {name: statistics.median(values) for name, values in runs.items()}
    print(f"median of {args.repeats} interleaved runs, {args.n} opens per case each (ms)")
    print(f"{'case':<48}{'p50 ms':>9}   per run")
    for name, value in p50.items():
        print(f"{name:<48}{value:>9.2f}   {' '.join(f'{v:.1f}' for v in runs[name])}")
    pairs: list[tuple[str, str]] = [("new store, sqlite", "new store, alembic.command.upgrade, sqlite")]
    pairs.append(("store at head, sqlite", "sqlite3 connect + version read"))
    if args.pg_url:
        pairs.append(("new store, postgresql", "new store, alembic.command.upgrade, postgresql"))
        pairs.append(("store at head, postgresql", "psycopg connect + version read"))
    print()
    for mine, base in pairs:
        print(f"{mine} / {base} = {p50[mine] / p50[base]:.2f}")


if __name__ == "__main__":
    main()
