"""The `tradeguard` command: a thin layer over the objects the library exports.

Built on Click rather than Typer: Click is what Typer runs on, so it is one import instead of
two (Typer also pulls in Rich and its own machinery for `--help`), it loads subcommands lazily
with a ten-line `Group` subclass (`app.LazyGroup`), and it lets `main` run without
`standalone_mode`, so every error is caught here and said in one line. Rich draws the tables,
and only when stdout is a terminal (`output.py`).

The environment is read here and only here (Alpaca keys, store URL); everything below gets
explicit arguments. Each command lives in its own module (`cli/audit.py`, `cli/claims.py`, ...),
registered by one line in `app.COMMANDS`, and imports what it needs when it runs: `tradeguard
--help` loads neither the store (SQLAlchemy, Alembic) nor alpaca-py nor pandas, and `tradeguard
audit` neither alpaca-py nor pandas (tests/test_import_graph.py holds that).

Exit statuses: 0 ok; 1 a problem a person must look at; 2 bad input or an expected failure, said
in one line on stderr (`tradeguard: error: ...`), standard output that cannot be written (a full
disk) included; 141 the reader of the output went away.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from tradeguard.cli.common import ExitStatus, Refused

__all__ = ["main"]


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", "; ", text.strip())


def _error(message: str) -> int:
    print(f"tradeguard: error: {_one_line(message)}", file=sys.stderr)
    return ExitStatus.BAD_INPUT


def _discard_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # captured stdout (tests) has no file descriptor
        pass


def _quiet_pipe() -> int:
    """Exit quietly: the reader of the output went away."""
    _discard_stdout()
    return ExitStatus.BROKEN_PIPE


class _OutputFailed(Exception):
    """Standard output refused a write for a reason other than a closed pipe (ENOSPC, EIO)."""


class _Stdout:
    """sys.stdout while a command runs: a failed write is `_OutputFailed`, wherever it happens.

    Every command prints through sys.stdout (print, click.echo, json.dump, csv), so this one
    wrapper turns a full disk under `> file` into one line and exit 2 instead of a traceback in
    whichever command was writing. A closed pipe (`BrokenPipeError`) passes unchanged: it is the
    quiet 141. Everything else is the stream's own.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _OutputFailed(exc.strerror or str(exc)) from exc

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _OutputFailed(exc.strerror or str(exc)) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    from tradeguard.cli.app import cli

    args = list(sys.argv[1:] if argv is None else argv)
    stdout = sys.stdout
    sys.stdout = _Stdout(stdout)
    try:
        return _run(cli, args)
    except _OutputFailed as exc:
        sys.stdout = stdout
        _discard_stdout()  # what is still buffered must not fail again at the interpreter's exit
        return _error(f"cannot write to standard output: {exc}")
    finally:
        if isinstance(sys.stdout, _Stdout) or type(sys.stdout).__name__.endswith("PacifyFlushWrapper"):
            sys.stdout = stdout


def _run(cli: Any, args: list[str]) -> int:
    """Run the command; say every expected failure in one line and return the exit status."""
    import click

    from tradeguard.errors import ResolutionRefused, TradeguardError

    try:
        code = cli.main(args=args, prog_name="tradeguard", standalone_mode=False)
        sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
    except BrokenPipeError:
        return _quiet_pipe()
    except SystemExit as exc:
        # Click ends a closed pipe with sys.exit(1) after wrapping stdout in its (private,
        # renamed across versions) PacifyFlushWrapper; that wrapper is the sign of the pipe.
        if type(sys.stdout).__name__.endswith("PacifyFlushWrapper"):
            return _quiet_pipe()
        return exc.code if isinstance(exc.code, int) else ExitStatus.BAD_INPUT
    except click.exceptions.NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx else "", file=sys.stderr)
        return ExitStatus.BAD_INPUT
    except click.UsageError as exc:
        where = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        return _error(exc.format_message() + where)
    except click.ClickException as exc:
        return _error(exc.format_message())
    except (click.Abort, KeyboardInterrupt):
        print("tradeguard: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except (Refused, ResolutionRefused) as exc:
        print(f"tradeguard: refused: {_one_line(str(exc))}", file=sys.stderr)
        return ExitStatus.PROBLEM
    except TradeguardError as exc:
        return _error(str(exc))
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
