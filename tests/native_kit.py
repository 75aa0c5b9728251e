"""The native `/v1` routes served for real: uvicorn on a loopback port, in a thread of the test.

`serve_native` builds the smallest app that carries the routes (FastAPI + `native.router`, the
store on `app.state.store`, a `KeyRing` on `app.state.keys`, as `create_app` wires them) and runs
it in uvicorn on a socket bound to port 0 on 127.0.0.1. A thread rather than a process so the
service's store can run on the test's `ManualClock`: lease expiry and dedup windows are then
decided by the time the test sets, through real HTTP.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tradeguard.ports import ClaimLedger, account_key_from_id
from tradeguard.service.keys import KeyRing

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@dataclass
class NativeService:
    """One running service: its URL, its key ring, and the switch that stops it."""

    base_url: str
    keys: KeyRing
    server: object
    thread: threading.Thread
    store: ClaimLedger

    def key(self, agent_id: str, *, admin: bool = False, account: str | None = "own") -> str:
        """Create a key for `agent_id` (as `tradeguard keys create` does) and return its text.

        An agent key claims only once its agent's account is known, so the agent is registered
        as a gateway does at start: on an account of its own (`account="own"`), on the account
        with the id `account`, or not at all (`account=None`).
        """
        _record, text = self.keys.create(agent_id, admin=admin)
        if not admin and account is not None:
            account_id = f"account-of-{agent_id}" if account == "own" else account
            self.store.register_account(agent_id, account_key_from_id(account_id))
        return text

    def stop(self) -> None:
        """Stop accepting requests and wait for the server thread to end."""
        self.server.should_exit = True  # type: ignore[attr-defined]
        self.thread.join()


@contextlib.contextmanager
def serve_native(store: ClaimLedger, store_url: str) -> Iterator[NativeService]:
    """Serve the native routes over `store` (keys kept on `store_url`) until the block ends."""
    import uvicorn
    from fastapi import FastAPI

    from tradeguard.service.native import router

    app = FastAPI()
    app.include_router(router)
    keys = KeyRing(store_url)
    app.state.store = store
    app.state.keys = keys
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:  # a wait for readiness, not a timing check
        if not thread.is_alive():
            raise RuntimeError("the test service did not start")
        time.sleep(0.005)
    service = NativeService(f"http://127.0.0.1:{port}", keys, server, thread, store)
    try:
        yield service
    finally:
        service.stop()
        sock.close()
        keys.close()
