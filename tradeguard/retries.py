"""How the gateway answers a retry of a decision it already claimed, without a second order.

A known decision is sent again only when it provably placed nothing (NOT_SENT, an entry whose
POST the broker refused, a refused exit while its position is open, an UNKNOWN claim absent on
two probes after the grace period), and
always under its own client_order_id; an exit is re-sized first (an absent one while other agents
hold its symbol).
Everything else is answered from the claim and the broker: a live send is a duplicate, a lapsed
owner's PENDING claim is taken over and looked up, an UNKNOWN claim is looked up. Every attempt
that sends nothing is audited (G1, G2, G6).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

from tradeguard import crashpoints
from tradeguard.clock import Clock
from tradeguard.config import Settings
from tradeguard.domain import BrokerOrder, Claim, LedgerPosition, RejectKind
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.ledger import ExitRoom
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import (
    BrokerError,
    LeaseLost,
    OrderRejected,
    OutcomeUnknown,
    StoreError,
    UnrecordedOrder,
)
from tradeguard.execution import (
    OrderResult,
    Outcome,
    adopt_order,
    elsewhere_reason,
    may_have_placed,
    reread,
    retry_unrecorded,
)
from tradeguard.ports import Broker, ClaimLedger, account_key_of, coid_scope
from tradeguard.reconcile.runner import OTHERS_SOLD_SINCE_READ, Reconciler, ReconcileReport
from tradeguard.sessions.recorder import NullRecorder, Recorder

__all__ = ["RetryAnswers"]

_ABSENT = "absent at the broker on two probes after the grace period"

# A retry this long after its decision was first claimed is more likely a name reused for a new
# decision (a bar time without its date, a fixed client_order_id): still answered as a retry
# (G1: the key is the decision), but said loudly.
_OLD_DECISION = timedelta(hours=12)

logger = logging.getLogger("tradeguard.gateway")


def _refusal_placed_nothing(claim: Claim) -> bool:
    """Whether a REJECTED claim may be sent again under its own id: its POST placed nothing.

    A definite refusal of the POST (buying power, market closed, a bad price: any `RejectKind`
    but `ID_TAKEN`) left no order under the id, so a retry is sent again, as Alpaca would take
    it. Resending is G1-safe even if the refusal was wrong: a second copy of the id is Alpaca's
    422 "client_order_id must be unique", which the send resolves by lookup and adopts. Final
    stay a claim whose id names another order (`ID_TAKEN`), and an order the broker created and
    then rejected (status ``rejected``: it has a broker order id). An exit is re-sized before it
    goes again, and only while its position is open (`_retry_exit`).
    """
    if claim.reject_kind is RejectKind.ID_TAKEN or claim.broker_order_id is not None:
        return False  # a second POST of an id the broker has is its 422 duplicate, forever
    return claim.kind is Kind.EXIT or claim.reject_kind is not None


class RetryAnswers:
    """Mixin of `OrderGateway`: answers for decisions that already have a claim."""

    broker: Broker
    store: ClaimLedger
    settings: Settings
    clock: Clock
    agent_id: str
    owner: str
    reconciler: Reconciler
    recorder: Recorder | NullRecorder
    _start_lock: threading.Lock
    _sending: set[str]
    _posted_unrecorded: set[str]
    _settling: Counter[str]

    def _send(
        self, claim: Claim, *, resize_if_held_up: bool = True, read_done: datetime | None = None
    ) -> OrderResult:
        raise NotImplementedError

    def _broker_available(
        self, symbol: str, held: LedgerPosition, read_at: datetime
    ) -> tuple[Decimal, str, datetime | None] | OrderResult:
        raise NotImplementedError

    def _await_unbooked(self, symbol: str, shows_at: datetime) -> None:
        raise NotImplementedError

    def _reconcile_after_exit_error(
        self, symbol: str, *, refused: Claim | None = None
    ) -> ReconcileReport | None:
        raise NotImplementedError

    def _own_sold_since_check(
        self, claim: Claim, held: LedgerPosition, room: ExitRoom | None, read_at: datetime
    ) -> bool:
        raise NotImplementedError

    def _resize_after_sold(self, claim: Claim, reason: str) -> OrderResult:
        raise NotImplementedError

    def _unless_placed(self, exc: StoreError, *intents: Intent) -> StoreError | UnrecordedOrder:
        """Return the error for a store failure in a call of one of `intents`: `exc`, unless placed.

        Read on the failure path only: when the decision already has a claim whose order may be
        at the broker, the caller must not hear "nothing was sent" (`execution.retry_unrecorded`).
        A read that fails too leaves `exc` (this call sent nothing; that is all it knows), unless
        this gateway posted the decision's order and could not record the answer: a store that
        is down (a claim service killed right after the POST) fails the read as well, and the
        retry that follows its `UnrecordedOrder` must not hear "nothing was recorded" (G1).
        """
        for intent in intents:
            try:
                claim = self.store.get(intent.key)
            except StoreError:
                with self._start_lock:
                    posted = intent.key in self._posted_unrecorded or intent.key in self._sending
                if posted:
                    failure = str(exc).removesuffix("; nothing was sent")
                    return UnrecordedOrder(
                        f"the order of decision {intent.name!r} ({intent.symbol}) was sent (or is being "
                        f"sent) by this gateway and may be at the broker; the claim store still fails "
                        f"({failure}), and this call sent nothing. Call again with the same decision (or "
                        "run a reconcile pass) once the store works: it is looked up by client_order_id, "
                        "never sent twice"
                    )
                return exc
            if claim is not None and self.may_have_placed(claim):
                return retry_unrecorded(claim, exc)
        return exc

    def may_have_placed(self, claim: Claim) -> bool:
        """Whether `claim`'s order may be (or is) at the broker, as far as this gateway can tell.

        `execution.may_have_placed`, except for a PENDING claim of this gateway's own that it never
        sent: a claim whose answer was lost on the way back (a claim service's), or whose send
        failed before its POST. Any other PENDING claim may be being sent, or was sent with its
        answer unrecorded.
        """
        if claim.state is ClaimState.PENDING and claim.owner == self.owner:
            with self._start_lock:
                return claim.key in self._posted_unrecorded or claim.key in self._sending
        return may_have_placed(claim)

    def _existing(self, claim: Claim, held: LedgerPosition | None = None, *, note: str = "") -> OrderResult:
        """Answer a retry of a known decision; every attempt that sends nothing is audited (G6).

        `note` says why the call was taken for a retry (a content window) and leads the reason.
        A store failure meanwhile is an `UnrecordedOrder` when the claim's order may exist.
        """
        try:
            return self._answer_retry(claim, held, note)
        except StoreError as exc:
            if not self.may_have_placed(claim):
                raise  # nothing of this decision is at the broker: "nothing was sent" is the truth
            raise retry_unrecorded(claim, exc) from exc

    def _answer_retry(self, claim: Claim, held: LedgerPosition | None, note: str) -> OrderResult:
        result = self._answer(claim, held)
        if note:
            result = replace(result, reason=f"{note}; {result.reason}")
        age = self.clock.now() - claim.created_at
        if age > _OLD_DECISION:
            first, hours = claim.created_at.isoformat(timespec="seconds"), age.total_seconds() / 3600
            warning = (
                f"decision {claim.intent!r} ({claim.client_order_id}) was first claimed {hours:.1f} h "
                f"ago, at {first}: answered as a retry of it; if this is a new decision, give it a new name "
                "(a decision name or client_order_id names exactly one decision, forever: put the date in it)"
            )
            logger.warning("%s: %s", self.agent_id, warning)
            result = replace(result, reason=f"{warning}; {result.reason}")
        after = result.claim
        if after is None or after.attempts == claim.attempts:  # a resend bumps attempts
            self.store.record_skip(after or claim, agent_id=self.agent_id, reason=result.reason)
        return result

    def _answer(self, claim: Claim, held: LedgerPosition | None) -> OrderResult:
        """Resolve a retry without a second order: only a provably unplaced decision is resent."""
        if claim.coid_scope and claim.on_other_account(coid_scope(account_key_of(self.broker))):
            return self._made_elsewhere(claim)
        state = claim.state
        if state is ClaimState.NOT_SENT or (state is ClaimState.REJECTED and _refusal_placed_nothing(claim)):
            return self._retry_unsent(claim, held)
        if state is ClaimState.PENDING:
            return self._pending(claim, held)
        if state is ClaimState.UNKNOWN:
            return self._lookup_unknown(claim)
        if state is ClaimState.REJECTED:
            # Final: the id names another order, or the broker created the order and rejected it
            # (Alpaca would answer a second POST of the id 422 "client_order_id must be unique").
            reason = f"duplicate of {claim.client_order_id}, which the broker rejected: {claim.reason}"
            error = OrderRejected(claim.reason, kind=claim.reject_kind or RejectKind.OTHER, status_code=422)
            return OrderResult(Outcome.REJECTED, claim, None, reason, error)
        order: BrokerOrder | None = None
        try:
            order = self.broker.get_order_by_client_id(claim.client_order_id)
        except BrokerError:
            order = None  # the duplicate is still blocked; the order is fetched next time
        if order is not None:
            claim = adopt_order(self.store, claim, order, "refreshed on a duplicate", broker=self.broker)
        reason = f"duplicate of {claim.client_order_id} ({claim.state}); nothing sent"
        return OrderResult(Outcome.DUPLICATE, claim, order, reason)

    def _made_elsewhere(self, claim: Claim) -> OrderResult:
        """Answer a retry of a decision claimed on another broker account than this gateway's.

        The agent was re-pointed to this account since (`Claim.on_other_account`). Its order,
        if any, is on the other account: a lookup here proves nothing, a resend here would be a
        second order for one decision (G1), and "absent" here is no reason to settle it (G2). So
        nothing is read, sent or moved: an unresolved claim answers UNKNOWN, one that placed
        nothing answers as its id refused here (Alpaca's 422), any other as a duplicate. The
        other account's broker (its reconcile pass, `tradeguard claims resolve`) resolves it.
        """
        reason = elsewhere_reason(claim)
        if claim.state is ClaimState.PENDING or claim.state is ClaimState.UNKNOWN:
            return OrderResult(Outcome.UNKNOWN, claim, None, reason, OutcomeUnknown(reason))
        if claim.state is ClaimState.NOT_SENT or claim.state is ClaimState.REJECTED:
            error = OrderRejected(reason, kind=RejectKind.ID_TAKEN, status_code=422)
            return OrderResult(Outcome.REJECTED, claim, None, reason, error)
        return OrderResult(Outcome.DUPLICATE, claim, None, f"duplicate of {claim.client_order_id}; {reason}")

    def _pending(self, claim: Claim, held: LedgerPosition | None) -> OrderResult:
        """A retry met a PENDING claim: being sent, abandoned by a lapsed owner, or left by us."""
        with self._start_lock:
            sending = claim.key in self._sending
        if sending or (claim.owner != self.owner and claim.lease_expires_at > self.clock.now()):
            reason = f"duplicate of {claim.client_order_id}, being sent by its owner now"
            return OrderResult(Outcome.DUPLICATE, claim, None, reason)
        if claim.owner == self.owner:
            # This gateway sent it earlier and could not record the answer (UnrecordedOrder):
            # the order may exist, so it is looked up, never sent again blind.
            return self._lookup_unknown(claim)
        try:
            claim = self.store.take_over(claim, self.owner)
        except LeaseLost:
            fresh = reread(self.store, claim)
            return self._answer(fresh, held)
        return self._lookup_unknown(claim)

    def _lookup_unknown(self, claim: Claim, first_error: BrokerError | None = None) -> OrderResult:
        """Look an UNKNOWN (or our own unrecorded PENDING) claim up by client_order_id."""
        try:
            order = self.broker.get_order_by_client_id(claim.client_order_id)
        except BrokerError as exc:
            return OrderResult(
                Outcome.UNKNOWN, claim, None, f"lookup failed: {exc.message}", first_error or exc
            )
        if order is not None:
            claim = adopt_order(
                self.store, claim, order, "found at the broker by client_order_id", broker=self.broker
            )
            outcome = Outcome.SUBMITTED if first_error is not None else Outcome.DUPLICATE
            return OrderResult(outcome, claim, order, f"resolved {claim.client_order_id} by lookup")
        if first_error is not None:
            return OrderResult(Outcome.UNKNOWN, claim, None, first_error.message, first_error)
        if claim.state is ClaimState.PENDING:
            # Our own send whose answer was never recorded: from now on it ages as UNKNOWN.
            try:
                claim = self.store.transition(
                    claim, ClaimState.UNKNOWN, reason="sent earlier, answer not recorded, not found yet"
                )
            except LeaseLost:
                fresh = reread(self.store, claim)
                return self._answer(fresh, None)
            return OrderResult(Outcome.UNKNOWN, claim, None, f"{claim.client_order_id} not found yet")
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
            claim = adopt_order(
                self.store, claim, order, "found at the broker on the second probe", broker=self.broker
            )
            return OrderResult(Outcome.DUPLICATE, claim, order, "resolved by lookup")
        if claim.owner != self.owner and claim.lease_expires_at > self.clock.now():
            return OrderResult(Outcome.UNKNOWN, claim, None, "absent at the broker; its owner will resend")
        if claim.kind is Kind.EXIT and self._others_hold(claim.symbol):
            return self._resize_absent_exit(claim)
        moved = self._settle_unplaced(claim, ClaimState.PENDING, f"{_ABSENT}; resending the same id")
        return moved if isinstance(moved, OrderResult) else self._send(moved)

    def _settle_unplaced(self, claim: Claim, to: ClaimState, reason: str) -> Claim | OrderResult:
        """Move a claim that placed nothing (absent, or not sent yet) to `to`, or answer the first mover.

        A claim found moved to `to` under this gateway's own lease, and not being sent by it, was
        moved by this very move (a proxy that sent the request twice: the copy that landed second
        lost its compare-and-set): it goes on as moved. Answered DUPLICATE, a resend never went
        out, and the bot heard "duplicate" for a decision nothing placed. Not so when another of
        this gateway's threads is settling or sending the claim, or an earlier send of it went
        unrecorded: that thread moved it (and sends it), so this one answers DUPLICATE.
        """
        key = claim.key
        # Another thread of this gateway that wins this very move looks, to the loser, just like
        # its own request landed twice (the claim in `to`, under this lease): counted here from
        # before the move until its send is marked, it is told apart (review45: both sent).
        with self._start_lock:
            self._settling[key] += 1
        try:
            try:
                moved = self.store.transition(claim, to, owner=self.owner, reason=reason)
            except LeaseLost:
                fresh = reread(self.store, claim)
                with self._start_lock:
                    elsewhere = (
                        self._settling[key] > 1 or key in self._sending or key in self._posted_unrecorded
                    )
                if fresh.state is not to or fresh.owner != self.owner or elsewhere:
                    return OrderResult(Outcome.DUPLICATE, fresh, None, "another worker resolved it meanwhile")
                moved = fresh
            if to is ClaimState.PENDING:
                # Resent next (`_resend_if_absent` calls `_send`, which clears the mark): being
                # sent from now on, before this thread's count goes.
                with self._start_lock:
                    self._sending.add(key)
        finally:
            with self._start_lock:
                self._settling[key] -= 1
                if not self._settling[key]:
                    del self._settling[key]
        self.recorder.resolved(claim.client_order_id, placed=False, by="probe", reason=reason)
        return moved

    def _others_hold(self, symbol: str) -> bool:
        """Whether another agent on this account holds `symbol` or has an order in motion there.

        Alone in the symbol, a stale size only risks a refusal (the broker never sells more than
        it holds), which the exit's 403/422 reconcile handles; so only then is the exit re-sized.
        An order in motion counts too: its fills may be at the broker in no ledger yet (an
        entry whose answer and lookups were lost), and a stale exit resent as it was sold them
        (audit 33). `Reconciler.others_trade`, the rule every such question uses.
        """
        return self.reconciler.others_trade(self.agent_id, symbol)

    def _resize_absent_exit(self, claim: Claim) -> OrderResult:
        """Send again an exit proven absent only after re-sizing it, like any exit that placed nothing.

        Its size was computed when it was claimed, perhaps long ago: since then the position may
        have been closed behind the bots' backs and re-entered, by this agent or by another one on
        the account. Resent as it was, it could sell shares that are no longer its agent's (G3).
        So it is settled as NOT_SENT (absence proven, the same evidence the reconciler uses) and
        re-sized and resent from there, only while the position it was for is still open.
        """
        moved = self._settle_unplaced(claim, ClaimState.NOT_SENT, f"{_ABSENT}; re-sizing the exit")
        if isinstance(moved, OrderResult):
            return moved
        return self._retry_exit(moved, self.store.position(self.agent_id, moved.symbol))

    def _resize_if_held_up(self, claim: Claim, *, read_done: datetime) -> OrderResult | None:
        """Re-size an exit whose POST comes long after the position read it was sized from; None sends it.

        Called right before the POST, past the lease check. A healthy sender gets there within
        milliseconds of its read (`read_done`: when it returned); one that froze or stalled may
        have been away while the position was closed outside the bots and another agent on the
        account re-entered: its old size would sell that agent's shares (G3). Held up before the
        sizing (right after the read) is as stale as after it: the size is as old as its read
        (audit 44). So the claim is settled NOT_SENT (nothing was sent) and re-sized against a
        fresh position read like any exit that placed nothing; the resend is not re-checked
        again. What no guard closes is the instant between that read and the POST.
        """
        held_up = (self.clock.now() - read_done).total_seconds()
        if held_up <= self.settings.exit_resize_after_secs:
            return None
        reason = (
            f"sized from a read {held_up:.1f}s before its send (the sender was held up); re-sizing the exit"
        )
        moved = self._settle_unplaced(claim, ClaimState.NOT_SENT, reason)
        if isinstance(moved, OrderResult):
            return moved
        held = self.store.position(self.agent_id, moved.symbol)
        return self._retry_exit(moved, held, resize_if_held_up=False)

    def _retry_unsent(self, claim: Claim, held: LedgerPosition | None) -> OrderResult:
        """Send again a decision that provably never placed an order (same client_order_id)."""
        if claim.kind is Kind.EXIT:
            return self._retry_exit(claim, held or self.store.position(self.agent_id, claim.symbol))
        try:
            claim = self.store.transition(
                claim,
                ClaimState.PENDING,
                owner=self.owner,
                order_qty=claim.order_qty,
                reason=f"sending again after {claim.state}: nothing was placed",
            )
        except LeaseLost:
            fresh = reread(self.store, claim)
            return self._answer(fresh, held)
        return self._send(claim)

    def resend_changed(self, claim: Claim, spec: OrderSpec) -> OrderResult | None:
        """Send an entry that provably placed nothing again, under its id, as the order `spec`.

        The drop-in's path for a client_order_id whose only attempt was refused (or never
        sent): Alpaca keeps no order under such an id and takes it again with any order, so a
        bot that resized after a 403 gets its new order, as on alpaca-py. G1 holds: if the
        refusal was wrong after all, the broker answers the id's second copy 422 and the send
        adopts the order found. The claim records the new order (audited, the old one in the
        record). None when the claim may not change: an exit (sized by its own rule), or an
        order that was placed or may have been; or another worker moved it first.
        """
        placed_nothing = claim.state is ClaimState.NOT_SENT or (
            claim.state is ClaimState.REJECTED and _refusal_placed_nothing(claim)
        )
        if claim.kind is not Kind.ENTRY or not placed_nothing:
            return None
        if claim.coid_scope and claim.on_other_account(coid_scope(account_key_of(self.broker))):
            return None  # its id is the other account's: answered as a retry (`_made_elsewhere`)
        intent = Intent(claim.agent_id, claim.kind, claim.symbol, claim.side, claim.intent)
        self.recorder.attempt(intent, spec, claim.client_order_id)
        try:
            moved = self.store.transition(
                claim,
                ClaimState.PENDING,
                owner=self.owner,
                order_qty=spec.qty,
                payload=spec.as_payload(),
                reason=f"sending again after {claim.state} as a changed order: nothing was placed",
                detail={"was": dict(claim.payload)},
            )
        except LeaseLost:
            return None
        return self._send(moved)

    def _retry_exit(
        self, claim: Claim, held: LedgerPosition, *, resize_if_held_up: bool = True, after_sold: bool = False
    ) -> OrderResult:
        """Re-size and resend an exit that placed nothing, while its position is still open.

        `after_sold`: this is the re-size after another agent sold between a read and its sizing
        (`_resize_after_sold`); not checked for that again, as a new exit checks it once (a fill
        stamped at the very instant of the next read would else re-size it forever).
        """
        if held.is_flat or (claim.turn_id is not None and held.turn_id != claim.turn_id):
            reason = (
                f"exit {claim.client_order_id} not resent: the {claim.symbol} position it was for is "
                "closed (a decision that exited once never sells a later position)"
            )
            return OrderResult(Outcome.SKIPPED, claim, None, reason)
        # The read may still show shares the agent's own sell of moments ago took; past a phantom
        # they are another agent's (soak seed 37): waited out as a new exit does (gateway.py).
        shows_at = self.reconciler.own_exit_fills_settle_at(self.agent_id, claim.symbol, claim.side)
        if shows_at is not None and shows_at > self.clock.now():
            self.clock.sleep((shows_at - self.clock.now()).total_seconds())
        read_at = self.clock.now()
        read = self._broker_available(claim.symbol, held, read_at)
        if not isinstance(read, OrderResult) and read[2] is not None:
            # Other agents' unbooked fills the read may not show yet: waited out once and read
            # again, as a new exit does (`OrderGateway._size_exit`; audit 76).
            self._await_unbooked(claim.symbol, read[2])
            read_at = self.clock.now()
            read = self._broker_available(claim.symbol, held, read_at)
        if isinstance(read, OrderResult):
            return OrderResult(read.outcome, claim, None, read.reason, read.error)
        available, held_back, _shows_at = read
        read_done = self.clock.now()  # the resend's size is as old as this read (`_resize_if_held_up`)
        crashpoints.hit("exit_before_claim")
        try:
            pending, room = self.store.resend_exit(
                claim, owner=self.owner, broker_available=available,
                reason=f"sending again after {claim.state}: nothing was placed", detail={},
                broker_read_at=read_at,
            )  # fmt: skip
        except LeaseLost:
            fresh = reread(self.store, claim)
            return self._answer(fresh, held)
        if pending is None:
            self._reconcile_after_exit_error(claim.symbol)
            why = room.describe(claim.symbol) + (f" ({held_back})" if held_back else "")
            reason = f"exit {claim.client_order_id} not resent, nothing to sell: {why}"
            return OrderResult(Outcome.SKIPPED, claim, None, reason)
        # Another agent may have sold between the read and the sizing (its ledger lower, the read
        # not): as for a new exit, sized again (soak seed 19; audit 33 on this path).
        if not after_sold and self.reconciler.others_sold_since(
            self.agent_id, claim.symbol, claim.side, read_at
        ):
            why = OTHERS_SOLD_SINCE_READ + "; re-sizing the resend"
            return self._resize_after_sold(pending, why)
        # Another process of the agent may have sold after the wait above: sized against the
        # other agents' ledgers, the shares the read still shows would be theirs (soak seed 51).
        if self._own_sold_since_check(pending, held, room, read_at):
            why = "another order of this agent's filled after this resend checked for recent fills"
            return self._resize_after_sold(pending, f"{why}; re-sizing the exit once it shows")
        return self._send(pending, resize_if_held_up=resize_if_held_up, read_done=read_done)
