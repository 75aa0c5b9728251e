"""`OrderGateway`: the one place that decides whether an order reaches the broker.

Every entry and exit is claimed durably before it is sent (G1, G5); a retry of the same
decision finds the claim and returns the original order instead of sending (G1); an ambiguous
send is resolved by client_order_id, never by a blind resend (G2); exits are sized from the
broker's `qty_available` and carry `*_to_close` (G3); a position-related exit rejection sends
the symbol to the reconciler at once (G4).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from tradeguard.clock import Clock, SystemClock
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, Claim, LedgerPosition, PositionIntent, Side
from tradeguard.domain.intents import Intent, Kind, OrderSpec, check_agent_id
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import BrokerError, IntentMismatch, LeaseLost
from tradeguard.execution import OrderResult, Outcome, adopt_order, is_position_rejection, send_claim
from tradeguard.orders import Number, OrderArgs, build_spec, parse_side
from tradeguard.ports import Broker
from tradeguard.reconcile.runner import Reconciler, ReconcileReport
from tradeguard.store import ClaimStore, new_owner_token

__all__ = ["OrderGateway", "OrderResult", "Outcome"]


class OrderGateway:
    """Guarded entries and exits for one agent.

    Args:
        broker: The broker port (AlpacaBroker, PaperBroker, or a FaultyBroker around either).
        store: A ClaimStore, or a SQLAlchemy URL to open one.
        agent_id: The bot's stable name; claims, ledger and audit are kept per agent.
        settings: Timeouts, grace periods, intervals.
        clock: Time source; tests and replays pass a ManualClock.
        owner: This worker's lease identity (default: a fresh random token).
        reconcile_on_start: Run one reconcile pass for this agent before the first order.
    """

    def __init__(
        self,
        broker: Broker,
        store: ClaimStore | str,
        *,
        agent_id: str,
        settings: Settings | None = None,
        clock: Clock | None = None,
        owner: str | None = None,
        reconcile_on_start: bool = True,
    ) -> None:
        self.settings = settings or (store.settings if isinstance(store, ClaimStore) else Settings())
        self.clock: Clock = clock or (store.clock if isinstance(store, ClaimStore) else SystemClock())
        self.store = (
            store
            if isinstance(store, ClaimStore)
            else ClaimStore(store, settings=self.settings, clock=self.clock)
        )
        self.broker = broker
        check_agent_id(agent_id)
        self.agent_id = agent_id
        self.owner = owner or new_owner_token()
        self.reconciler = Reconciler(broker, self.store, settings=self.settings, clock=self.clock)
        self._started = not reconcile_on_start
        self._last_full_pass: datetime | None = None
        self._start_lock = threading.Lock()

    # -- public API ------------------------------------------------------------------------

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
        time_in_force: str = "day",
        extended_hours: bool = False,
    ) -> OrderResult:
        """Open or add to a position, at most once per `intent`.

        Args:
            symbol: Upper-case ticker.
            qty: Shares (or use `notional`).
            notional: Dollars, for fractional market orders.
            side: "buy" opens long, "sell" opens short.
            intent: The bot's stable name for this decision (bar time + reason); a retry must
                pass the same name, a new decision a new one.
            order_type: market, limit, stop or stop_limit.
            limit_price: For limit and stop-limit orders.
            stop_price: For stop and stop-limit orders.
            time_in_force: day, gtc, opg, cls, ioc or fok.
            extended_hours: Allow pre/post-market execution (limit orders only at Alpaca).

        Raises:
            ConfigError: A bad argument; nothing was claimed.
            IntentMismatch: `intent` was used before for a different order.
            StoreError: The claim could not be recorded; nothing was sent.
        """
        order_side = parse_side(side)
        opens = PositionIntent.BUY_TO_OPEN if order_side is Side.BUY else PositionIntent.SELL_TO_OPEN
        args = OrderArgs(qty, notional, order_type, time_in_force, limit_price, stop_price, extended_hours)
        spec = build_spec(args, position_intent=opens, is_exit=False)
        decision = Intent(self.agent_id, Kind.ENTRY, symbol, order_side, intent)
        return self.submit(decision, spec)

    def submit(self, intent: Intent, spec: OrderSpec, *, client_order_id: str | None = None) -> OrderResult:
        """Claim `intent` and send `spec` unless a claim for it exists (the drop-in path).

        `client_order_id` overrides the derived id (a caller-chosen id is then the key).
        """
        self._ensure_started()
        outcome = self.store.claim(
            intent,
            spec,
            owner=self.owner,
            client_order_id=client_order_id,
            order_qty=spec.qty,
            reason=f"{intent.kind} {intent.name}",
        )
        if outcome.created:
            return self._send(outcome.claim)
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
        time_in_force: str = "day",
        extended_hours: bool = False,
    ) -> OrderResult:
        """Close (part of) the agent's position in `symbol`, at most once per turn and `intent`.

        The quantity sent is `min(qty or the whole held position, broker qty_available - exits
        in flight)`; zero sends nothing (SKIPPED). The order carries sell_to_close/buy_to_close.
        """
        args = OrderArgs(qty, None, order_type, time_in_force, limit_price, stop_price, extended_hours)
        # Check the arguments before any store or broker call; the side follows the position.
        spec = build_spec(args, position_intent=PositionIntent.SELL_TO_CLOSE, is_exit=True)
        self._ensure_started()
        self.refresh(symbol)  # fills since the entry was acknowledged decide what is held
        held = self.store.position(self.agent_id, symbol)
        side = Side.SELL if held.qty >= 0 else Side.BUY
        if side is Side.BUY:
            spec = replace(spec, position_intent=PositionIntent.BUY_TO_CLOSE)
        turn_id = held.turn_id if not held.is_flat else self.store.latest_turn_id(self.agent_id, symbol)
        if turn_id is None:
            return self._skip(symbol, f"exit {intent!r}: {symbol} was never held by {self.agent_id}")
        decision = Intent(self.agent_id, Kind.EXIT, symbol, side, f"turn{turn_id}:{intent}")
        existing = self.store.get(decision.key)
        if existing is not None:
            if existing.payload != spec.as_payload():
                raise IntentMismatch(decision.key, existing.payload, spec.as_payload())
            return self._existing(existing, held=held)
        if held.is_flat:
            return self._skip(symbol, f"exit {intent!r}: ledger is flat in {symbol}")
        sized = self._size_exit(symbol, spec.qty, held)
        if isinstance(sized, OrderResult):
            return sized
        outcome = self.store.claim(
            decision,
            spec,
            owner=self.owner,
            order_qty=sized,
            turn_id=turn_id,
            reason=f"exit {intent}",
        )
        if outcome.created:
            return self._send(outcome.claim)
        return self._existing(outcome.claim, held=held)

    def position(self, symbol: str) -> LedgerPosition:
        """Return what the guard believes this agent holds in `symbol`, after refreshing its live orders."""
        self._ensure_started()
        self.refresh(symbol)
        return self.store.position(self.agent_id, symbol)

    def positions(self) -> list[LedgerPosition]:
        """Return every open ledger position of this agent, after refreshing live orders."""
        self._ensure_started()
        self.refresh()
        return self.store.positions(self.agent_id)

    def refresh(self, symbol: str | None = None) -> None:
        """Adopt broker state (fills, cancels) for this agent's acknowledged live orders."""
        live = [ClaimState.SUBMITTED, ClaimState.PARTIALLY_FILLED]
        for claim in self.store.list_claims(states=live, agent_id=self.agent_id, symbol=symbol):
            try:
                order = self.broker.get_order_by_client_id(claim.client_order_id)
            except BrokerError:
                continue  # the reconciler retries; a failed read changes nothing
            if order is not None:
                adopt_order(self.store, claim, order, "refreshed from the broker")

    def reconcile(self, symbols: list[str] | None = None, *, dry_run: bool = False) -> ReconcileReport:
        """Run one reconcile pass for this agent now."""
        report = self.reconciler.run(agent_id=self.agent_id, symbols=symbols, dry_run=dry_run)
        if symbols is None and not dry_run:
            self._last_full_pass = report.started_at
        return report

    def reconcile_if_due(self) -> ReconcileReport | None:
        """Run a pass when `reconcile_interval_secs` have passed since the last full one.

        For bots that drive their own loop (call it once per bar); `BackgroundReconciler` runs
        passes from a thread instead. Returns the report, or None when no pass was due.
        """
        last = self._last_full_pass
        if (
            last is not None
            and (self.clock.now() - last).total_seconds() < self.settings.reconcile_interval_secs
        ):
            return None
        return self.reconcile()

    # -- internals -------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._started:
            return
        with self._start_lock:
            if not self._started:
                self.reconcile()
                self._started = True

    def _skip(self, symbol: str, reason: str, claim: Claim | None = None) -> OrderResult:
        self.store.record_skip(
            claim, agent_id=self.agent_id, reason=reason, symbol=symbol, kind=Kind.EXIT.value
        )
        return OrderResult(Outcome.SKIPPED, claim, None, reason)

    def _size_exit(
        self, symbol: str, requested: Decimal | None, held: LedgerPosition
    ) -> Decimal | OrderResult:
        """Return the quantity an exit may send now, or the result that ends the call."""
        try:
            at_broker = self.broker.get_position(symbol)
        except BrokerError as exc:
            reason = f"exit not sent: cannot read the {symbol} position to size it ({exc})"
            self.store.record_skip(None, agent_id=self.agent_id, reason=reason, symbol=symbol, kind="exit")
            return OrderResult(Outcome.NOT_SENT, None, None, reason, exc)
        same_side = at_broker is not None and at_broker.qty != 0 and (at_broker.qty > 0) == (held.qty > 0)
        available = abs(at_broker.qty_available) if at_broker is not None and same_side else Decimal(0)
        in_flight = self.store.exits_in_flight(self.agent_id, symbol)
        qty = min(requested or abs(held.qty), available - in_flight)
        if qty <= 0:
            reason = (
                f"exit skipped: broker holds {at_broker.qty if at_broker else 0} {symbol} "
                f"(available {available}, exits in flight {in_flight}); ledger says {held.qty}"
            )
            result = self._skip(symbol, reason)
            self._reconcile_after_exit_error(symbol)
            return result
        return qty

    def _send(self, claim: Claim) -> OrderResult:
        """Send a PENDING claim this worker owns; a position rejection of an exit reconciles at once."""
        result = send_claim(self.broker, self.store, claim)
        error = result.error
        if result.outcome is not Outcome.REJECTED or claim.kind is not Kind.EXIT or error is None:
            return result
        if not is_position_rejection(error):
            return result
        report = self._reconcile_after_exit_error(claim.symbol)
        # The pass either cleared a phantom (the exit stays REJECTED: nothing to sell) or, with
        # the broker still holding shares, re-sized and resent this very exit.
        resent = report.sent.get(claim.key) if report is not None else None
        return resent if resent is not None else result

    def _lookup_unknown(self, claim: Claim, first_error: BrokerError | None = None) -> OrderResult:
        """Look an UNKNOWN claim up by client_order_id; adopt it if found, else keep UNKNOWN."""
        try:
            order = self.broker.get_order_by_client_id(claim.client_order_id)
        except BrokerError as exc:
            return OrderResult(
                Outcome.UNKNOWN, claim, None, f"lookup failed: {exc.message}", first_error or exc
            )
        if order is not None:
            claim = adopt_order(self.store, claim, order, "found at the broker by client_order_id")
            outcome = Outcome.SUBMITTED if first_error is not None else Outcome.DUPLICATE
            return OrderResult(outcome, claim, order, f"resolved {claim.client_order_id} by lookup")
        if first_error is not None:
            return OrderResult(Outcome.UNKNOWN, claim, None, first_error.message, first_error)
        return self._resend_if_absent(claim)

    def _resend_if_absent(self, claim: Claim) -> OrderResult:
        """Resend an UNKNOWN claim with the same client_order_id once it is provably absent.

        Absent means: older than the grace period (a POST still in flight can land after a
        404) and missing on a second probe `unknown_probe_gap_secs` later.
        """
        age = (self.clock.now() - claim.updated_at).total_seconds()
        if age < self.settings.unknown_grace_secs:
            grace = self.settings.unknown_grace_secs
            reason = f"{claim.client_order_id} not found yet; waiting out the {grace}s grace period"
            return OrderResult(Outcome.UNKNOWN, claim, None, reason)
        self.clock.sleep(self.settings.unknown_probe_gap_secs)
        try:
            order = self.broker.get_order_by_client_id(claim.client_order_id)
        except BrokerError as exc:
            return OrderResult(Outcome.UNKNOWN, claim, None, f"second probe failed: {exc.message}", exc)
        if order is not None:
            claim = adopt_order(self.store, claim, order, "found at the broker on the second probe")
            return OrderResult(Outcome.DUPLICATE, claim, order, "resolved by lookup")
        if claim.owner != self.owner and claim.lease_expires_at > self.clock.now():
            return OrderResult(Outcome.UNKNOWN, claim, None, "absent at the broker; its owner will resend")
        try:
            claim = self.store.transition(
                claim,
                ClaimState.PENDING,
                owner=self.owner,
                reason="absent at the broker on two probes after the grace period; resending the same id",
            )
        except LeaseLost:
            fresh = self.store.get(claim.key)
            assert fresh is not None
            return OrderResult(Outcome.DUPLICATE, fresh, None, "another worker resolved it meanwhile")
        return self._send(claim)

    def _existing(self, claim: Claim, held: LedgerPosition | None = None) -> OrderResult:
        """Answer a retry of a known decision without sending a second order."""
        state = claim.state
        if state is ClaimState.NOT_SENT or (
            state is ClaimState.REJECTED and claim.kind is Kind.EXIT and held
        ):
            return self._retry_unsent(claim, held)
        if state is ClaimState.PENDING:
            if claim.lease_expires_at > self.clock.now():
                reason = f"duplicate of {claim.client_order_id}, being sent by its owner now"
                self.store.record_skip(claim, agent_id=self.agent_id, reason=reason)
                return OrderResult(Outcome.DUPLICATE, claim, None, reason)
            try:
                claim = self.store.take_over(claim, self.owner)
            except LeaseLost:
                fresh = self.store.get(claim.key)
                assert fresh is not None
                return self._existing(fresh, held)
            return self._lookup_unknown(claim)
        if state is ClaimState.UNKNOWN:
            return self._lookup_unknown(claim)
        if state is ClaimState.REJECTED:
            reason = f"duplicate of {claim.client_order_id}, which the broker rejected: {claim.reason}"
            self.store.record_skip(claim, agent_id=self.agent_id, reason=reason)
            return OrderResult(Outcome.REJECTED, claim, None, reason)
        order: BrokerOrder | None = None
        try:
            order = self.broker.get_order_by_client_id(claim.client_order_id)
        except BrokerError:
            order = None  # the duplicate is still blocked; the order is fetched next time
        if order is not None:
            claim = adopt_order(self.store, claim, order, "refreshed on a duplicate")
        reason = f"duplicate of {claim.client_order_id} ({claim.state}); nothing sent"
        self.store.record_skip(claim, agent_id=self.agent_id, reason=reason)
        return OrderResult(Outcome.DUPLICATE, claim, order, reason)

    def _retry_unsent(self, claim: Claim, held: LedgerPosition | None) -> OrderResult:
        """Send again a decision that provably never placed an order (same client_order_id)."""
        qty = claim.order_qty
        if claim.kind is Kind.EXIT:
            if held is None or held.is_flat:
                reason = f"exit {claim.client_order_id} not resent: ledger is flat in {claim.symbol}"
                return self._skip(claim.symbol, reason, claim)
            sized = self._size_exit(claim.symbol, claim.spec.qty, held)
            if isinstance(sized, OrderResult):
                return OrderResult(sized.outcome, claim, None, sized.reason, sized.error)
            qty = sized
        try:
            claim = self.store.transition(
                claim,
                ClaimState.PENDING,
                owner=self.owner,
                order_qty=qty,
                reason=f"sending again after {claim.state}: nothing was placed",
            )
        except LeaseLost:
            fresh = self.store.get(claim.key)
            assert fresh is not None
            return self._existing(fresh, held)
        return self._send(claim)

    def _reconcile_after_exit_error(self, symbol: str) -> ReconcileReport | None:
        """Hold the ledger against the broker for `symbol` now (DESIGN: exits and reconciliation)."""
        report = self.reconciler.run(agent_id=self.agent_id, symbols=[symbol], release_exits=True)
        return None if report.aborted else report
