"""Write a session file: the header, then one validated event per line."""

from __future__ import annotations

import contextlib
import os
from typing import IO, Any

from tradeguard.sessions.model import SessionHeader

__all__ = ["SessionWriter"]


class SessionWriter:
    """Writes a header and events as JSON Lines, in the order given.

    Events are the models of `tradeguard.sessions.model`, so what is written is what the reader
    accepts; fields left at None are omitted to keep lines short.

    Args:
        target: A path (created or truncated) or an open text stream (left open on close).
        header: The session header, written at once.
        flush_each: Flush after every line (a live recording loses at most the line being written).
    """

    def __init__(
        self, target: str | os.PathLike[str] | IO[str], header: SessionHeader, *, flush_each: bool = False
    ) -> None:
        if isinstance(target, str | os.PathLike):
            self._file: IO[str] = open(target, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
            self._owned = True
        else:
            self._file = target
            self._owned = False
        self._flush_each = flush_each
        self.header = header
        self.lines = 0
        try:
            self.write(header)
        except BaseException:
            # A file that opens but cannot be written (a full disk, /proc/version, EIO): the
            # caller never gets this writer to close, so the file is closed here.
            if self._owned:
                with contextlib.suppress(OSError):
                    self._file.close()
            raise

    def write(self, event: Any) -> None:
        """Write one event (or the header) as one line."""
        self.write_line(event.model_dump_json(exclude_none=True))

    def write_line(self, line: str) -> None:
        """Write one event already serialised (`model_dump_json(exclude_none=True)`) as one line."""
        self._file.write(line + "\n")
        self.lines += 1
        if self._flush_each:
            self._file.flush()

    def close(self) -> None:
        """Flush, and close the file if this writer opened it."""
        self._file.flush()
        if self._owned:
            self._file.close()

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
