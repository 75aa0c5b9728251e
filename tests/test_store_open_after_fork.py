"""A process forked while another thread is opening a store can still open one (G5: no hang).

The store opener serialises Alembic's work with process-wide locks. A fork copies a lock held by
another thread, but not that thread: the child's first store open waited for it forever (a bot
runner that forks workers while a monitoring thread opens a store; review40).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tradeguard.store import ClaimStore, engine


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_while_the_migration_lock_is_held_opens_a_new_store(tmp_path: Path) -> None:
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine._ALEMBIC_LOCK:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        pid = os.fork()
        if pid == 0:  # the child: open a new store (it migrates), then leave at once
            code = 1
            try:
                ClaimStore(f"sqlite:///{tmp_path / 'child.db'}").close()
                code = 0
            finally:
                os._exit(code)
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung opening a store")
    finally:
        release.set()
        holder.join(30)
    assert status is not None and os.waitstatus_to_exitcode(status) == 0
