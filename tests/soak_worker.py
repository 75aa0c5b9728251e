"""One bot process of the shared-account soak (`tests/soak_kit.py`): `python -m tests.soak_worker SPEC`.

Each agent's decisions come from the run's seed and the agent's name alone, so both processes of
an agent walk the same list and race every decision; a process restarted after a SIGKILL starts a
few decisions back (retries of decisions it may have sent). Each process has its own fault plan
(lost answers after the broker acted, 5xx, 429, failing reads). Every call and its answer go to a
journal file, so the supervisor can count them after a kill.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradeguard.config import Settings
from tradeguard.faults import FaultyBroker
from tradeguard.faults.plan import Fault, FaultAction, FaultPlan
from tradeguard.gateway import OrderGateway
from tradeguard.paper.routes import port_route

__all__ = ["Decision", "decisions_for", "settings_of"]


@dataclass(frozen=True, slots=True)
class Decision:
    """One trading decision of an agent: an entry of `qty` or an exit of `qty` (None: all)."""

    kind: str
    symbol: str
    intent: str
    qty: int | None


def decisions_for(seed: int, agent: str, symbols: list[str], count: int) -> list[Decision]:
    """The agent's decisions in this run: the same in every process of the agent."""
    rng = random.Random(f"{seed}:{agent}")
    found: list[Decision] = []
    for number in range(count):
        symbol = rng.choice(symbols)
        if rng.random() < 0.55:
            found.append(Decision("entry", symbol, f"{agent}-in-{number}", rng.randint(1, 20)))
        else:
            qty = None if rng.random() < 0.4 else rng.randint(1, 15)
            found.append(Decision("exit", symbol, f"{agent}-out-{number}", qty))
    return found


def settings_of(spec: dict[str, Any]) -> Settings:
    """The guard's settings the run gives every process (short, so a soak lasts seconds)."""
    return Settings(**spec["settings"])


def _plan(rng: random.Random, delay_secs: float) -> FaultPlan:
    post = "POST /v2/orders"
    faults = [
        Fault(route=post, action=FaultAction.ACCEPT_THEN_TIMEOUT, probability=0.08, delay_secs=delay_secs),
        Fault(route=post, action=FaultAction.ACCEPT_THEN_ERROR, probability=0.05),
        Fault(route=post, action=FaultAction.ERROR, probability=0.04),
        Fault(route=post, action=FaultAction.RATE_LIMIT, probability=0.04),
        Fault(route=post, action=FaultAction.DROP, probability=0.02),
        Fault(route="GET /v2/positions/{symbol}", action=FaultAction.ERROR, probability=0.08),
        Fault(route="GET /v2/positions", action=FaultAction.ERROR, probability=0.08),
        Fault(route=port_route("get_order_by_client_id").key, action=FaultAction.ERROR, probability=0.04),
        Fault(route="GET /v2/orders", action=FaultAction.ERROR, probability=0.04),
    ]
    return FaultPlan(faults=tuple(faults), seed=rng.randint(0, 2**31))


def _call(gateway: OrderGateway, decision: Decision) -> tuple[str, str]:
    if decision.kind == "entry":
        result = gateway.enter(decision.symbol, qty=decision.qty, intent=decision.intent)
    else:
        result = gateway.exit(decision.symbol, qty=decision.qty, intent=decision.intent)
    return result.outcome.value, result.reason or ""


def main(spec: dict[str, Any]) -> int:
    """Walk the agent's decisions (from this process's progress on) until the stop file appears."""
    from tradeguard.broker.alpaca import AlpacaBroker

    settings = settings_of(spec)
    rng = random.Random(f"{spec['seed']}:{spec['agent']}:{spec['proc']}:{spec['incarnation']}")
    decisions = decisions_for(spec["seed"], spec["agent"], spec["symbols"], spec["decisions"])
    alpaca = AlpacaBroker.from_credentials("soak", "soak", url_override=spec["url"], settings=settings)
    faulty = FaultyBroker(alpaca, _plan(rng, spec["timeout_delay_secs"]))
    gateway = OrderGateway(
        faulty, spec["store"], agent_id=spec["agent"], settings=settings, reconcile_on_start=False
    )
    journal = open(spec["journal"], "a", encoding="utf-8")  # noqa: SIM115 - held to the end
    Path(spec["ready"]).touch()  # imported and set up: the supervisor's clock starts on this

    def note(**entry: Any) -> None:
        entry.update(at=time.time(), proc=spec["proc"], inc=spec["incarnation"])
        journal.write(json.dumps(entry) + "\n")
        journal.flush()

    def attempt(decision: Decision, retry: bool) -> None:
        try:
            outcome, reason = _call(gateway, decision)
            note(kind=decision.kind, intent=decision.intent, retry=retry, outcome=outcome, reason=reason)
        except Exception as exc:  # the bot carries on; the guard's answer is what is checked
            note(
                kind=decision.kind, intent=decision.intent, retry=retry, error=f"{type(exc).__name__}: {exc}"
            )

    def reconcile() -> None:
        try:
            gateway.reconcile_if_due()
        except Exception as exc:
            note(kind="reconcile", error=f"{type(exc).__name__}: {exc}")
        # This incarnation's faults so far: a SIGKILL loses none counted before it.
        with open(spec["faults"] + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(str(len(faulty.injector.fired())))
        os.replace(spec["faults"] + ".tmp", spec["faults"])

    progress = spec["progress"]
    start = 0
    if os.path.exists(progress):
        with open(progress, encoding="utf-8") as handle:
            start = max(0, int(handle.read() or 0) - rng.randint(0, 3))
    reconcile()
    for index in range(start, len(decisions)):
        if os.path.exists(spec["stop"]):
            break
        attempt(decisions[index], retry=False)
        if index and rng.random() < 0.25:
            attempt(decisions[rng.randrange(max(0, index - 6), index)], retry=True)
        reconcile()
        with open(progress + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(str(index + 1))
        os.replace(progress + ".tmp", progress)
        time.sleep(rng.uniform(0, spec["pause_secs"]))
    while not os.path.exists(spec["stop"]):  # done deciding: keep reconciling, as a live bot does
        reconcile()
        time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
