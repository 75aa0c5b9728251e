"""Running the claim service: `serve(config, host, port, workers)` on uvicorn.

One worker runs the app in this process. Several workers are uvicorn's own supervisor: it binds
the socket here and starts `workers` processes that build the app from an import string
(`app_from_config_file`); the config reaches them through a private temporary file named by
one environment variable, removed when the service stops. Nothing else is global. A worker
whose supervisor is gone (SIGKILLed, OOM-killed) shuts down gracefully on its own and removes
that file: left running, orphaned workers would go on serving the port, so the service could
not be started again on it.

SIGTERM and Ctrl-C shut down gracefully: the listener closes, requests in flight finish (up to
`graceful_secs`), and the stores close. After that, uvicorn re-raises the signal it caught, as a
well-behaved process does: a SIGTERMed service ends by SIGTERM (exit status 143 in a shell),
while Ctrl-C makes `serve` return. Binding anywhere but loopback is loud: the service holds
every agent's claims, and its keys are its only protection (put TLS in front of it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from tradeguard.config import Settings
from tradeguard.errors import ConfigError
from tradeguard.service.app import ServiceConfig, create_app

__all__ = ["CONFIG_FILE_ENV", "app_from_config_file", "is_loopback", "serve"]

CONFIG_FILE_ENV = "TRADEGUARD_SERVICE_CONFIG_FILE"
# The supervisor's process id, for its workers: they stop once their parent is no longer it.
SUPERVISOR_PID_ENV = "TRADEGUARD_SERVICE_SUPERVISOR_PID"
SUPERVISOR_POLL_SECS = 1.0
# How long uvicorn's supervisor waits for a worker to start, or to answer its health ping,
# before it kills and replaces it (uvicorn's default: 5 s). A worker starting on a loaded host
# (imports, store migration check) or busy with a slow request is not dead; killed, it drops its
# in-flight requests, and its replacement meets the same load (seen: a restart loop of 15
# workers in a minute on 2 busy cores).
WORKER_HEALTHCHECK_SECS = 30

log = logging.getLogger("tradeguard.service")

OnReady = Callable[[str, int], None]


def is_loopback(host: str) -> bool:
    """Return True if `host` names this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _write_config(config: ServiceConfig) -> Path:
    # The URL may carry a database password: the file is created 0600 and removed at stop.
    fd, name = tempfile.mkstemp(prefix="tradeguard-service-", suffix=".json")
    with os.fdopen(fd, "w") as out:
        json.dump(dataclasses.asdict(config), out)
    return Path(name)


def _read_config(path: Path) -> ServiceConfig:
    raw = json.loads(path.read_text())
    raw["settings"] = Settings(**raw["settings"])
    raw["cors_origins"] = tuple(raw["cors_origins"])
    return ServiceConfig(**raw)


def app_from_config_file() -> FastAPI:
    """Build the app from the config file named by `TRADEGUARD_SERVICE_CONFIG_FILE` (worker side).

    Raises:
        ConfigError: The variable is unset (this factory is for `serve(workers>1)` only).
    """
    name = os.environ.get(CONFIG_FILE_ENV)
    if not name:
        raise ConfigError(f"{CONFIG_FILE_ENV} is not set: start the service with tradeguard serve")
    app = create_app(_read_config(Path(name)))
    supervisor = os.environ.get(SUPERVISOR_PID_ENV, "")
    if supervisor.isdigit():
        _stop_with_supervisor(int(supervisor), Path(name))
    return app


def _stop_with_supervisor(supervisor_pid: int, config_file: Path) -> None:
    """SIGTERM this worker (a graceful stop) once its supervisor is no longer its parent.

    A SIGKILLed supervisor tells its workers nothing: they would keep the listening socket and
    serve on, so `tradeguard serve` could not be started again on the port. Once the parent is
    gone no worker is started any more, so the config file (it may hold a database password) is
    removed too.
    """

    def watch() -> None:
        while os.getppid() == supervisor_pid:
            time.sleep(SUPERVISOR_POLL_SECS)
        log.warning("the service's supervisor (pid %d) is gone: this worker stops", supervisor_pid)
        config_file.unlink(missing_ok=True)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="tradeguard-supervisor-watch", daemon=True).start()


class _Server(uvicorn.Server):
    """uvicorn's server, telling `on_ready` the bound address once the app has started."""

    def __init__(self, config: uvicorn.Config, on_ready: OnReady | None) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._on_ready is not None and self.servers and not self.should_exit:
            bound = self.servers[0].sockets[0].getsockname()
            self._on_ready(str(bound[0]), int(bound[1]))


def serve(
    config: ServiceConfig,
    host: str = "127.0.0.1",
    port: int = 8787,
    workers: int = 1,
    on_ready: OnReady | None = None,
    *,
    graceful_secs: float = 10.0,
    access_log: bool = True,
) -> None:
    """Run the claim service until SIGTERM or Ctrl-C.

    Args:
        config: What to serve (store URL, limits, CORS).
        host: The address to bind; anything but loopback is warned about.
        port: The port (0 picks a free one; `on_ready` tells which).
        workers: Processes serving requests; above 1, uvicorn's supervisor starts them.
        on_ready: Called with the bound host and port once the service accepts requests (with
            several workers: once the socket is bound; the workers accept from its backlog).
        graceful_secs: How long requests in flight may take to finish at shutdown.
        access_log: Log one line per request (method, path, status: never bodies or headers).

    Raises:
        ConfigError: `workers` is below 1.
        StoreError: One worker: the store cannot be opened.
    """
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, not {workers}")
    if not is_loopback(host):
        log.warning(
            "tradeguard serve is binding %s, reachable from other machines: every agent's claims "
            "are behind API keys only, and this server speaks plain HTTP. Put TLS in front of it.",
            host,
        )

    def options(app: FastAPI | str) -> uvicorn.Config:
        return uvicorn.Config(
            app, host=host, port=port, workers=workers, factory=isinstance(app, str),
            timeout_graceful_shutdown=int(graceful_secs), access_log=access_log, server_header=False,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECS,
        )  # fmt: skip

    if workers == 1:
        # uvicorn shuts down gracefully, then re-raises the Ctrl-C it caught: a clean stop here.
        with contextlib.suppress(KeyboardInterrupt):
            _Server(options(create_app(config)), on_ready).run()
        return
    path = _write_config(config)
    os.environ[CONFIG_FILE_ENV] = str(path)
    os.environ[SUPERVISOR_PID_ENV] = str(os.getpid())
    try:
        multi = options("tradeguard.service.server:app_from_config_file")
        sock = multi.bind_socket()
        # Listen here, before the workers start: connections wait in the backlog, not refused.
        sock.listen(multi.backlog)
        if on_ready is not None:
            bound = sock.getsockname()
            on_ready(str(bound[0]), int(bound[1]))
        Multiprocess(multi, sockets=[sock]).run()
    finally:
        os.environ.pop(CONFIG_FILE_ENV, None)
        os.environ.pop(SUPERVISOR_PID_ENV, None)
        path.unlink(missing_ok=True)
