"""`tradeguard db`: upgrade creates or migrates, check never changes anything, export reads back.

On a SQLite file and on the real PostgreSQL server (`store_url`), with the schema version moved
by hand to stand for a store written by an older or a newer tradeguard.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from tradeguard import ClaimStore, OrderGateway, PaperBroker
from tradeguard.cli import main
from tradeguard.store.schema import SCHEMA_HEAD


def set_version(url: str, version: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": version})
    engine.dispose()


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    return found


@pytest.fixture
def traded(store_url: str) -> str:
    """A store with one entry and one exit of agent "bot" (TQQQ), all filled."""
    with ClaimStore(store_url) as store:
        gateway = OrderGateway(PaperBroker(), store, agent_id="bot", reconcile_on_start=False)
        gateway.enter("TQQQ", qty=6, intent="09:42 buy")
        gateway.exit("TQQQ", intent="10:15 sell")
    return store_url


def test_upgrade_creates_a_store_that_check_finds_at_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert main(["db", "upgrade", "--store", url]) == 0
    assert f"schema at head {SCHEMA_HEAD} (a new store)" in capsys.readouterr().out
    assert main(["db", "check", "--store", url]) == 0
    assert f"schema at head {SCHEMA_HEAD}" in capsys.readouterr().out


def test_check_says_behind_then_upgrade_brings_it_to_head(
    traded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    set_version(traded, "0002")
    assert main(["db", "check", "--store", traded]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"schema 0002 is behind head {SCHEMA_HEAD} (run tradeguard db upgrade)" in err[0]
    set_version(traded, SCHEMA_HEAD)  # 0003's tables are there already; only the version was moved
    assert main(["db", "check", "--store", traded]) == 0


def test_check_says_ahead_for_a_newer_tradeguard_and_upgrade_refuses(
    traded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    set_version(traded, "9999")
    assert main(["db", "check", "--store", traded]) == 1
    assert "schema 9999 is ahead of this tradeguard" in capsys.readouterr().err
    assert main(["db", "upgrade", "--store", traded]) == 2
    assert "newer than this tradeguard understands" in capsys.readouterr().err


def test_check_on_an_empty_database_says_behind_and_creates_nothing(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "check", "--store", pg_url]) == 1
    assert "no tradeguard schema" in capsys.readouterr().err
    assert main(["audit", "--store", pg_url]) == 2  # a reader does not create the schema either
    assert "holds no tradeguard claim store" in capsys.readouterr().err
    assert tables(pg_url) == set()


def test_export_claims_json_is_read_back_by_import_claims(
    traded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, session = tmp_path / "claims.json", tmp_path / "claims.jsonl"
    assert main(["db", "export", "--store", traded, "-o", str(out)]) == 0
    assert f"wrote 2 claims record(s) to {out}" in capsys.readouterr().out
    records = json.loads(out.read_text())
    assert [(r["kind"], r["state"], r["outcome"]) for r in records] == [
        ("entry", "FILLED", "COMMITTED"),
        ("exit", "FILLED", "COMMITTED"),
    ]
    assert main(["import", "claims", str(out), "-o", str(session), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["decisions"] == 2 and report["shape"] == "SafeAgent claim records"


def test_export_audit_csv_is_the_audit_csv_and_import_reads_it(
    traded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exported, direct = tmp_path / "export.csv", tmp_path / "audit.csv"
    assert (
        main(["db", "export", "--store", traded, "--what", "audit", "--format", "csv", "-o", str(exported)])
        == 0
    )
    assert main(["audit", "--store", traded, "--csv", str(direct)]) == 0
    assert exported.read_text() == direct.read_text()
    with exported.open(newline="") as fh:
        assert {r["action"] for r in csv.DictReader(fh)} >= {"claim", "transition", "ledger"}
    capsys.readouterr()
    assert main(["import", "claims", str(exported), "-o", str(tmp_path / "s.jsonl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shape"] == "tradeguard audit export"


def test_export_to_stdout_and_to_a_missing_folder(
    traded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "export", "--store", traded, "--what", "audit", "--format", "json"]) == 0
    assert {r["action"] for r in json.loads(capsys.readouterr().out)} >= {"claim", "transition"}
    target = tmp_path / "missing" / "x.json"
    assert main(["db", "export", "--store", traded, "-o", str(target)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"cannot write {target}" in err[0]


@pytest.mark.parametrize(
    "command",
    [
        ["db", "export", "-o", "{file}"],
        ["db", "export", "--what", "audit", "--format", "csv", "-o", "{file}"],
        ["audit", "--csv", "{file}"],
    ],
    ids=["export-claims", "export-audit", "audit-csv"],
)
@pytest.mark.parametrize("suffix", ["", "-wal"], ids=["database", "wal"])
def test_an_export_onto_the_stores_own_file_is_refused_and_the_store_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], suffix: str
) -> None:
    """Audit 10c D1: `-o` naming the store's file truncated it before reading (every claim lost)."""
    path = tmp_path / "claims.db"
    url = f"sqlite:///{path}"
    with ClaimStore(url) as store:
        gateway = OrderGateway(PaperBroker(), store, agent_id="bot", reconcile_on_start=False)
        gateway.enter("TQQQ", qty=6, intent="09:42 buy")
        target = str(path) + suffix
        if not Path(target).exists():
            pytest.skip("no WAL file left open")
        capsys.readouterr()
        argv = [a.format(file=target) for a in command] + ["--store", url]
        assert main(argv) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and "refusing to write" in err[0] and "claim store" in err[0]
        assert [c.intent for c in store.list_claims()] == ["09:42 buy"]
    link = tmp_path / "link.db"
    link.symlink_to(path)
    assert main(["db", "export", "--store", url, "-o", str(link)]) == 2
    with ClaimStore(url) as store:
        assert len(store.list_claims()) == 1
