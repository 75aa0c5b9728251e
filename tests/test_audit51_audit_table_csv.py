"""`tradeguard import claims` of the audit table as CSV (`tradeguard audit --format csv > audit.csv`).

README: `claims` reads `tradeguard audit --csv`. A new user who wrote the table with `--format
csv` instead got "missing column(s) claim_key of tradeguard's audit export", which names a column
but not the command that writes it. The refusal now says which export to write, as the one for
the claims table does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradeguard.cli import main


def test_the_audit_table_csv_is_refused_naming_the_export_to_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{tmp_path / 'tradeguard.db'}"
    assert main(["db", "upgrade", "--store", store]) == 0
    assert main(["settle", "--store", store, "--agent-id", "bot", "--new-agent", "--symbol", "TQQQ",
                 "--qty", "6", "--reason", "a record to list"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["audit", "--store", store, "--format", "csv"]) == 0
    table = tmp_path / "audit.csv"
    table.write_text(capsys.readouterr().out)
    session = tmp_path / "audit.jsonl"

    assert main(["import", "claims", str(table), "-o", str(session)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"tradeguard: error: {table}:1: the audit table as CSV")
    assert "tradeguard audit --csv FILE" in err[0]
    assert not session.exists()

    # What it says to write is read.
    export = tmp_path / "audit-export.csv"
    assert main(["audit", "--store", store, "--csv", str(export)]) == 0
    capsys.readouterr()
    assert main(["import", "claims", str(export), "-o", str(session), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shape"] == "tradeguard audit export"
