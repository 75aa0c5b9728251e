"""Fault injection: scripted broker failures, deterministic under a seed.

- `plan`: `FaultPlan` (YAML or JSON), its `Fault`s, and the `FaultInjector` that decides per
  call which fault fires. The paper server applies a plan to the HTTP requests it serves.
- `broker`: `FaultyBroker`, which applies a plan in process around any `Broker`.
"""

from tradeguard.faults.broker import FaultyBroker
from tradeguard.faults.plan import Fault, FaultAction, FaultInjector, FaultPlan, FiredFault

__all__ = ["Fault", "FaultAction", "FaultInjector", "FaultPlan", "FiredFault", "FaultyBroker"]
