"""The paper account's state file: checked at start, written after each change, never half-kept.

Writes are atomic (a temp file in the same folder, fsync, `os.replace`), so a crash mid-write
never leaves a half-written account. The text of the last good write is kept in memory: when a
write fails the broker rebuilds the account from it, so the account never holds a change the
caller was told did not happen.
"""

from __future__ import annotations

import json
import os
import tempfile
from decimal import InvalidOperation

from tradeguard.errors import BrokerUnavailable, ConfigError
from tradeguard.paper.state import PaperState

__all__ = ["StateFile"]


class StateFile:
    """Where a paper account is kept, and its last good copy.

    Args:
        path: The JSON file (created on the first change if missing).

    Raises:
        ConfigError: One line naming the path and why it cannot be kept there: a folder, a
            folder that takes no files (missing, read-only), an unreadable or foreign file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._check()
        self._saved: str | None = None

    def _check(self) -> None:
        # A probe file, not permission bits: those say nothing for root or read-only mounts.
        if os.path.isdir(self.path):
            raise ConfigError(f"paper state {self.path} is a directory, not a file")
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            fd, probe = tempfile.mkstemp(prefix=".paper-", suffix=".probe", dir=folder)
        except OSError as exc:
            raise ConfigError(
                f"paper state {self.path}: cannot write to {folder}: {exc.strerror or exc}"
            ) from exc
        os.close(fd)
        os.unlink(probe)

    def load(self, fresh: PaperState) -> PaperState:
        """Return the account in the file, or `fresh` when there is no file yet.

        Raises:
            ConfigError: The file exists but is not a paper account this version can read.
        """
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            state = fresh
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConfigError(f"paper state {self.path}: cannot read it: {reason}") from exc
        else:
            try:
                state = PaperState.from_text(text)
            except (KeyError, TypeError, ValueError, InvalidOperation, AttributeError) as exc:
                kind = "not JSON" if isinstance(exc, json.JSONDecodeError) else "not a paper account"
                raise ConfigError(f"paper state {self.path}: {kind}: {exc!r}") from exc
        self._saved = state.to_text()
        return state

    def save(self, state: PaperState) -> None:
        """Write `state` atomically and keep it as the last good copy.

        Raises:
            BrokerUnavailable: The file could not be written (HTTP 500 over the paper server);
                the file still holds the last good copy (`restore`).
        """
        text = state.to_text()
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            fd, tmp = tempfile.mkstemp(prefix=".paper-", suffix=".tmp", dir=folder)
        except OSError as exc:
            raise self._unwritable(exc) from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            _remove(tmp)
            raise self._unwritable(exc) from exc
        except BaseException:
            _remove(tmp)  # never leave temp files behind, whatever interrupted the write
            raise
        self._saved = text

    def restore(self) -> PaperState:
        """Return the account as last written (or loaded)."""
        assert self._saved is not None, "load() comes first"
        return PaperState.from_text(self._saved)

    def _unwritable(self, exc: OSError) -> BrokerUnavailable:
        message = f"paper state {self.path} could not be written ({exc.strerror or exc}); nothing changed"
        return BrokerUnavailable(
            message, status_code=500, code=50010000, body={"code": 50010000, "message": message}
        )


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)
