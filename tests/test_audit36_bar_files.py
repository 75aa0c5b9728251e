"""Bar files as users write them: a spreadsheet's byte order mark, headers in another case.

`tradeguard run --bars` refused both with "missing column(s) timestamp" although the column was
there: Excel's "CSV UTF-8" starts the file with a byte order mark, which became part of the first
header name, and a header of "Timestamp,Symbol,Open,..." matched none of the lower-case names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def _alpaca_frame(rows: list[dict[str, object]]) -> object:
    """The DataFrame alpaca-py's `BarSet.df` gives: indexed by (symbol, timestamp), a symbol at a time."""
    import pandas as pd

    frame = pd.DataFrame(sorted(rows, key=lambda r: (str(r["symbol"]), r["timestamp"])))  # type: ignore[arg-type]
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["trade_count"], frame["vwap"] = 100, frame["close"]
    return frame.set_index(["symbol", "timestamp"])


def test_bars_saved_by_alpaca_pys_dataframe_run_like_the_plain_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`client.get_stock_bars(request).df.to_csv(...)`: grouped by symbol, UTC times, extra columns."""
    import csv

    plain_file = _bars(tmp_path, "plain.csv")
    plain = _claims_of_a_run(tmp_path, plain_file, capsys)
    assert plain, "the momentum bot placed no order in the plain file's minutes"
    with plain_file.open(newline="") as handle:
        rows: list[dict[str, object]] = [
            {**row, **{k: float(row[k]) for k in ("open", "high", "low", "close")}}
            for row in csv.DictReader(handle)
        ]
    frame: Any = _alpaca_frame(rows)
    grouped = tmp_path / "alpaca.csv"
    frame.to_csv(grouped)
    text = grouped.read_text().splitlines()
    assert text[0].startswith("symbol,timestamp,open") and "+00:00" in text[1]
    assert text[1].split(",")[0] != text[2 + MINUTES].split(",")[0], "not grouped by symbol"
    assert _claims_of_a_run(tmp_path, grouped, capsys) == plain


def test_a_symbols_own_rows_out_of_order_are_still_refused_in_a_grouped_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _bars(tmp_path, "plain.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    grouped = sorted(rows, key=lambda line: (line.split(",")[1], line.split(",")[0]))
    grouped[5], grouped[6] = grouped[6], grouped[5]  # one symbol's minutes 6 and 7 swapped
    bars = tmp_path / "grouped.csv"
    bars.write_text("\n".join([header, *grouped]) + "\n")
    store = tmp_path / "claims.db"
    assert main(["run", "strategies.momentum", "--bars", str(bars), "--store", f"sqlite:///{store}"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("tradeguard: error: grouped.csv:8: rows out of time order")
    assert not store.exists()


def test_bars_saved_by_alpaca_pys_dataframe_as_parquet_keep_their_index_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`.df.to_parquet(...)` keeps symbol and timestamp in the index, not among the columns."""
    pytest.importorskip("pyarrow", reason="Parquet bar files need pyarrow, an optional extra")
    import csv

    plain_file = _bars(tmp_path, "plain.csv")
    plain = _claims_of_a_run(tmp_path, plain_file, capsys)
    with plain_file.open(newline="") as handle:
        rows: list[dict[str, object]] = [
            {**row, **{k: float(row[k]) for k in ("open", "high", "low", "close")}}
            for row in csv.DictReader(handle)
        ]
    frame: Any = _alpaca_frame(rows)
    frame.to_parquet(tmp_path / "alpaca.parquet")
    assert _claims_of_a_run(tmp_path, tmp_path / "alpaca.parquet", capsys) == plain
