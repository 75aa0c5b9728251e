"""Run the claim service in its own process for the tests (real uvicorn on loopback).

``python service_worker.py URL READY_FILE [--workers N] [--rate R] [--burst B] [--max-body N]
[--busy-timeout-ms MS] [--port P]``
binds a free loopback port (or P: a service restarted at the address it had) and, once the
service accepts requests, writes the port to READY_FILE (atomically). SIGTERM stops it
gracefully; the exit status is then 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tradeguard.config import Settings
from tradeguard.service.app import ServiceConfig
from tradeguard.service.server import serve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("ready_file", type=Path)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--max-body", type=int, default=64 * 1024)
    parser.add_argument("--busy-timeout-ms", type=int, default=Settings().sqlite_busy_timeout_ms)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    config = ServiceConfig(
        store_url=args.url,
        settings=Settings(sqlite_busy_timeout_ms=args.busy_timeout_ms),
        rate_per_sec=args.rate,
        rate_burst=args.burst,
        max_body_bytes=args.max_body,
    )

    def ready(_host: str, port: int) -> None:
        scratch = args.ready_file.with_suffix(".tmp")
        scratch.write_text(str(port))
        os.replace(scratch, args.ready_file)

    serve(config, host="127.0.0.1", port=args.port, workers=args.workers, on_ready=ready, access_log=False)


def run_forked(argv: list[str], log: str, env: dict[str, str]) -> None:
    """Run `main` in a process forked by the tests' fork server: the log as stdout and stderr, `env`.

    Here, not in the fixtures' conftest: the fork server finds the target by module name, and
    pytest imports every conftest as a module named `conftest` (the wrong one is found).
    """
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [__file__, *argv]
    main()


if __name__ == "__main__":
    main()
