"""Times out of a datetime's range (`--since 99999999d`) are one line and exit 2, not a traceback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tradeguard import ClaimStore
from tradeguard.cli import main
from tradeguard.cli.when import parse_when

NOW = datetime(2026, 5, 21, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    ["99999999d", "3000000w", "99999999999999999999999s", "0001-01-01T00:00+05:00", "9999-12-31T23:59-05:00"],
)
def test_a_time_no_datetime_can_hold_is_out_of_range(text: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_when(text, NOW)


def test_the_ends_of_the_range_are_still_times() -> None:
    assert parse_when("0001-01-01T00:00Z", NOW) == datetime(1, 1, 1, tzinfo=UTC)
    assert parse_when("9999-12-31T23:59Z", NOW) == datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    assert parse_when("700000d", NOW).year == 109


@pytest.mark.parametrize("option", ["--since", "--until"])
@pytest.mark.parametrize("text", ["99999999d", "0001-01-01T00:00+05:00"])
def test_audit_with_a_time_out_of_range_is_one_line_naming_the_option(
    option: str, text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    ClaimStore(url).close()
    assert main(["audit", "--store", url, option, text]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and option in err and "out of range" in err, err
