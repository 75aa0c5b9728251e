"""Code run by other processes in the gateway race test (importable: tests/forks.py)."""

from __future__ import annotations

from typing import Any

from tradeguard import AlpacaBroker, OrderGateway


def enter_worker(
    store_url: str, paper_url: str, rounds: int, barrier: Any, results: Any, worker: int
) -> None:
    """Enter the round's decision when `barrier` releases all workers together; report the outcome."""
    try:
        broker = AlpacaBroker.from_credentials("paper-key", "paper-secret", url_override=paper_url)
        gateway = OrderGateway(broker, store_url, agent_id="race-bot", reconcile_on_start=False)
        for r in range(rounds):
            barrier.wait(timeout=120)
            result = gateway.enter("TQQQ", qty=6, intent=f"race round {r}")
            coid = result.claim.client_order_id if result.claim else None
            results.put(("enter", r, worker, result.outcome.value, coid))
        gateway.store.close()
    except BaseException as exc:
        barrier.abort()
        results.put(("error", worker, repr(exc)))
