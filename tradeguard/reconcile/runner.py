"""`Reconciler`: read the broker, `diff`, and apply the actions in audited store transactions.

A pass reads positions, open orders and the orders behind unresolved claims; when the diff
needs a confirming read (a phantom candidate, an order that may be absent) it waits the settle
delay on the injected clock and reads again. Any failed read aborts the pass before anything
changes, and the abort is audited (G4: a failed read is never "flat").
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from tradeguard import crashpoints
from tradeguard.clock import Clock, SystemClock
from tradeguard.config import Settings
from tradeguard.domain import (
    AuditAction,
    BrokerOrder,
    BrokerPosition,
    Claim,
    LedgerPosition,
    Side,
    ledger_symbol,
    same_symbol,
    symbol_key,
)
from tradeguard.domain.intents import Kind, exit_group, is_leg
from tradeguard.domain.ledger import acknowledged_before, legs_wait
from tradeguard.domain.lifecycle import ACKNOWLEDGED_STATES, ACTIVE_STATES, ClaimState
from tradeguard.errors import BrokerError, BrokerUnavailable, ConfigError, IllegalTransition, LeaseLost
from tradeguard.execution import MAX_CHAIN_HOPS, OrderResult, Outcome, adopt_order, send_claim
from tradeguard.ports import EVERY_OPEN_ORDER, Broker, ClaimLedger, account_key_of, coid_scope, same_account
from tradeguard.reconcile.attribute import Filled, attribute_close, attributed
from tradeguard.reconcile.diff import Plan, busy_symbols, plan_read
from tradeguard.reconcile.positions import CLEARED_AT, CLEARED_TURN
from tradeguard.reconcile.snapshot import Action, ActionKind, BrokerSnapshot, PutOff
from tradeguard.sessions.recorder import NULL_RECORDER, NullRecorder, Recorder
from tradeguard.store import new_owner_token

__all__ = ["BackgroundReconciler", "ReconcileReport", "Reconciler"]

_log = logging.getLogger(__name__)

# Ledger corrections applied as a compare-and-set on the position they were computed from.
# Claims whose order may have filled at the broker without its agent's ledger booking it yet.
_IN_MOTION = sorted(ACTIVE_STATES)
_SAME_INSTANT = timedelta(milliseconds=1)
OTHERS_SOLD_SINCE_READ = (
    "another agent's order filled in the symbol between this exit's position read and its sizing"
)


def _stranded(claim: Claim, now: datetime) -> bool:
    """Whether an unacknowledged claim's sender is gone: UNKNOWN, or PENDING past its lease."""
    if claim.state is ClaimState.UNKNOWN:
        return True
    return claim.state is ClaimState.PENDING and claim.lease_expires_at <= now


_UNRESOLVED = frozenset({ClaimState.PENDING, ClaimState.UNKNOWN})

# Other agents' stranded exits read one by one up to this many; more: one listing of the symbol.
_LOOKUPS_BEFORE_LISTING = 3
# Other agents' orders in motion on an exit's side (whose fills may be in the position unbooked)
# read by client_order_id for one sizing, at most this many (those that may fill most first): a
# quarter of Alpaca's 200 requests a minute, for an exit beside a grid larger than most. Past it
# the rest are counted from one listing, which may trail a fill (audit 67): only an order it
# shows ended counts what it shows; any other counts all it may still fill (fail closed: held
# back, never sold; see `Reconciler.unbooked_by_others`).
_LOOKUPS_PER_SIZING = 50
# A put-off symbol's own pass comes at least this long after the pass that put it off.
_PUT_OFF_MIN_GAP = timedelta(seconds=1)
_CORRECTIONS = frozenset({ActionKind.TRIM_PHANTOM, ActionKind.ADOPT_DRIFT, ActionKind.ADOPT_ORPHAN})

# Position actions that change a ledger: rechecked against the store as it is after the reads.
_POSITION_CHANGES = _CORRECTIONS | {ActionKind.CLEAR_PHANTOM}
_ADOPTIONS = frozenset({ActionKind.ADOPT_DRIFT, ActionKind.ADOPT_ORPHAN})


def _identity(action: Action) -> tuple[object, ...]:
    """What makes two position actions the same correction (the ledger position included)."""
    pos = action.position
    held = None if pos is None else (pos.agent_id, pos.turn_id, pos.qty)
    return (action.kind, action.agent_id, symbol_key(action.symbol), action.qty, held)


# A drift's order history is listed from this long before the earliest holder's turn opened: an
# order placed earlier (a resting limit) may have filled into it; one placed earlier still and
# missing from the list leaves the sums unproven, and the drift reported.
_HISTORY_BEFORE_TURNS = timedelta(days=1)
# Alpaca returns at most 500 orders a page; a full page may hide more.
_ORDERS_PAGE = 500
# The states a claim with filled shares can be in (a fill never leaves PENDING, NOT_SENT or REJECTED).
_FILL_STATES = (
    ClaimState.SUBMITTED, ClaimState.PARTIALLY_FILLED, ClaimState.FILLED, ClaimState.CANCELED,
    ClaimState.EXPIRED, ClaimState.UNKNOWN,
)  # fmt: skip


@dataclass(slots=True)
class ReconcileReport:
    """What one pass found and did.

    Attributes:
        started_at: When the pass began.
        actions: Everything the diff proposed (reports included).
        applied: The actions carried out (empty on a dry run or an abort).
        dry_run: True when nothing was meant to change.
        aborted: Why the pass stopped before changing anything, or None.
        sent: Exits re-sized and resent by this pass, by claim key.
        reads: How many broker snapshots were taken.
        snapshot: The last broker read of the pass.
        put_off: Symbols not compared: their ledger moved too recently for the positions read.
    """

    started_at: datetime
    actions: list[Action] = field(default_factory=list)
    applied: list[Action] = field(default_factory=list)
    dry_run: bool = False
    aborted: str | None = None
    sent: dict[str, OrderResult] = field(default_factory=dict)
    reads: int = 0
    snapshot: BrokerSnapshot | None = None
    put_off: list[PutOff] = field(default_factory=list)

    @property
    def problems(self) -> list[Action]:
        """Reports that need a person: drift, orphans, acknowledged orders gone missing."""
        return [a for a in self.actions if a.kind.is_report]

    def next_pass_at(self, settings: Settings) -> datetime:
        """When the next pass is due: `reconcile_every_secs` after this one, or sooner for a put-off symbol.

        The one schedule of `BackgroundReconciler`, `OrderGateway.reconcile_if_due` and the
        replay: a phantom is cleared within `reconcile_interval_secs` (G4), and a symbol this pass
        put off (its ledger moved too recently) is looked at again as soon as its wait ends.
        """
        due = self.started_at + timedelta(seconds=settings.reconcile_every_secs)
        if self.put_off:
            due = min(due, max(min(p.until for p in self.put_off), self.started_at + _PUT_OFF_MIN_GAP))
        return due

    @property
    def changes(self) -> list[Action]:
        """Applied actions that changed a claim or the ledger."""
        return [a for a in self.applied if not a.kind.is_report]


def _may_fill(claim: Claim) -> Decimal:
    """The most a claim's order may still fill beyond what the claim booked (infinite: unknown qty)."""
    if claim.order_qty is None:  # a notional order: its shares are not known before it fills
        return Decimal("Infinity")
    return max(claim.order_qty - claim.filled_qty, Decimal(0))


class Unbooked(NamedTuple):
    """Shares other agents' orders filled that their ledgers lack (`Reconciler.unbooked_by_others`).

    Attributes:
        qty: How many.
        whose: "agent client_order_id" of each order counted.
        changed_at: The latest broker `updated_at` of the orders read with such fills (a fill is
            no later than its order's last change), or None: the time after which a positions
            read taken `position_settle_secs` later surely shows them.
    """

    qty: Decimal
    whose: list[str]
    changed_at: datetime | None = None

    def shows_at(self, settle: timedelta, read_at: datetime) -> datetime | None:
        """When a positions read surely shows these fills, if one begun at `read_at` may not (else None).

        Held back from a read that does not show them yet, they are taken off twice (audit 76).
        A broker clock ahead of ours waits no longer than `settle` past the read.
        """
        if not self.qty or self.changed_at is None or self.changed_at + settle <= read_at:
            return None
        return min(self.changed_at, read_at) + settle


def _unbooked(candidates: list[Claim], orders: dict[str, BrokerOrder | None]) -> Unbooked:
    """What the claims' orders filled beyond the fills the claims booked, whose ("agent coid"), and when."""
    unbooked, whose, changed_at = Decimal(0), [], None
    for claim in candidates:
        order = orders.get(claim.client_order_id)
        if order is not None and order.filled_qty > claim.filled_qty:
            unbooked += order.filled_qty - claim.filled_qty
            whose.append(f"{claim.agent_id} {claim.client_order_id}")
            if order.updated_at is not None and (changed_at is None or order.updated_at > changed_at):
                changed_at = order.updated_at
    return Unbooked(unbooked, whose, changed_at)


class Reconciler:
    """Holds claims and ledger against the broker's positions and orders.

    Args:
        broker: Where the truth is.
        store: The claims and ledger to correct.
        settings: Grace, settle delay, recent-activity threshold, interval.
        clock: Time source; its `sleep` is used for the confirming read.
    """

    def __init__(
        self,
        broker: Broker,
        store: ClaimLedger,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.broker = broker
        self.store = store
        self.settings = settings or store.settings
        self.clock: Clock = clock or store.clock or SystemClock()
        self.owner = new_owner_token()
        self._reported: set[tuple[str, str, str, str]] = set()
        # Ledger turns found holding fills made on another broker account than this broker's
        # (an agent re-pointed since; `_off_account_turns`): a turn's fills never leave it.
        self._elsewhere: set[int] = set()
        # Turns found holding none, with the last move they were checked at.
        self._checked: dict[int, datetime | None] = {}
        # Open turns of agents registered on another account, by whether a claim of theirs was
        # made on this broker's account (`_left_on_account`), with the move they were checked at.
        self._made_here: dict[int, tuple[datetime | None, bool]] = {}
        self._lock = threading.Lock()
        self.recorder: Recorder | NullRecorder = NULL_RECORDER  # a recording gateway sets its own

    def run(
        self,
        *,
        agent_id: str | None = None,
        symbols: Iterable[str] | None = None,
        dry_run: bool = False,
        adopt_orphans_to: str | None = None,
        release_exits: bool | Collection[str] = False,
    ) -> ReconcileReport:
        """Run one pass; see the module docstring.

        Args:
            agent_id: Only this agent's claims and ledger (positions are account-wide).
            symbols: Only these symbols.
            dry_run: Compute and return the actions without applying them.
            adopt_orphans_to: Take broker positions no ledger holds into this agent's ledger.
            release_exits: Re-size and resend exits refused for position reasons while the
                broker still holds shares: all of them (True), or only the refused exits with
                these claim keys (the gateway names the one it just saw refused: another's
                release would place an order its call does not answer for). The others are
                proposed and left for the bot's next call of that exit.
        """
        if not isinstance(release_exits, bool):
            release_exits = frozenset(release_exits)
        wanted = None if symbols is None else sorted(set(symbols))
        report = ReconcileReport(started_at=self.clock.now(), dry_run=dry_run)
        with self._lock:
            try:
                self._resolve_stranded_others(agent_id, wanted, dry_run=dry_run)
                claims, ledger, cleared, others, moved = self._load(agent_id, wanted)
                snapshot: BrokerSnapshot | None = None
                actions: list[Action] = []
                # A second read, a settle delay later, only when the first leaves a phantom or an
                # absent order undecided: those need the broker to say so twice.
                for reads in (1, 2):
                    if snapshot is not None:
                        settings = self.settings
                        self.clock.sleep(max(settings.settle_delay_secs, settings.unknown_probe_gap_secs))
                    snapshot = self._read(claims, earlier=snapshot)
                    report.reads, report.snapshot = reads, snapshot
                    now = self.clock.now()
                    busy = busy_symbols(others, snapshot, now, self.settings)
                    planned = self._plan(
                        claims, ledger, snapshot, now,
                        symbols=wanted, adopt_orphans_to=adopt_orphans_to, cleared=cleared, busy=busy,
                        moved=moved, releasing=release_exits,
                    )  # fmt: skip
                    actions, report.put_off = planned.actions, planned.put_off
                    if not planned.needs_second_read:
                        break
                if snapshot is not None and any(a.kind is ActionKind.REPORT_DRIFT for a in actions):
                    actions = self._attribute_drifts(actions, ledger, snapshot)
                if snapshot is not None and any(a.kind in _POSITION_CHANGES for a in actions):
                    actions = self._still_planned(
                        actions, snapshot, agent_id, wanted,
                        adopt_orphans_to=adopt_orphans_to, release_exits=release_exits,
                    )  # fmt: skip
                if agent_id is not None:
                    # A one-agent pass changes its own ledger only, except where the account's order
                    # history proves another agent's ledger a phantom (`reconcile.attribute`): left to
                    # that agent's own passes, a dead or idle agent's phantom would hold back this
                    # agent's real shares from its exits (they size against other agents' ledgers).
                    actions = [a for a in actions if a.agent_id in (None, agent_id) or attributed(a)]
                if agent_id is not None:
                    actions = [self._not_others_fill(a) for a in actions]
                actions = [self._confirm_readoption(a, adopt_orphans_to) for a in actions]
            except BrokerError as exc:
                report.aborted = f"broker read failed: {exc}"
                self.store.audit(
                    AuditAction.ERROR,
                    agent_id=agent_id or "*",
                    reason=f"reconcile pass aborted, nothing changed: {report.aborted}",
                    detail={"symbols": wanted or "all"},
                )
                return report
            crashpoints.hit("reconcile_after_read")
            report.actions = actions
            if not dry_run:
                by_key = {c.key: c for c in claims}
                for action in actions:
                    if self._apply(action, by_key, release_exits, report):
                        report.applied.append(action)
        return report

    def _attribute_drifts(
        self, actions: list[Action], ledger: list[LedgerPosition], snapshot: BrokerSnapshot
    ) -> list[Action]:
        """Replace a shared symbol's drift report by the corrections its order history proves.

        See `reconcile.attribute`. Asked only where positions alone left drift among several
        agents, with no order of any agent in motion in the symbol; the symbol's orders since a
        day before the earliest holder's turn opened are listed (one request; a full page, which
        may hide more, proves nothing) and each looked up by client_order_id. A failed read keeps
        the report: attribution is a refinement, never a reason to abort the pass.
        """
        out: list[Action] = []
        in_motion: set[str] | None = None
        for action in actions:
            if action.kind is ActionKind.REPORT_DRIFT:
                if in_motion is None:
                    in_motion = {symbol_key(s) for s in self.store.symbols_in_motion()}
                found = None
                if symbol_key(action.symbol) not in in_motion:
                    try:
                        found = self._attribute_drift(action.symbol, ledger, snapshot)
                    except BrokerError:
                        why = "order history of %s unreadable: its drift stays reported"
                        _log.warning(why, action.symbol)
                if found:
                    out += found
                    continue
            out.append(action)
        return out

    def _attribute_drift(
        self, symbol: str, ledger: list[LedgerPosition], snapshot: BrokerSnapshot
    ) -> list[Action] | None:
        """The corrections `attribute_close` proves for `symbol`, or None (see `_attribute_drifts`)."""
        holders = [p for p in ledger if same_symbol(p.symbol, symbol) and not p.is_flat]
        opened = [p.opened_at for p in holders if p.opened_at is not None]
        if len(holders) < 2 or len(opened) != len(holders):
            return None
        after = min(opened) - _HISTORY_BEFORE_TURNS
        listed = self.broker.list_orders(status="all", symbols=[symbol], after=after, limit=_ORDERS_PAGE)
        if len(listed) >= _ORDERS_PAGE:
            return None
        filled = [
            Filled(order, self._claim_of(order.client_order_id))
            for order in listed
            if order.filled_qty and same_symbol(order.symbol, symbol)
        ]
        return attribute_close(
            symbol, holders, filled, snapshot.qty(symbol),
            read_at=snapshot.positions_read_at or snapshot.taken_at, settings=self.settings,
        )  # fmt: skip

    def _still_planned(
        self,
        actions: list[Action],
        snapshot: BrokerSnapshot,
        agent_id: str | None,
        wanted: list[str] | None,
        *,
        adopt_orphans_to: str | None,
        release_exits: bool | frozenset[str],
    ) -> list[Action]:
        """Keep a ledger correction only if the store as it is after the reads still leads to it.

        The claims, busy symbols and moved turns were loaded before the broker was read; an order
        claimed and placed in between (another thread's or process's exit or entry, whose answer
        is still on its way) shows in the read and is in no loaded claim, so the pass would book
        its shares as this ledger's missed fill or clear the turn it is selling (audit 21 #1).
        Every claim is written before its order is sent, so a second load now sees it (in motion)
        or its booked fill (a moved turn): the symbol then waits. The compare-and-set at apply time
        covers what moves after this.
        """
        claims, ledger, cleared, others, moved = self._load(agent_id, wanted)
        now = self.clock.now()
        again = plan_read(
            claims, ledger, snapshot, now, self.settings,
            symbols=wanted, adopt_orphans_to=adopt_orphans_to, cleared=cleared, moved=moved,
            busy=busy_symbols(others, snapshot, now, self.settings), releasing=release_exits,
            off_account_turns=self._elsewhere,
        ).actions  # fmt: skip
        if self._off_account_turns(again, snapshot):  # a turn seen only now: never corrected here
            again = [a for a in again if a.position is None or a.position.turn_id not in self._elsewhere]
        if any(a.kind is ActionKind.REPORT_DRIFT for a in again):
            again = self._attribute_drifts(again, ledger, snapshot)  # the history read again, too
        kept = {_identity(a) for a in again if a.kind in _POSITION_CHANGES}
        return [a for a in actions if a.kind not in _POSITION_CHANGES or _identity(a) in kept]

    def _plan(
        self,
        claims: list[Claim],
        ledger: list[LedgerPosition],
        snapshot: BrokerSnapshot,
        now: datetime,
        **options: Any,
    ) -> Plan:
        """`plan_read` without the turns made on another account; planned again when it finds one."""
        planned = plan_read(
            claims, ledger, snapshot, now, self.settings, off_account_turns=self._elsewhere, **options
        )
        if self._off_account_turns(planned.actions, snapshot):
            # A correction of a turn made on another account: planned again without it.
            planned = plan_read(
                claims, ledger, snapshot, now, self.settings, off_account_turns=self._elsewhere, **options
            )
        return planned

    def _off_account_turns(self, actions: list[Action], snapshot: BrokerSnapshot) -> bool:
        """Find the turns that `actions` would correct holding fills made on another account.

        An agent re-pointed to another broker account keeps the turns it holds on the old one:
        a flat read of the new account is no evidence about them (a clear needs the word of the
        account the shares are on). Their claims say where each fill was made (`coid_scope`).
        Read only for turns a correction was planned for (rarely: a phantom, a drift), once
        per turn and move; a turn found so is remembered (`_elsewhere`) and left out of every
        later comparison of this reconciler. Turns whose claims are all of unknown account
        (before migration 0012, an agent of unknown account) cannot be told apart: compared as
        before. Returns True when a new such turn was found (the caller plans again).
        """
        scope = snapshot.account_scope
        if not scope:
            return False
        found = False
        for action in actions:
            pos = action.position
            if action.kind not in _POSITION_CHANGES or pos is None or pos.turn_id is None:
                continue
            turn = pos.turn_id
            if turn in self._elsewhere or (turn in self._checked and self._checked[turn] == pos.updated_at):
                continue
            claims = self.store.list_claims(agent_id=pos.agent_id, symbol=pos.symbol)
            if any(c.turn_id == turn and c.filled_qty and c.on_other_account(scope) for c in claims):
                self._elsewhere.add(turn)
                found = True
            else:
                self._checked[turn] = pos.updated_at
        return found

    # -- reading ---------------------------------------------------------------------------

    def _load(
        self, agent_id: str | None, symbols: list[str] | None
    ) -> tuple[list[Claim], list[LedgerPosition], list[LedgerPosition], list[Claim], list[LedgerPosition]]:
        """Return the claims, all open positions, recently cleared turns, others' claims, moved turns.

        Others' claims are the active claims on the account of agents outside a one-agent pass
        (`busy_symbols` decides, per read, which of their symbols wait); moved turns
        are those of every agent on the account, open or closed, that moved within
        `position_settle_secs` (the positions read may not show the move yet), phantom clears
        left out.
        """
        store, now = self.store, self.clock.now()
        # Positions are account-wide: the ledger of every agent on this broker's account counts
        # when comparing quantities; agents registered on another account are not in this one.
        on_account = self.on_account(agent_id)
        every_position = store.all_positions()
        ledger = [p for p in every_position if on_account(p.agent_id)]
        # Claims made on this account count here whoever their agent is registered to now.
        scope = coid_scope(account_key_of(self.broker))
        left = self._left_on_account([p for p in every_position if not on_account(p.agent_id)], scope)
        ledger += left
        left_turns = {p.turn_id for p in left}
        keys = None if symbols is None else {symbol_key(s) for s in symbols}
        if keys is not None:
            ledger = [p for p in ledger if symbol_key(p.symbol) in keys]
        every = [] if agent_id is not None else sorted({p.agent_id for p in ledger} | set(store.agents()))
        agents = [agent_id] if agent_id is not None else [a for a in every if on_account(a)]
        # Refused exits matter only while their turn is open (they may need releasing); NOT_SENT
        # claims only for a while (a frozen sender may still place the order late).
        open_turns = {p.turn_id for p in ledger}
        probe_since = now - timedelta(seconds=self.settings.not_sent_probe_secs)
        claims: list[Claim] = []
        for agent in agents:
            claims += store.list_claims(states=sorted(ACTIVE_STATES), agent_id=agent)
            refused = store.list_claims(states=[ClaimState.REJECTED], agent_id=agent, kind=Kind.EXIT)
            claims += [c for c in refused if c.turn_id in open_turns]
            claims += store.list_claims(
                states=[ClaimState.NOT_SENT], agent_id=agent, updated_since=probe_since
            )
        claims += self._left_here(every, agents)
        if keys is not None:
            claims = [c for c in claims if symbol_key(c.symbol) in keys]
        readopt_since = now - timedelta(seconds=self.settings.readopt_window_secs)
        cleared = [p for p in store.cleared_turns(since=readopt_since) if on_account(p.agent_id)]
        # Positions are account-wide, claims of a one-agent pass are not: another agent's order in
        # motion may already show at the broker, and must not read as this agent's missed fill.
        others = (
            [
                c
                for c in store.list_claims(states=_IN_MOTION)
                if c.agent_id != agent_id
                and (on_account(c.agent_id) or (scope and c.coid_scope == scope))
                and (keys is None or symbol_key(c.symbol) in keys)
            ]
            if agent_id is not None
            else []
        )
        # A phantom clear moves no shares at the broker, so no lagging read can still show it; were
        # it counted, each agent's clear in one-agent passes would hold back the next agent's.
        settle_since = now - timedelta(seconds=self.settings.position_settle_secs)
        clears = {p.turn_id for p in cleared}
        moved = [
            p
            for p in store.moved_turns(since=settle_since)
            if (on_account(p.agent_id) or p.turn_id in left_turns) and p.turn_id not in clears
        ]
        return claims, ledger, cleared, others, moved

    def _left_on_account(self, elsewhere: list[LedgerPosition], scope: str) -> list[LedgerPosition]:
        """The open turns of agents registered on another account that hold a claim made in `scope` (here).

        An agent re-pointed to another account since keeps, here, the shares it bought here: its
        turn is compared with this broker's positions like any agent's on the account (audit 66;
        left out, its shares read as an orphan here, or as another agent's missed fill). A turn
        that also holds fills of another account is then left out of every correction by
        `_off_account_turns`, as on the new account. Claims are read once per turn and move.
        """
        if not scope:
            return []  # a broker of unknown account: every agent is on it already (`on_account`)
        found: list[LedgerPosition] = []
        for pos in elsewhere:
            if pos.turn_id is None:
                continue
            seen = self._made_here.get(pos.turn_id)
            if seen is None or seen[0] != pos.updated_at:
                claims = self.store.list_claims(agent_id=pos.agent_id, symbol=pos.symbol)
                made = any(c.turn_id == pos.turn_id and c.coid_scope == scope for c in claims)
                seen = self._made_here[pos.turn_id] = (pos.updated_at, made)
            if seen[1]:
                found.append(pos)
        return found

    def _left_here(self, every: list[str], here: list[str]) -> list[Claim]:
        """Unresolved and live claims made on this broker's account by agents registered elsewhere now.

        An agent re-pointed to another account leaves its claims on this one (`Claim.coid_scope`):
        only this account's broker can resolve them (the other account's passes only report
        them), so a whole-store pass (`every` agent, `here` those on this account) looks them up
        too. One listing, and only when some agent is registered on another account.
        """
        scope = coid_scope(account_key_of(self.broker))
        away = set(every) - set(here)
        if not scope or not away:
            return []
        return [
            c
            for c in self.store.list_claims(states=sorted(ACTIVE_STATES))
            if c.agent_id in away and c.coid_scope == scope
        ]

    def unbooked_by_others(self, agent_id: str, symbol: str, adds: Side) -> Unbooked:
        """Shares other agents' orders in motion filled on the `adds` side that their ledgers lack.

        A claim's fills reach its agent's ledger when that agent adopts them (its acknowledgement,
        refresh or reconcile); until then they are in the broker's position and in no ledger: a
        sender that died after its POST, an answer lost, a fill not refreshed yet, an order marked
        NOT_SENT that landed late after all (probed for `not_sent_probe_secs`, as `_load` does).
        An exit of `agent_id` (the gateway's, or a released one) must not count them as its own
        (G3). Orders are read after the position (they are current, positions may lag: a fill
        the position read does not show yet only holds back more), one by one by client_order_id
        however many rest (a grid costs a request an order): a listing can trail a fill the
        positions read already shows, the order still resting unfilled in it, and an exit sized
        past a phantom sold the grid's fresh shares (G3; audit 67). At most
        `_LOOKUPS_PER_SIZING` are read, those that may fill most first; the rest are counted from
        one listing of the symbol's orders, which is final only for an order it shows ended:
        any other counts all it may still fill (held back, never sold; an order of unknown size
        among them refuses the sizing). Returns the quantity, "agent client_order_id" of each
        order counted, and when the latest of the orders read changed (`Unbooked`).

        Other agents' acknowledged exits on the other side are brought up to date when their
        orders have ended at the broker (canceled by hand, by an account-wide cancel, expired):
        sizing counts an acknowledged exit's shares as already out of `qty_available`
        (`size_exit`), so a stale one would free the other agent's shares, back in
        `qty_available` since the cancel, for this agent's exit (G3). See `_end_ended_exits`.

        Raises:
            BrokerError: An order read failed, or more orders of unknown size are in motion than
                are read (the exit is then not sized at all).
        """
        now = self.clock.now()
        candidates: list[Claim] = []
        exits: list[Claim] = []
        stranded: list[Claim] = []
        for claim in self._others_in_motion(agent_id, symbol):
            if claim.side is adds:
                candidates.append(claim)
            elif claim.kind is Kind.EXIT and claim.state in ACKNOWLEDGED_STATES:
                exits.append(claim)
            elif claim.kind is Kind.EXIT and _stranded(claim, now):
                stranded.append(claim)
        if exits:
            self._end_ended_exits(exits, symbol)
        if stranded:
            self._resolve_stranded_exits(stranded, self._orders_of(stranded, symbol))
        return self._unbooked_fills(candidates, symbol)

    def _unbooked_fills(self, candidates: list[Claim], symbol: str) -> Unbooked:
        """What the candidates' orders filled unbooked, read by client_order_id up to a bound.

        See `unbooked_by_others`: past `_LOOKUPS_PER_SIZING` an order counts what one listing
        shows it filled only if the listing shows it ended (an ended order fills no more, so a
        trailing listing cannot understate it), else all it may still fill (`_may_fill`).
        """
        ordered = sorted(candidates, key=_may_fill, reverse=True)  # unknown sizes first
        read, rest = ordered[:_LOOKUPS_PER_SIZING], ordered[_LOOKUPS_PER_SIZING:]
        if len(rest) <= _LOOKUPS_BEFORE_LISTING:  # a listing would cost as much
            read, rest = ordered, []
        orders = self._orders_of(read, symbol, one_by_one=True)
        unbooked, whose, changed_at = _unbooked(read, orders)
        if not rest:
            return Unbooked(unbooked, whose, changed_at)
        unsized = [c.client_order_id for c in rest if c.order_qty is None]
        if unsized:
            raise BrokerUnavailable(
                f"{len(candidates)} of other agents' {symbol} orders are in motion, more than the "
                f"{_LOOKUPS_PER_SIZING} read one by one, and {len(unsized)} beyond those are of unknown "
                f"size ({', '.join(unsized[:3])}): what they filled cannot be bounded"
            )
        listed = self._orders_of(rest, symbol, listed_only=True)
        for claim in rest:
            order = listed.get(claim.client_order_id)
            if order is not None and order.status.is_terminal and order.replaced_by is None:
                more = _unbooked([claim], {claim.client_order_id: order}).qty
                if more:
                    unbooked += more
                    whose.append(f"{claim.agent_id} {claim.client_order_id}")
            elif may := _may_fill(claim):
                unbooked += may
                whose.append(f"{claim.agent_id} {claim.client_order_id} (not read: all it may fill)")
        return Unbooked(unbooked, whose, changed_at)

    def _others_in_motion(self, agent_id: str, symbol: str) -> list[Claim]:
        """Other agents' claims on `agent_id`'s account in motion in `symbol`, and recent NOT_SENT ones.

        An order marked NOT_SENT may still land late: probed for `not_sent_probe_secs`, as `_load` does.
        """
        on_account = self.on_account(agent_id)
        since = self.clock.now() - timedelta(seconds=self.settings.not_sent_probe_secs)
        return [
            claim
            for claim in (
                *self.store.list_claims(states=_IN_MOTION, symbol=symbol),
                *self.store.list_claims(states=[ClaimState.NOT_SENT], symbol=symbol, updated_since=since),
            )
            if claim.agent_id != agent_id and on_account(claim.agent_id)
        ]

    def sold_outside(
        self, agent_id: str, symbol: str, adds: Side, read_at: datetime
    ) -> tuple[Decimal, list[str]]:
        """Shares that orders outside every claim took off the `adds` side lately (a close by hand).

        A positions read may trail fills by up to `position_settle_secs`: one taken moments after
        a person closed the account's position still shows the shares, and an agent whose ledger
        the close made a phantom would size its exit from them; if another agent bought again
        meanwhile, that exit sells the other agent's new shares (G3; found by the shared-account
        soak). The exit waits out other agents' recent fills, but a close by hand is nobody's
        fill. Orders are current, so the symbol's orders submitted within that horizon before
        `read_at` are listed and what those no claim names filled on the other side is returned,
        with the ids counted: the exit holds it back. Such a fill the read already shows holds
        back too much, for one horizon only. Read only while another agent on the account holds
        the symbol or has an order in motion there (their shares are what is at stake; alone on
        the account, the broker refuses a sell beyond the position).

        Raises:
            BrokerError: The listing failed (the exit is then not sized at all).
        """
        settle = timedelta(seconds=self.settings.position_settle_secs)
        if not settle or not self.others_trade(agent_id, symbol):
            return Decimal(0), []
        since = read_at - settle
        listed = self.broker.list_orders(status="all", symbols=[symbol], after=since, limit=_ORDERS_PAGE)
        sold, whose = Decimal(0), []
        for order in listed:
            if order.side is adds or not order.filled_qty or not same_symbol(order.symbol, symbol):
                continue
            if order.updated_at is not None and order.updated_at <= since:
                continue  # filled before the horizon: the read shows it
            if self._claim_of(order.client_order_id) is None:
                sold += order.filled_qty
                whose.append(order.client_order_id or order.id)
        return sold, whose

    def holds_the_read_misses(
        self, agent_id: str, symbol: str, position: BrokerPosition, read_at: datetime
    ) -> tuple[Decimal, list[str]]:
        """Shares acknowledged exits on the account hold that a positions read may still count as available.

        Sizing counts an exit acknowledged before the read as already out of `qty_available`
        (`domain.ledger.acknowledged_before`), but Alpaca's positions endpoint trails the account
        by seconds: a read that trails a resting exit's acknowledgement still counts its shares
        as available, and past a phantom, beside another agent, a second exit (of the same agent
        under another decision, or of another) sold the other agent's shares (G3; audit 33). The
        read shows what open orders hold (`qty - qty_available`); what the exits counted as out of
        it hold beyond that (each group once, at its largest unfilled quantity, as `size_exit`
        counts it) is returned, with the exits' "agent client_order_id", to be held back. Claims
        are read, not the broker: the agent's own live exits were refreshed before sizing and
        other agents' ended ones are brought up to date (`_end_ended_exits`) by
        `unbooked_by_others`. A person's resting order the read shows covers for a guard exit it
        misses (not told apart by a positions read).
        """
        closing = Side.SELL if position.qty > 0 else Side.BUY
        on_account = self.on_account(agent_id)
        key = symbol_key(symbol)
        groups: dict[tuple[str, str], tuple[Decimal, str]] = {}
        listed = self.store.list_claims(
            states=sorted(ACKNOWLEDGED_STATES), symbol=ledger_symbol(symbol), kind=Kind.EXIT
        )
        for claim in listed:
            if (
                claim.kind is not Kind.EXIT
                or claim.side is not closing
                or symbol_key(claim.symbol) != key
                or not on_account(claim.agent_id)
                or not acknowledged_before(True, claim.updated_at, read_at)
            ):
                continue  # one that moved after the read is sized as unacknowledged anyway
            left = (claim.order_qty or Decimal(0)) - claim.filled_qty
            group = (claim.agent_id, exit_group(claim.intent, claim.client_order_id))
            seen = groups.get(group)
            if seen is None or left > seen[0]:
                groups[group] = (left, f"{claim.agent_id} {claim.client_order_id}")
        shown = abs(position.qty) - abs(position.qty_available)
        if sum((left for left, _ in groups.values()), Decimal(0)) <= shown:
            return Decimal(0), []  # the read shows them all held (the usual case: nothing more read)
        # Legs waiting for their entry (a bracket's or OTO's, not filled yet) hold nothing at
        # Alpaca: a read that shows no hold for them is not trailing (read only now, rarely).
        holding = [(left, who) for (_, group), (left, who) in groups.items() if not self._waiting(group)]
        missing = sum((left for left, _ in holding), Decimal(0)) - shown
        if missing <= 0:
            return Decimal(0), []
        return missing, [who for _, who in holding]

    def _waiting(self, group: str) -> bool:
        """Whether the exits of `group` (`exit_group`) are legs of an entry not filled yet (holding none)."""
        parent = self._claim_of(group)
        return legs_wait(None if parent is None else (parent.kind, parent.state))

    def legs_wait(self, leg: Claim) -> bool:
        """Whether exit claim `leg` is a leg of an entry not filled yet (`domain.ledger.legs_wait`)."""
        return is_leg(leg.intent) and self._waiting(exit_group(leg.intent, leg.client_order_id))

    def sold_by_others_lately(
        self, agent_id: str, symbol: str, adds: Side, read_at: datetime
    ) -> tuple[Decimal, list[str]]:
        """Shares other agents' orders took off the `adds` side within the positions lag before `read_at`.

        Their ledgers book those fills at once, while a positions read may show the shares for
        up to `position_settle_secs` more: counted as this agent's, an agent whose ledger is a
        phantom sold the other agent's remaining shares. An exit waits out such fills before it
        reads, but once: one that fills during the wait (found by the shared-account soak) still
        shows in the read. So they are held back: each claim of another agent on the account
        in `symbol` on the other side, changed since the horizon, with its filled quantity (a
        fill the read already shows holds back too much, for one horizon only). Read only when
        the ledger shows another agent's turn there moved since the horizon.
        """
        settle = timedelta(seconds=self.settings.position_settle_secs)
        if not settle:
            return Decimal(0), []
        sold, whose = Decimal(0), []
        for claim in self.others_fills_since(agent_id, symbol, read_at - settle):
            if claim.side is not adds:
                sold += claim.filled_qty
                whose.append(f"{claim.agent_id} {claim.client_order_id}")
        return sold, whose

    def others_sold_since(self, agent_id: str, symbol: str, side: Side, read_at: datetime) -> bool:
        """Whether another agent's order on `side` filled in `symbol` after a position read at `read_at`.

        Such a fill, booked before an exit is sized under the symbol's lock, lowered that agent's
        ledger (the shares sizing reserves for it) while the read, taken first, still counted
        its shares as available: sized from both, an agent whose ledger is a phantom sold the
        other agent's remaining shares (G3; soak seed 19). Every path that sizes an exit from a
        read asks after its sizing: a new exit, a resend, a reconcile release (audit 33). Read
        only when the ledger shows another agent's turn in the symbol moved since the read.
        """
        # A move stamped at the read's own instant may have come after it (one clock tick).
        since = read_at - _SAME_INSTANT
        return any(c.side is side for c in self.others_fills_since(agent_id, symbol, since))

    def others_fills_since(self, agent_id: str, symbol: str, since: datetime) -> list[Claim]:
        """Claims of other agents on the account in `symbol` with fills, changed since `since`.

        Only agents whose ledger turn in the symbol moved since then can have such a claim (a
        fill moves the turn), so the ledger's recently moved turns are read first (an index
        range) and then each such agent's claims in the states a fill leaves, changed since then
        (a seek on `(state, agent_id, updated_at)`): never a read of the symbol's history, which
        has no index of its own and grows with every order.
        """
        on_account = self.on_account(agent_id)
        key = symbol_key(symbol)
        movers = {
            t.agent_id
            for t in self.store.moved_turns(since)
            if t.agent_id != agent_id and symbol_key(t.symbol) == key and on_account(t.agent_id)
        }
        return [
            claim
            for mover in sorted(movers)
            for claim in self.store.list_claims(states=_FILL_STATES, agent_id=mover, updated_since=since)
            if claim.filled_qty and symbol_key(claim.symbol) == key
        ]

    def own_exit_fills_settle_at(self, agent_id: str, symbol: str, side: Side) -> datetime | None:
        """When the agent's own latest fill on `side` in `symbol` shows in a positions read, if still ahead.

        A positions read may still show the shares the agent's own sell of moments ago took
        (Alpaca's endpoint trails fills by up to `position_settle_secs`) while its ledger moved at
        once; sized against the other agents' ledgers, an exit of an agent whose ledger is a
        phantom then sold another agent's shares (G3; soak seed 37). Only that matters while
        another agent on the account holds the symbol or has an order in motion there (alone,
        the broker refuses a sell beyond the position). Read only when the agent's turn in the
        symbol moved within the horizon (any fill moves it), then its claims in the states a fill
        leaves, changed since then (a seek on `(state, agent_id, updated_at)`); whether others
        trade the symbol (two small reads) is asked first, so an agent alone on the account lists
        nothing. None: no such fill, or nobody else trades the symbol.
        """
        settle = timedelta(seconds=self.settings.position_settle_secs)
        since = self.clock.now() - settle
        moved = self.store.position(agent_id, symbol).updated_at
        if not settle or moved is None or moved <= since:
            return None  # no fill of the agent's in this symbol is that recent
        if not self.others_trade(agent_id, symbol):
            return None  # alone in the symbol: the broker refuses a sell beyond the position
        latest = max((c.updated_at for c in self._own_fills(agent_id, symbol, side, since)), default=None)
        return None if latest is None else latest + settle

    def own_fills_read_may_trail(
        self, agent_id: str, symbol: str, side: Side, read_at: datetime, *, excluding: str
    ) -> list[str]:
        """The agent's own claims on `side` in `symbol` with fills a positions read at `read_at` may not show.

        Those changed within `position_settle_secs` before the read (or after it), other than
        the claim `excluding` (by key). An exit waits out such fills before it reads, but only
        those there when it checked: another process of the same agent may sell after that
        check, and the read that follows still shows the shares it took (soak seed 51). Only
        that matters while another agent on the account holds the symbol or has an order in
        motion there (alone, the broker refuses a sell beyond the position), asked first. Returns
        the client_order_ids.
        """
        settle = timedelta(seconds=self.settings.position_settle_secs)
        if not settle or not self.others_trade(agent_id, symbol):
            return []
        since = read_at - settle
        return [
            c.client_order_id
            for c in self._own_fills(agent_id, symbol, side, since)
            if c.key != excluding and c.updated_at > since
        ]

    def _own_fills(self, agent_id: str, symbol: str, side: Side, since: datetime) -> list[Claim]:
        """The agent's claims on `side` in `symbol` with fills, changed since `since`.

        A seek on `(state, agent_id, updated_at)` over the states a fill leaves.
        """
        key = symbol_key(symbol)
        return [
            c
            for c in self.store.list_claims(states=_FILL_STATES, agent_id=agent_id, updated_since=since)
            if c.side is side and c.filled_qty and symbol_key(c.symbol) == key
        ]

    def others_trade(self, agent_id: str, symbol: str) -> bool:
        """Whether another agent on the account holds `symbol` or has an order in motion in it."""
        on_account = self.on_account(agent_id)
        key = symbol_key(symbol)
        if key in {symbol_key(s) for s in self.store.symbols_in_motion(excluding_agent=agent_id)}:
            return True
        return any(
            p.agent_id != agent_id
            and symbol_key(p.symbol) == key
            and not p.is_flat
            and on_account(p.agent_id)
            for p in self.store.all_positions()
        )

    def _resolve_stranded_others(
        self, agent_id: str | None, symbols: list[str] | None, *, dry_run: bool = False
    ) -> None:
        """Adopt what the broker shows of other agents' stranded claims on this account, in a one-agent pass.

        A one-agent pass leaves other agents' claims to their own passes and holds a symbol where
        one is unresolved off its positions diff (`busy_symbols`): the shares may be theirs. A
        claim whose sender died after its POST (UNKNOWN, or PENDING past its lease) stays so
        until its agent comes back: meanwhile this agent's phantom in that symbol was never
        cleared nor even reported, its `position()` wrong for as long as the other agent stayed
        down (G4; audit 76). Such a claim's order, looked up by client_order_id, is broker
        evidence (G2), adopted as a whole-store pass adopts it (not found, it stays as it is), so
        the symbol's positions are compared once its fill settles. A live sender's claim
        (PENDING inside its lease) is left to it. A whole-store pass (`agent_id` None) looks
        every claim up itself; a dry run changes nothing.

        Raises:
            BrokerError: A lookup failed (before anything was adopted): the pass aborts.
        """
        if agent_id is None or dry_run:
            return
        on_account, now = self.on_account(agent_id), self.clock.now()
        keys = None if symbols is None else {symbol_key(s) for s in symbols}
        stranded: dict[str, list[Claim]] = {}
        for claim in self.store.list_claims(states=sorted(_UNRESOLVED)):
            if claim.agent_id == agent_id or not on_account(claim.agent_id) or not _stranded(claim, now):
                continue
            if keys is None or symbol_key(claim.symbol) in keys:
                stranded.setdefault(claim.symbol, []).append(claim)
        # Every lookup first: a failed one aborts the pass before anything changed (G4: a failed
        # read is never evidence, and the pass says so).
        orders: dict[str, BrokerOrder | None] = {}
        for symbol, found in stranded.items():
            orders |= self._orders_of(found, symbol, one_by_one=True)
        why = "found at the broker by another agent's reconcile pass (its sender gone)"
        self._resolve_stranded_exits([c for found in stranded.values() for c in found], orders, why)

    def _resolve_stranded_exits(
        self, exits: list[Claim], orders: dict[str, BrokerOrder | None], why: str = ""
    ) -> None:
        """Adopt what the broker shows of other agents' exits whose senders are gone (audit 17 #2).

        An exit claimed and sent by an agent that died (or froze) before recording the answer
        stays PENDING or UNKNOWN, its agent's ledger still holding the shares it sold. Sizing
        keeps an unacknowledged exit's shares reserved for that agent (it may not have been
        placed), so another agent's real shares could not be sold until the dead agent came back
        or a whole-store pass ran. Its order, looked up by client_order_id (orders are current),
        is broker evidence (G2): adopted as any pass adopts it, the claim and its agent's ledger
        show the sale. Not found, it stays reserved (a POST in flight may still land).
        """
        why = why or "found at the broker while sizing another agent's exit (its sender gone)"
        for claim in exits:  # `orders`: the broker's, by client_order_id (`_orders_of`)
            order = orders.get(claim.client_order_id)
            if order is not None:
                with contextlib.suppress(LeaseLost, IllegalTransition):  # moved meanwhile: its own
                    adopt_order(self.store, claim, order, why, broker=self.broker)

    def _end_ended_exits(self, exits: list[Claim], symbol: str) -> None:
        """Adopt the end of other agents' acknowledged exits whose orders are no longer open.

        One listing of the symbol's open orders finds the live ones (a resting exit, however
        often replaced through the guard, costs nothing more); only an exit whose recorded order
        is not listed is read, by its id (one request; a replacement made outside the guard is
        followed by `adopt_order`). Broker evidence only (G2), as any pass adopts it.

        Raises:
            BrokerError: A read failed: whether those shares are free is unknown, so the exit is
                not sized at all (counting a canceled exit in flight would free the other
                agent's shares for this one: audit 12a D2).
        """
        listed = self.broker.list_orders(status="open", symbols=[symbol], limit=EVERY_OPEN_ORDER)
        live = {o.id for o in listed}
        why = "ended at the broker (seen while sizing another agent's exit)"
        for claim in exits:
            if claim.broker_order_id is None or claim.broker_order_id in live:
                continue
            order = self.broker.get_order(claim.broker_order_id)
            if order is not None and order.status.is_terminal:
                adopt_order(self.store, claim, order, why, broker=self.broker)

    def _orders_of(
        self, claims: list[Claim], symbol: str, *, one_by_one: bool = False, listed_only: bool = False
    ) -> dict[str, BrokerOrder | None]:
        """The broker's current order for each claim's client_order_id (replacements followed).

        `listed_only`: one listing, whatever it shows (an order it leaves out is None), no lookup.
        """
        if one_by_one or (len(claims) <= _LOOKUPS_BEFORE_LISTING and not listed_only):
            return {c.client_order_id: self.broker.get_order_by_client_id(c.client_order_id) for c in claims}
        # Alpaca filters `after` on submission time; a claim is written before its send, and a
        # minute covers the clocks of the hosts that wrote the claims.
        after = min(c.created_at for c in claims) - timedelta(seconds=60)
        listed = self.broker.list_orders(status="all", symbols=[symbol], after=after, limit=_ORDERS_PAGE)
        by_id = {o.id: o for o in listed}
        by_coid = {o.client_order_id: o for o in listed}
        found: dict[str, BrokerOrder | None] = {}
        for claim in claims:
            order = by_coid.get(claim.client_order_id)
            for _ in range(MAX_CHAIN_HOPS):  # to the current order of a replace chain
                if order is None or order.replaced_by is None or order.replaced_by not in by_id:
                    break
                order = by_id[order.replaced_by]
            if listed_only:
                found[claim.client_order_id] = order
                continue
            complete = len(listed) < _ORDERS_PAGE and (order is None or order.replaced_by is None)
            # Absent from the listing is no evidence for a claim whose order exists or may have
            # landed (acknowledged, or unresolved): a listing can trail a fill that a lookup by
            # id shows, and counting nothing let an exit sell that agent's unbooked shares
            # (audit 21 #5). A grid's resting orders are listed; NOT_SENT ones were proven absent.
            missing = order is None and (claim.broker_order_id is not None or claim.state in _UNRESOLVED)
            found[claim.client_order_id] = (
                order
                if complete and not missing
                else self.broker.get_order_by_client_id(claim.client_order_id)
            )
        return found

    def _not_others_fill(self, action: Action) -> Action:
        """Keep an adoption into one agent only if no other agent's order filled shares unbooked.

        A one-agent pass does not look other agents' claims up: `busy_symbols` takes one resting
        unchanged in the open-order listing as quiet, and one marked NOT_SENT as nothing. A listing
        can trail a fill that the positions read already shows (ALPACA.md: the two endpoints
        disagree for seconds, either way), and an order proven absent may still land late; the
        other agent's shares then read as this agent's missed fill, its own claim books them too
        once read, so the ledgers hold them twice and this agent's exit sells them (G3, G4; audit
        67). So before shares are added to this agent (`ADOPT_DRIFT`, `ADOPT_ORPHAN`) the other
        agents' orders in motion on that side are read by client_order_id, one by one even when
        many rest, as `unbooked_by_others` does (adoptions are rare, so unbounded): a fill their
        ledgers lack leaves the difference reported, for their agents' reads to book. A failed
        read raises (the pass aborts, nothing changed).
        """
        if action.kind not in _ADOPTIONS or action.qty is None or action.agent_id is None:
            return action
        adds = Side.BUY if action.qty > 0 else Side.SELL
        candidates = [c for c in self._others_in_motion(action.agent_id, action.symbol) if c.side is adds]
        # Read only (a dry run changes nothing): no other agent's exit is brought up to date here.
        orders = self._orders_of(candidates, action.symbol, one_by_one=True)
        unbooked, whose, _changed_at = _unbooked(candidates, orders)
        if not unbooked:
            return action
        reason = (
            f"not adopted into {action.agent_id}: other agents' orders filled {unbooked} {action.symbol} "
            f"their ledgers do not book yet ({', '.join(whose[:5])}); {action.reason}"
        )
        evidence = {**action.evidence, "unbooked_by_others": str(unbooked)}
        return Action(ActionKind.REPORT_DRIFT, action.symbol, reason, action.agent_id, qty=action.qty,
                      evidence=evidence)  # fmt: skip

    def _confirm_readoption(self, action: Action, adopt_orphans_to: str | None) -> Action:
        """Keep a re-adoption only if no order outside its agent's claims filled since the clear.

        The diff matches a cleared turn on size alone; a manual or unguarded trade of that size
        on the account since the clear is not the agent's, and its next exit must not sell it.
        Such a position is an orphan like any other. A failed order read raises (the pass aborts).
        """
        if action.kind is not ActionKind.ADOPT_ORPHAN or not action.evidence.get(CLEARED_AT):
            return action
        cleared_at = datetime.fromisoformat(action.evidence[CLEARED_AT])
        # Alpaca filters `after` on submission time; the clear saw no open order in the symbol on
        # two reads, so what fills since was sent after about then (the horizon covers host clocks).
        after = cleared_at - timedelta(seconds=self.settings.position_settle_secs)
        listed = self.broker.list_orders(
            status="all", symbols=[action.symbol], after=after, limit=_ORDERS_PAGE
        )
        outside = [
            o.client_order_id
            for o in listed
            if o.filled_qty > 0 and self._claim_agent(o.client_order_id) != action.agent_id
        ]
        if len(listed) >= _ORDERS_PAGE:
            outside.append(f"and perhaps more than {_ORDERS_PAGE} orders")
        if not outside:
            return action
        why = (
            f"not re-adopted into {action.agent_id}: orders outside its claims filled in {action.symbol} "
            f"since turn {action.evidence[CLEARED_TURN]} was cleared ({', '.join(outside[:5])})"
        )
        evidence = {k: v for k, v in action.evidence.items() if k not in (CLEARED_AT, CLEARED_TURN)}
        if adopt_orphans_to is not None:
            into = f"{adopt_orphans_to}'s ledger"
            symbol = ledger_symbol(action.symbol)  # as the ledger spells it ("BTCUSD" is "BTC/USD")
            reason = f"reconcile: adopted orphan {action.qty} {symbol} into {into}; {why}"
            flat = LedgerPosition(adopt_orphans_to, symbol, Decimal(0), None, None)
            return Action(ActionKind.ADOPT_ORPHAN, symbol, reason, adopt_orphans_to, qty=action.qty,
                          evidence=evidence, position=flat)  # fmt: skip
        reason = f"orphan: broker holds {action.qty} {action.symbol}, no ledger does; {why}"
        return Action(ActionKind.REPORT_ORPHAN, action.symbol, reason, qty=action.qty, evidence=evidence)

    def _claim_agent(self, client_order_id: str) -> str | None:
        claim = self._claim_of(client_order_id)
        return None if claim is None else claim.agent_id

    def _claim_of(self, client_order_id: str) -> Claim | None:
        """The claim of this broker's order by its client_order_id, read in the broker account's scope.

        Ids are unique per account (`ports.coid_scope`): another account's claim under the same
        id is not this order's. A broker of unknown account reads every account's.
        """
        return self.store.get_by_client_order_id(client_order_id, account_key=account_key_of(self.broker))

    def on_account(self, agent_id: str | None) -> Callable[[str], bool]:
        """Return whether an agent may trade this broker's account (`ports.same_account`).

        The one rule every "other agents on this account" question uses (exit re-sizing and
        adoption in the gateway, this pass's ledger); `agent_id` itself always counts.

        The broker's own key decides; a broker with none falls back to the pass's agent's
        registered key, and with neither every agent counts (the conservative old behaviour).
        """
        accounts = self.store.agent_accounts()
        account = account_key_of(self.broker) or (accounts.get(agent_id, "") if agent_id else "")
        return lambda agent: agent == agent_id or same_account(account, accounts.get(agent))

    def _read(self, claims: list[Claim], earlier: BrokerSnapshot | None) -> BrokerSnapshot:
        """Take one complete broker snapshot; any failure raises (never a partial snapshot)."""
        positions_read_at = self.clock.now()
        positions = {p.symbol: p for p in self.broker.list_positions()}
        # Every open order, however many: the port reads every page and raises past its limit, so
        # a limit of one page made every pass abort (Alpaca) or read its list as cut (a full page)
        # on an account with 500 orders resting anywhere, and no phantom ever cleared (audit 21 #2).
        open_orders = tuple(self.broker.list_orders(status="open", limit=EVERY_OPEN_ORDER))
        by_coid: dict[str, BrokerOrder | None] = {o.client_order_id: o for o in open_orders}
        scope = coid_scope(account_key_of(self.broker))
        for claim in claims:
            probe = claim.state in ACTIVE_STATES or claim.state is ClaimState.NOT_SENT
            if probe and claim.coid_scope and claim.on_other_account(scope):
                probe = False  # sent to another account: this one's answer is no evidence (diff reports it)
            if probe and claim.client_order_id not in by_coid:
                by_coid[claim.client_order_id] = self.broker.get_order_by_client_id(claim.client_order_id)
        return BrokerSnapshot(
            taken_at=self.clock.now(),
            positions=positions,
            open_orders=open_orders,
            open_orders_complete=len(open_orders) < EVERY_OPEN_ORDER,
            orders_by_client_id=by_coid,
            earlier=earlier,
            positions_read_at=positions_read_at,
            account_scope=scope,
        )

    # -- applying --------------------------------------------------------------------------

    def _apply(
        self,
        action: Action,
        claims: dict[str, Claim],
        release_exits: bool | frozenset[str],
        report: ReconcileReport,
    ) -> bool:
        """Carry out one action; False when it was skipped (the claim moved meanwhile)."""
        claim = claims.get(action.claim_key or "")
        try:
            if action.kind is ActionKind.ADOPT_ORDER and claim is not None and action.order is not None:
                adopt_order(
                    self.store, claim, action.order, "reconcile: found at the broker", broker=self.broker
                )
            elif action.kind is ActionKind.MARK_NOT_SENT and claim is not None:
                self.store.transition(
                    claim, ClaimState.NOT_SENT, reason=action.reason, detail=dict(action.evidence)
                )
                self.recorder.resolved(
                    claim.client_order_id, placed=False, by="reconcile", reason=action.reason
                )
            elif action.kind is ActionKind.CLEAR_PHANTOM and action.agent_id is not None:
                closed = self.store.close_turn(
                    action.agent_id,
                    action.symbol,
                    reason=action.reason,
                    detail={"action": action.kind.value, **action.evidence},
                    expect=action.position,
                )
                return closed is not None  # None: the ledger moved since the reads
            elif action.kind is ActionKind.RELEASE_EXIT and claim is not None:
                released = release_exits if isinstance(release_exits, bool) else claim.key in release_exits
                if not released:
                    self._report(action)
                    return False  # proposed, not applied: the bot's next exit call re-sizes it
                return self._release(action, claim, report)
            elif action.kind in _CORRECTIONS and action.position is not None and action.qty is not None:
                detail = {"action": action.kind.value, **action.evidence}
                return self.store.correct_position(
                    action.position, action.qty, reason=action.reason, detail=detail
                )
            else:
                return self._report(action)
        except (LeaseLost, IllegalTransition):
            return False  # someone moved the claim meanwhile; the next pass sees its new state
        except ConfigError as exc:
            if not attributed(action):
                raise
            # A claim service lets an agent key change (and audit) its own ledger only: the other
            # agent's correction is left to that agent's passes, or an admin key's.
            _log.info("%s: left to %s's own pass (%s)", action.reason, action.agent_id, exc)
            return False
        return True

    def _unbooked_the_read_shows(self, claim: Claim, adds: Side, read_at: datetime) -> Decimal:
        """Other agents' unbooked fills on `adds` to hold back from a release's read taken at `read_at`.

        Held back from a read that may not show them yet (their orders changed within
        `position_settle_secs` of it), they would be taken off twice: past a phantom the read
        still shows shares sold by hand moments ago, and the release sold the fresh fill's shares
        (G3; audit 76). The gateway's exit waits that out (`OrderGateway._size_exit`); a pass
        does not wait: the release is put off to the next pass or the bot's next exit call.

        Raises:
            BrokerError: An order read failed, or the read may not show the fills yet.
        """
        unbooked = self.unbooked_by_others(claim.agent_id, claim.symbol, adds)
        if unbooked.shows_at(timedelta(seconds=self.settings.position_settle_secs), read_at):
            raise BrokerUnavailable(
                f"release of {claim.client_order_id} put off: other agents' unbooked fills in "
                f"{claim.symbol} may not show in the positions read yet"
            )
        return unbooked.qty

    def _release(self, action: Action, claim: Claim, report: ReconcileReport) -> bool:
        """Re-size a refused exit and send it, sized atomically against the ledger (G3).

        Sized from the pass's snapshot while it is fresh; a pass held up since its read (frozen,
        or long) reads the position again: meanwhile the account may have been closed outside
        the bots and another agent may have re-entered (see `Settings.exit_resize_after_secs`).
        A read that may trail the agent's own recent sell (another process of it, beside another
        agent: `own_fills_read_may_trail`) still shows the shares that sell took, and past a
        phantom they are another agent's (G3; audit 33): that fill is waited out and the position
        read again, as the gateway's exit path does; one of the agent's sells found after the
        sizing settles the exit NOT_SENT, nothing sent (the bot's next call re-sizes it). Other
        agents' unbooked fills changed within `position_settle_secs` of the read put the release
        off (the read may not show them; see `OrderGateway._size_exit`).
        """
        snapshot = report.snapshot
        pos: BrokerPosition | None = None
        read_at: datetime | None = None
        if snapshot is not None and (
            (self.clock.now() - snapshot.taken_at).total_seconds() <= self.settings.exit_resize_after_secs
        ):
            pos = snapshot.position(claim.symbol)
            # When the position read began, for the exits the sizing must count as in flight
            # (`domain.ledger.acknowledged_before`; review 15: not the end of the whole snapshot).
            read_at = snapshot.positions_read_at or snapshot.taken_at
            if self._own_sold_lately(claim, read_at):
                read_at = None
                shows_at = self.own_exit_fills_settle_at(claim.agent_id, claim.symbol, claim.side)
                if shows_at is not None and shows_at > self.clock.now():
                    self.clock.sleep((shows_at - self.clock.now()).total_seconds())
        if read_at is None:
            read_at = self.clock.now()
            try:
                pos = self.broker.get_position(claim.symbol)
            except BrokerError:
                return False  # no fresh size, no send: the bot's next exit call re-sizes it
        if pos is not None and (pos.qty > 0) != (claim.side is Side.SELL):
            pos = None  # the account holds the other side now: nothing of this exit's to sell
        available = abs(pos.qty_available) if pos is not None else Decimal(0)
        if available:
            adds = claim.side.opposite
            try:
                unbooked = self._unbooked_the_read_shows(claim, adds, read_at)
                outside, _which = self.sold_outside(claim.agent_id, claim.symbol, adds, read_at)
            except BrokerError:
                return False  # unknown whose the shares are: nothing sent; the next pass tries again
            lately, _whose = self.sold_by_others_lately(claim.agent_id, claim.symbol, adds, read_at)
            assert pos is not None
            unshown, _whose = self.holds_the_read_misses(claim.agent_id, claim.symbol, pos, read_at)
            available = max(available - unbooked - outside - lately - unshown, Decimal(0))
        # The size is as old as these reads: a pass held up from here to its POST re-checks it.
        read_done = self.clock.now()
        pending, _room = self.store.resend_exit(
            claim, owner=self.owner, broker_available=available, reason=action.reason,
            detail=dict(action.evidence), broker_read_at=read_at,
        )  # fmt: skip
        if pending is None:
            return False
        stale = None
        if self.others_sold_since(claim.agent_id, claim.symbol, claim.side, read_at):
            stale = OTHERS_SOLD_SINCE_READ
        elif self._own_sold_lately(pending, read_at):
            stale = (
                "another order of this agent's filled in the symbol so lately that the position "
                "read may not show it"
            )
        if stale is not None:
            why = f"not resent: {stale}; the next exit call re-sizes it"
            self.store.transition(pending, ClaimState.NOT_SENT, owner=self.owner, reason=why)
            return False
        held_up = functools.partial(self._held_up_since_read, read_done=read_done)
        report.sent[claim.key] = send_claim(self.broker, self.store, pending, recheck=held_up)
        return True

    def _held_up_since_read(self, claim: Claim, *, read_done: datetime) -> OrderResult | None:
        """Settle a released exit NOT_SENT when its POST comes long after the read it was sized from.

        Checked right before the POST, past the lease check (`send_claim`'s `recheck`), as the
        gateway checks its own exits (`RetryAnswers._resize_if_held_up`): a pass held up (frozen,
        stalled) between its read and the send may have been away while the account was closed
        outside the bots and another agent bought again; the old size would sell that agent's
        shares (G3; audit 44). Nothing is sent then; the bot's next exit call re-sizes the exit.
        None: send it as sized.
        """
        held_up = (self.clock.now() - read_done).total_seconds()
        if held_up <= self.settings.exit_resize_after_secs:
            return None
        why = (
            f"not resent: sized from a read {held_up:.1f}s before its send (the pass was held up); "
            "the next exit call re-sizes it"
        )
        unsent = self.store.transition(claim, ClaimState.NOT_SENT, owner=self.owner, reason=why)
        return OrderResult(Outcome.NOT_SENT, unsent, None, why)

    def _own_sold_lately(self, claim: Claim, read_at: datetime) -> bool:
        """Whether a positions read at `read_at` may trail another fill of `claim`'s agent on its side."""
        trailed = self.own_fills_read_may_trail(
            claim.agent_id, claim.symbol, claim.side, read_at, excluding=claim.key
        )
        if trailed:
            _log.info(
                "%s: release of %s waits: %s filled lately (%s)",
                claim.agent_id, claim.client_order_id, ", ".join(trailed), claim.symbol,
            )  # fmt: skip
        return bool(trailed)

    def _report(self, action: Action) -> bool:
        """Audit a report once per distinct finding, so a standing orphan does not flood the log."""
        memo = (action.kind.value, action.symbol, str(action.qty), action.claim_key or "")
        if memo not in self._reported:
            self._reported.add(memo)
            self.store.audit(
                AuditAction.RECONCILE,
                agent_id=action.agent_id or "*",
                symbol=action.symbol,
                qty=action.qty,
                reason=action.reason,
                detail={"action": action.kind.value, **action.evidence},
            )
        return True


class BackgroundReconciler:
    """Runs `Reconciler.run` in a daemon thread until stopped (G4: within one reconcile interval).

    Passes start every `Settings.reconcile_every_secs`; a symbol a pass put off (its ledger moved
    too recently for the positions read) is looked at again as soon as its wait is over, not a
    whole period later.
    """

    def __init__(
        self, reconciler: Reconciler, *, agent_id: str | None = None, interval_secs: float | None = None
    ) -> None:
        self.reconciler = reconciler
        self.agent_id = agent_id
        self.interval_secs = interval_secs or reconciler.settings.reconcile_every_secs
        self.last_report: ReconcileReport | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tradeguard-reconciler", daemon=True)

    def start(self) -> BackgroundReconciler:
        """Start the thread."""
        self._thread.start()
        return self

    def stop(self, timeout_secs: float = 10.0) -> None:
        """Ask the thread to stop and wait for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_secs)

    def __enter__(self) -> BackgroundReconciler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self._next_wait()):
            try:
                self.last_report = self.reconciler.run(agent_id=self.agent_id)
            except Exception:
                # A store or broker outage must not kill the loop; the next interval retries.
                _log.exception("background reconcile pass failed")

    def _next_wait(self) -> float:
        """Seconds until the next pass: the period, or sooner when a put-off symbol comes due."""
        report = self.last_report
        if report is None:
            return self.interval_secs
        due_in = (report.next_pass_at(self.reconciler.settings) - self.reconciler.clock.now()).total_seconds()
        return min(self.interval_secs, max(due_in, 0.0))
