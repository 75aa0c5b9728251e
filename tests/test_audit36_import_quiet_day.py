"""`tradeguard import claims` of an export with no record (its header alone) is a quiet day, exit 0.

A history with no orders or a log with no order lines is written with a warning (README); an
audit CSV of a quiet window (`tradeguard audit --csv`, which `import claims` is documented to
read) or SafeAgent's export with no row were refused instead, exit 2, as "unknown columns []":
the columns were taken from the first row, and there was none.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradeguard.cli import main


def test_an_audit_csv_of_a_quiet_window_imports_and_replays_to_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{tmp_path / 'tradeguard.db'}"
    assert main(["db", "upgrade", "--store", store]) == 0
    export, session = tmp_path / "audit.csv", tmp_path / "quiet.jsonl"
    assert main(["audit", "--store", store, "--csv", str(export)]) == 0
    assert export.read_text().startswith("id,at,agent_id,action,")  # the header, no record
    capsys.readouterr()

    assert main(["import", "claims", str(export), "-o", str(session), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["attempts"] == 0
    assert "has no order attempts" in captured.err and "error" not in captured.err
    assert json.loads(session.read_text().splitlines()[0])["type"] == "session"

    assert main(["replay", str(session), "--compare", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert {mode: f["attempts"] for mode, f in figures.items()} == {"none": 0, "entry-only": 0, "full": 0}


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_safeagents_export_with_no_row_is_a_quiet_day(
    newline: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export, session = tmp_path / "safeagent_db.csv", tmp_path / "quiet.jsonl"
    export.write_bytes(f"index,request_id,result,status,created_at{newline}".encode())
    assert main(["import", "claims", str(export), "-o", str(session)]) == 0
    assert "has no order attempts" in capsys.readouterr().err
    assert session.exists()


def test_a_header_of_other_columns_is_still_refused_naming_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export, session = tmp_path / "orders.csv", tmp_path / "out.jsonl"
    export.write_text("foo,bar\n")
    assert main(["import", "claims", str(export), "-o", str(session)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "orders.csv:1: unknown columns ['bar', 'foo']" in err[0]
    assert not session.exists()
