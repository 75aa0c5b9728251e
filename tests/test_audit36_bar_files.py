"""Bar files as users write them: a spreadsheet's byte order mark, headers in another case.

`tradeguard run --bars` refused both with "missing column(s) timestamp" although the column was
there: Excel's "CSV UTF-8" starts the file with a byte order mark, which became part of the first
header name, and a header of "Timestamp,Symbol,Open,..." matched none of the lower-case names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradeguard.cli import main
from tradeguard.run.barfile import shipped_day_path

ROOT = Path(__file__).resolve().parents[1]
MINUTES = 40  # enough for the momentum bot to trade, short enough to run in a moment


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "TRADEGUARD_CONFIG", "TRADEGUARD_MODE"):
        monkeypatch.delenv(name, raising=False)


def _bars(tmp_path: Path, name: str, *, header: str | None = None, encoding: str = "utf-8") -> Path:
    lines = shipped_day_path().read_text().splitlines()[: 1 + 3 * MINUTES]
    if header is not None:
        lines[0] = header
    path = tmp_path / name
    path.write_text("\r\n".join(lines) + "\r\n", encoding=encoding)  # as a spreadsheet saves it
    return path


def _claims_of_a_run(tmp_path: Path, bars: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, str]]:
    """Run the momentum bot in sim over `bars`; return its store's claims (broker ids left out)."""
    store = f"sqlite:///{tmp_path / (bars.stem + '.db')}"
    assert main(["run", "strategies.momentum", "--bars", str(bars), "--view", "plain", "--store", store]) == 0
    capsys.readouterr()
    assert main(["claims", "list", "--all", "--store", store, "--format", "json"]) == 0
    claims = json.loads(capsys.readouterr().out)
    return [{k: v for k, v in claim.items() if k != "broker_order_id"} for claim in claims]


@pytest.mark.parametrize(
    ("header", "encoding"),
    [
        (None, "utf-8-sig"),
        ("Timestamp,Symbol,Open,High,Low,Close,Volume", "utf-8"),
        (" timestamp , SYMBOL ,open,high,low,close,volume", "utf-8-sig"),
    ],
    ids=["byte order mark", "capitalised header", "spaced upper-case header after a mark"],
)
def test_a_bar_file_saved_by_a_spreadsheet_runs_like_the_plain_one(
    header: str | None, encoding: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = _claims_of_a_run(tmp_path, _bars(tmp_path, "plain.csv"), capsys)
    assert plain, "the momentum bot placed no order in the plain file's minutes"
    theirs = _bars(tmp_path, "theirs.csv", header=header, encoding=encoding)
    assert _claims_of_a_run(tmp_path, theirs, capsys) == plain


def test_a_header_without_the_columns_is_still_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bars = _bars(tmp_path, "bars.csv", header="Time,Ticker,Open,High,Low,Close,Volume", encoding="utf-8-sig")
    store = tmp_path / "claims.db"
    assert main(["run", "strategies.momentum", "--bars", str(bars), "--store", f"sqlite:///{store}"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["tradeguard: error: bars.csv:1: missing column(s) timestamp, symbol"]
    assert not store.exists()
