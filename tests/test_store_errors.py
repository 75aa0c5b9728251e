"""Bad input fails closed: a clear StoreError naming what went wrong and where, and nothing lost.

Read-only and full-disk cases need care when tests run as root (as in CI), where file modes do
not stop writes:

* read-only: ``?mode=ro&uri=true`` opens the file read-only in SQLite itself, which works for
  every user; ``chattr +i`` makes the file immutable even for root (skipped where chattr or
  CAP_LINUX_IMMUTABLE is missing); ``chmod 0o444`` is tried only when not root.
* full disk: a 512 KiB tmpfs mounted for the test (skipped where mounting is not allowed), and
  SQLite's ``PRAGMA max_page_count``, which fails a write with the same SQLITE_FULL ("database
  or disk is full") a full disk gives, on any machine.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import Pool

from tests.mothers import make_intent, make_spec
from tradeguard.domain import Claim
from tradeguard.domain.intents import Intent
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import StoreError
from tradeguard.store import ClaimStore


def record(url: str, names: list[str]) -> list[Claim]:
    """Record one claim per name (one SUBMITTED, to check states survive too) and close."""
    with ClaimStore(url) as store:
        claims = [store.claim(make_intent(n), make_spec(), owner="w").claim for n in names]
        claims[0] = store.transition(claims[0], ClaimState.SUBMITTED, reason="accepted")
    return claims


def assert_kept(url: str, claims: list[Claim], missing: list[Intent] = ()) -> None:  # type: ignore[assignment]
    with ClaimStore(url) as store:
        for claim in claims:
            assert store.get(claim.key) == claim
        for intent in missing:
            assert store.get(intent.key) is None


# -- unusable URLs and files ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("nonsense", "not a valid SQLAlchemy URL"),
        ("foo://host/db", "backend 'foo' is not supported"),
        ("mysql://u@h/db", "backend 'mysql' is not supported"),
        ("sqlite:////no/such/folder/claims.db", "folder /no/such/folder does not exist"),
        ("sqlite://", "in-memory SQLite database is not durable"),
        ("sqlite:///:memory:", "in-memory SQLite database is not durable"),
        ("sqlite:///file::memory:?uri=true", "in-memory SQLite database is not durable"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/test", r"127.0.0.1:1/test: opening .* failed: .*refused"),
    ],
)
def test_unusable_urls_are_refused_clearly(url: str, match: str) -> None:
    with pytest.raises(StoreError, match=match):
        ClaimStore(url)


def test_a_folder_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=f"{tmp_path} is a folder"):
        ClaimStore(f"sqlite:///{tmp_path}")


@pytest.mark.parametrize("garbage", [os.urandom(16384), b"this is not a database\n" * 500])
def test_a_corrupt_file_is_refused_and_left_alone(tmp_path: Path, garbage: bytes) -> None:
    path = tmp_path / "claims.db"
    path.write_bytes(garbage)
    with pytest.raises(StoreError, match=rf"{path}: opening .* not a SQLite database or is corrupt"):
        ClaimStore(f"sqlite:///{path}")
    assert path.read_bytes() == garbage


# -- read-only --------------------------------------------------------------------------------


def test_a_read_only_uri_reads_but_refuses_to_claim(sqlite_url: str, tmp_path: Path) -> None:
    kept = record(sqlite_url, ["one", "two"])
    path = tmp_path / "claims.db"
    with ClaimStore(f"sqlite:///file:{path}?mode=ro&uri=true") as store:
        assert store.get(kept[1].key) == kept[1]
        with pytest.raises(StoreError, match=rf"{path}\?mode=ro.*: recording a claim failed: .*read-only"):
            store.claim(make_intent("three"), make_spec(), owner="w")
    assert_kept(sqlite_url, kept, missing=[make_intent("three")])


def _chattr(flag: str, path: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, str(path)], check=False, capture_output=True).returncode == 0


def test_an_immutable_file_is_refused_at_open(sqlite_url: str, tmp_path: Path) -> None:
    kept = record(sqlite_url, ["one", "two"])
    path = tmp_path / "claims.db"
    if not _chattr("+i", path):
        pytest.skip("chattr +i is not available here (needs e2fsprogs and CAP_LINUX_IMMUTABLE)")
    try:
        with pytest.raises(
            StoreError, match=rf"{path}: opening .* failed: the database file .* is read-only"
        ):
            ClaimStore(sqlite_url)
    finally:
        _chattr("-i", path)
    assert_kept(sqlite_url, kept)


@pytest.mark.skipif(os.geteuid() == 0, reason="file modes do not stop root; see the chattr and URI tests")
def test_a_read_only_file_mode_is_refused_at_open(sqlite_url: str, tmp_path: Path) -> None:
    kept = record(sqlite_url, ["one"])
    path = tmp_path / "claims.db"
    path.chmod(0o444)
    try:
        with pytest.raises(StoreError, match="read-only"):
            ClaimStore(sqlite_url)
    finally:
        path.chmod(0o644)
    assert_kept(sqlite_url, kept)


# -- full disk --------------------------------------------------------------------------------


def claim_until_full(url: str, limit: int = 2000) -> tuple[list[Claim], Intent, StoreError]:
    """Claim new intents until the store fails; return what was recorded, the refused intent, the error."""
    made: list[Claim] = []
    with ClaimStore(url) as store:
        for n in range(limit):
            intent = make_intent(f"fill-the-disk-{n}")
            try:
                made.append(store.claim(intent, make_spec(), owner="w").claim)
            except StoreError as exc:
                return made, intent, exc
    raise AssertionError(f"{limit} claims fit; the disk never filled")


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], check=False, capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_filesystem_fails_closed_and_keeps_earlier_claims(tiny_fs: Path) -> None:
    url = f"sqlite:///{tiny_fs / 'claims.db'}"
    kept = record(url, ["before-1", "before-2"])
    made, refused, exc = claim_until_full(url)
    assert f"{tiny_fs / 'claims.db'}: recording a claim failed: the disk is full" in str(exc)
    assert "nothing was sent" in str(exc)
    assert_kept(url, kept + made, missing=[refused])


def test_a_database_at_its_page_limit_fails_closed_and_keeps_earlier_claims(
    sqlite_url: str, tmp_path: Path
) -> None:
    kept = record(sqlite_url, ["before-1", "before-2"])
    with sqlite3.connect(tmp_path / "claims.db") as probe:
        limit = probe.execute("PRAGMA page_count").fetchone()[0] + 8
    probe.close()

    def cap(dbapi: Any, _record: Any) -> None:
        dbapi.execute(f"PRAGMA max_page_count = {limit}")

    event.listen(Pool, "connect", cap)
    try:
        made, refused, exc = claim_until_full(sqlite_url)
    finally:
        event.remove(Pool, "connect", cap)
    assert f"{tmp_path / 'claims.db'}: recording a claim failed: the disk is full" in str(exc)
    assert_kept(sqlite_url, kept + made, missing=[refused])


# -- PostgreSQL connections -------------------------------------------------------------------


def test_a_dropped_postgresql_connection_is_replaced_before_work(pg_url: str) -> None:
    with ClaimStore(pg_url) as store:
        first = store.claim(make_intent("before"), make_spec(), owner="w").claim
        [pooled] = store._pool._idle
        with ClaimStore(pg_url) as admin, admin._engine.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_terminate_backend({pooled.dbapi.info.backend_pid})")
        second = store.claim(make_intent("after"), make_spec(), owner="w").claim
        assert store.get(first.key) == first and store.get(second.key) == second


def test_losing_the_database_after_open_fails_closed(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with ClaimStore(store_url) as store:

        def gone() -> None:
            raise OperationalError("connect", {}, Exception("the server went away"))

        monkeypatch.setattr(store._engine, "raw_connection", gone)
        with pytest.raises(StoreError, match="a claim failed: the server went away; nothing was sent"):
            store.claim(make_intent("lost"), make_spec(), owner="w")
        monkeypatch.undo()
        assert store.get(make_intent("lost").key) is None
