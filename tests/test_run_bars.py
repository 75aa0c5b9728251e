"""Bars for runs: the shipped day, generated days, and the checks every bar file passes."""

from __future__ import annotations

import runpy
import sys
from datetime import time
from decimal import Decimal
from pathlib import Path

import pytest

from tradeguard.errors import ConfigError
from tradeguard.run.barfile import load_bars, read_bar_file, shipped_day_path
from tradeguard.run.bars import EASTERN, MINUTE

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_day_is_390_minutes_of_qqq_tqqq_and_sqqq_at_may_21_levels() -> None:
    day = load_bars(None)
    assert day.symbols == ("QQQ", "SQQQ", "TQQQ") and len(day) == 390
    assert day.minutes[0].local.time() == time(9, 30) and day.minutes[-1].local.time() == time(15, 59)
    assert all(b.at - a.at == MINUTE for a, b in zip(day.minutes, day.minutes[1:], strict=False))
    first = day.minutes[0]
    assert first["TQQQ"].open == Decimal("75.00") and first["SQQQ"].open == Decimal("21.50")
    tqqq = [m.close("TQQQ") for m in day]
    assert Decimal(70) < min(tqqq) and max(tqqq) < Decimal(80)  # a day, not a crash
    # The leveraged pair moves against each other: TQQQ up, SQQQ down, minute by minute.
    moves = [
        (b.close("TQQQ") - a.close("TQQQ")) * (b.close("SQQQ") - a.close("SQQQ"))
        for a, b in zip(day.minutes, day.minutes[1:], strict=False)
    ]
    assert sum(1 for m in moves if m < 0) > 0.8 * len(moves)


def test_the_shipped_file_is_exactly_what_the_script_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "day.csv"
    monkeypatch.setattr(sys, "argv", ["make_bars.py", "--out", str(out)])
    runpy.run_path(str(ROOT / "sessions" / "make_bars.py"), run_name="__main__")
    assert out.read_bytes() == shipped_day_path().read_bytes()


def test_a_seed_gives_the_same_day_every_time_and_another_seed_another_day() -> None:
    seven, again, eight = load_bars("seed:7"), load_bars("seed:7"), load_bars("seed:8")
    assert seven == again
    assert [m.close("QQQ") for m in seven] != [m.close("QQQ") for m in eight]
    assert seven.minutes[0].local.tzinfo == EASTERN


@pytest.mark.parametrize("source", ["seed:x", "seed:-1", "seed:"])
def test_a_bad_seed_is_refused(source: str) -> None:
    with pytest.raises(ConfigError, match="seed:N"):
        load_bars(source)


def test_a_missing_file_and_missing_columns_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_bar_file(tmp_path / "nope.csv")
    bad = tmp_path / "bars.csv"
    bad.write_text("timestamp,symbol,close\n2026-05-21T09:30:00-04:00,QQQ,520\n")
    with pytest.raises(ConfigError, match=r"bars.csv:1: missing column\(s\) open, high, low"):
        read_bar_file(bad)


def test_a_bar_file_may_span_days_without_a_gap_overnight(tmp_path: Path) -> None:
    rows = ["timestamp,symbol,open,high,low,close"]
    for stamp in ("2026-05-20T15:59:00-04:00", "2026-05-21T09:30:00-04:00", "2026-05-21T09:31:00-04:00"):
        rows.append(f"{stamp},QQQ,520,520.5,519.5,520.2")
    path = tmp_path / "two-days.csv"
    path.write_text("\n".join(rows) + "\n")
    assert len(read_bar_file(path)) == 3


def test_a_duplicate_bar_and_a_second_that_is_not_a_whole_minute_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    row = "2026-05-21T09:30:00-04:00,QQQ,520,520.5,519.5,520.2"
    path.write_text(f"timestamp,symbol,open,high,low,close\n{row}\n{row}\n")
    with pytest.raises(ConfigError, match=r"bars\.csv:3: a second QQQ bar for 2026-05-21 09:30 ET"):
        read_bar_file(path)
    path.write_text(f"timestamp,symbol,open,high,low,close\n{row.replace(':00-04', ':30-04')}\n")
    with pytest.raises(ConfigError, match="not on a whole minute"):
        read_bar_file(path)


def test_a_parquet_bar_file_reads_like_the_csv(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="Parquet bar files need pyarrow, an optional extra")
    import pandas as pd

    frame = pd.read_csv(shipped_day_path(), dtype=str)
    frame.to_parquet(tmp_path / "day.parquet")
    assert read_bar_file(tmp_path / "day.parquet").minutes == load_bars(None).minutes


def test_without_pyarrow_a_parquet_file_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    def no_engine(*args: object, **kwargs: object) -> None:
        raise ImportError("Unable to find a usable engine; tried using: 'pyarrow', 'fastparquet'.")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    (tmp_path / "day.parquet").write_bytes(b"PAR1")
    with pytest.raises(
        ConfigError, match=r"day.parquet: reading Parquet needs pyarrow \(pip install pyarrow\)"
    ):
        read_bar_file(tmp_path / "day.parquet")


@pytest.mark.parametrize(
    ("stamps", "hinted"),
    [
        (("2026-05-21T08:02:00-04:00", "2026-05-21T08:07:00-04:00"), True),  # pre-market, sparse
        (("2026-05-21T15:59:00-04:00", "2026-05-21T16:05:00-04:00"), True),  # into post-market
        (("2026-05-21T10:00:00-04:00", "2026-05-21T10:03:00-04:00"), False),  # a hole in the session
    ],
)
def test_a_gap_outside_regular_hours_says_why_such_bars_are_sparse(
    tmp_path: Path, stamps: tuple[str, str], hinted: bool
) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        "timestamp,symbol,open,high,low,close\n" + "".join(f"{s},QQQ,520,521,519,520\n" for s in stamps)
    )
    with pytest.raises(ConfigError, match=r"bars.csv:3: gap: no bars from") as refused:
        read_bar_file(path)
    assert ("pre- and post-market minutes without trades have no bar" in str(refused.value)) is hinted
