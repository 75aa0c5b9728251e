"""Skip notes: the audit record of a blocked duplicate, held in memory and written a moment later.

A duplicate retry decides nothing and changes nothing: its skip record only says that nothing
was done, and no decision ever reads it (issue 15). Writing it as a transaction of its own cost
a retry about half of its time, so a `ClaimStore` holds a duplicate's note (`ClaimStore.record_skip`
with a claim and no other fields) in memory and writes the notes it holds, in one non-durable
transaction, whichever comes first:

* before any other write transaction of the store, so the audit log keeps the order in which
  this process made its records (a note never lands after a record made later by the same store);
* before any read of the audit log through a store of this process (`flush_every_note`), so
  everything read through tradeguard in this process shows every note;
* once `MAX_NOTES` are held (this call waits for the write and fails as the write did before);
* `MAX_AGE_SECS` after the first note held, from a timer thread, so a process that goes quiet
  does not keep its notes;
* on `ClaimStore.close`, when the store is garbage-collected, and at interpreter exit (`weakref.finalize`).

What this gives up: a process killed without running its exit handlers (SIGKILL, an unhandled
SIGTERM, `os._exit`, a power cut) loses the notes it held (at most `MAX_NOTES`, at most
`MAX_AGE_SECS` old); nothing else. Claims, transitions and every other record are written as
before. Another process reading the audit log may see a note up to `MAX_AGE_SECS` late (longer
while the store takes no writes). A child process after fork starts with no notes: those held
at the fork are the parent's to write.

A write that fails keeps its notes for the next try (the timer tries again); only the write of
a full buffer reports its failure, to the retry that filled it, so the notes held never exceed
`MAX_NOTES` and none is dropped silently.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from tradeguard.errors import StoreError
from tradeguard.store.audit import INSERT
from tradeguard.store.connections import RawPool, WriteTx
from tradeguard.store.engine import describe

__all__ = ["MAX_AGE_SECS", "MAX_NOTES", "NotingPool", "SkipNotes", "flush_every_note"]

# How many notes a store holds at most; the retry that fills the buffer writes it.
MAX_NOTES = 64
# How long the first note held waits at most before the timer writes it.
MAX_AGE_SECS = 1.0
# How long `close` waits for a write the timer thread has under way (the store's own timeouts,
# the busy timeout and the PostgreSQL answer timeout, bound that write).
_JOIN_SECS = 120.0

logger = logging.getLogger("tradeguard.store")


class _Live:
    """The notes of every open store of this process, and the lock that guards the set."""

    def __init__(self) -> None:
        self.notes: weakref.WeakSet[SkipNotes] = weakref.WeakSet()
        self.lock = threading.Lock()


_live = _Live()


def flush_every_note() -> None:
    """Write the notes every store of this process holds (before a read of an audit log).

    Every store, not only the one read: a bot's gateway and an operator's `ClaimStore` on the
    same database in one process are two objects, and a read through either must show the notes.
    """
    with _live.lock:
        holders = [notes for notes in _live.notes if notes.held]
    for notes in holders:
        notes.flush_quietly("before a read of the audit log")


def _forked() -> None:
    """In a child after fork: every store starts with no notes (the parent writes its own)."""
    _live.lock = threading.Lock()  # another thread may have held it at the fork
    for notes in list(_live.notes):
        notes.reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class SkipNotes:
    """The skip notes one store holds until they are written (see the module docstring).

    Args:
        pool: The store's pool; the notes are written through `RawPool.write`, not durable.
        max_notes: How many notes are held at most (None: `MAX_NOTES`, read when made).
        max_age_secs: How long the first note held waits at most (None: `MAX_AGE_SECS`).
    """

    def __init__(
        self, pool: RawPool, *, max_notes: int | None = None, max_age_secs: float | None = None
    ) -> None:
        self._pool = pool
        self.max_notes = MAX_NOTES if max_notes is None else max_notes
        self.max_age_secs = MAX_AGE_SECS if max_age_secs is None else max_age_secs
        self.held: list[Sequence[Any]] = []  # values of `audit.INSERT`, oldest first
        self.failing = False  # the last write failed (a write before another waits for the timer)
        self._closed = False
        self.reset_after_fork()
        with _live.lock:
            _live.notes.add(self)

    def reset_after_fork(self) -> None:
        """Start empty, with fresh locks and no timer (a new object, or a child after fork)."""
        self.held = []
        self._lock = threading.Lock()
        self._due = threading.Event()  # set while notes wait for the timer
        self._closing = threading.Event()
        self._timer: threading.Thread | None = None

    def add(self, values: Sequence[Any]) -> None:
        """Hold one note (the values of `audit.INSERT`); write them all if the buffer is full.

        Raises:
            StoreError: The store is closed, or the buffer was full and could not be written
                (this note is then not kept: the caller hears the failure, as from a write).
        """
        if self._closed:
            raise StoreError(f"claim store {describe(self._pool.url)} is closed")
        with self._lock:
            held = self.held
            held.append(values)
            count = len(held)
            if count == 1:
                self._due.set()
                timer = self._timer
                if timer is None or not timer.is_alive():
                    self._start_timer()
        if count >= self.max_notes:
            try:
                self.flush()
            except StoreError:
                with self._lock:  # the buffer stays within its bound: this note goes with the error
                    for i in range(len(self.held) - 1, -1, -1):
                        if self.held[i] is values:
                            del self.held[i]
                            break
                raise

    def flush(self) -> None:
        """Write every note held, in one transaction (not durable); keep them if it fails.

        Raises:
            StoreError: The write failed; the notes are held still, and the timer tries again.
        """
        with self._lock:
            batch, self.held = self.held, []
            self._due.clear()
        if not batch:
            return
        try:
            with WriteTx(self._pool, "writing skip notes of blocked duplicates", False) as tx:
                if tx.postgres:
                    for values in batch:
                        tx.later(INSERT, values)  # one round trip, with the COMMIT
                else:
                    tx.conn.cursor.executemany(INSERT, batch)
        except BaseException:
            with self._lock:
                self.held[:0] = batch
                self._due.set()
            self.failing = True
            raise
        self.failing = False

    def flush_quietly(self, when: str) -> None:
        """`flush`, logging a failure instead of raising it (the notes are kept for the next try)."""
        try:
            self.flush()
        except StoreError as exc:
            logger.warning("%d skip notes not written %s (kept, tried again): %s", len(self.held), when, exc)

    def close(self) -> None:
        """Stop the timer and write what is held; log the notes that could not be written."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self._due.set()
        timer = self._timer
        if timer is not None and timer is not threading.current_thread():
            timer.join(_JOIN_SECS)  # a write it has under way finishes first
        try:
            self.flush()
        except StoreError as exc:
            logger.error("%d skip notes lost on closing the store: %s", len(self.held), exc)
        with _live.lock:
            _live.notes.discard(self)

    def _start_timer(self) -> None:
        timer = threading.Thread(target=self._tick, name="tradeguard-skip-notes", daemon=True)
        self._timer = timer
        timer.start()

    def _tick(self) -> None:
        """The timer thread: write the notes `max_age_secs` after the first one is held."""
        due, closing = self._due, self._closing
        while True:
            due.wait()
            if closing.wait(self.max_age_secs):
                return  # `close` writes what is left
            self.flush_quietly(f"after {self.max_age_secs:g} s")


class NotingPool(RawPool):
    """The store's pool: writes the notes its store holds before any other write transaction.

    So a note is never written after a record its store made later (the audit log's order is the
    order of the calls). After a failed write of the notes, later writes go on without them (the
    timer tries again): a write never waits twice for a store that takes no writes.
    """

    notes: SkipNotes | None = None

    def write(self, doing: str, *, durable: bool) -> WriteTx:
        """`RawPool.write`, after writing the notes held."""
        notes = self.notes
        if notes is not None and notes.held and not notes.failing:
            notes.flush_quietly("before a write")
        return WriteTx(self, doing, durable)

    def write_one(self, doing: str, sql: str, params: Sequence[Any], *, durable: bool) -> None:
        """`RawPool.write_one`, after writing the notes held."""
        notes = self.notes
        if notes is not None and notes.held and not notes.failing:
            notes.flush_quietly("before a write")
        super().write_one(doing, sql, params, durable=durable)
