"""Data out of the commands: a table (Rich on a terminal, plain text otherwise), CSV or JSON.

Every table has a header row. Plain text is what a pipe gets (`| grep`, `| head`): aligned
columns, the last one unpadded, no colour and no box characters. Rich is imported only when a
terminal will see it.
"""

from __future__ import annotations

import csv
import enum
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, TypeVar

import click

__all__ = ["Format", "emit", "format_option", "plain_table"]

_F = TypeVar("_F", bound=Callable[..., Any])


class Format(enum.StrEnum):
    """How a command prints data."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def format_option(func: _F) -> _F:
    """Add `--format table|csv|json`."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice([f.value for f in Format]),
        default=Format.TABLE.value,
        show_default=True,
        help="table: aligned columns (a Rich table on a terminal); csv or json for programs.",
    )(func)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def plain_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Return the lines of an aligned table with a header row; the last column is not padded."""
    cells = [list(columns), *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns) - 1)]
    return [
        "  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)), r[-1]]).rstrip() for r in cells
    ]


def _json_value(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict | list | str | int | float | bool) or value is None:
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def emit(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, object]],
    fmt: str,
    *,
    title: str | None = None,
    out: IO[str] | None = None,
) -> None:
    """Print `rows` (mappings with at least `columns`) in `fmt`; JSON keeps every key of a row."""
    out = out or sys.stdout
    if fmt == Format.JSON:
        doc = [{k: _json_value(v) for k, v in row.items()} for row in rows]
        out.write(json.dumps(doc, indent=2) + "\n")
    elif fmt == Format.CSV:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(row.get(c)) for c in columns] for row in rows)
    elif out.isatty():
        _rich_table(columns, rows, title, out)
    else:
        if title:
            out.write(f"{title}\n")
        for line in plain_table(columns, [[row.get(c) for c in columns] for row in rows]):
            out.write(line + "\n")


def _rich_table(
    columns: Sequence[str], rows: Sequence[Mapping[str, object]], title: str | None, out: IO[str]
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    Console(file=out).print(table)
