"""review45: two threads of one gateway resending the same absent decision POST it once.

`RetryAnswers._settle_unplaced` (retries.py) took a lost compare-and-set as its own move when
the claim was found moved to the target state under this gateway's own lease and not in
`_sending` (for a proxy that sent the request twice). Another thread of the same gateway that
had just won that very move, and had not reached `_send` yet, looks exactly so: both threads went
on to send, and the decision's order was POSTed twice (the broker refused the second copy of the
client_order_id only because it is the same id). The winner now marks the key as being sent
before its move, so the loser answers DUPLICATE, as before that change.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tests.gateway_kit import MAY21_PRICES
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.execution import OrderResult, Outcome
from tradeguard.faults import FaultPlan
from tradeguard.faults.broker import FaultyBroker
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.store import ClaimStore
from tradeguard.testing import RecordingBroker

FIRST_POST_DROPPED = """
faults:
  - route: POST /v2/orders
    nth: 1
    action: drop
"""

_WAIT = 60.0  # a safety net against a hang only: every wait below is released by an event


class _Interleaving:
    """A claim store that makes two threads' resends of one claim interleave in the racy order.

    The first thread to move the claim to PENDING waits until the second is about to move it
    too, moves it, and lets the second try (its compare-and-set fails), then waits until the
    second has either passed its own pre-send fence or given up. Each thread that passes the
    fence waits for the other to pass it as well, so both reach the POST (or only one does).
    """

    def __init__(self, store: ClaimStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self.first: threading.Thread | None = None
        self.second_arrived = threading.Event()
        self.first_moved = threading.Event()
        self.second_went_on = threading.Event()  # fenced for its send, or back to its caller
        self.first_fenced = threading.Event()
        self.timed_out = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _wait(self, event: threading.Event) -> None:
        if not event.wait(_WAIT):
            self.timed_out = True

    def transition(self, claim: Any, to: ClaimState, **kwargs: Any) -> Any:
        if to is not ClaimState.PENDING or claim.state is not ClaimState.UNKNOWN:
            return self._store.transition(claim, to, **kwargs)
        with self._lock:
            first = self.first is None
            if first:
                self.first = threading.current_thread()
        if not first:
            self.second_arrived.set()
            self._wait(self.first_moved)
            return self._store.transition(claim, to, **kwargs)  # LeaseLost: the first moved it
        self._wait(self.second_arrived)
        try:
            moved = self._store.transition(claim, to, **kwargs)
        finally:
            self.first_moved.set()
        self._wait(self.second_went_on)  # back in the gateway once the second sends, or gave up
        return moved

    def fence_before_send(self, claim: Any) -> Any:
        fenced = self._store.fence_before_send(claim)
        if threading.current_thread() is self.first:
            self.first_fenced.set()
        elif self.first is not None:
            self.second_went_on.set()
            self._wait(self.first_fenced)  # both fenced before either POSTs
        return fenced


def test_two_threads_resending_one_absent_decision_post_it_once(tmp_path: Path) -> None:
    clock = ManualClock()
    settings = Settings(recent_activity_secs=0, position_settle_secs=0)
    spy = RecordingBroker(PaperBroker(prices=MAY21_PRICES, clock=clock))
    broker = FaultyBroker(spy, FaultPlan.parse(FIRST_POST_DROPPED, source="drop.yaml"), clock=clock)
    store = ClaimStore(f"sqlite:///{tmp_path / 'claims.db'}", settings=settings, clock=clock)
    racing = _Interleaving(store)
    gateway = OrderGateway(broker, racing, agent_id="bot", settings=settings, clock=clock)  # type: ignore[arg-type]
    try:
        first = gateway.enter("TQQQ", qty=10, intent="d1")
        assert first.outcome is Outcome.UNKNOWN and spy.requests == []  # dropped: nothing placed
        clock.advance(settings.unknown_grace_secs + 1)  # absent long enough to be resent

        results: dict[str, OrderResult] = {}

        def retry(name: str) -> None:
            try:
                results[name] = gateway.enter("TQQQ", qty=10, intent="d1")
            finally:
                if threading.current_thread() is not racing.first:
                    racing.second_went_on.set()

        threads = [threading.Thread(target=retry, args=(n,), name=n) for n in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(_WAIT)
        assert not racing.timed_out and not any(t.is_alive() for t in threads)
        # One POST of the decision's order; one thread sent it, the other was told "duplicate".
        assert [r.client_order_id for r in spy.requests] == [first.claim.client_order_id]  # type: ignore[union-attr]
        assert sorted(r.outcome for r in results.values()) == sorted([Outcome.SUBMITTED, Outcome.DUPLICATE])
        claim = store.get(first.claim.key)  # type: ignore[union-attr]
        assert claim is not None and claim.state is ClaimState.FILLED
    finally:
        store.close()
