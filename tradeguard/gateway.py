"""`OrderGateway`: the one place that decides whether an order reaches the broker.

Every entry and exit is claimed durably before it is sent (G1, G5); a retry of the same
decision finds the claim and returns the original order instead of sending (G1); an ambiguous
send is resolved by client_order_id, never by a blind resend (G2); exits are sized from the
broker's `qty_available` and carry `*_to_close` (G3); a position-related exit rejection sends
the symbol to the reconciler at once (G4). Retries of known decisions are answered by
`retries.RetryAnswers`; every attempt that sends nothing is audited (G6).

How exits are keyed: an exit decision is `(agent, "exit", symbol, intent name)`, whatever side it
closes and whichever turn is open. The name must therefore name one decision (bar time + reason):
a retry of "2026-05-21 11:26 momentum lost" that arrives after the bot re-entered is answered as
a duplicate and never sells the new position. An exit that placed nothing (NOT_SENT, refused) is
re-sized and sent again only while the position it was for is still open.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from tradeguard import crashpoints
from tradeguard.amend import OrderAmendments
from tradeguard.clock import Clock, SystemClock
from tradeguard.config import Settings
from tradeguard.domain import (
    Claim,
    LedgerPosition,
    PositionIntent,
    Side,
    default_time_in_force,
    ledger_symbol,
)
from tradeguard.domain.claims import ClaimOutcome, same_order
from tradeguard.domain.intents import Intent, Kind, OrderSpec, check_agent_id
from tradeguard.domain.ledger import ExitRoom, SizingRead, orphan
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import BrokerError, ConfigError, IntentMismatch, LeaseLost, StoreError, UnrecordedOrder
from tradeguard.execution import (
    OrderResult,
    Outcome,
    adopt_order,
    is_position_rejection,
    may_have_placed,
    reread,
    send_claim,
)
from tradeguard.orders import Number, build_spec, parse_side
from tradeguard.ports import Broker, ClaimLedger, account_key_of, coid_scope
from tradeguard.reconcile.runner import OTHERS_SOLD_SINCE_READ, Reconciler, ReconcileReport
from tradeguard.repointed import RepointedTurns
from tradeguard.retries import RetryAnswers
from tradeguard.sessions.recorder import RecordTarget, answers_recorded, open_recorder
from tradeguard.store import new_owner_token, open_ledger
from tradeguard.windows import ContentWindows

__all__ = ["OrderGateway", "OrderResult", "Outcome"]

# Claims whose outcome only the broker can tell: sent, or about to be, with no answer.
_UNRESOLVED = frozenset({ClaimState.PENDING, ClaimState.UNKNOWN})
_LIVE = [ClaimState.SUBMITTED, ClaimState.PARTIALLY_FILLED]
_UNRESOLVED_OR_LIVE = [*sorted(_UNRESOLVED), *_LIVE]  # what an exit and `position` look up first
_FOUND = "found at the broker by client_order_id"
_OTHERS_SOLD = OTHERS_SOLD_SINCE_READ + "; re-sizing the exit"
_OWN_SOLD = (
    "another order of this agent's filled in the symbol after this exit checked for recent fills, "
    "and the position read may not show it yet; re-sizing the exit once it shows"
)

logger = logging.getLogger("tradeguard.gateway")


class OrderGateway(RetryAnswers, OrderAmendments, ContentWindows, RepointedTurns):
    """Guarded entries and exits for one agent.

    Args:
        broker: The broker port (AlpacaBroker, PaperBroker, or a FaultyBroker around either).
        store: The claim ledger (a ClaimStore or MemoryClaimStore), a SQLAlchemy URL to open
            a ClaimStore, or a claim service URL (``https://host:8787``) for a RemoteClaimLedger.
        agent_id: The bot's stable name; claims, ledger and audit are kept per agent.
        settings: Timeouts, grace periods, intervals.
        clock: Time source; tests and replays pass a ManualClock.
        owner: This worker's lease identity (default: a fresh random token).
        reconcile_on_start: Run one reconcile pass for this agent before the first order.
        record_to: Record what this gateway sees as a session file (a path, a text stream or a
            `Recorder`); recording never blocks or fails an order (`tradeguard.sessions`).
        api_key: The claim service's API key, when `store` is a service URL.
    """

    def __init__(
        self,
        broker: Broker,
        store: ClaimLedger | str,
        *,
        agent_id: str,
        settings: Settings | None = None,
        clock: Clock | None = None,
        owner: str | None = None,
        reconcile_on_start: bool = True,
        record_to: RecordTarget = None,
        api_key: str | None = None,
    ) -> None:
        if not isinstance(store, str) and clock is not None and not _same_time(clock, store.clock):
            # Leases, windows and "acknowledged before the read" compare the store's stamps
            # with this clock: two clocks that disagree misread them (audit 24: a resting exit
            # counted twice, 120 s taken for inside a 60 s window).
            raise ConfigError(
                "the claim store keeps another clock than the one given to the gateway: pass the "
                "same clock to both (e.g. MemoryClaimStore(clock=clock)), or give only the store's"
            )
        if isinstance(store, str):  # a database URL (ClaimStore) or a claim service (RemoteClaimLedger)
            store = open_ledger(store, settings=settings, clock=clock, api_key=api_key)
        self.settings = settings or store.settings
        self.clock: Clock = clock or store.clock
        self.store: ClaimLedger = store
        check_agent_id(agent_id)
        audit = self.store.audit
        self.recorder = open_recorder(
            record_to, agent_id=agent_id, settings=self.settings, clock=self.clock, audit=audit
        )
        self.broker = self.recorder.wrap(broker)
        self.agent_id = agent_id
        self.owner = owner or new_owner_token()
        self.reconciler = Reconciler(self.broker, self.store, settings=self.settings, clock=self.clock)
        self.reconciler.recorder = self.recorder  # what its passes learn of lost answers is recorded
        self._reconcile_on_start = reconcile_on_start
        self._started = False  # registered this broker's account (and reconciled, if asked)
        self._next_pass_at: datetime | None = None  # when `reconcile_if_due` runs a pass (None: now)
        self._account_key: str | None = None  # the account key last registered for this agent
        self._held_elsewhere: set[str] = set()  # see `RepointedTurns`
        self._start_lock = threading.Lock()
        self._sending: set[str] = set()  # claim keys this gateway is sending right now (any thread)
        # Claim keys by how many of this gateway's threads are settling them (`_settle_unplaced`).
        self._settling: Counter[str] = Counter()
        # Claim keys whose send may have reached the broker with its answer unrecorded
        # (UnrecordedOrder, or a send that died of something else): see `may_have_placed`.
        self._posted_unrecorded: set[str] = set()
        self._unclaimed_windows: dict[str, Intent] = {}  # see ContentWindows.submit_by_content

    # -- public API ------------------------------------------------------------------------

    submit_by_content = answers_recorded(ContentWindows.submit_by_content)

    def enter(
        self,
        symbol: str,
        qty: Number | None = None,
        notional: Number | None = None,
        side: str | Side = "buy",
        *,
        intent: str,
        order_type: str = "market",
        limit_price: Number | None = None,
        stop_price: Number | None = None,
        time_in_force: str | None = None,
        extended_hours: bool = False,
    ) -> OrderResult:
        """Open or add to a position, at most once per `intent`.

        Args:
            symbol: Upper-case ticker, or a crypto pair ("BTC/USD" and "BTCUSD" are one
                symbol: the guard keys and books it as "BTC/USD").
            qty: Shares (or use `notional`).
            notional: Dollars, for fractional market orders.
            side: "buy" opens long, "sell" opens short.
            intent: The bot's stable name for this decision (bar time + reason); a retry must
                pass the same name, a new decision a new one.
            order_type: market, limit, stop or stop_limit.
            limit_price: For limit and stop-limit orders.
            stop_price: For stop and stop-limit orders.
            time_in_force: day, gtc, opg, cls, ioc or fok; None: day, or gtc for a crypto pair
                (Alpaca takes crypto orders gtc or ioc only).
            extended_hours: Allow pre/post-market execution (limit orders only at Alpaca).

        Raises:
            ConfigError: A bad argument; nothing was claimed.
            IntentMismatch: `intent` was used before for a different order.
            StoreError: The claim could not be recorded; nothing was sent.
            UnrecordedOrder: The order was sent (now, or by an earlier call of `intent`) and the
                store failed recording the answer: it may be at the broker; call again later.
        """
        order_side = parse_side(side)
        opens = PositionIntent.BUY_TO_OPEN if order_side is Side.BUY else PositionIntent.SELL_TO_OPEN
        if time_in_force is None:
            time_in_force = default_time_in_force(symbol)
        spec = _spec(
            qty, notional, order_type, time_in_force, limit_price, stop_price, extended_hours, opens, False
        )
        decision = Intent(self.agent_id, Kind.ENTRY, symbol, order_side, intent)
        return self.submit(decision, spec)

    @answers_recorded
    def submit(
        self,
        intent: Intent,
        spec: OrderSpec,
        *,
        client_order_id: str | None = None,
        window_opened: datetime | None = None,
    ) -> OrderResult:
        """Claim `intent` and send `spec` unless a claim for it exists (the drop-in path).

        `client_order_id` overrides the derived id (a caller-chosen id is then the key).
        `window_opened`: the claim holds a content window opened then (`submit_by_content`).
        """
        self.recorder.attempt(intent, spec, client_order_id)
        self._ensure_started()
        if intent.kind is Kind.ENTRY and self._held_elsewhere:
            refused = self._entry_beside_elsewhere(intent)
            if refused is not None:
                return refused
        try:
            outcome = self.store.claim(
                intent,
                spec,
                owner=self.owner,
                client_order_id=client_order_id,
                order_qty=spec.qty,
                reason=f"{intent.kind} {intent.name}",
            )
        except StoreError as exc:
            # A retry right after an UnrecordedOrder meets the same failing store (PostgreSQL's
            # conditional insert needs its locks even for a key that exists).
            failure = self._unless_placed(exc, intent)
            if failure is exc:
                raise
            raise failure from exc
        if outcome.created:
            return self._send(outcome.claim, window_opened=window_opened)
        return self._existing(outcome.claim)

    def exit(
        self,
        symbol: str,
        *,
        intent: str,
        qty: Number | None = None,
        order_type: str = "market",
        limit_price: Number | None = None,
        stop_price: Number | None = None,
        time_in_force: str | None = None,
        extended_hours: bool = False,
    ) -> OrderResult:
        """Close (part of) the agent's position in `symbol`, at most once per `intent`.

        The exit is sized and claimed in one store transaction: `min(qty or the whole held
        position, held - open exits, broker qty_available - exits it may not show yet - shares
        other agents hold)`; zero sends nothing (SKIPPED). The order carries
        sell_to_close/buy_to_close. An exit name is one decision for good (see the module
        docstring): a retry after the bot re-entered is a duplicate. `time_in_force` None is
        day, or gtc for a crypto pair (see `enter`).
        """
        if time_in_force is None:
            time_in_force = default_time_in_force(symbol)
        # Check the arguments before any store or broker call; the side follows the position.
        spec = _spec(
            qty, None, order_type, time_in_force, limit_price, stop_price, extended_hours,
            PositionIntent.SELL_TO_CLOSE, True,
        )  # fmt: skip
        return self.exit_order(symbol, spec, intent=intent)

    @answers_recorded
    def exit_order(
        self,
        symbol: str,
        spec: OrderSpec,
        *,
        intent: str,
        client_order_id: str | None = None,
        window_opened: datetime | None = None,
    ) -> OrderResult:
        """Close (part of) the position with an order built already (`exit`'s engine).

        For callers that hold a whole `OrderSpec` (the drop-in: stop, trailing-stop and OCO
        exits). `spec.qty` None closes the whole position; the side and `*_to_close` intent
        follow what is held. `client_order_id` replaces the derived id (the bot's own id).
        `window_opened`: the claim holds a content window opened then (`submit_by_content`).
        """
        symbol = ledger_symbol(symbol)  # the ledger's spelling ("BTCUSD" is "BTC/USD"), as Intent's
        self._ensure_started()
        self._register_account()  # a key read late (see `_register_account`) before any sizing
        try:
            # Fills since the entry was acknowledged, and entries whose answer was lost, decide what is held.
            looked_up = self._look_up(_UNRESOLVED_OR_LIVE, symbol)
            held = self.store.position(self.agent_id, symbol)
        except StoreError as exc:
            # Adopting what the look-up found failed: this exit may be a retry of one already placed.
            failure = self._unless_placed(
                exc, *(Intent(self.agent_id, Kind.EXIT, symbol, s, intent) for s in Side)
            )
            if failure is exc:
                raise
            raise failure from exc
        side = Side.SELL if held.qty >= 0 else Side.BUY
        closes = PositionIntent.BUY_TO_CLOSE if side is Side.BUY else PositionIntent.SELL_TO_CLOSE
        if spec.position_intent is not closes:  # a spec of the right side is kept (and its payload)
            spec = replace(spec, position_intent=closes)
        decision = Intent(self.agent_id, Kind.EXIT, symbol, side, intent)
        self.recorder.attempt(decision, spec)
        existing = self.store.get(decision.key)
        if existing is not None:
            return self._existing_exit(existing, spec, held)
        if held.is_flat:
            unresolved = [c for c in looked_up if c.state in _UNRESOLVED and c.kind is Kind.ENTRY]
            if unresolved:
                return self._unresolved_entries(symbol, intent, unresolved)
            never = self.store.latest_turn_id(self.agent_id, symbol) is None
            what = f"{symbol} was never held by {self.agent_id}" if never else f"ledger is flat in {symbol}"
            return self._skip(symbol, f"exit {intent!r}: {what}")
        self._wait_out_recent_fills(symbol, side)
        sized = self._size_exit(decision, spec, held, client_order_id=client_order_id)
        if isinstance(sized, OrderResult):
            return sized
        outcome, room, held_back, read_at, read_done = sized
        if outcome is None:
            assert room is not None
            why = room.describe(symbol) + (f" ({held_back})" if held_back else "")
            result = self._skip(symbol, f"exit {intent!r} skipped, nothing to sell: {why}")
            self._reconcile_after_exit_error(symbol)
            return result
        if outcome.created:
            if self._others_sold_since(outcome.claim, read_at):
                return self._resize_after_sold(outcome.claim, _OTHERS_SOLD)
            if self._own_sold_since_check(outcome.claim, held, room, read_at):
                return self._resize_after_sold(outcome.claim, _OWN_SOLD)
            return self._send(outcome.claim, window_opened=window_opened, read_done=read_done)
        return self._existing_exit(outcome.claim, spec, held)

    def _others_sold_since(self, claim: Claim, read_at: datetime) -> bool:
        """Whether another agent's order on this exit's side filled in its symbol after `read_at`.

        Such a fill, booked before this exit was sized under the symbol's lock, lowered that
        agent's ledger while the position read (taken first) still counted its shares as
        available: sized from both, an agent whose ledger is a phantom sold the other agent's
        remaining shares (G3; found by the shared-account soak). Read only when the ledger shows
        another agent's turn in the symbol moved since the read.
        """
        return self.reconciler.others_sold_since(self.agent_id, claim.symbol, claim.side, read_at)

    def _own_sold_since_check(
        self, claim: Claim, held: LedgerPosition, room: ExitRoom | None, read_at: datetime
    ) -> bool:
        """Whether another process of this agent sold in the symbol since this exit's wait check, lately.

        The exit waited out the agent's own recent fills on its side that were there when it
        checked (`_wait_out_recent_fills`); a sell of another process of the same agent booked
        after that check, within `position_settle_secs` before the read, lowered the ledger the
        exit was sized from while the read may still show the shares it took: past a phantom,
        sized against the other agents' ledgers, they were another agent's (G3; soak seed 51).
        `held` was read before the check, so only when the sizing saw a different ledger quantity
        (`room.held`) is the store asked (`Reconciler.own_fills_read_may_trail`: only while
        another agent on the account holds the symbol or has an order in motion there). A fill
        the check saw is past the horizon by the read, so a lone process scaling out is not
        affected.
        """
        if room is None or room.held == held.qty:
            return False  # the ledger did not move since before the check: no fill of the agent's since
        trailed = self.reconciler.own_fills_read_may_trail(
            self.agent_id, claim.symbol, claim.side, read_at, excluding=claim.key
        )
        if trailed:
            logger.info(
                "%s: exit %s re-sized: %s filled after its check for recent fills (%s)",
                self.agent_id, claim.client_order_id, ", ".join(trailed), claim.symbol,
            )  # fmt: skip
        return bool(trailed)

    def _resize_after_sold(self, claim: Claim, reason: str) -> OrderResult:
        """Settle a just-sized exit NOT_SENT (nothing was sent) and size it again from a new read.

        The re-sizing (`_retry_exit`) waits out the agent's own recent fills on the exit's side
        first, as a new exit does, so a sell that made the read stale shows in the next one.
        """
        moved = self._settle_unplaced(claim, ClaimState.NOT_SENT, reason)
        if isinstance(moved, OrderResult):
            return moved
        held = self.store.position(self.agent_id, moved.symbol)
        return self._retry_exit(moved, held, resize_if_held_up=False, after_sold=True)

    def _unresolved_entries(self, symbol: str, intent: str, unresolved: list[Claim]) -> OrderResult:
        """Answer an exit of a flat ledger while entries of the agent in `symbol` are unresolved.

        Their orders may have filled (an answer lost, the lookup failed): the broker's shares may
        be theirs, so the exit is neither sized from the flat ledger ("never held") nor from the
        broker (G2: nothing guessed). Nothing is sent; the symbol is reconciled at once, and a
        retry of the exit finds the entries once a lookup succeeds (audit 14c D2).
        """
        names = ", ".join(f"{c.client_order_id} ({c.state})" for c in unresolved)
        reason = (
            f"exit {intent!r} not sent: the ledger is flat in {symbol} but entries of {self.agent_id} "
            f"there are unresolved ({names}): their orders may have filled; retry once they are found"
        )
        self.store.record_skip(None, agent_id=self.agent_id, reason=reason, symbol=symbol, kind="exit")
        self._reconcile_after_exit_error(symbol)
        return OrderResult(Outcome.NOT_SENT, None, None, reason)

    def _existing_exit(self, existing: Claim, spec: OrderSpec, held: LedgerPosition) -> OrderResult:
        # The side (and so the position intent) follows whatever is held now; the decision and
        # its order are otherwise the same.
        first = existing.spec.position_intent
        mine = (spec if spec.position_intent is first else replace(spec, position_intent=first)).as_payload()
        if not same_order(existing.payload, mine):
            raise IntentMismatch(existing.key, existing.payload, mine)
        return self._existing(existing, held=held)

    def position(self, symbol: str, *, resolve: bool = True) -> LedgerPosition:
        """Return what the guard believes this agent holds in `symbol`, after refreshing its live orders.

        A crypto pair under either spelling is one position ("BTCUSD" reads "BTC/USD").

        Args:
            symbol: The symbol.
            resolve: Also look the agent's PENDING and UNKNOWN claims in `symbol` up by
                client_order_id first (`resolve_unresolved`): an entry whose answer was lost may
                have filled, and its shares are the agent's. False: acknowledged orders only (the
                drop-in's classification: a retry of such an order, past its content window,
                must still find it unresolved to be answered as its retry).
        """
        symbol = ledger_symbol(symbol)
        self._ensure_started()
        self._look_up(_UNRESOLVED_OR_LIVE if resolve else _LIVE, symbol)
        return self.store.position(self.agent_id, symbol)

    def positions(self, *, resolve: bool = True) -> list[LedgerPosition]:
        """Return every open ledger position of this agent, after refreshing its orders (see `position`)."""
        self._ensure_started()
        self._look_up(_UNRESOLVED_OR_LIVE if resolve else _LIVE, None)
        return self.store.positions(self.agent_id)

    def adopt_broker_position(self, symbol: str, *, why: str, top_up: bool = False) -> LedgerPosition:
        """Take what the broker holds in `symbol` and no ledger does into this agent's ledger (audited).

        For positions opened before the guard saw them (a drop-in bot's first close) and, with
        `top_up`, shares bought outside the guard on top of this agent's own position on the same
        side; a ledger that holds something is otherwise left alone. The broker's positions
        endpoint can lag its fills for a few seconds (ALPACA.md), so nothing is adopted while
        another agent's fills in the symbol are that recent or its order there is in motion (its
        fills may be in the broker's position before a ledger books them), while this agent's own
        orders could make the read overstate the orphan (an order in motion that adds to the
        position, a fill that reduces it within `position_settle_secs`:
        `domain.ledger.own_moves_hide_the_orphan`), nor unless a second read a settle delay later
        agrees; shares other agents' orders filled that no ledger books yet (an order marked
        NOT_SENT that landed late) are taken off the broker's quantity first. The orphan (what
        the broker holds minus every ledger on this account) is booked in one store step
        (`ClaimLedger.adopt_position`), which checks all of it under the symbol's lock. Returns
        the position after.
        """
        symbol = ledger_symbol(symbol)
        if self._held_elsewhere and self._adoption_beside_elsewhere(symbol):
            # This account's shares must not join a turn of another account's (`RepointedTurns`).
            return self.store.position(self.agent_id, symbol)
        held = self.broker.get_position(symbol)
        mine = self.store.position(self.agent_id, symbol)
        if held is None or held.qty == 0:
            return mine
        if orphan(held.qty, Decimal(0), mine.qty, top_up=top_up) == 0:
            return mine  # nothing beyond its own position on its side, even were no other agent holding
        # Another agent's: the read may still show (or not yet show) shares its recent fill moved,
        # and the difference would read as an orphan. (This agent's own fills are the store's
        # to judge, by their side: a lagging read of an own buy only understates the orphan.)
        if self._others_fills_settle_at(symbol) is not None:
            return mine
        self.clock.sleep(self.settings.settle_delay_secs)
        again = self.broker.get_position(symbol)
        if again is None or again.qty != held.qty:
            return self.store.position(self.agent_id, symbol)  # not confirmed: adopt nothing
        # Shares other agents' orders filled that no ledger books yet are theirs, not an orphan:
        # an order marked NOT_SENT that landed late is no longer in motion, so the store's
        # check alone would let them through (G3). Read after the positions, as exits are sized.
        adds = Side.BUY if held.qty > 0 else Side.SELL
        unbooked = self.reconciler.unbooked_by_others(self.agent_id, symbol, adds).qty
        if unbooked >= abs(held.qty):
            return self.store.position(self.agent_id, symbol)
        qty = held.qty - unbooked if held.qty > 0 else held.qty + unbooked
        return self.store.adopt_position(self.agent_id, symbol, qty, why=why, top_up=top_up)

    def _others_fills_settle_at(self, symbol: str) -> datetime | None:
        """When every move other agents on this account made lately in `symbol` shows in a positions read.

        Alpaca's positions endpoint trails fills by up to `position_settle_secs`: until then a
        read may still show shares another agent's fill moved, though its ledger moved already.
        Read from the ledger's turns moved since (a fill or a correction; what a reconcile pass
        reads too), not from claims: a store's claims are its whole history. None when no such
        move is that recent.
        """
        settle = timedelta(seconds=self.settings.position_settle_secs)
        moved = [
            (t.agent_id, t.updated_at)
            for t in self.store.moved_turns(self.clock.now() - settle)
            if t.symbol == symbol and t.agent_id != self.agent_id and t.updated_at is not None
        ]
        if not moved:
            return None
        on_account = self.reconciler.on_account(self.agent_id)
        latest = max((at for agent, at in moved if on_account(agent)), default=None)
        return None if latest is None else latest + settle

    def _size_exit(
        self, decision: Intent, spec: OrderSpec, held: LedgerPosition, *, client_order_id: str | None
    ) -> tuple[ClaimOutcome | None, ExitRoom | None, str, datetime, datetime] | OrderResult:
        """Read the broker and size and claim the exit; return what the store said, or a result.

        Returns (the claim outcome or None for nothing to sell, the room the sizing saw, what
        was held back as other agents' shares, when the read began, when it returned); a result
        when a read failed.
        """
        symbol = decision.symbol
        own_fill_shows_at = self._own_fill_shows_at(held)
        sizing = 0
        waited = False
        while True:
            read_at = self.clock.now()  # exits acknowledged from now on may not be in the read
            read = self._broker_available(symbol, held, read_at)
            if isinstance(read, OrderResult):
                return read
            available, held_back, unbooked_shows_at = read
            if unbooked_shows_at is not None and not waited:
                # Other agents' fills no ledger books yet were held back from a read that may not
                # show them: a positions read trails fills by seconds, so shares the read still
                # counts from before (sold since by hand, past a phantom) were taken as this
                # agent's and the fresh fill's shares sold (G3; audit 76), or, the agent holding,
                # the fill was taken off twice and a real exit undersold. Waited out once, as
                # booked fills are (`_wait_out_recent_fills`), then read again.
                waited = True
                self._await_unbooked(symbol, unbooked_shows_at)
                continue
            # The size is as old as this read: a sender held up from here on (before the sizing
            # as after it) is re-sized before its POST (`_resize_if_held_up`).
            read_done = self.clock.now()
            crashpoints.hit("exit_before_claim")
            outcome, room = self.store.claim_exit(
                decision, spec, owner=self.owner, broker_available=available,
                reason=f"exit {decision.name}", client_order_id=client_order_id, broker_read_at=read_at,
            )  # fmt: skip
            sizing += 1
            if outcome is not None:
                return outcome, room, held_back, read_at, read_done
            # Shares held back as another agent's unbooked fills may have been booked into its
            # ledger before the sizing locked the symbol; the sizing then took them off again, as
            # that agent's holding, and found nothing to sell. Read and size once more: the second
            # read sees them booked and holds back nothing for them.
            if held_back and sizing == 1:
                continue
            # Reading again helps only when the broker's side is what fell short: a ledger with
            # nothing free (another exit of the agent's has it, or it is flat now) stays so.
            free = room is not None and abs(room.held) - room.open_exits > 0
            if not free or not self._await_own_fill(symbol, own_fill_shows_at):
                return outcome, room, held_back, read_at, read_done

    def _await_own_fill(self, symbol: str, shows_at: datetime | None) -> bool:
        """Wait a little for the agent's own fresh fill to show in a positions read; False: it should have.

        The bot's own fill of moments ago (its entry) may not show in the positions read yet:
        an exit that finds nothing to sell reads again every `settle_delay_secs` until the fill
        shows or its horizon passes, rather than answer a real exit "nothing to sell" while the
        bot holds the shares (alpaca-py would have sold them).
        """
        now = self.clock.now()
        if shows_at is None or now >= shows_at:
            return False
        wait = max(min(self.settings.settle_delay_secs, (shows_at - now).total_seconds()), 0.001)
        logger.info(
            "%s: exit in %s finds nothing to sell right after the agent's own fill; reading again in %.1f s",
            self.agent_id, symbol, wait,
        )  # fmt: skip
        self.clock.sleep(wait)
        return True

    def _own_fill_shows_at(self, held: LedgerPosition) -> datetime | None:
        """When the agent's latest move in its open turn shows in a positions read, if still ahead.

        Alpaca's positions endpoint trails fills by up to `position_settle_secs`: an exit sized
        moments after the bot's own entry filled may read no position at all. None when the
        turn last moved longer ago than that (a read that shows nothing then is the truth).
        """
        if held.updated_at is None:
            return None
        shows_at = held.updated_at + timedelta(seconds=self.settings.position_settle_secs)
        return shows_at if shows_at > self.clock.now() else None

    def _wait_out_recent_fills(self, symbol: str, side: Side) -> None:
        """Before sizing an exit, wait until recent fills here that a positions read may trail show in one.

        An exit is sized from the broker's `qty_available` less what the other agents on the
        account hold by their ledgers. Another agent's sell that filled moments ago is out of
        its ledger already while a lagging read still shows its shares, so they would count as
        this agent's: an agent whose ledger is a phantom sold them (audit 17 #1, found again by
        test_stateful); a recent buy the read does not show yet made a real exit look like
        nothing to sell. From one read neither can be told from the truth, so the exit waits out
        the horizon of the latest such fill (at most `position_settle_secs`; only where another
        agent on this account traded this symbol that recently), then reads. The agent's own
        fill on the exit's side (its earlier exit) trails the same way: the read still shows the
        shares it took, which would be sized as this exit's, and past a phantom they are another
        agent's (soak seed 37); so, while another agent on the account holds the symbol or has an
        order in motion there (`Reconciler.own_exit_fills_settle_at`), that fill is waited out
        too. Once: fills during the wait are sized as read, except the agent's own: another
        process of the agent selling after this check re-sizes the exit (`_own_sold_since_check`).
        """
        waits = [
            at
            for at in (
                self._others_fills_settle_at(symbol),
                self.reconciler.own_exit_fills_settle_at(self.agent_id, symbol, side),
            )
            if at is not None
        ]
        if not waits:
            return
        wait = (max(waits) - self.clock.now()).total_seconds()
        if wait > 0:
            logger.info(
                "%s: exit in %s waits %.1f s for recent fills there to show in the positions read",
                self.agent_id, symbol, wait,
            )  # fmt: skip
            self.clock.sleep(wait)

    def resolve_unresolved(self, symbol: str) -> list[Claim]:
        """Look this agent's PENDING and UNKNOWN claims in `symbol` up by id; adopt what is found.

        Broker evidence only (G2): an order found is adopted onto its claim (its fills reach the
        ledger); one not found, or a failed lookup, leaves the claim as it is. Nothing is sent,
        resent or marked NOT_SENT here (that takes the grace period and two probes: a retry of
        the decision or a reconcile pass). A claim this gateway is sending right now is left to
        its sender. For exits and closes that such a claim would otherwise hold up (the shares
        at the broker cannot be told apart from its fills until it is resolved). Returns the
        claims still unresolved.
        """
        found = self._look_up(sorted(_UNRESOLVED), symbol)
        return [claim for claim in found if claim.state in _UNRESOLVED]

    def refresh(self, symbol: str | None = None, *, created_after: datetime | None = None) -> None:
        """Adopt broker state (fills, cancels) for this agent's acknowledged live orders.

        `created_after`: only orders claimed after this time (one read each).
        """
        self._look_up(_LIVE, symbol, created_after=created_after)

    def _look_up(
        self, states: list[ClaimState], symbol: str | None, *, created_after: datetime | None = None
    ) -> list[Claim]:
        """Look this agent's claims in `states` (in `symbol`, or all) up by id; adopt what is found.

        A failed read is no evidence: the claim stays as it is (the reconciler retries); so does
        an unresolved claim this gateway is sending right now (its sender resolves it). Returns
        the claims after (those claimed after `created_after`, when given).
        """
        if symbol is not None:
            symbol = ledger_symbol(symbol)
        after: list[Claim] = []
        with self._start_lock:
            in_send = set(self._sending)
        scope = coid_scope(account_key_of(self.broker))
        for claim in self.store.list_claims(states=states, agent_id=self.agent_id, symbol=symbol):
            if created_after is not None and claim.created_at <= created_after:
                continue
            order = None
            # A claim made on another account (this agent re-pointed since): this broker's answer
            # is no evidence about it, so it is not asked (`adopt_order` would leave it anyway).
            if not (claim.state in _UNRESOLVED and claim.key in in_send) and not claim.on_other_account(
                scope
            ):
                with contextlib.suppress(BrokerError):  # a failed read is no evidence
                    order = self.broker.get_order_by_client_id(claim.client_order_id)
            why = _FOUND if claim.state in _UNRESOLVED else "refreshed from the broker"
            after.append(
                claim if order is None else adopt_order(self.store, claim, order, why, broker=self.broker)
            )
        return after

    def reconcile(self, symbols: list[str] | None = None, *, dry_run: bool = False) -> ReconcileReport:
        """Run one reconcile pass for this agent now."""
        if self._started:
            self._register_account()
        report = self.reconciler.run(agent_id=self.agent_id, symbols=symbols, dry_run=dry_run)
        if symbols is None and not dry_run:
            self._next_pass_at = report.next_pass_at(self.settings)
        return report

    def reconcile_if_due(self) -> ReconcileReport | None:
        """Run a pass when one is due: `Settings.reconcile_every_secs` after the last full one.

        Or sooner, once a symbol the last pass put off (its ledger had moved too recently for the
        positions read) comes due, so that the view converges within `reconcile_interval_secs`
        (G4). For bots that drive their own loop (call it once per bar); `BackgroundReconciler`
        runs passes from a thread instead. Returns the report, or None when no pass was due.
        """
        self._ensure_started()  # its first pass (if asked for) schedules the next one
        due = self._next_pass_at
        if due is not None and self.clock.now() < due:
            return None
        return self.reconcile()

    def close(self) -> None:
        """Finish the session recording, if any (the store and the broker are the caller's)."""
        self.recorder.close()

    # -- internals -------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._started:
            return
        with self._start_lock:
            if not self._started:
                # First: the pass below and every exit count only other agents on this account.
                self._register_account()
                if self._reconcile_on_start:
                    self.reconcile()
                self._started = True

    @property
    def account_key(self) -> str | None:
        """The broker account key this agent last registered (`account_key_of`), None before its start.

        Its caller-chosen client_order_ids are unique on that account (`ports.coid_scope`).
        """
        return self._account_key

    def _register_account(self) -> None:
        """Register this agent's broker account key when it is new or changed since last time.

        The key can change in one process: an adapter whose `GET /v2/account` failed at start
        names the account by its credentials until a later read succeeds; agents (and the claim
        service's agent keys) on the account then see each other by the account's own key.
        """
        key = account_key_of(self.broker)
        if key != self._account_key:
            self.store.register_account(self.agent_id, key)
            self._account_key = key
            self._note_held_elsewhere()  # a re-pointed agent's turns left on another account

    def _skip(self, symbol: str, reason: str, claim: Claim | None = None) -> OrderResult:
        self.store.record_skip(
            claim, agent_id=self.agent_id, reason=reason, symbol=symbol, kind=Kind.EXIT.value
        )
        return OrderResult(Outcome.SKIPPED, claim, None, reason)

    def _broker_available(
        self, symbol: str, held: LedgerPosition, read_at: datetime
    ) -> tuple[Decimal, str, datetime | None] | OrderResult:
        """Return what the broker has available that may back this agent's exit, and a note.

        The broker's `qty_available` on the held side less what is not this agent's to sell
        (`_sizing_read`), the note saying what was held back ("" when nothing was), and when other
        agents' unbooked fills held back surely show in a positions read, if this read (begun at
        `read_at`) may still trail them (else None); a result ends the call (a read failed:
        nothing sent, the skip audited).
        """
        try:
            read = self._sizing_read(symbol, held, read_at)
        except BrokerError as exc:
            doing = exc.__notes__[-1] if getattr(exc, "__notes__", None) else f"read the {symbol} position"
            reason = f"exit not sent: cannot {doing} to size it ({exc})"
            self.store.record_skip(None, agent_id=self.agent_id, reason=reason, symbol=symbol, kind="exit")
            return OrderResult(Outcome.NOT_SENT, None, None, reason, exc)
        if read.note:
            logger.info("%s: %s", self.agent_id, read.note)
        return max(read.available - read.held_back, Decimal(0)), read.note, read.unbooked_shows_at

    def _sizing_read(self, symbol: str, held: LedgerPosition, read_at: datetime) -> SizingRead:
        """Read the broker's `qty_available` on the held side and what of it is not this agent's.

        Held back: what other agents' orders in motion on this account have filled there and no
        ledger books yet (`Reconciler.unbooked_by_others`): those shares are another agent's even
        though no ledger says so, and an agent whose own ledger is a phantom would otherwise sell
        them (G3); what orders outside every claim sold there lately (`Reconciler.sold_outside`:
        a close by hand the read, taken at `read_at`, may still trail); what other agents sold
        there lately (`Reconciler.sold_by_others_lately`: booked, maybe not in the read yet); and
        what acknowledged exits hold that the read does not show held
        (`Reconciler.holds_the_read_misses`: sizing counts them as out of `qty_available`
        already). Other agents' unbooked fills held back from a read that may not show them yet
        would be taken twice: `SizingRead.unbooked_shows_at` says until when to wait before
        reading again (`_await_unbooked`). Every path that sizes an exit from a read uses this:
        a new exit, a resend, an exit grown by a replace (`OrderAmendments._room_beside`).

        Raises:
            BrokerError: A read failed; its last note says what could not be read.
        """
        doing = f"read the {symbol} position"
        try:
            at_broker = self.broker.get_position(symbol)
            if at_broker is None or at_broker.qty == 0 or (at_broker.qty > 0) != (held.qty > 0):
                return SizingRead(False, Decimal(0), Decimal(0), "", None)
            adds = Side.BUY if at_broker.qty > 0 else Side.SELL
            doing = f"read other agents' {symbol} orders in motion (whose shares the broker holds)"
            others = self.reconciler.unbooked_by_others(self.agent_id, symbol, adds)
            unbooked, whose = others.qty, others.whose
            doing = f"read the {symbol} orders the positions read may trail"
            outside, which = self.reconciler.sold_outside(self.agent_id, symbol, adds, read_at)
            lately, sellers = self.reconciler.sold_by_others_lately(self.agent_id, symbol, adds, read_at)
            # After `unbooked_by_others`, which brings other agents' ended exits up to date.
            unshown, holding = self.reconciler.holds_the_read_misses(
                self.agent_id, symbol, at_broker, read_at
            )
        except BrokerError as exc:
            exc.add_note(doing)
            raise
        available = abs(at_broker.qty_available)
        notes = []
        if unbooked:
            notes.append(
                f"{unbooked} of the broker's {available} {symbol} available held back: filled (or, "
                f"past the lookups, may have filled) for other agents' orders in motion "
                f"({', '.join(whose)}) that no ledger books yet"
            )
        if outside:
            notes.append(
                f"{outside} {symbol} held back: sold by orders outside the bots ({', '.join(which)}) "
                "that the positions read may not show yet"
            )
        if lately:
            notes.append(
                f"{lately} {symbol} held back: sold by other agents' orders ({', '.join(sellers)}) "
                "that the positions read may not show yet"
            )
        if unshown:
            notes.append(
                f"{unshown} {symbol} held back: held by acknowledged exits ({', '.join(holding)}) "
                "that the positions read may not show yet"
            )
        shows_at = others.shows_at(timedelta(seconds=self.settings.position_settle_secs), read_at)
        held_back = unbooked + outside + lately + unshown
        return SizingRead(True, available, held_back, "; ".join(notes), shows_at)

    def _await_unbooked(self, symbol: str, shows_at: datetime) -> None:
        """Wait until other agents' unbooked fills held back from a read surely show in the next one.

        A positions read trails fills by seconds: held back from a read that does not show them
        yet, they were taken off twice, so shares the read still counts from before (sold since
        by hand, past a phantom) were taken as this agent's and the fresh fill's shares sold (G3;
        audit 76), or, the agent holding, a real exit undersold. Every path that sizes an exit
        waits this out once, then reads again.
        """
        wait = max((shows_at - self.clock.now()).total_seconds(), 0.0)
        logger.info(
            "%s: exit in %s waits %.1f s for other agents' unbooked fills to show in a read",
            self.agent_id, symbol, wait,
        )  # fmt: skip
        self.clock.sleep(wait)

    def _send(
        self,
        claim: Claim,
        *,
        resize_if_held_up: bool = True,
        window_opened: datetime | None = None,
        read_done: datetime | None = None,
    ) -> OrderResult:
        """Send a PENDING claim this worker owns; a position rejection of an exit reconciles at once.

        An exit whose sender was held up between the position read it was sized from (`read_done`:
        when that read returned; None: the sizing just now) and its POST is re-sized first (once). A
        claim holding a content window is not sent when its sender was held up so long between
        opening the window and writing the claim that the window could have passed to another
        identical order meanwhile (`ContentWindows._held_up_past_window`).
        """
        if window_opened is not None:
            late = self._held_up_past_window(claim, window_opened)
            if late is not None:
                return late
        recheck = None
        if claim.kind is Kind.EXIT and resize_if_held_up:
            # Held up since the read its size came from (a freeze between the read and the sizing
            # is as stale as one after it: audit 44), else since the store call that just returned;
            # this process's clock, not the claim's stamp (a claim service's may be skewed).
            since = read_done if read_done is not None else self.clock.now()
            recheck = partial(self._resize_if_held_up, read_done=since)
        with self._start_lock:
            self._sending.add(claim.key)
        try:
            result = send_claim(self.broker, self.store, claim, recheck=recheck)
        except LeaseLost:
            # The lease lapsed before the POST and another worker moved the claim: nothing sent.
            fresh = reread(self.store, claim)
            outcome = Outcome.NOT_SENT if fresh.state is ClaimState.NOT_SENT else Outcome.DUPLICATE
            reason = (
                f"not sent: the lease on {claim.client_order_id} lapsed before the send "
                f"and another worker moved it to {fresh.state}"
            )
            self.store.record_skip(fresh, agent_id=self.agent_id, reason=reason)
            return OrderResult(outcome, fresh, None, reason)
        except StoreError:
            raise  # before the POST, or a refusal it could not record: nothing placed
        except BaseException:
            # UnrecordedOrder, or a failure the send path does not expect: the POST may have gone out.
            with self._start_lock:
                self._posted_unrecorded.add(claim.key)
            raise
        finally:
            with self._start_lock:
                self._sending.discard(claim.key)
        error = result.error
        if result.outcome is not Outcome.REJECTED or claim.kind is not Kind.EXIT or error is None:
            return result
        if not is_position_rejection(error):
            return result
        try:
            report = self._reconcile_after_exit_error(claim.symbol, refused=claim)
        except StoreError as exc:
            raise self._after_failed_pass(claim, exc) from exc
        # The pass either cleared a phantom (the exit stays REJECTED: nothing to sell) or, with
        # the broker still holding shares, re-sized and resent this very exit (and no other).
        resent = report.sent.get(claim.key) if report is not None else None
        return resent if resent is not None else result

    def _after_failed_pass(self, refused: Claim, exc: StoreError) -> StoreError | UnrecordedOrder:
        """Return the error for a store failure in the pass after `refused` was refused.

        The pass may have resent the exit (re-sized) before the store failed on a later action:
        the caller must not hear "nothing was sent" while its order may be at the broker (G1).
        The claim is read once: REJECTED (again) or NOT_SENT, nothing went; anything else, or a
        read that fails too, and it may have.
        """
        try:
            fresh = self.store.get(refused.key)
        except StoreError:
            fresh = None
        if fresh is not None and not may_have_placed(fresh):
            return exc
        failure = str(exc).removesuffix("; nothing was sent")
        return UnrecordedOrder(
            f"exit {refused.client_order_id} was refused, and the reconcile pass that followed may "
            f"have re-sized and sent it again before the claim store failed ({failure}); the order "
            "may be at the broker. Call again with the same decision (or run a reconcile pass) once "
            "the store works: it is looked up by client_order_id, never sent twice"
        )

    def _reconcile_after_exit_error(
        self, symbol: str, *, refused: Claim | None = None
    ) -> ReconcileReport | None:
        """Hold the ledger against the broker for `symbol` now (DESIGN: exits and reconciliation).

        The pass re-sizes and resends `refused` (the exit this call just saw refused), never
        another refused exit of the agent: the call answers for one decision, and an order
        placed under another's id would come back as this one's "rejected, nothing placed" (or
        as a second order of one call). Those are proposed, left for the bot's next call of them.
        """
        release = [] if refused is None else [refused.key]
        report = self.reconciler.run(agent_id=self.agent_id, symbols=[symbol], release_exits=release)
        return None if report.aborted else report


# -- order arguments, checked once per distinct set ---------------------------------------------

_SPECS: dict[tuple[object, ...], OrderSpec] = {}
_SPECS_MAX = 1024
_SPEC_ARGUMENTS = (
    "qty", "notional", "order_type", "time_in_force", "limit_price", "stop_price", "extended_hours",
    "position_intent", "is_exit",
)  # fmt: skip


def _spec(*values: Any) -> OrderSpec:
    """Return `build_spec` of the arguments named `_SPEC_ARGUMENTS` (in that order), built once per set.

    A bot sends the same few order shapes all day, and `build_spec` (its checks, Decimal
    normalising) is a pure function of them with an immutable result. Each argument is keyed
    with its type: 6, 6.0 and Decimal("6") hash alike, and a qty of True must still meet
    build_spec's refusal rather than the spec of a 1. Refusals are not cached; unhashable
    arguments go straight to build_spec (which refuses them). An exit passes no notional (None,
    build_spec's default).
    """
    key = (values, tuple(map(type, values)))
    try:
        spec = _SPECS.get(key)
    except TypeError:
        return build_spec(**dict(zip(_SPEC_ARGUMENTS, values, strict=True)))
    if spec is None:
        spec = build_spec(**dict(zip(_SPEC_ARGUMENTS, values, strict=True)))
        if len(_SPECS) >= _SPECS_MAX:
            _SPECS.clear()  # bounded: a bot with ever-new shapes just rebuilds them
        _SPECS[key] = spec
    return spec


def _same_time(a: Clock, b: Clock) -> bool:
    """Whether two clocks tell the same time: one clock, or both the system's wall clock."""
    return a is b or (type(a) is SystemClock and type(b) is SystemClock)
