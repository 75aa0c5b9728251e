"""One multiprocessing fork server per test process, for the tests' worker processes.

The race, crash and service tests run their bots in processes of their own. Under the "spawn"
start method each worker was a fresh interpreter that imported tradeguard, SQLAlchemy, alpaca-py
(and through it pandas) before its first step: about 1.5 s of CPU on a quiet machine, several
seconds on the loaded two-core CI host, eight workers a test. The fork server imports those
modules once per test process (pytest-xdist worker), on the first worker started, and forks every
worker from itself.

A forked worker is still what a spawned one was: a process of its own, with its own interpreter
state, connections, signals and exit status, started from a process that only imported modules
(never from the pytest process, whose threads, engines and sockets it does not inherit). It
opens its stores, brokers and servers itself, as a bot does. The start method's own machinery
(target pickled by reference, arguments pickled, `sys.path` and working directory set) is
"spawn"'s. The fork server is one per process: every module that forks from it imports this one,
so the preload list is the union of what they need, set before the server starts.
"""

from __future__ import annotations

import multiprocessing

# What the workers import. A name the fork server cannot import is skipped by it (the worker then
# imports it itself, as under "spawn"), so the list is a cost saving, never a requirement.
PRELOAD = [
    "tests.hardening_workers",
    "tests.audit44_workers",
    "tests.audit76_kit",
    "tests.store_workers",
    "tests.gateway_race_worker",
    "tests.service.service_worker",
    "alpaca.trading.client",
    "psycopg",
]

FORKS = multiprocessing.get_context("forkserver")
FORKS.set_forkserver_preload(PRELOAD)
