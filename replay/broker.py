"""The replay's broker: the paper broker, with each attempt's recorded fault armed for that attempt.

A recorded answer that was lost in transport (a timeout, a dropped connection, a 5xx) becomes a
one-fault `FaultPlan` on `POST /v2/orders`, armed while that attempt is driven and disarmed after:
the fault hits the attempt's first send, whichever mode sends it (a guard that sends nothing
never meets it). Refusals, acceptances and fills are not injected: the paper broker decides
those from its own positions, prices and rules, so the figures come from what happens there.
"""

from __future__ import annotations

import functools

from tradeguard import (
    AnswerEvent,
    BrokerOrder,
    Clock,
    ForwardingBroker,
    OrderRequest,
    PaperBroker,
)
from tradeguard.testing import Fault, FaultAction, FaultPlan, FaultyBroker

__all__ = ["DEFAULT_TIMEOUT_SECS", "ReplayBroker", "plan_for"]

DEFAULT_TIMEOUT_SECS = 10.0
_ROUTE = "POST /v2/orders"


def plan_for(answer: AnswerEvent | None) -> FaultPlan | None:
    """Return the one-fault plan that reproduces a recorded answer lost in transport, or None.

    `placed` None (unknown) is replayed as placed: the case a guard must survive.
    """
    if answer is None or answer.result not in {"timeout", "dropped", "error"}:
        return None
    placed = answer.placed is not False
    if answer.result == "error":
        status = answer.status or 500
        body = answer.body if answer.body is not None else ""
        if placed:
            fault = Fault(_ROUTE, FaultAction.ACCEPT_THEN_ERROR, nth=1, status=max(status, 400), body=body)
        else:
            fault = Fault(_ROUTE, FaultAction.ERROR, nth=1, status=max(status, 500), body=body)
        return FaultPlan(faults=(fault,))
    if not placed:
        return _plain(FaultAction.DROP, None)
    wait = answer.after_secs
    if wait is None:
        wait = DEFAULT_TIMEOUT_SECS if answer.result == "timeout" else 0.0
    return _plain(FaultAction.ACCEPT_THEN_TIMEOUT, wait)


@functools.cache
def _plain(action: FaultAction, delay_secs: float | None) -> FaultPlan:
    # Lost answers are the common fault, and a Fault checks its route when built: build each once
    # (a plan is immutable; each arming makes its own injector with fresh call counts).
    return FaultPlan(faults=(Fault(_ROUTE, action, nth=1, delay_secs=delay_secs),))


class ReplayBroker(ForwardingBroker):
    """A `Broker` over a paper account that counts submits and applies an armed fault.

    A replay's plans hold one fault, on the first `POST /v2/orders` (`plan_for`): the first
    submit after `arm` goes through a `FaultyBroker` of the plan, every other call straight to
    the paper account, which is what the plan's `FaultyBroker` would do with them (no other
    call matches its route, no later submit its `nth`). Reads are the paper account's own
    methods, with no call in between: a full-mode attempt reads its order and position several
    times.

    Args:
        paper: The paper account (the truth every figure is read from).
        clock: The replay's clock (a fault's timeout advances it).
    """

    def __init__(self, paper: PaperBroker, clock: Clock) -> None:
        super().__init__(paper)
        self.paper = paper
        self._clock = clock
        self._armed: FaultPlan | None = None
        self._submit = paper.submit_order
        self.sends = 0
        # The paper account's bound methods in place of ForwardingBroker's pass-throughs.
        self.get_order_by_client_id = paper.get_order_by_client_id  # type: ignore[method-assign]
        self.get_order = paper.get_order  # type: ignore[method-assign]
        self.get_position = paper.get_position  # type: ignore[method-assign]
        self.list_positions = paper.list_positions  # type: ignore[method-assign]

    @property
    def account_key(self) -> str:
        """The paper account's key (`ports.account_key_of`), read from it without the wrapper walk.

        `account_key_of` follows `.inner` from a wrapper with none; a full-mode attempt asks it a
        few times (each exit's checks for other agents on the account), and the walk cost more
        than the read. The same key the walk finds: the paper account's own.
        """
        return self.paper.account_key

    def arm(self, plan: FaultPlan | None) -> None:
        """Apply `plan` to the next submit, until `disarm`."""
        self._armed = plan

    def disarm(self) -> None:
        """Go back to the plain paper account."""
        self._armed = None

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Count the send, then submit through the armed fault (if any, once)."""
        self.sends += 1
        plan = self._armed
        if plan is None:
            return self._submit(request)
        self._armed = None  # the plan's one fault is spent on this send (nth=1)
        return FaultyBroker(self.paper, plan, clock=self._clock).submit_order(request)
