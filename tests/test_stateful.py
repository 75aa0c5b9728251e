"""A Hypothesis state machine of bots, gateways, faulty paper broker and reconciler: G1-G4 as invariants.

Each example builds a fresh world: a claim store (a SQLite file in a temp dir, or a fresh
PostgreSQL schema), one ManualClock, one PaperBroker (filling at once, or later and in parts)
and one to three workers of one agent (gateways with their own store connection and owner
token), sometimes with one or two workers of a second agent on the same account; every agent
starts holding both symbols. Random steps then enter and exit with intents drawn from small
pools (so retries of one decision happen, from the same or another worker of the agent), each
call with up to two faults from a fault plan or a crash in the middle of its send; replay earlier
calls, at once or after a wait past the grace or lease; let time pass; arm faults and outages for
the next reads; make the positions endpoint trail fills (a symbol reads flat, or stale) for less
than the settle horizon; freeze a worker at `after_claim` or `before_post` (a thread parked in a
crashpoints hook, its claim PENDING) and resume it later, whatever the others did meanwhile;
close positions behind the bots' backs; run reconcile passes; restart a process (a new gateway
and store on the same database, a new owner token, whose first call runs the start-up pass).
After every step G1-G3 hold, G3 counting every share asked of the broker (refused asks too);
`settle` runs fault-free passes past every grace period, lease and settle horizon and checks
convergence (G2, G4): every agent's ledger sums to the broker, unless a drift between agents
was reported naming them all, which the operator then settles.

The broker stack, outermost first: `Port` (crashes mid-send, notes which sends a fault hit) ->
`FaultyBroker` (the armed faults, rebuilt when one is armed) -> `LaggingView` (positions that
trail fills; orders truthful) -> `PaperTap` (records every order asked, what the account and the
asking agent's ledger held just before, and the answer) -> `PaperBroker`.

The bugs the machine found are kept, shrunk to readable cases, at the end of this file.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
import threading
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.conftest import pg_base_url
from tests.gateway_kit import MAY21_PRICES, broker_qty, make_gateway
from tradeguard import crashpoints
from tradeguard.clock import ManualClock
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, BrokerPosition, Claim, OrderRequest, PositionIntent, Side
from tradeguard.domain.intents import Intent, Kind
from tradeguard.domain.lifecycle import TRANSITIONS, ClaimState
from tradeguard.errors import BrokerError, IntentMismatch, OrderRejected, StoreError, UnrecordedOrder
from tradeguard.execution import OrderResult, Outcome, send_claim
from tradeguard.gateway import OrderGateway
from tradeguard.orders import build_spec
from tradeguard.reconcile import ActionKind, Reconciler, ReconcileReport
from tradeguard.store import AuditQuery, ClaimStore, new_owner_token
from tradeguard.testing import Fault, FaultPlan, FaultyBroker, PaperBroker

AGENT = "stateful-bot"
AGENTS = (AGENT, "stateful-bot-2")  # a second agent trading the same symbols on the same account
SYMBOLS = ("TQQQ", "SQQQ")
SETTINGS = Settings()  # the defaults: grace 15 s, probe gap 2 s, settle 2 s, lease 30 s, recent 5 s
# Past every grace period, lease and recent-activity window.
QUIET_SECS = (
    max(
        SETTINGS.unknown_grace_secs,
        SETTINGS.lease_secs,
        SETTINGS.recent_activity_secs,
        SETTINGS.position_settle_secs,
    )
    + 1
)

# One-shot faults (nth: 1) for the next matching call, and outages (no nth) that last until the
# broker recovers; one fault per route is armed at a time.
FAULTS = FaultPlan.parse(
    """
    faults:
      - {route: POST /v2/orders, nth: 1, action: accept_then_timeout, delay_secs: 10}
      - {route: POST /v2/orders, nth: 1, action: accept_then_error, status: 504}
      - {route: POST /v2/orders, nth: 1, action: error, status: 503}
      - {route: POST /v2/orders, nth: 1, action: reject, status: 422}
      - {route: POST /v2/orders, nth: 1, action: reject, status: 403}
      - route: POST /v2/orders
        nth: 1
        action: reject
        status: 422
        body: {code: 42210000, message: "position intent mismatch, inferred: sell_to_open"}
      - route: POST /v2/orders
        nth: 1
        action: reject
        status: 403
        body: {code: 40310000, message: "insufficient qty available for order (requested: 9, available: 0)"}
      - route: POST /v2/orders
        nth: 1
        action: reject
        status: 404
        body: {code: 40410000, message: "position does not exist"}
      - {route: POST /v2/orders, nth: 1, action: drop}
      - {route: POST /v2/orders, nth: 1, action: rate_limit}
      - {route: "GET /v2/orders:by_client_order_id", nth: 1, action: error, status: 503}
      - {route: "GET /v2/orders:by_client_order_id", nth: 1, action: reject, status: 404}
      - {route: GET /v2/positions, nth: 1, action: error, status: 500}
      - {route: "GET /v2/positions/{symbol}", nth: 1, action: drop}
      - {route: "GET /v2/positions/{symbol}", nth: 1, action: rate_limit}
      - {route: GET /v2/orders, nth: 1, action: error, status: 502}
      - {route: POST /v2/orders, action: error, status: 503}
      - {route: GET /v2/positions, action: error, status: 503}
      - {route: "GET /v2/orders:by_client_order_id", action: drop}
      - {route: GET /v2/orders, action: rate_limit}
    """,
    source="stateful-faults.yaml",
).faults
# Clock steps: within the grace and settle periods, and past the grace, the lease, both.
WAITS = st.sampled_from([0.5, 1.0, 2.5, 4.0]) | st.sampled_from([16.0, 31.0, 90.0])
CRASH_BEFORE_SEND = "crash before the POST"
CRASH_AFTER_ACCEPT = "crash after the broker accepted"
# The calling worker's store fails from the moment its POST returned until the call ends.
STORE_FAILS_AFTER_POST = "store fails after the POST"
# Trouble armed just before a bot call: up to two faults (say a lost response and a failing
# lookup), crashes of its send and a store outage after it.
TROUBLE = st.lists(
    st.sampled_from([*FAULTS, CRASH_BEFORE_SEND, CRASH_AFTER_ACCEPT, STORE_FAILS_AFTER_POST]), max_size=2
)
# Caller-chosen client_order_ids (the drop-in's), from a pool small enough to be reused by
# another decision of the agent or by another agent on the account.
OWN_IDS = ("own-1", "own-2", "own-3")

# A worker may freeze (SIGSTOP) with its claim durable, before or after its lease check.
STALL_POINTS = ("after_claim", "before_post")
# How long the positions endpoint may trail fills: less than the settle horizon the guard waits.
LAG_SECS = SETTINGS.position_settle_secs - 5

_SENT_STATES = {
    ClaimState.SUBMITTED,
    ClaimState.PARTIALLY_FILLED,
    ClaimState.FILLED,
    ClaimState.CANCELED,
    ClaimState.EXPIRED,
}
_CLOSING = {PositionIntent.SELL_TO_CLOSE, PositionIntent.BUY_TO_CLOSE}
_OPENING = {PositionIntent.BUY_TO_OPEN, PositionIntent.SELL_TO_OPEN}


class Crash(BaseException):
    """A kill -9 in the middle of a send: no `except Exception` in the library may catch it."""


@dataclass(frozen=True)
class Submit:
    """One order asked of the paper account (refused ones included), with what stood just before.

    `available` is the account's `qty_available` on the order's symbol; for an exit, `held` is its
    agent's ledger, `own_open` what that agent's other open exits still have to sell, and `others`
    the shares other agents' ledgers hold on that side minus their acknowledged exits (which are out
    of `available` already): never this exit's to sell.
    """

    request: OrderRequest
    available: Decimal
    refusal: OrderRejected | None
    agent: str | None = None
    held: Decimal = Decimal(0)
    own_open: Decimal = Decimal(0)
    others: Decimal = Decimal(0)
    resumed: bool = False  # sent by a worker resumed after freezing past its lease check


_OPEN_EXIT_STATES = [
    ClaimState.PENDING,
    ClaimState.UNKNOWN,
    ClaimState.SUBMITTED,
    ClaimState.PARTIALLY_FILLED,
]
_ACKED = (ClaimState.SUBMITTED, ClaimState.PARTIALLY_FILLED)


class PaperTap:
    """The bottom of the stack: records every order asked of the paper account and its answer."""

    def __init__(self, paper: PaperBroker) -> None:
        self.paper = paper
        self.store: ClaimStore | None = None  # the machine's own view of the claims and ledgers
        self.submits: list[Submit] = []
        self.resumed_threads: set[int] = set()  # threads of workers resumed past `before_post`

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        pos = self.paper.get_position(request.symbol)
        available = Decimal(0) if pos is None else abs(pos.qty_available)
        context = (*self._exit_context(request), threading.get_ident() in self.resumed_threads)
        try:
            order = self.paper.submit_order(request)
        except OrderRejected as exc:
            self.submits.append(Submit(request, available, exc, *context))
            raise
        self.submits.append(Submit(request, available, None, *context))
        return order

    def _exit_context(self, request: OrderRequest) -> tuple[str | None, Decimal, Decimal, Decimal]:
        claim = None if self.store is None else self.store.get_by_client_order_id(request.client_order_id)
        if claim is None or claim.kind is not Kind.EXIT or self.store is None:
            return (None, Decimal(0), Decimal(0), Decimal(0))
        store, symbol = self.store, request.symbol
        held = store.position(claim.agent_id, symbol).qty
        exits = store.list_claims(states=_OPEN_EXIT_STATES, symbol=symbol, kind=Kind.EXIT)
        own_open = sum(
            ((c.order_qty or Decimal(0)) - c.filled_qty for c in exits
             if c.agent_id == claim.agent_id and c.key != claim.key),
            Decimal(0),
        )  # fmt: skip
        acked = sum(
            ((c.order_qty or Decimal(0)) - c.filled_qty for c in exits
             if c.agent_id != claim.agent_id and c.state in _ACKED),
            Decimal(0),
        )  # fmt: skip
        mine = held > 0
        others = sum(
            (abs(p.qty) for p in store.all_positions()
             if p.symbol == symbol and p.agent_id != claim.agent_id and p.qty != 0 and (p.qty > 0) == mine),
            Decimal(0),
        )  # fmt: skip
        return (claim.agent_id, held, own_open, max(others - acked, Decimal(0)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.paper, name)  # reads pass straight through


class LaggingView:
    """The positions endpoint trailing fills (orders stay truthful), switched on per symbol.

    A lagging symbol reads as flat ("hide") or as it stood when the lag began ("stale"), for
    `LAG_SECS` at most: less than `position_settle_secs`, the horizon the guard promises to wait.
    """

    def __init__(self, inner: PaperTap, clock: ManualClock) -> None:
        self.inner = inner
        self.clock = clock
        self.lag: dict[str, tuple[BrokerPosition | None, datetime]] = {}

    def switch(self, symbol: str, mode: str | None) -> None:
        if mode is None:
            self.lag.pop(symbol, None)
            return
        shown = None if mode == "hide" else self.inner.get_position(symbol)
        self.lag[symbol] = (shown, self.clock.now() + timedelta(seconds=LAG_SECS))

    def _lagging(self, symbol: str) -> bool:
        entry = self.lag.get(symbol)
        if entry is not None and self.clock.now() >= entry[1]:
            del self.lag[symbol]  # the endpoint caught up
            entry = None
        return entry is not None

    def get_position(self, symbol: str) -> BrokerPosition | None:
        if self._lagging(symbol):
            return self.lag[symbol][0]
        return self.inner.get_position(symbol)  # type: ignore[no-any-return]

    def list_positions(self) -> list[BrokerPosition]:
        real = {p.symbol: p for p in self.inner.list_positions()}
        for symbol in list(self.lag):
            if self._lagging(symbol):
                shown = self.lag[symbol][0]
                real.pop(symbol, None)
                if shown is not None:
                    real[symbol] = shown
        return sorted(real.values(), key=lambda p: p.symbol)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # orders (and the submit) are truthful


class Port:
    """The broker port the gateways see: the armed faults, and crashes in the middle of a send."""

    def __init__(self, inner: Any, clock: ManualClock) -> None:
        self.inner = inner
        self.clock = clock
        self.armed: list[Fault] = []
        self.layer = FaultyBroker(inner, FaultPlan(), clock=clock)
        self.crash: str | None = None
        self.faulted: set[str] = set()  # client_order_ids whose POST a fault, crash or stall hit
        self.submits = 0
        self.failed_reads = 0
        self.break_store: ClaimStore | None = None  # a store to fail once the next POST returns

    def arm(self, fault: Fault | None) -> None:
        """Arm `fault` for the next call on its route (replacing one armed there); None disarms all."""
        fired = [f.fault for f in self.layer.injector.fired()]
        self.armed = (
            [] if fault is None else [f for f in self.armed if f not in fired and f.route != fault.route]
        )
        if fault is not None:
            self.armed.append(fault)
        self.layer = FaultyBroker(self.inner, FaultPlan(faults=tuple(self.armed)), clock=self.clock)

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        self.submits += 1
        crash, self.crash = self.crash, None
        coid = request.client_order_id
        if crash == CRASH_BEFORE_SEND:
            self.faulted.add(coid)
            raise Crash
        fired = len(self.layer.injector.fired())
        broken, self.break_store = self.break_store, None
        try:
            if crash == CRASH_AFTER_ACCEPT:
                with contextlib.suppress(BrokerError):
                    self.layer.submit_order(request)
                self.faulted.add(coid)
                raise Crash
            return self.layer.submit_order(request)
        finally:
            if len(self.layer.injector.fired()) > fired:
                self.faulted.add(coid)
            if broken is not None:
                self.faulted.add(coid)
                _store_down(broken)

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        return self._read(self.layer.get_order_by_client_id, client_order_id)

    def get_order(self, order_id: str) -> BrokerOrder | None:
        return self._read(self.layer.get_order, order_id)

    def list_orders(self, **kwargs: Any) -> list[BrokerOrder]:
        return self._read(self.layer.list_orders, **kwargs)

    def list_positions(self) -> Any:
        return self._read(self.layer.list_positions)

    def get_position(self, symbol: str) -> Any:
        return self._read(self.layer.get_position, symbol)

    def _read(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except BrokerError:
            self.failed_reads += 1
            raise

    def cancel_order(self, order_id: str) -> None:
        self.layer.cancel_order(order_id)


def _store_down(store: ClaimStore) -> None:
    """Every later read and write of `store` fails as a lost database would (until `_store_up`)."""

    def lost() -> None:
        raise OSError("disk I/O error (the machine's store outage)")

    store._pool.checkout = lost  # type: ignore[method-assign]


def _store_up(store: ClaimStore) -> None:
    store._pool.__dict__.pop("checkout", None)


# (agent, enter|exit, symbol, intent, qty); an intent "name#id" is sent under the caller's id "id".
Call = tuple[str, str, str, str, int | None]


class Stall:
    """A worker frozen at a crash point (SIGSTOP) in a thread of its own, until resumed or killed."""

    def __init__(self, point: str, call: Call) -> None:
        self.point = point
        self.call = call
        self.parked = threading.Event()  # frozen at the point, or finished without reaching it
        self.frozen = False
        self.go = threading.Event()
        self.kill = False
        self.result: OrderResult | None = None
        self.error: BaseException | None = None
        self.claim: Claim | None = None  # the PENDING claim it froze on
        self.thread: threading.Thread | None = None


@dataclass
class Worker:
    """One bot process: an agent id, its own store connection and gateway (its lease identity)."""

    agent: str
    store: ClaimStore
    gw: OrderGateway
    stall: Stall | None = None


class GuardMachine(RuleBasedStateMachine):
    """Workers of one or two agents sharing one paper account, through crashes, faults, lags, stalls."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.url = self.open_store_url()
        self.store = ClaimStore(self.url, settings=SETTINGS, clock=self.clock)  # the machine's view
        self.workers: list[Worker] = []
        self.entry_qty: dict[tuple[str, str, str], int] = {}
        self.exit_qty: dict[tuple[str, str, str], int | None] = {}
        self.calls: list[Call] = []  # distinct calls, most recent last
        self.failed: list[Call] = []  # calls whose last try crashed, stalled or ended UNKNOWN/NOT_SENT
        self.fresh = itertools.count()
        self.external: set[str] = set()  # client_order_ids of orders placed behind the bots' backs
        self.closed_at: dict[str, list[datetime]] = defaultdict(list)
        self.lagged_at: dict[str, list[datetime]] = defaultdict(list)
        self.audit_seen = 0
        self.submits_seen = 0
        self.stalls: dict[int, Stall] = {}  # by thread id
        crashpoints.set_hook(self._on_point)

    @initialize(
        fill_on_submit=st.booleans(),
        max_fill_qty=st.none() | st.integers(1, 4),
        workers=st.integers(1, 3),
        second_agent_workers=st.integers(0, 2),
    )
    def open_the_account(
        self, fill_on_submit: bool, max_fill_qty: int | None, workers: int, second_agent_workers: int
    ) -> None:
        """A venue that fills at once or later (in parts); one agent's workers, maybe a second agent's."""
        self.paper = PaperBroker(
            prices=MAY21_PRICES,
            clock=self.clock,
            cash=1_000_000,
            fill_on_submit=fill_on_submit,
            max_fill_qty=max_fill_qty,
        )
        self.tap = PaperTap(self.paper)
        self.tap.store = self.store
        self.lagging = LaggingView(self.tap, self.clock)
        self.port = Port(self.lagging, self.clock)
        self.agents = AGENTS[: 2 if second_agent_workers else 1]
        for agent, count in zip(AGENTS, (workers, second_agent_workers), strict=True):
            for _ in range(count):
                store = ClaimStore(self.url, settings=SETTINGS, clock=self.clock)
                self.workers.append(Worker(agent, store, self._gateway(agent, store)))
        for agent in self.agents:  # every bot starts the session holding both sides
            for symbol in SYMBOLS:
                self._call(
                    (agent, "enter", symbol, "open", self.entry_qty.setdefault((agent, symbol, "open"), 10))
                )
        self._fill_everything()

    # -- the world -------------------------------------------------------------------------

    def open_store_url(self) -> str:
        self.tmp = tempfile.mkdtemp(prefix="tg-stateful-")
        return f"sqlite:///{self.tmp}/claims.db"

    def drop_store(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def teardown(self) -> None:
        try:
            for worker in self.workers:
                self._kill_stalled(worker)
        finally:
            crashpoints.set_hook(None)
            for worker in self.workers:
                worker.store.close()
            self.store.close()
            self.drop_store()

    def _gateway(self, agent: str, store: ClaimStore) -> OrderGateway:
        owner = new_owner_token()  # a new process: a new lease identity
        return OrderGateway(
            self.port, store, agent_id=agent, settings=SETTINGS, clock=self.clock, owner=owner
        )

    def _restart(self, worker: Worker) -> None:
        """Kill the worker's process; a new one opens a store and gateway on the same database."""
        self._kill_stalled(worker)
        worker.store.close()
        worker.store = ClaimStore(self.url, settings=SETTINGS, clock=self.clock)
        worker.gw = self._gateway(worker.agent, worker.store)

    def _pick(self, agent: str, who: int) -> Worker:
        """A running (not frozen) worker of `agent`; a fresh process when all of them are frozen."""
        mine = [w for w in self.workers if w.agent == agent]
        running = [w for w in mine if w.stall is None]
        if not running:
            worker = mine[who % len(mine)]
            self._restart(worker)  # the supervisor restarts a frozen bot
            return worker
        return running[who % len(running)]

    def _fill_everything(self) -> None:
        while self.paper.list_orders(status="open"):
            self.paper.step()  # the market fills every open order, in parts on a capped venue

    def _claims(self) -> list[Claim]:
        return self.store.list_claims()

    def _states(self) -> dict[str, tuple[ClaimState, Decimal]]:
        return {c.key: (c.state, c.filled_qty) for c in self._claims()}

    def _ledger(self) -> dict[tuple[str, str], Decimal]:
        return {(p.agent_id, p.symbol): p.qty for p in self.store.all_positions() if p.qty != 0}

    def _ledger_sums(self) -> dict[str, Decimal]:
        sums: dict[str, Decimal] = defaultdict(Decimal)
        for (_agent, symbol), qty in self._ledger().items():
            sums[symbol] += qty
        return {s: q for s, q in sums.items() if q != 0}

    def _broker(self) -> dict[str, Decimal]:
        return {p.symbol: p.qty for p in self.paper.list_positions()}

    # -- the bots --------------------------------------------------------------------------

    @rule(
        agent=st.integers(0, 1),
        who=st.integers(0, 2),
        symbol=st.sampled_from(SYMBOLS),
        name=st.sampled_from(["e1", "e2", "fresh"]),
        qty=st.integers(1, 12),
        trouble=TROUBLE,
    )
    def enter(
        self, agent: int, who: int, symbol: str, name: str, qty: int, trouble: list[Fault | str]
    ) -> None:
        self._call(self._entry(agent, symbol, name, qty), trouble, who)

    @rule(
        agent=st.integers(0, 1),
        who=st.integers(0, 2),
        symbol=st.sampled_from(SYMBOLS),
        name=st.sampled_from(["x1", "x2"]),
        qty=st.none() | st.integers(1, 12),
        trouble=TROUBLE,
    )
    def exit(
        self, agent: int, who: int, symbol: str, name: str, qty: int | None, trouble: list[Fault | str]
    ) -> None:
        self._call(self._exit(agent, symbol, name, qty), trouble, who)

    @rule(
        agent=st.integers(0, 1),
        who=st.integers(0, 2),
        symbol=st.sampled_from(SYMBOLS),
        exit_qty=st.none() | st.integers(1, 12),
        name=st.sampled_from(["c1", "c2", "y1"]),
        own_id=st.sampled_from(OWN_IDS),
        qty=st.integers(1, 12),
        trouble=TROUBLE,
    )
    def submit_with_own_id(
        self, agent: int, who: int, symbol: str, exit_qty: int | None, name: str, own_id: str, qty: int,
        trouble: list[Fault | str],
    ) -> None:  # fmt: skip
        """The drop-in's caller-chosen client_order_id (entries c*, exits y*), reused at times."""
        name = f"{name}#{own_id}"
        if name.startswith("y"):
            call = self._exit(agent, symbol, name, exit_qty)
        else:
            call = self._entry(agent, symbol, name, qty)
        self._call(call, trouble, who)

    def _entry(self, agent: int, symbol: str, name: str, qty: int) -> Call:
        bot = self.agents[agent % len(self.agents)]
        if name == "fresh":
            name = f"n{next(self.fresh)}"
        return (bot, "enter", symbol, name, self.entry_qty.setdefault((bot, symbol, name), qty))

    def _exit(self, agent: int, symbol: str, name: str, qty: int | None) -> Call:
        bot = self.agents[agent % len(self.agents)]
        return (bot, "exit", symbol, name, self.exit_qty.setdefault((bot, symbol, name), qty))

    @precondition(lambda self: self.calls)
    @rule(data=st.data(), who=st.integers(0, 2))
    def retry(self, data: st.DataObject, who: int) -> None:
        """The same decision again, from the worker that made it or another one of its agent."""
        self._call(data.draw(st.sampled_from(self.calls), label="retry of"), who=who)

    @precondition(lambda self: self.failed)
    @rule(data=st.data(), secs=WAITS, who=st.integers(0, 2))
    def retry_a_failed_call_later(self, data: st.DataObject, secs: float, who: int) -> None:
        """The bot's retry loop: a call that crashed, stalled or had no definite answer, after a wait."""
        call = data.draw(st.sampled_from(self.failed), label="retry of")
        self.clock.advance(secs)
        self._call(call, who=who)

    def _note(self, call: Call) -> None:
        if call in self.calls:
            self.calls.remove(call)
        self.calls.append(call)  # most recent last
        if call in self.failed:
            self.failed.remove(call)

    def _invoke(self, worker: Worker, call: Call) -> OrderResult:
        _agent, kind, symbol, name, qty = call
        if "#" in name:  # the drop-in's way: the caller's own client_order_id is the key
            own_id = name.split("#")[1]
            if kind == "enter":
                intent = Intent(worker.agent, Kind.ENTRY, symbol, Side.BUY, name)
                spec = build_spec(qty=qty, position_intent=PositionIntent.BUY_TO_OPEN, is_exit=False)
                return worker.gw.submit(intent, spec, client_order_id=own_id)
            spec = build_spec(qty=qty, position_intent=PositionIntent.SELL_TO_CLOSE, is_exit=True)
            return worker.gw.exit_order(symbol, spec, intent=name, client_order_id=own_id)
        if kind == "enter":
            return worker.gw.enter(symbol, qty=qty, intent=name)
        return worker.gw.exit(symbol, qty=qty, intent=name)

    def _call(self, call: Call, trouble: Sequence[Fault | str] = (), who: int = 0) -> None:
        for item in trouble:
            if isinstance(item, Fault):
                self.port.arm(item)
            else:
                self.port.crash = item
        worker = self._pick(call[0], who)
        self._note(call)
        placed = len(self.paper.orders())
        if STORE_FAILS_AFTER_POST in trouble:
            self.port.break_store = worker.store
        try:
            result = self._invoke(worker, call)
        except Crash:
            self.failed.append(call)
            self._restart(worker)
            return
        except UnrecordedOrder:
            # The store failed recording the answer: the order may be at the broker (one at most).
            assert len(self.paper.orders()[placed:]) <= 1
            self.failed.append(call)
            return
        except StoreError as exc:
            # G5: "nothing was sent" must be true. A caller's id that names another decision
            # is refused so, and so is any call whose store failed before its POST.
            assert self.paper.orders()[placed:] == [], exc
            assert "#" in call[3] or self.port.break_store is None, exc
            self.failed.append(call)
            return
        finally:
            self.port.break_store = None
            _store_up(worker.store)
        if result.outcome in (Outcome.UNKNOWN, Outcome.NOT_SENT):
            self.failed.append(call)
        self._check_result(result, self.paper.orders()[placed:])

    @precondition(lambda self: self.entry_qty)
    @rule(data=st.data(), who=st.integers(0, 2))
    def reuse_an_entry_intent_for_another_qty(self, data: st.DataObject, who: int) -> None:
        """A bot bug: the same decision name for a different order is refused loudly, nothing sent."""
        # (Not a decision under a caller's id: one refused as taken by another has no claim.)
        named = sorted(k for k in self.entry_qty if "#" not in k[2])
        agent, symbol, name = data.draw(st.sampled_from(named), label="decision")
        qty = self.entry_qty[(agent, symbol, name)] + data.draw(st.integers(1, 3), label="extra qty")
        worker = self._pick(agent, who)
        claims, submits = len(self._claims()), self.port.submits
        with pytest.raises(IntentMismatch):
            worker.gw.enter(symbol, qty=qty, intent=name)
        assert (len(self._claims()), self.port.submits) == (claims, submits)

    def _check_result(self, result: OrderResult, new: list[BrokerOrder]) -> None:
        """One call places at most one order, and only when its outcome says it may have."""
        assert len(new) <= 1, new
        if result.outcome is Outcome.SUBMITTED:
            assert result.claim is not None and result.order is not None
            assert [o.client_order_id for o in new] == [result.claim.client_order_id]
            assert result.order.client_order_id == result.claim.client_order_id
        elif result.outcome is not Outcome.UNKNOWN:
            assert new == [], (result.outcome, result.reason)

    # -- a sender that freezes between its claim and its POST --------------------------------

    def _on_point(self, name: str) -> None:
        stall = self.stalls.get(threading.get_ident())
        if stall is None or stall.frozen or name != stall.point:
            return
        stall.frozen = True
        stall.parked.set()
        assert stall.go.wait(timeout=120), "a frozen worker was never resumed"
        if stall.kill:
            raise Crash
        if name == "before_post":
            self.tap.resumed_threads.add(threading.get_ident())

    def _run_stalled(self, stall: Stall, worker: Worker) -> None:
        self.stalls[threading.get_ident()] = stall
        try:
            stall.result = self._invoke(worker, stall.call)
        except BaseException as exc:
            stall.error = exc
        finally:
            del self.stalls[threading.get_ident()]
            self.tap.resumed_threads.discard(threading.get_ident())
            stall.parked.set()

    @precondition(lambda self: any(w.stall is None for w in self.workers))
    @rule(
        agent=st.integers(0, 1),
        who=st.integers(0, 2),
        point=st.sampled_from(STALL_POINTS),
        symbol=st.sampled_from(SYMBOLS),
        exit_name=st.none() | st.sampled_from(["x1", "x2"]),
        qty=st.integers(1, 12),
    )
    def a_sender_freezes(
        self, agent: int, who: int, point: str, symbol: str, exit_name: str | None, qty: int
    ) -> None:
        """A new entry (or an exit) whose worker freezes at `point` with its claim PENDING."""
        call = (
            self._entry(agent, symbol, "fresh", qty)
            if exit_name is None
            else self._exit(agent, symbol, exit_name, None)
        )
        worker = self._pick(call[0], who)
        self._note(call)
        stall = Stall(point, call)
        placed = len(self.paper.orders())
        # The worker may own PENDING claims already (a send whose store failed after its POST):
        # the frozen one is the claim this call adds.
        before = {c.key for c in self.store.list_claims(states=[ClaimState.PENDING], agent_id=worker.agent)}
        stall.thread = threading.Thread(target=self._run_stalled, args=(stall, worker), daemon=True)
        stall.thread.start()
        assert stall.parked.wait(timeout=120), "the worker neither froze nor finished"
        if not stall.frozen:  # it never reached the point (a duplicate, a skip): an ordinary call
            stall.thread.join()
            if isinstance(stall.error, Crash):
                self.failed.append(call)
                self._restart(worker)
                return
            if stall.error is not None:
                raise stall.error
            assert stall.result is not None
            if stall.result.outcome in (Outcome.UNKNOWN, Outcome.NOT_SENT):
                self.failed.append(call)
            self._check_result(stall.result, self.paper.orders()[placed:])
            return
        assert len(self.paper.orders()) == placed, "a frozen sender placed an order"
        owned = [
            c
            for c in self.store.list_claims(states=[ClaimState.PENDING], agent_id=worker.agent)
            if c.owner == worker.gw.owner
        ]
        assert owned, "frozen without a PENDING claim"
        # A claim this call added, else one it took over (a retry of a PENDING decision).
        stall.claim = ([c for c in owned if c.key not in before] or owned)[-1]
        self.port.faulted.add(stall.claim.client_order_id)  # may end UNKNOWN (taken over) or PENDING
        worker.stall = stall
        self.failed.append(call)

    @precondition(lambda self: any(w.stall is not None for w in self.workers))
    @rule(data=st.data())
    def the_frozen_sender_resumes(self, data: st.DataObject) -> None:
        """The frozen process continues where it stopped, whatever happened meanwhile."""
        worker = data.draw(st.sampled_from([w for w in self.workers if w.stall is not None]), label="worker")
        stall = worker.stall
        assert stall is not None and stall.claim is not None and stall.thread is not None
        coid = stall.claim.client_order_id
        before = self.store.get(stall.claim.key)
        assert before is not None
        moved = (before.state, before.epoch) != (stall.claim.state, stall.claim.epoch)
        placed = len(self.paper.orders())
        # A freeze lasts: whatever the others did meanwhile took time on the clock. (Within
        # `exit_resize_after_secs` of sizing it would be the instant between a position read and
        # a POST, which no guard closes; a longer one makes the woken exit re-size first.)
        self.clock.advance(SETTINGS.exit_resize_after_secs + 0.5)
        stall.go.set()
        stall.thread.join(timeout=120)
        assert not stall.thread.is_alive(), "the resumed worker hangs"
        worker.stall = None
        new = self.paper.orders()[placed:]
        if isinstance(stall.error, Crash):
            self._restart(worker)
            return
        if stall.error is not None:
            raise stall.error
        assert stall.result is not None
        self._check_result(stall.result, new)
        if stall.point == "after_claim" and moved:
            # Its lease lapsed and another worker took the claim over or marked it NOT_SENT: the
            # resumed sender re-checks its lease before the POST and sends nothing.
            assert new == [], (before.state, stall.result.outcome, stall.result.reason)
        after = self.store.get(stall.claim.key)
        assert after is not None
        if any(o.client_order_id == coid for o in self.paper.orders()):
            # It sent (or its order was already there): the claim must say so, never "not placed".
            assert after.state not in (ClaimState.NOT_SENT, ClaimState.REJECTED), (after.state, after.reason)
        if stall.result.outcome in (Outcome.UNKNOWN, Outcome.NOT_SENT):
            self.failed.append(stall.call)

    def _kill_stalled(self, worker: Worker) -> None:
        stall, worker.stall = worker.stall, None
        if stall is None or stall.thread is None:
            return
        stall.kill = True
        stall.go.set()
        stall.thread.join(timeout=120)

    # -- the world around them -------------------------------------------------------------

    @rule(secs=WAITS)
    def time_passes(self, secs: float) -> None:
        """The clock moves and the market runs one matching pass (fills, in parts when capped)."""
        before = self._states()
        self.clock.advance(secs)
        self.paper.step()
        assert self._states() == before  # time alone resolves no claim (G2)

    @rule(fault=st.none() | st.sampled_from(FAULTS))
    def broker_health_changes(self, fault: Fault | None) -> None:
        """A fault for the next call on its route, or an outage, is armed; None: the broker recovers."""
        self.port.arm(fault)

    @rule(symbol=st.sampled_from(SYMBOLS), mode=st.none() | st.sampled_from(["hide", "stale"]))
    def positions_lag(self, symbol: str, mode: str | None) -> None:
        """The positions endpoint trails fills in `symbol` (flat, or a stale quantity), or catches up.

        It trails fills, so it reads flat only a position some ledger booked within the lag.
        """
        since = self.clock.now() - timedelta(seconds=LAG_SECS)
        recent = any(
            p.symbol == symbol and p.updated_at is not None and p.updated_at >= since
            for p in self.store.all_positions()
        )
        if mode == "hide" and not recent:
            mode = "stale"
        self.lagging.switch(symbol, mode)
        if mode is not None:
            self.lagged_at[symbol].append(self.clock.now())

    @rule(symbol=st.sampled_from(SYMBOLS))
    def close_behind_the_bots_back(self, symbol: str) -> None:
        if self.paper.get_position(symbol) is None:
            return
        try:
            order = self.paper.close_position(symbol)
        except OrderRejected:
            return  # open orders hold the shares (or would wash-trade): the outsider got a 403
        self.external.add(order.client_order_id)
        self.closed_at[symbol].append(self.clock.now())

    @rule(agent=st.integers(0, 1), who=st.integers(0, 2))
    def reconcile(self, agent: int, who: int) -> None:
        worker = self._pick(self.agents[agent % len(self.agents)], who)
        before, failed_reads = (self._states(), self._ledger()), self.port.failed_reads
        report = worker.gw.reconcile()
        # G4: a failed read is never taken as flat: it aborts the pass, which changes nothing.
        assert (report.aborted is not None) == (self.port.failed_reads > failed_reads), report.aborted
        if report.aborted is not None:
            assert report.applied == []
            assert (self._states(), self._ledger()) == before

    @rule(data=st.data())
    def crash_restart(self, data: st.DataObject) -> None:
        self._restart(data.draw(st.sampled_from(self.workers), label="worker"))

    def _passes(self) -> list[ReconcileReport]:
        """One pass per agent, by a running worker of it (frozen ones stay frozen)."""
        reports = []
        for agent in self.agents:
            running = [w for w in self.workers if w.agent == agent and w.stall is None]
            if running:
                reports.append(running[0].gw.reconcile())
            else:
                reconciler = Reconciler(self.port, self.store, settings=SETTINGS, clock=self.clock)
                reports.append(reconciler.run(agent_id=agent))
        return reports

    @rule()
    def settle(self) -> None:
        """Fault-free passes, the clock past grace, lease and settle horizon: G2, G4, G3's last word."""
        self.port.arm(None)
        self.port.crash = None
        for symbol in SYMBOLS:
            self.lagging.switch(symbol, None)
        self._fill_everything()
        self.clock.advance(QUIET_SECS)
        for first in self._passes():
            assert first.aborted is None, first.aborted
        stuck = [
            (c.client_order_id, c.state)
            for c in self._claims()
            if c.state in (ClaimState.PENDING, ClaimState.UNKNOWN)
        ]
        assert stuck == [], stuck
        # Positions of symbols that had claims in motion wait for the next pass, and a position
        # the first pass booked fills into waits out the settle horizon (positions may lag).
        self.clock.advance(SETTINGS.position_settle_secs + 1)
        second = self._passes()
        assert all(r.aborted is None for r in second)
        ledger, broker = self._ledger(), self._broker()
        drift = {a.symbol: a for r in second for a in r.actions if a.kind is ActionKind.REPORT_DRIFT}
        assert all(qty > 0 for qty in ledger.values()), ledger  # no ledger went short: entries buy
        sums = self._ledger_sums()
        for symbol in sorted(set(sums) | set(broker)):
            holders = sorted(a for (a, s) in ledger if s == symbol)
            if symbol not in drift:
                # No exit sold another agent's shares: the account holds at least what the other
                # agents' ledgers say is theirs, and every agent's ledger sums to the broker (G4).
                for agent in holders:
                    others = sum(
                        (q for (a, s), q in ledger.items() if s == symbol and a != agent), Decimal(0)
                    )
                    assert broker.get(symbol, Decimal(0)) >= others, (agent, symbol, ledger, broker)
                assert sums.get(symbol) == broker.get(symbol), (symbol, ledger, broker, second)
                continue
            # G4 between agents: a difference no evidence attributes is reported, naming them all,
            # and the operator's `tradeguard settle` (store.settle_position) settles it.
            assert len(holders) >= 2, (symbol, ledger, broker, drift[symbol])
            named = drift[symbol].evidence.get("agents", "")
            assert all(agent in named for agent in holders), (named, holders)
            self._operator_settles(symbol, holders, broker.get(symbol, Decimal(0)))
        assert self._ledger_sums() == broker, (self._ledger(), broker)
        for third in self._passes():  # converged: running it again changes nothing
            assert third.changes == [] and third.problems == [], (third.changes, third.problems)

    def _operator_settles(self, symbol: str, holders: list[str], broker_qty: Decimal) -> None:
        """`tradeguard settle`: the operator splits the broker's position between the agents."""
        left = broker_qty
        for i, agent in enumerate(holders):
            held = self.store.position(agent, symbol).qty
            qty = left if i == len(holders) - 1 else min(held, left)
            self.store.settle_position(agent, symbol, qty, reason="drift settled", actor="stateful")
            left -= qty

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def guarantees_hold(self) -> None:
        """G1-G3 after every step, on one read of the claims and of the broker's orders."""
        claims = {c.client_order_id: c for c in self._claims()}
        orders = self.paper.orders()
        self.g1_at_most_one_order_per_decision(claims, orders)
        self.g2_nothing_lost_nothing_guessed(claims, orders)
        self.g3_no_accidental_short(claims)

    def g1_at_most_one_order_per_decision(self, claims: dict[str, Claim], orders: list[BrokerOrder]) -> None:
        """Client ids are unique at the broker and every order the bots placed has exactly one claim."""
        coids = [o.client_order_id for o in orders]
        assert len(coids) == len(set(coids)), "two orders with one client_order_id"
        assert len({c.key for c in claims.values()}) == len(claims)
        decisions = [
            (c.agent_id, c.kind, c.symbol, c.side, c.intent, c.turn_id if c.kind is Kind.EXIT else None)
            for c in claims.values()
        ]
        assert len(decisions) == len(set(decisions)), "two claims for one decision"
        for order in orders:
            if order.client_order_id in self.external:
                continue
            claim = claims.get(order.client_order_id)
            assert claim is not None, f"order {order.client_order_id} reached the broker without a claim"
            assert (order.symbol, order.side.value) == (claim.symbol, claim.side)
            # A claim that says "nothing was placed" while its order exists would invite a second one.
            assert claim.state not in (ClaimState.REJECTED, ClaimState.NOT_SENT), (claim.state, claim.reason)

    def g2_nothing_lost_nothing_guessed(self, claims: dict[str, Claim], orders: list[BrokerOrder]) -> None:
        """Every claim is in the lifecycle, moved only along the table, by evidence or a fault."""
        at_broker = {o.client_order_id: o for o in orders}
        for coid, claim in claims.items():
            if claim.state is ClaimState.UNKNOWN:
                assert coid in self.port.faulted, f"{coid} UNKNOWN without a fault or crash on its send"
            elif claim.state is ClaimState.PENDING:
                assert coid in self.port.faulted, f"{coid} left PENDING without a crash"
            elif claim.state in _SENT_STATES:
                order = at_broker.get(coid)
                assert order is not None, f"{coid} is {claim.state} without broker evidence"
                assert claim.filled_qty <= order.filled_qty
        query = AuditQuery(actions=("transition",))
        for record in self.store.audit_page(query, after_id=self.audit_seen, limit=100_000):
            assert record.state is not None and record.prev_state is not None
            src, dst = ClaimState(record.prev_state), ClaimState(record.state)
            assert dst in TRANSITIONS[src], f"illegal move {src} -> {dst}: {record.reason}"
            self.audit_seen = record.id

    def g3_no_accidental_short(self, claims: dict[str, Claim]) -> None:
        """Never short; exits close, never ask past their agent's holding nor into others' shares.

        Counts every share asked of the broker (refused asks included), not only what filled.
        """
        assert all(p.qty > 0 for p in self.paper.list_positions()), self.paper.list_positions()
        assert all(qty > 0 for qty in self._ledger().values()), self._ledger()
        for submit in self.tap.submits[self.submits_seen :]:
            request = submit.request
            claim = claims.get(request.client_order_id)
            assert claim is not None, "a submit without a claim"
            if claim.kind is Kind.ENTRY:
                assert request.position_intent in _OPENING
                continue
            assert request.position_intent in _CLOSING, request
            assert request.qty is not None and submit.agent == claim.agent_id
            if submit.resumed:
                # Sized and fenced before it froze: nothing can stop a POST already past its lease
                # check; the resumed sender's order must be adopted (see the_frozen_sender_resumes).
                continue
            # Per agent: this exit plus the agent's other open exits never exceed what it held.
            assert request.qty + submit.own_open <= abs(submit.held), (
                f"{claim.agent_id} asked {request.qty} {request.symbol} with {submit.own_open} in open "
                f"exits while holding {submit.held}"
            )
            if request.qty > submit.available - submit.others:
                # Only an exit sized before the position was closed behind the bots' backs, or
                # sized from a positions read that still showed it (a lag in force), may ask past
                # the agent's share of the account (and the broker must refuse it).
                lagging = any(
                    t <= claim.created_at < t + timedelta(seconds=LAG_SECS)
                    for t in self.lagged_at[claim.symbol]
                )
                stale = lagging or any(t >= claim.created_at for t in self.closed_at[claim.symbol])
                assert stale, (
                    f"{claim.agent_id}'s exit asked for {request.qty}; the broker had {submit.available} "
                    f"available, {submit.others} of them other agents'"
                )
                assert submit.refusal is not None, "an exit sold another agent's shares"
        self.submits_seen = len(self.tap.submits)


class PostgresGuardMachine(GuardMachine):
    """The same machine on real PostgreSQL, in a schema of its own per example."""

    def open_store_url(self) -> str:
        base = pg_base_url()
        assert base is not None
        self.schema = f"tg_sm_{uuid.uuid4().hex[:12]}"
        self.admin = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
        with self.admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{self.schema}"'))
        sep = "&" if "?" in base else "?"
        return f"{base}{sep}options=-csearch_path%3D{self.schema}"

    def drop_store(self) -> None:
        with self.admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{self.schema}" CASCADE'))
        self.admin.dispose()


def _settings(max_examples: int, steps: int) -> settings:
    # A longer hunt: TRADEGUARD_STATEFUL_SCALE=10 runs ten times the examples (the deeper
    # sequences, like a second exit racing an unknown first one, need a few hundred);
    # TRADEGUARD_STATEFUL_NOSHRINK=1 reports a failure unshrunk (shrinking this machine is slow).
    scale = int(os.environ.get("TRADEGUARD_STATEFUL_SCALE", "1"))
    return settings(
        max_examples=max_examples * scale,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        **(
            {"phases": [Phase.explicit, Phase.reuse, Phase.generate]}
            if os.environ.get("TRADEGUARD_STATEFUL_NOSHRINK")
            else {}
        ),
    )


# Shrinking a failure can take Hypothesis its full five minutes: let it finish and report.
# The budgets keep the whole file within about a minute under CI=true on two cores (both
# stores): the bugs the machine found are replayed as fixed cases below, so the default run is a
# smoke of the machine; TRADEGUARD_STATEFUL_SCALE hunts deeper (the deep sequences need hundreds).
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_guarantees_hold_over_random_steps_on_sqlite() -> None:
    run_state_machine_as_test(GuardMachine, settings=_settings(40, 50))


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_guarantees_hold_over_random_steps_on_postgresql() -> None:
    if pg_base_url() is None:
        pytest.skip("PostgreSQL tests need TRADEGUARD_TEST_PG_URL")
    run_state_machine_as_test(PostgresGuardMachine, settings=_settings(15, 45))


# -- bugs the machine found, shrunk to readable cases ------------------------------------------


def test_phantom_topped_up_by_a_new_entry_is_trimmed_to_the_broker(store_url: str) -> None:
    """Found by the machine: this used to be reported as drift on every pass, forever (G4)."""
    gw, spy = make_gateway(store_url)
    try:
        gw.enter("SQQQ", qty=1, intent="11:06 entry")
        spy.inner.close_position("SQQQ")  # behind the bot's back: the ledger's 1 SQQQ is a phantom
        gw.enter("SQQQ", qty=1, intent="11:10 add")  # a scale-in add on top of it, before any pass
        assert gw.store.position(gw.agent_id, "SQQQ").qty == 2 and broker_qty(spy, "SQQQ") == 1
        gw.clock.advance(QUIET_SECS)  # type: ignore[attr-defined]
        report = gw.reconcile()
        assert [a.kind for a in report.changes] == [ActionKind.TRIM_PHANTOM], report.actions
        assert gw.position("SQQQ").qty == broker_qty(spy, "SQQQ") == 1
        (trimmed,) = gw.store.audit_records(AuditQuery(actions=("reconcile",), symbol="SQQQ"))
        assert trimmed.detail["action"] == "trim_phantom" and trimmed.qty == "-1"
        assert gw.reconcile().changes == []
    finally:
        gw.store.close()


# The exit's 422 is a stale view (the broker holds); the pass the gateway runs at once cannot read.
STALE_EXIT_PLAN = """
faults:
  - route: POST /v2/orders
    match: {side: sell}
    nth: 1
    action: reject
    status: 422
    body: {code: 42210000, message: "position intent mismatch, inferred: sell_to_open"}
  - {route: GET /v2/positions, nth: 1, action: error, status: 503}
"""


def test_a_pass_that_only_proposes_an_exit_release_reports_no_change(store_url: str) -> None:
    """Found by the machine: a merely proposed release used to count as applied and as a change."""
    clock = ManualClock()
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    broker = FaultyBroker(paper, FaultPlan.parse(STALE_EXIT_PLAN, source="stale-exit.yaml"), clock=clock)
    store = ClaimStore(store_url, settings=SETTINGS, clock=clock)
    gw = OrderGateway(broker, store, agent_id=AGENT, settings=SETTINGS, clock=clock, reconcile_on_start=False)
    try:
        gw.enter("TQQQ", qty=3, intent="entry")
        refused = gw.exit("TQQQ", intent="exit")
        assert refused.outcome is Outcome.REJECTED and refused.claim is not None
        report = gw.reconcile()
        assert [a.kind for a in report.actions] == [ActionKind.RELEASE_EXIT]
        assert store.get(refused.claim.key).state is ClaimState.REJECTED  # type: ignore[union-attr]
        assert report.applied == [] and report.changes == []
        # Never un-exitable: the bot's next call of the same exit re-sizes and sends it.
        again = gw.exit("TQQQ", intent="exit")
        assert again.outcome is Outcome.SUBMITTED and again.order is not None, again.reason
        assert again.order.client_order_id == refused.claim.client_order_id and again.order.qty == 3
        assert paper.get_position("TQQQ") is None
    finally:
        store.close()


def test_a_resend_that_meets_its_own_late_order_adopts_it(store_url: str) -> None:
    clock = ManualClock()
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock)
    store = ClaimStore(store_url, settings=SETTINGS, clock=clock)
    try:
        intent = Intent(AGENT, Kind.ENTRY, "TQQQ", Side.BUY, "09:42 breakout")
        spec = build_spec(qty=6, position_intent=PositionIntent.BUY_TO_OPEN, is_exit=False)
        claim = store.claim(intent, spec, owner="worker-b", order_qty=Decimal(6)).claim
        # Worker A's POST of this claim lands late, after worker B's two probes found nothing.
        paper.submit_order(claim.request())
        result = send_claim(paper, store, claim)  # worker B's resend, same client_order_id
        assert result.outcome is not Outcome.REJECTED, result.reason
        assert store.get(claim.key).state is ClaimState.FILLED  # type: ignore[union-attr]
        assert store.position(AGENT, "TQQQ").qty == 6 and len(paper.orders()) == 1
    finally:
        store.close()


LOST_ENTRY_PLAN = """
faults:
  - {route: POST /v2/orders, nth: 1, action: accept_then_timeout, delay_secs: 10}
  - {route: "GET /v2/orders:by_client_order_id", nth: 1, action: error, status: 503}
"""


def test_a_pass_of_one_agent_never_takes_another_agents_unresolved_fill(store_url: str) -> None:
    """Two agents on one account: B's entry landed but is UNKNOWN to B; A's pass must not take it.

    Found by extending this machine to two agents (a one-agent pass held back positions only for
    its own agent's claims in motion).
    """
    clock = ManualClock()
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock, cash=1_000_000)
    store = ClaimStore(store_url, settings=SETTINGS, clock=clock)
    try:
        a = OrderGateway(paper, store, agent_id="bot-a", settings=SETTINGS, clock=clock)
        a.enter("TQQQ", qty=10, intent="a open")
        lost = FaultyBroker(paper, FaultPlan.parse(LOST_ENTRY_PLAN, source="lost-entry.yaml"), clock=clock)
        b = OrderGateway(lost, store, agent_id="bot-b", settings=SETTINGS, clock=clock)
        assert b.enter("TQQQ", qty=5, intent="b open").outcome is Outcome.UNKNOWN  # placed, answer lost
        assert broker_qty(paper, "TQQQ") == 15
        clock.advance(QUIET_SECS)  # past the settle horizon of A's ledger
        a.reconcile()  # bot A's own pass (its gateway's interval pass)
        b.reconcile()  # bot B's pass finds its order and books its 5
        held = {p.agent_id: p.qty for p in store.all_positions()}
        assert held == {"bot-a": 10, "bot-b": 5}, held  # actual: {"bot-a": 15, "bot-b": 5}, broker 15
    finally:
        store.close()


LOST_EXIT_PLAN = """
faults:
  - {route: POST /v2/orders, match: {side: sell}, nth: 1, action: drop}
"""


def test_a_lost_exit_resent_after_an_outside_close_is_resized_first(store_url: str) -> None:
    """Two agents on one account: A's lost exit, resent once proven absent, never sells B's shares.

    A's exit was sized before the account was closed behind both bots' backs and B re-entered.
    Found by the machine: an UNKNOWN exit proven absent was resent with the quantity sized when it
    was claimed, while an exit that placed nothing (NOT_SENT, refused) was re-sized first (G3).
    """
    clock = ManualClock()
    paper = PaperBroker(prices=MAY21_PRICES, clock=clock, cash=1_000_000)
    store = ClaimStore(store_url, settings=SETTINGS, clock=clock)
    try:
        lossy = FaultyBroker(paper, FaultPlan.parse(LOST_EXIT_PLAN, source="lost-exit.yaml"), clock=clock)
        a = OrderGateway(lossy, store, agent_id="bot-a", settings=SETTINGS, clock=clock)
        b = OrderGateway(paper, store, agent_id="bot-b", settings=SETTINGS, clock=clock)
        a.enter("TQQQ", qty=10, intent="a open")
        b.enter("TQQQ", qty=10, intent="b open")
        lost = a.exit("TQQQ", intent="a out")  # sized 10 of the 20; the POST never arrived
        assert lost.outcome is Outcome.UNKNOWN and lost.claim is not None and lost.claim.order_qty == 10
        paper.close_position("TQQQ")  # behind both bots' backs: both ledgers are phantoms now
        b.enter("TQQQ", qty=10, intent="b again")  # the account's 10 are B's
        clock.advance(SETTINGS.unknown_grace_secs + 1)
        again = a.exit("TQQQ", intent="a out")  # the bot's retry: absent on two probes
        assert again.outcome is not Outcome.SUBMITTED, again.reason
        assert all(o.client_order_id != lost.claim.client_order_id for o in paper.orders())
        assert broker_qty(paper, "TQQQ") == 10  # actual: 0, A's resend of 10 sold B's shares
    finally:
        store.close()


def test_the_machine_steps_of_an_exit_answered_rejected_while_another_exits_order_was_sent() -> None:
    """Found by the machine (rare: 1 in 5 suite runs): `_check_result` saw an exit answered
    REJECTED (the armed 403) while the same call placed another exit's order.

    x1 is refused and its own pass cannot read the positions; x2 is refused too, and the pass
    after it used to release every refused exit of the agent: x1's (older) took the shares, x2's
    sized to nothing. The readable case: test_refused_exit_reconcile.py.
    """
    refused = next(f for f in FAULTS if f.status == 403 and f.body)
    positions_fail = next(f for f in FAULTS if f.route == "GET /v2/positions" and f.nth == 1)
    machine = GuardMachine()
    try:
        machine.open_the_account(fill_on_submit=True, max_fill_qty=None, workers=1, second_agent_workers=0)
        machine.exit(agent=0, who=0, symbol="TQQQ", name="x1", qty=None, trouble=[refused, positions_fail])
        machine.guarantees_hold()
        machine.time_passes(secs=1.0)
        machine.exit(agent=0, who=0, symbol="TQQQ", name="x2", qty=None, trouble=[refused])
        machine.guarantees_hold()
        machine.settle()
    finally:
        machine.teardown()


def test_the_machine_freezes_the_claim_its_call_adds_beside_one_left_pending() -> None:
    """Found in CI (a harness fault, not the product's): the worker already owned a PENDING
    claim (an entry whose store failed right after its POST), and the frozen sender's claim was
    picked as the last PENDING claim the worker owned, by listing order: the older one, so the
    frozen claim was never marked as faulted and read as "left PENDING without a crash". The
    shrunk steps, as Hypothesis printed them (the decision-reuse step left out: it sends nothing).
    """
    orders_read_fails = next(f for f in FAULTS if f.route == "GET /v2/orders" and f.nth == 1)
    accepted_then_timeout = next(f for f in FAULTS if f.action.value == "accept_then_timeout")
    m = GuardMachine()
    try:
        m.open_the_account(fill_on_submit=True, second_agent_workers=2, workers=1, max_fill_qty=None)
        m.a_sender_freezes(agent=0, exit_name=None, point="after_claim", qty=1, symbol="TQQQ", who=0)
        m.exit(agent=0, name="x1", qty=7, symbol="TQQQ", trouble=[], who=0)
        m.exit(
            agent=0,
            name="x1",
            qty=None,
            symbol="TQQQ",
            trouble=[orders_read_fails, CRASH_AFTER_ACCEPT],
            who=0,
        )
        m.exit(
            agent=0,
            name="x1",
            qty=None,
            symbol="TQQQ",
            trouble=[accepted_then_timeout, orders_read_fails],
            who=0,
        )
        m.submit_with_own_id(
            agent=0, exit_qty=5, name="c1", own_id="own-1", qty=12, symbol="TQQQ", trouble=[], who=0
        )
        m.positions_lag(mode="hide", symbol="TQQQ")
        m.positions_lag(mode="hide", symbol="TQQQ")
        m.enter(agent=0, name="fresh", qty=1, symbol="SQQQ", trouble=[STORE_FAILS_AFTER_POST], who=0)
        m.guarantees_hold()
        m.close_behind_the_bots_back(symbol="TQQQ")
        m.a_sender_freezes(agent=0, exit_name=None, point="after_claim", qty=1, symbol="SQQQ", who=0)
        m.guarantees_hold()
    finally:
        m.teardown()
