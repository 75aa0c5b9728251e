"""Fixtures of the claim-service tests: the real service in its own process, and API keys.

`service` starts `tradeguard.service.server.serve` (uvicorn) on a free loopback port in a
process of its own, over the store named by `store_url` (a SQLite file, and the real PostgreSQL
when TRADEGUARD_TEST_PG_URL is set), and stops it with SIGTERM, expecting a graceful shutdown. Keys
are made with the `KeyRing` on the same store, as `tradeguard keys create` does.

The service process is forked from a multiprocessing fork server that imported the service's
modules once per test process: a fresh interpreter spent most of each start-up (3 to 8 s on a
loaded two-core machine, over 150 tests) importing FastAPI, uvicorn and tradeguard. The forked
process is still a process of its own, with its own stdout/stderr (the log), environment, signals
and exit status, and runs `service_worker.main` as `python service_worker.py ...` does. A service of several
uvicorn workers (`--workers N`) still starts as a fresh `python service_worker.py` subprocess:
uvicorn's supervisor in a forked process left its workers unanswered.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import tradeguard
from tests.forks import FORKS
from tradeguard.service.keys import KeyRing

REPO_ROOT = Path(tradeguard.__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "service_worker.py"
NewKey = Callable[..., str]
Launch = Callable[..., "Service"]
NewKeyOn = Callable[[str], NewKey]
_START_DEADLINE_SECS = 90.0  # a generous bound on a loaded 2-core machine, not a speed check
# One fork server per test process (pytest-xdist worker), started on the first service (or race
# worker: tests/forks.py, shared); it imports what the service imports, then forks a service per start.
_FORKS = FORKS


class ServiceProcess:
    """The forked service process, with the subset of `subprocess.Popen` the tests use."""

    def __init__(self, process: multiprocessing.process.BaseProcess, args: list[str]) -> None:
        self._process = process
        self.args = args

    @property
    def pid(self) -> int:
        """The process id."""
        assert self._process.pid is not None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status (minus the signal that ended it), or None while it runs."""
        return self._process.exitcode

    def poll(self) -> int | None:
        """Return the exit status if the process ended, else None."""
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end and return its exit status, as `Popen.wait` does.

        Raises:
            subprocess.TimeoutExpired: It still runs after `timeout` seconds.
        """
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        """Send `sig` to the process if it still runs."""
        if self._process.exitcode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the process."""
        self.send_signal(signal.SIGKILL)


@dataclass
class Service:
    """One running service process."""

    base_url: str
    process: subprocess.Popen[bytes] | ServiceProcess
    log: Path

    def client(self, key: str | None = None, **headers: str) -> httpx.Client:
        """Return an HTTP client on the service, sending `key` as a Bearer token if given."""
        sent = dict(headers)
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        return httpx.Client(base_url=self.base_url, headers=sent, timeout=60.0)

    def stop(self) -> int:
        """SIGTERM the service and return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def start_service(store_url: str, folder: Path, *options: str) -> Service:
    """Start the service on `store_url` and return once it accepts requests."""
    ready = folder / f"ready-{uuid.uuid4().hex[:8]}"
    log = ready.with_suffix(".log")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    argv = [store_url, str(ready), *options]
    process: subprocess.Popen[bytes] | ServiceProcess
    if "--workers" in options:
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, str(WORKER), *argv], stdout=out, stderr=subprocess.STDOUT, env=env
            )
    else:
        log.touch()
        from tests.service.service_worker import run_forked  # FastAPI et al.: imported only to fork

        forked = _FORKS.Process(target=run_forked, args=(argv, str(log), env), daemon=False)
        forked.start()
        process = ServiceProcess(forked, [sys.executable, str(WORKER), *argv])
    deadline = time.monotonic() + _START_DEADLINE_SECS
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError(f"the service did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return Service(f"http://127.0.0.1:{ready.read_text()}", process, log)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start services (`launch(url, *options)`); each is stopped by SIGTERM and must shut down cleanly."""
    started: list[Service] = []

    def _launch(store_url: str, *options: str) -> Service:
        service = start_service(store_url, tmp_path, *options)
        started.append(service)
        return service

    yield _launch
    for service in started:
        status = service.stop()
        log = service.log.read_text()
        # uvicorn finishes in-flight requests and the lifespan (stores closed), then re-raises
        # the SIGTERM it caught, as a well-behaved process does.
        assert status in (0, -signal.SIGTERM), log[-2000:]
        assert "Application shutdown complete" in log, log[-2000:]


@pytest.fixture
def service(store_url: str, launch: Callable[..., Service]) -> Service:
    """The service over `store_url` (SQLite file and real PostgreSQL)."""
    return launch(store_url)


@pytest.fixture
def keys(store_url: str) -> Iterator[KeyRing]:
    """The key ring of the service's store."""
    with KeyRing(store_url) as ring:
        yield ring


@pytest.fixture
def new_key(keys: KeyRing) -> Callable[..., str]:
    """Create a key: `new_key("agent-a")`, `new_key("ops", admin=True)`; return its full text."""

    def _new(agent_id: str, *, admin: bool = False) -> str:
        return keys.create(agent_id, admin=admin)[1]

    return _new


@pytest.fixture
def new_key_on() -> Iterator[NewKeyOn]:
    """`new_key_on(url)`: a key maker on the store at `url` (for tests that pick their store)."""
    rings: list[KeyRing] = []

    def _on(url: str) -> NewKey:
        ring = KeyRing(url)
        rings.append(ring)
        return lambda agent_id, *, admin=False: ring.create(agent_id, admin=admin)[1]

    yield _on
    for ring in rings:
        ring.close()
