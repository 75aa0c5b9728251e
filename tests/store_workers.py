"""Helpers of the store tests: the code that runs in other processes (mothers: tests/mothers.py).

The race workers run in processes of their own, forked from tests/forks.py's fork server (as
separate bots would be); the crash worker runs as a script so the test can SIGKILL a real
process: ``python store_workers.py claim-and-hang URL INTENT_NAME``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import tradeguard
from tests.mothers import make_intent, make_spec
from tradeguard.config import Settings
from tradeguard.domain.audit import AuditAction
from tradeguard.errors import StoreError
from tradeguard.store import ClaimStore, ledger
from tradeguard.store.audit import write_audit

REPO_ROOT = Path(tradeguard.__file__).resolve().parent.parent
WORKER_SCRIPT = Path(__file__).resolve()


def subprocess_env() -> dict[str, str]:
    """Return an environment in which a child interpreter imports this checkout's tradeguard."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def race_worker(url: str, rounds: int, barrier: Any, results: Any, worker: int) -> None:
    """Claim the round's intent, then open the round's dedup window, released by `barrier` each time.

    Every result goes to `results` as a tuple; an exception is reported, not raised, so the
    parent fails with its text instead of waiting for a worker that died.
    """
    try:
        with ClaimStore(url) as store:
            owner = f"worker-{worker}"
            for r in range(rounds):
                barrier.wait(timeout=120)
                out = store.claim(make_intent(f"race-{r}"), make_spec(), owner=owner)
                results.put(("claim", r, worker, out.created, out.claim.client_order_id, out.claim.owner))
            for r in range(rounds):
                barrier.wait(timeout=120)
                held = store.claim_window(f"content-{r}", window_secs=60, claim_key=f"key-{worker}-{r}")
                results.put(("window", r, worker, held))
    except BaseException as exc:
        barrier.abort()
        results.put(("error", worker, repr(exc)))


def open_new_store_worker(url: str, barrier: Any, results: Any, worker: int) -> None:
    """Open the (new) store at `url` when `barrier` releases every worker, then claim an intent.

    The result is ("ok", worker, created) or ("error", worker, text), never raised.
    """
    try:
        barrier.wait(timeout=60)
        with ClaimStore(url) as store:
            created = store.claim(make_intent(f"opened-{worker}"), make_spec(), owner=f"w{worker}").created
        results.put(("ok", worker, created))
    except Exception as exc:  # reported to the parent, which fails with it
        results.put(("error", worker, f"{type(exc).__name__}: {exc}"))


def claim_and_hang(url: str, name: str) -> None:
    """Claim `name`, tell the parent (one stdout line), then block until killed."""
    with ClaimStore(url) as store:
        out = store.claim(make_intent(name), make_spec(), owner="doomed-worker")
        print(f"claimed {out.claim.client_order_id} {int(out.created)}", flush=True)
        sys.stdin.read()  # the parent SIGKILLs us here; EOF (parent gone) also ends the wait


def freeze_in_transaction(url: str, note: str, stuck_secs: str) -> None:
    """Freeze (SIGSTOP) inside a transaction that holds QQQ's lock and has written audit record `note`.

    As a process frozen between the statements of an exit's sizing would: tells the parent
    ("frozen", one stdout line) just before stopping; once continued, prints how the
    transaction ended ("committed", or "store-error: ...").
    """
    settings = Settings(pg_stuck_transaction_secs=float(stuck_secs))
    with ClaimStore(url, settings=settings) as store:
        try:
            with store._pool.write("sizing an exit", durable=True) as tx:
                ledger.lock_symbol(tx, "QQQ")
                write_audit(tx, at=store.clock.now(), agent_id="bot", action=AuditAction.LEDGER, reason=note)
                tx.flush()  # the lock is held and the record written (uncommitted) once this answers
                print("frozen", flush=True)
                os.kill(os.getpid(), signal.SIGSTOP)
        except StoreError as exc:
            print(f"store-error: {exc}", flush=True)
            return
        print("committed", flush=True)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "claim-and-hang":
        claim_and_hang(*args)
    elif command == "freeze-in-transaction":
        freeze_in_transaction(*args)
    else:
        raise SystemExit(f"unknown command {command!r}")
