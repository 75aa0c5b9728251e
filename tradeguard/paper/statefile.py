"""The paper account's state file: a snapshot line, then one journal line per change.

Layout: the first line is the whole account (`PaperState.to_text`, the document older versions
wrote as the whole file); each following line is one change (`tradeguard.paper.journal`).
Loading reads the snapshot and replays the lines. A file of older versions (one document, no
newline) loads as a snapshot.

Durability policy:
- A change is appended with one ``write(2)`` before the call returns (before the paper server
  answers). The line is then in the operating system's cache: it survives the process being
  killed (SIGKILL, a crash), but not a power loss or a kernel crash.
- With ``fsync_every_change`` each line is also fsynced before the answer: it survives a power
  loss too, at the cost of one disk flush per change (see the README's "Measured" table).
- Compaction rewrites the file as one snapshot line (temp file, fsync, ``os.replace``, fsync of
  the folder), atomically: after it, everything before it survives a power loss. It runs at the
  first change (so a failed first write leaves no file), when the journal has grown past the
  snapshot (and past `COMPACT_MIN_BYTES`; the cost stays proportional to the changes), at load
  when there is anything to fold in, and at `close()`.
- A line not ended by its newline was never acknowledged (the newline is its last byte): a crash
  mid-write leaves at most that torn last line, which loading drops with a warning. Any other
  line that is not an entry is an error naming the file and the line.
- A failed write answers `BrokerUnavailable` (HTTP 500) and the account is rebuilt from the
  snapshot and the lines written (kept in memory); any part of the failed line is cut off the
  file before the next line is written.
- Each change first checks that the file appended to still has a name; if it was removed or
  replaced, the change is written as a new snapshot at the path instead (or fails if it cannot).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from decimal import InvalidOperation

from tradeguard.errors import BrokerUnavailable, ConfigError
from tradeguard.paper.journal import Tracker, apply_entry
from tradeguard.paper.state import PaperState

__all__ = ["COMPACT_MIN_BYTES", "StateFile"]

logger = logging.getLogger("tradeguard.paper")

COMPACT_MIN_BYTES = 1 << 20  # below this a journal is not worth folding into the snapshot
_BAD_ENTRY = (KeyError, TypeError, ValueError, InvalidOperation, AttributeError)


class StateFile:
    """Where a paper account is kept, and what was last written there.

    Args:
        path: The state file (created on the first change if missing).
        fsync_every_change: fsync each journal line before the change is acknowledged.

    Raises:
        ConfigError: One line naming the path and why it cannot be kept there: a folder, a
            folder that takes no files (missing, read-only), an unreadable or foreign file.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync_every_change: bool = False) -> None:
        self.path = os.fspath(path)
        self.fsync_every_change = fsync_every_change
        self._check()
        self._fd: int | None = None
        self._snapshot: str | None = None  # None: no file written yet
        self._fresh = ""  # the account before the first write, while there is no file
        self._lines: list[str] = []  # journal lines after the snapshot, as written
        self._size = 0  # bytes of the file that hold acknowledged changes
        self._dirty = False  # the file may hold bytes of a failed write past `_size`
        self._compact_at = COMPACT_MIN_BYTES
        self._tracker: Tracker | None = None

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
            ConfigError: The file exists but is not a paper account this version can read, or
                cannot be compacted.
        """
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            self._tracker = Tracker(fresh)
            self._fresh = fresh.to_text()
            return fresh
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConfigError(f"paper state {self.path}: cannot read it: {reason}") from exc
        state, clean = self._parse(text)
        self._tracker = Tracker(state)
        try:
            # A file from before account keys got one on load: write it now, so it is kept.
            if clean and f'"account_key":"{state.account_key}"' in text:
                self._snapshot = text[:-1]
                self._open(len(text.encode()))
            else:
                self._compact(state)
        except OSError as exc:
            raise ConfigError(f"paper state {self.path}: cannot write it: {exc.strerror or exc}") from exc
        return state

    def _parse(self, text: str) -> tuple[PaperState, bool]:
        """Return the account in `text`, and whether `text` is one snapshot line and nothing else."""
        lines = text.split("\n")
        if len(lines) == 1:
            return self._snapshot_of(text), False  # a file of an older version: one document
        try:
            state = self._snapshot_of(lines[0])
        except ConfigError:
            return self._snapshot_of(text), False  # one document over several lines (edited)
        *entries, tail = lines
        if tail:
            logger.warning(
                "paper state %s: dropped a torn last line (%d bytes) left by a crash mid-write; "
                "it was never acknowledged",
                self.path,
                len(tail.encode()),
            )
        for number, line in enumerate(entries[1:], start=2):
            try:
                apply_entry(state, json.loads(line))
            except _BAD_ENTRY as exc:
                raise ConfigError(f"paper state {self.path}:{number}: not a journal entry: {exc!r}") from exc
        return state, len(entries) == 1 and not tail

    def _snapshot_of(self, text: str) -> PaperState:
        try:
            return PaperState.from_text(text)
        except _BAD_ENTRY as exc:
            kind = "not JSON" if isinstance(exc, json.JSONDecodeError) else "not a paper account"
            raise ConfigError(f"paper state {self.path}: {kind}: {exc!r}") from exc

    @property
    def written(self) -> bool:
        """Whether the account has been written to the file (False until its first change)."""
        return self._snapshot is not None

    def save(self, state: PaperState) -> None:
        """Write the change `state` went through since the last write, before returning.

        Raises:
            BrokerUnavailable: It could not be written (HTTP 500 over the paper server); the
                file holds what it held before (`restore`).
        """
        assert self._tracker is not None, "load() comes first"
        try:
            if self._snapshot is None or not self._still_ours():
                self._compact(state)
                return
            entry = self._tracker.entry(state)
            if entry is None:
                return
            line, orders = entry
            self._append(line.encode())
        except OSError as exc:
            raise self._unwritable(exc) from exc
        self._lines.append(line)
        self._tracker.commit(state, orders)
        if self._size >= self._compact_at:
            self._compact_or_wait(state)

    def restore(self) -> PaperState:
        """Return the account as last written (or loaded)."""
        assert self._tracker is not None, "load() comes first"
        state = PaperState.from_text(self._fresh if self._snapshot is None else self._snapshot)
        for line in self._lines:
            apply_entry(state, json.loads(line))
        self._tracker.reset(state)
        return state

    def close(self, state: PaperState) -> None:
        """Fold the journal into the snapshot (fsynced) and close the file; a change reopens it.

        Raises:
            BrokerUnavailable: The snapshot could not be written; the journal still holds it all.
        """
        try:
            if self._snapshot is not None and (self._lines or self._dirty or not self._still_ours()):
                self._compact(state)
        except OSError as exc:
            raise self._unwritable(exc) from exc
        finally:
            self._close_fd()

    # ---- internals ---------------------------------------------------------------------------

    def _still_ours(self) -> bool:
        # A removed or replaced file must not swallow acknowledged changes: either leaves the
        # file appended to with no name (one fstat per change, no path lookup).
        return self._fd is not None and os.fstat(self._fd).st_nlink > 0

    def _append(self, data: bytes) -> None:
        fd = self._fd
        assert fd is not None
        if self._dirty:
            os.ftruncate(fd, self._size)
            self._dirty = False
        self._dirty = True
        try:
            done = os.write(fd, data)
            while done < len(data):  # a short write is continued, never left torn
                done += os.write(fd, data[done:])
            if self.fsync_every_change:
                os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, self._size)
                self._dirty = False
            except OSError:
                pass  # cut before the next line is written (`_dirty`)
            raise
        self._dirty = False
        self._size += len(data)

    def _compact(self, state: PaperState) -> None:
        """Write `state` as the whole file, atomically, and append after it from now on."""
        text = state.to_text()
        data = (text + "\n").encode()
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".paper-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            _remove(tmp)  # never leave temp files behind, whatever interrupted the write
            raise
        # From here the file holds the change: what fails now must not make it an unmade one.
        self._snapshot = text
        self._lines = []
        self._dirty = False
        assert self._tracker is not None
        self._tracker.reset(state)
        try:
            _fsync_folder(folder)
            self._open(len(data))
        except OSError as exc:
            logger.warning(
                "paper state %s: written, but not reopened (%s); the next change rewrites it", self.path, exc
            )
            self._close_fd()

    def _compact_or_wait(self, state: PaperState) -> None:
        # The change is already written: a failed compaction only delays the next one.
        try:
            self._compact(state)
        except OSError as exc:
            logger.warning("paper state %s: compaction failed (%s); the journal goes on", self.path, exc)
            self._compact_at = self._size + max(COMPACT_MIN_BYTES, len(self._snapshot or ""))

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self, size: int) -> None:
        self._close_fd()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._size = size
        self._compact_at = 2 * size + COMPACT_MIN_BYTES

    def _unwritable(self, exc: OSError) -> BrokerUnavailable:
        message = f"paper state {self.path} could not be written ({exc.strerror or exc}); nothing changed"
        return BrokerUnavailable(
            message, status_code=500, code=50010000, body={"code": 50010000, "message": message}
        )


def _fsync_folder(folder: str) -> None:
    # The rename itself survives a power loss only once the folder is flushed.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)
