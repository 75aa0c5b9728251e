"""PostgreSQL: one step statement (`Tx.step`) sent through libpq directly, its parameters bound by the server.

A claim, a move and a fill are each one statement with 28 to 45 parameters (see
statements.py). Through psycopg's `Cursor.execute` each costs ~25 µs of client CPU in its Python
layers (query conversion, the prepared-statement bookkeeping, the result set-up) besides what
libpq and the socket cost; on a claim cycle of three steps that is ~5 % of the whole, and at 16
processes on a small host it is CPU the server lacks. This module does the same exchange with
less: the parameters are encoded as text here (str, int, bool, aware datetime: every type the
store binds on these statements; anything else, or a text with NUL, goes through the cursor as
before, which raises what it always raised), the statement is prepared under its own name once
the connection has run it `prepare_threshold` times (psycopg's setting, from
`Settings.pg_prepare_after`; None never prepares: a pooler in transaction mode), and the answer is
awaited with the connection's own `wait`, so the answer bound of pg_answer.py holds as before.
Rows are loaded by psycopg's own loaders: the same Python values as the cursor's.

What the server sees is the same statement, prepared or not, with untyped parameters whose types
it takes from the function's signature. Two formats are binary, because text costs CPU on both
sides for nothing (measured with callgrind, docs/measured.md): the answer's rows (the server's
`timestamptz_out` and the client's date parsing of a claim's timestamps) and, once a statement
is prepared, its `timestamptz` parameters (the server's `timestamptz_in`, the client's
`isoformat`): which parameters those are is asked of the server once, when it prepares the
statement (a Describe), so a timestamp is sent in binary only where the server reads a
`timestamptz`. The values are the same either way (microseconds, as exact as the text).

Errors are psycopg's (`error_from_result`): the same classes, SQLSTATE and diagnostics the
store's callers read. A statement the server no longer knows under its name (`DEALLOCATE
ALL`/`DISCARD ALL` by someone, SQLSTATE 26000) or whose cached plan went stale with a schema
change (0A000) failed before it ran and its transaction is rolled back: it is prepared again
and sent once more (its parameters as text, as on a statement's first runs).
"""

from __future__ import annotations

import functools
import itertools
import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.adapt import Transformer
from psycopg.generators import execute

__all__ = ["StepConn"]

_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_COMMAND_OK = pq.ExecStatus.COMMAND_OK
_FATAL_ERROR = pq.ExecStatus.FATAL_ERROR
# The statement's prepared form is gone or stale: it did not run (see the module docstring).
_PREPARE_AGAIN = frozenset({b"26000", b"0A000"})
_names = itertools.count(1)
_BINARY = pq.Format.BINARY
_TIMESTAMPTZ_OID = 1184
# PostgreSQL's binary timestamptz: microseconds since 2000-01-01 UTC, a big-endian int64.
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_int8 = struct.Struct("!q").pack


@functools.lru_cache(maxsize=64)
def _numbered(sql: str) -> bytes:
    """Return `sql` with its qmark placeholders as $1, $2, ... (none of its literals holds a '?')."""
    parts = sql.split("?")
    out = [parts[0]]
    for n, part in enumerate(parts[1:], 1):
        out.append(f"${n}")
        out.append(part)
    return "".join(out).encode()


class StepConn:
    """The step path of one psycopg connection: its prepared steps and its row loader."""

    __slots__ = ("_codec", "_dbapi", "_formats", "_loader", "_prepared", "_runs")

    def __init__(self, dbapi: psycopg.Connection[Any]) -> None:
        self._dbapi = dbapi
        self._codec = dbapi.info.encoding
        self._loader = Transformer(dbapi)
        self._prepared: dict[str, bytes] = {}  # statement text -> its prepared statement's name
        self._runs: dict[str, int] = {}  # statement text -> runs unprepared so far
        # Prepared statement text -> its parameters' formats: binary where the server reads a
        # timestamptz, else text; None: every parameter goes as text.
        self._formats: dict[str, list[int] | None] = {}

    def _text(self, params: Sequence[Any], formats: list[int] | None = None) -> list[bytes | None] | None:
        """Return the parameters encoded, or None if one is of a type left to the cursor.

        As text, except where `formats` says binary (a timestamptz): an aware datetime there
        goes in binary (any other value there goes to the cursor, whose formats are all text).
        """
        codec = self._codec
        out: list[bytes | None] = []
        for i, value in enumerate(params):
            kind = type(value)
            if kind is str:  # the commonest first
                if "\x00" in value:
                    return None  # the cursor raises psycopg's DataError for it
                out.append(value.encode(codec))
            elif value is None:
                out.append(None)
                continue
            elif kind is int:
                out.append(str(value).encode())
            elif kind is bool:
                out.append(b"t" if value else b"f")
            elif kind is datetime and value.tzinfo is not None:
                if formats is not None and formats[i]:
                    delta = value - _PG_EPOCH
                    out.append(_int8((delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds))
                    continue
                out.append(value.isoformat().encode())
            else:
                return None
            if formats is not None and formats[i]:
                return None  # not a timestamp where the server reads one in binary
        return out

    def call(self, cursor: psycopg.Cursor[Any], sql: str, params: Sequence[Any]) -> list[Any]:
        """Run `sql` (qmark placeholders) with `params`; return its rows ([] for none).

        `cursor` (on this connection) runs it instead when a parameter is of another type.
        """
        formats = self._formats.get(sql) if sql in self._prepared else None
        values = self._text(params, formats)
        if values is None:
            cursor.execute(sql.replace("?", "%s"), params)
            result = cursor.pgresult
            return cursor.fetchall() if result is not None and result.nfields else []
        dbapi = self._dbapi
        with dbapi.lock:
            result = self._send(sql, values)
            if (
                result.status == _FATAL_ERROR
                and sql in self._prepared
                and result.error_field(pq.DiagnosticField.SQLSTATE) in _PREPARE_AGAIN
            ):
                del self._prepared[sql]
                # Prepared again below: the parameters go as text (what any statement reads).
                text_values = self._text(params) if formats is not None else values
                assert text_values is not None  # the same values, and text takes every one `_text` does
                result = self._send(sql, text_values, prepare=True)
        status = result.status
        if status == _TUPLES_OK:
            if not result.ntuples:
                return []
            loader = self._loader
            loader.set_pgresult(result)
            return loader.load_rows(0, result.ntuples, tuple)
        if status == _COMMAND_OK:
            return []
        raise errors.error_from_result(result, encoding=self._codec)

    def _send(self, sql: str, values: list[bytes | None], *, prepare: bool = False) -> pq.abc.PGresult:
        dbapi = self._dbapi
        pgconn = dbapi.pgconn
        name = self._prepared.get(sql)
        if name is None:
            threshold = dbapi.prepare_threshold
            runs = self._runs.get(sql, 0)
            if threshold is not None and (prepare or runs >= threshold):
                name = f"tg_step_{next(_names)}".encode()
                pgconn.send_prepare(name, _numbered(sql))
                done = dbapi.wait(execute(pgconn))[-1]
                if done.status != _COMMAND_OK:
                    raise errors.error_from_result(done, encoding=self._codec)
                # Which parameters the server reads as timestamptz (binary from the next run on;
                # this run's values are text already, and text is what a fresh statement takes).
                pgconn.send_describe_prepared(name)
                described = dbapi.wait(execute(pgconn))[-1]
                if described.status != _COMMAND_OK:
                    raise errors.error_from_result(described, encoding=self._codec)
                types = [described.param_type(i) for i in range(described.nparams)]
                formats = [_BINARY if oid == _TIMESTAMPTZ_OID else 0 for oid in types]
                self._formats[sql] = formats if any(formats) else None
                self._prepared[sql] = name
                pgconn.send_query_prepared(name, values, result_format=_BINARY)
                results: list[pq.abc.PGresult] = dbapi.wait(execute(pgconn))
                return results[-1]
            self._runs[sql] = runs + 1
        if name is None:
            pgconn.send_query_params(_numbered(sql), values, result_format=_BINARY)
        else:
            binary_at = self._formats.get(sql)
            pgconn.send_query_prepared(name, values, param_formats=binary_at, result_format=_BINARY)
        results = dbapi.wait(execute(pgconn))
        return results[-1]
