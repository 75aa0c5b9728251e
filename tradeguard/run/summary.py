"""What a run shows: its status read from the store and the broker, and the summary at the end.

Everything is read from the claim store's audit log and claims and from the broker's positions
(the plain account, never through the fault plan), not from the strategy's answers, so a bot
written against alpaca-py is shown exactly like one using the gateway.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from tradeguard.domain import AuditRecord, Claim, symbol_key
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import BrokerError
from tradeguard.ports import Broker
from tradeguard.store import AuditQuery, ClaimStore

__all__ = ["OPEN_STATES", "Monitor", "PositionRow", "ReconcileStats", "RunReport", "Status", "format_summary"]

OPEN_STATES = (ClaimState.PENDING, ClaimState.SUBMITTED, ClaimState.PARTIALLY_FILLED, ClaimState.UNKNOWN)


@dataclass(frozen=True, slots=True)
class PositionRow:
    """One symbol as the guard and the broker see it; `broker` None when the read failed."""

    symbol: str
    guard: Decimal
    broker: Decimal | None

    @property
    def agrees(self) -> bool:
        """Whether guard and broker hold the same."""
        return self.broker is not None and self.guard == self.broker


@dataclass(frozen=True, slots=True)
class Status:
    """The run at one moment.

    Attributes:
        positions: Guard vs broker for the strategy's symbols and every symbol either holds.
        open_claims: Decisions not yet final (PENDING, SUBMITTED, PARTIALLY_FILLED, UNKNOWN).
        by_state: The run's claims by state.
        orders_sent: The run's decisions that reached the broker.
        blocked: Calls answered from a known decision without sending (retries, duplicates).
        skipped: Calls with nothing to send (an exit with nothing to sell).
    """

    positions: tuple[PositionRow, ...]
    open_claims: tuple[Claim, ...]
    by_state: dict[str, int]
    orders_sent: int
    blocked: int
    skipped: int


@dataclass
class ReconcileStats:
    """The runner's reconcile passes so far."""

    passes: int = 0
    changes: int = 0
    problems: list[str] = field(default_factory=list)
    last_at: datetime | None = None
    last_note: str = "not run yet"


class Monitor:
    """Reads a run's status and new audit records.

    Args:
        store: The run's claim store.
        truth: The broker without faults.
        agent_id: The run's agent.
        since: When the run started (its claims are those created since).
        symbols: The strategy's symbols, always shown.
    """

    def __init__(
        self, store: ClaimStore, truth: Broker, agent_id: str, since: datetime, symbols: Sequence[str]
    ) -> None:
        self.store = store
        self.truth = truth
        self.agent_id = agent_id
        self.since = since
        self.symbols = tuple(s.upper() for s in symbols)
        self._last_audit_id = self._audit_tail()
        # The run's own claims and skips are those audited after this point. A time cannot tell
        # them apart: a sim's clock replays the same day on every run, so an earlier run's claims
        # on the same store were "created since" this run's start too (and counted as its own).
        self._status_audit_id = self._last_audit_id
        self._run_keys: set[str] = set()
        self._blocked = 0
        self._skipped = 0

    def _audit_tail(self) -> int:
        last = 0
        while page := self.store.audit_page(AuditQuery(agent_id=self.agent_id), after_id=last, limit=1000):
            last = page[-1].id
        return last

    def _read_run_records(self) -> None:
        """Take in the agent's claim and skip records audited since the last status."""
        while page := self.store.audit_page(
            AuditQuery(agent_id=self.agent_id, actions=("claim", "skip")),
            after_id=self._status_audit_id,
            limit=1000,
        ):
            for record in page:
                if record.action == "claim" and record.claim_key:
                    self._run_keys.add(record.claim_key)
                elif record.action == "skip":
                    if record.claim_key:
                        self._blocked += 1
                    else:
                        self._skipped += 1
            self._status_audit_id = page[-1].id

    def new_records(self) -> list[AuditRecord]:
        """Return the agent's audit records written since the last call, oldest first."""
        found: list[AuditRecord] = []
        while page := self.store.audit_page(
            AuditQuery(agent_id=self.agent_id), after_id=self._last_audit_id, limit=500
        ):
            found.extend(page)
            self._last_audit_id = page[-1].id
        return found

    def status(self) -> Status:
        """Read the run's status now."""
        store = self.store
        self._read_run_records()
        claims = [
            c
            for c in store.list_claims(agent_id=self.agent_id, updated_since=self.since)
            if c.key in self._run_keys
        ]
        open_claims = tuple(store.list_claims(states=list(OPEN_STATES), agent_id=self.agent_id))
        blocked, skipped = self._blocked, self._skipped
        return Status(
            positions=self._positions(),
            open_claims=open_claims,
            by_state=dict(Counter(c.state.value for c in claims)),
            orders_sent=sum(1 for c in claims if c.broker_order_id),
            blocked=blocked,
            skipped=skipped,
        )

    def _positions(self) -> tuple[PositionRow, ...]:
        guard = {p.symbol: p.qty for p in self.store.positions(self.agent_id)}
        names = {symbol_key(s): s for s in [*self.symbols, *guard]}  # the broker's "BTCUSD" is "BTC/USD"
        broker: dict[str, Decimal] | None
        try:
            broker = {names.get(symbol_key(p.symbol), p.symbol): p.qty for p in self.truth.list_positions()}
        except BrokerError:
            broker = None
        symbols = sorted(set(self.symbols) | set(guard) | set(broker or {}))
        return tuple(
            PositionRow(s, guard.get(s, Decimal(0)), None if broker is None else broker.get(s, Decimal(0)))
            for s in symbols
        )


@dataclass(frozen=True, slots=True)
class RunReport:
    """How a run ended.

    Attributes:
        strategy: The strategy's class and module.
        mode: The run's mode.
        agent_id: The run's agent.
        venue: Where the orders went.
        store_url: The claim store, for `tradeguard audit --store`.
        bars: How many minutes the strategy saw.
        first_bar: The first minute seen, if any.
        last_bar: The last minute seen, if any.
        stopped_by: Why the run ended ("end of bars", "SIGINT", "strategy error: ...").
        status: The status after the final look-ups and reconcile pass.
        reconcile: The run's reconcile passes.
        faults_fired: Scripted faults that fired.
        unresolved: Claims still UNKNOWN or PENDING at the end (a person should look).
        failed: The strategy or the guard raised; the run stopped early.
    """

    strategy: str
    mode: str
    agent_id: str
    venue: str
    store_url: str
    bars: int
    first_bar: datetime | None
    last_bar: datetime | None
    stopped_by: str
    status: Status
    reconcile: ReconcileStats
    faults_fired: int
    unresolved: tuple[Claim, ...]
    failed: bool = False

    @property
    def exit_status(self) -> int:
        """0 when the run ended clean, 1 when something needs a person (see `unresolved`, `failed`)."""
        return 1 if self.unresolved or self.failed else 0


def _et(when: datetime | None) -> str:
    from tradeguard.run.bars import EASTERN

    return "-" if when is None else f"{when.astimezone(EASTERN):%H:%M}"


def format_summary(report: RunReport) -> list[str]:
    """Return the summary printed at the end of a run, one line each."""
    status = report.status
    states = ", ".join(f"{state} {n}" for state, n in sorted(status.by_state.items())) or "none"
    lines = [
        f"summary: {report.strategy} in {report.mode} on {report.venue}, agent {report.agent_id}",
        f"  stopped by: {report.stopped_by} after {report.bars} bar(s), "
        f"{_et(report.first_bar)}-{_et(report.last_bar)} ET",
        f"  orders sent: {status.orders_sent}; retries and duplicates blocked: {status.blocked}; "
        f"exits with nothing to sell: {status.skipped}",
        f"  decisions by state: {states}",
    ]
    for row in status.positions:
        broker = "unreadable" if row.broker is None else str(row.broker)
        mark = "ok" if row.agrees else "DIFFERS"
        lines.append(f"  {row.symbol:<6} guard {row.guard} / broker {broker}  {mark}")
    rec = report.reconcile
    lines.append(f"  reconcile: {rec.passes} pass(es), {rec.changes} change(s); last: {rec.last_note}")
    lines.extend(f"  reconcile problem: {p}" for p in rec.problems[-5:])
    if report.faults_fired:
        lines.append(f"  faults fired: {report.faults_fired}")
    for claim in report.unresolved:
        lines.append(
            f"  UNRESOLVED {claim.state} {claim.symbol} {claim.side} {claim.client_order_id} "
            f"({claim.intent}): run `tradeguard reconcile` once the broker answers"
        )
    lines.append(f"  audit: tradeguard audit --store {report.store_url} --agent-id {report.agent_id}")
    return lines
