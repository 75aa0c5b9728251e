"""Cancel and replace through the guard: the claim an order belongs to follows what happens to it.

A cancel is sent to the broker and the claim adopts the answer (CANCELED with what filled, or
still live while the broker shows `pending_cancel`). A replace keeps the claim and its
client_order_id as the key: the claim records the new broker order id and size in the same step
(audited), and later lookups by the client_order_id follow the broker's replacement chain. An
exit may be replaced by a larger order only while what it leaves unfilled fits in what is held
minus the other exits in flight, sized like any exit (G3). Orders that belong to no claim of
this agent pass straight to the broker.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from tradeguard.domain import ACTIVE_STATES, BrokerOrder, Claim, OrderStatus, ReplaceRequest
from tradeguard.domain.intents import Kind, exit_group, leg_name
from tradeguard.domain.ledger import ExitRoom, LedgerPosition, SizingRead, size_exit
from tradeguard.domain.lifecycle import ACKNOWLEDGED_STATES, ClaimState
from tradeguard.errors import BrokerError, ConfigError, LeaseLost, StoreError, UnrecordedChange
from tradeguard.execution import CANCELED_BY_THE_BOT, adopt_order
from tradeguard.ports import EVERY_OPEN_ORDER, Broker, ClaimLedger, same_account

if TYPE_CHECKING:
    from datetime import datetime

    from tradeguard.clock import Clock
    from tradeguard.config import Settings
    from tradeguard.reconcile.runner import Reconciler
    from tradeguard.sessions.recorder import NullRecorder, Recorder

__all__ = ["CANCELED_BY_THE_BOT", "OrderAmendments", "cancel_asked", "unrecorded"]

_TAKEN_DOWN = frozenset({OrderStatus.CANCELED, OrderStatus.PENDING_CANCEL})


def unrecorded(error: StoreError, done: str) -> UnrecordedChange:
    """The store's failure to record what the broker did (`done`), said as what happened.

    The store's own message ends "nothing was sent", true of an order it failed to claim and
    false here: the cancel or replace reached the broker and stands there (audit 75).
    """
    failure = str(error).removesuffix("; nothing was sent")
    return UnrecordedChange(
        f"{done}, but the claim store could not record it ({failure}); no new order was placed, "
        "and the claim follows the broker on its next read"
    )


def cancel_asked(claim: Claim) -> bool:
    """Whether the broker took the bot's cancel of the claim's order and has not ended it yet."""
    return claim.state is ClaimState.SUBMITTED and claim.reason.startswith(CANCELED_BY_THE_BOT)


class OrderAmendments:
    """Mixin of `OrderGateway`: guarded cancel and replace."""

    broker: Broker
    store: ClaimLedger
    agent_id: str
    reconciler: Reconciler
    clock: Clock
    settings: Settings
    recorder: Recorder | NullRecorder

    def _ensure_started(self) -> None:
        raise NotImplementedError

    def refresh(self, symbol: str | None = None) -> None:
        """Adopt broker state for live claims (`OrderGateway.refresh`)."""
        raise NotImplementedError

    def _sizing_read(self, symbol: str, held: LedgerPosition, read_at: datetime) -> SizingRead:
        """Read what the broker offers an exit (`OrderGateway._sizing_read`)."""
        raise NotImplementedError

    def _await_unbooked(self, symbol: str, shows_at: datetime) -> None:
        """Wait until unbooked fills show in a read (`OrderGateway._await_unbooked`)."""
        raise NotImplementedError

    def cancel(self, order_id: str) -> Claim | None:
        """Cancel an order; return its claim after adopting the broker's answer (None: not ours).

        Raises:
            OrderRejected: The broker refused (unknown order, already final); the claim adopts
                the order's real state.
            BrokerError: The cancel could not be sent or its answer was lost.
        """
        self._ensure_started()
        claim = self.claim_of_order(order_id)
        try:
            self.broker.cancel_order(order_id)
        except BaseException as exc:
            self.recorder.canceled(claim, order_id, error=exc)  # a session replays it (rec39)
            if claim is not None:
                # The broker's answer is the one to give (as alpaca-py gives it): a store failing
                # to follow the order now changes nothing, and the next read follows it (audit 75).
                with contextlib.suppress(StoreError):
                    self._follow(claim, order_id)
            raise
        self.recorder.canceled(claim, order_id)
        if claim is not None:
            try:
                claim = self._follow(claim, order_id, asked=True)
            except StoreError as exc:
                raise unrecorded(exc, f"the broker took the cancel of order {order_id}") from exc
        return claim

    def cancel_all(self) -> list[tuple[BrokerOrder, BrokerError | None]]:
        """Cancel every open order of the account; return each with the refusal it met, if any.

        Like alpaca-py's `cancel_orders`, this is account-wide. Every claim of this agent then
        adopts its order's state.
        """
        try:
            results = self._cancel_all()
        except BaseException as exc:
            self.recorder.canceled(None, None, error=exc)
            raise
        self.recorder.canceled(None, None, canceled=sum(error is None for _, error in results))
        return results

    def _cancel_all(self) -> list[tuple[BrokerOrder, BrokerError | None]]:
        """`cancel_all`'s work (recorded by it as one event)."""
        self._ensure_started()
        live = self.store.list_claims(states=sorted(ACTIVE_STATES), agent_id=self.agent_id)
        results: list[tuple[BrokerOrder, BrokerError | None]] = []
        # Every open order, however many: the port refuses to truncate a listing at its cap, and
        # a grid bot may rest more than one page (alpaca-py's cancel_orders has no cap either).
        for order in self.broker.list_orders(status="open", limit=EVERY_OPEN_ORDER):
            if order.status.is_terminal:
                continue
            results.append(self._cancel_one(order))
        results += self._cancel_unlisted(live, {order.id for order, _ in results})
        # The agent's claims of the canceled orders adopt the result as canceled by the bot
        # (an identical order after it is a new decision, see `ContentWindows`); the rest of
        # its live claims adopt whatever the broker says.
        mine = {claim.broker_order_id: claim for claim in live if claim.broker_order_id is not None}
        try:
            for order, error in results:
                claim = mine.get(order.id) if error is None else None
                if claim is not None:
                    self._follow(claim, order.id, asked=True)
            self.refresh()
        except StoreError as exc:
            taken = sum(error is None for _, error in results)
            raise unrecorded(exc, f"the broker took the cancels of {taken} orders") from exc
        return self._with_their_groups(results, mine, live)

    def await_cancels(self, canceled: list[tuple[BrokerOrder, BrokerError | None]]) -> list[str]:
        """Wait, within one request timeout, until the broker has finished the cancels it took.

        Alpaca answers a cancel 204 and finishes it after (the order shows `pending_cancel`,
        its shares still held): a close right after `cancel_all` met them held and was refused
        403, where Alpaca's own ``DELETE /v2/positions?cancel_orders=true`` cancels and then
        closes (audit 56). One listing of the open orders tells which are still pending (on a
        broker that cancels at once, the only read); it is read again every half second (at most
        `settle_delay_secs`) until none is, or `request_timeout_secs` has passed. Returns the
        ids still not done (a failed listing: all of them; their shares stay held, and a close
        then meets Alpaca's 403 naming them).
        """
        waiting = {order.id for order, error in canceled if error is None}
        if not waiting:
            return []
        settings = self.settings
        step = min(settings.settle_delay_secs, 0.5)
        deadline = self.clock.now() + timedelta(seconds=settings.request_timeout_secs)
        while True:
            try:
                listed = self.broker.list_orders(status="open", limit=EVERY_OPEN_ORDER)
            except BrokerError:
                return sorted(waiting)
            still = {order.id for order in listed if order.id in waiting and not order.status.is_terminal}
            waiting &= still
            if not waiting or self.clock.now() >= deadline:
                return sorted(waiting)
            self.clock.sleep(step)

    def _cancel_one(self, order: BrokerOrder) -> tuple[BrokerOrder, BrokerError | None]:
        """Cancel `order`; return it with the refusal it met, if any."""
        try:
            self.broker.cancel_order(order.id)
        except BrokerError as exc:
            return order, exc
        return order, None

    def _cancel_unlisted(
        self, live: list[Claim], listed: set[str]
    ) -> list[tuple[BrokerOrder, BrokerError | None]]:
        """Cancel this agent's live orders that the open listing left out; return each with its refusal.

        Alpaca's listing of open orders leaves out `held` legs (an OTO's stop-loss after its
        parent filled), which its bulk cancel takes down with the rest; left resting, such a leg
        holds every share and the close that follows `cancel_orders=True` is refused 403 (audit
        16 #1). The agent's claims know its legs: each one still open at the broker (a group's
        cancel may have taken it down already) is canceled by id.
        """
        results: list[tuple[BrokerOrder, BrokerError | None]] = []
        for claim in live:
            order_id = claim.broker_order_id
            if order_id is None or order_id in listed:
                continue
            try:
                order = self.broker.get_order(order_id)
            except BrokerError:
                continue  # unread: the reconciler's to follow, as any live claim
            if order is None or order.status.is_terminal or order.status in _TAKEN_DOWN:
                continue
            results.append(self._cancel_one(order))
        return results

    def _with_their_groups(
        self,
        results: list[tuple[BrokerOrder, BrokerError | None]],
        mine: dict[str, Claim],
        live: list[Claim],
    ) -> list[tuple[BrokerOrder, BrokerError | None]]:
        """Add after each canceled order the orders of its group its cancel took down.

        Canceling one order of a bracket, OTO or OCO cancels the group, and Alpaca's bulk cancel
        answers once per order canceled, legs included; an open listing shows neither held legs
        nor, for a leg, its siblings. So the group is read back: a parent's legs from the order
        itself, a leg's siblings from this agent's leg claims (`leg:{parent id}:{leg id}`).
        """
        reported = {order.id for order, _ in results}
        answered: list[tuple[BrokerOrder, BrokerError | None]] = []
        for order, error in results:
            answered.append((order, error))
            if error is not None:
                continue
            for member in self._group_of(order, mine.get(order.id), live):
                if member.id not in reported and member.status in _TAKEN_DOWN:
                    reported.add(member.id)
                    answered.append((member, None))
        return answered

    def _group_of(self, order: BrokerOrder, claim: Claim | None, live: list[Claim]) -> list[BrokerOrder]:
        """Return the other orders of `order`'s group as the broker shows them now (reads may fail)."""
        ids: list[str] = []
        if claim is not None:
            prefix = leg_name(exit_group(claim.intent, claim.client_order_id), "")
            ids = [c.broker_order_id for c in live if c.intent.startswith(prefix) and c.broker_order_id]
        found: list[BrokerOrder] = []
        for order_id in [order.id, *ids]:
            try:
                now = self.broker.get_order(order_id)
            except BrokerError:
                continue  # the cancel stands; only the answer misses that order
            if now is not None:
                found += [now] if now.id != order.id else list(now.legs)
        return found

    def replace(self, order_id: str, request: ReplaceRequest) -> BrokerOrder:
        """Replace an open order; its claim keeps its key and records the new order.

        Raises:
            ConfigError: The replacement would leave an exit unfilled beyond what is held minus
                the other exits in flight.
            OrderRejected: The broker refused the change; the old order stands.
            BrokerError: The replace could not be sent or its answer was lost (a later lookup
                by the claim's client_order_id follows the replacement if it happened).
        """
        self._ensure_started()
        claim = self.claim_of_order(order_id)
        try:
            new = self._replace(order_id, request, claim)
        except BaseException as exc:
            self.recorder.replaced(claim, order_id, request, error=exc)  # a session replays it (rec39)
            raise
        self.recorder.replaced(claim, order_id, request, new=new)
        return new

    def _replace(self, order_id: str, request: ReplaceRequest, claim: Claim | None) -> BrokerOrder:
        """`replace`'s work: check an exit's growth against what is held, replace, record on the claim."""
        if (
            claim is not None
            and claim.kind is Kind.EXIT
            and request.qty is not None
            and claim.order_qty is not None
            and request.qty > claim.order_qty
        ):
            self.refresh(claim.symbol)  # fills since decide what is held and what is left of it
            claim = self.claim_of_order(order_id) or claim
            read_done = self._check_room(claim, request.qty)
            if (self.clock.now() - read_done).total_seconds() > self.settings.exit_resize_after_secs:
                # Held up since the read the room came from (frozen, stalled): meanwhile the account
                # may have been closed outside the bots and another agent bought again, and the old
                # room would hold that agent's shares (G3; audit 44). Sized once more from a new
                # read, as an exit held up before its POST is (`RetryAnswers._resize_if_held_up`).
                self._check_room(claim, request.qty)
        new = self.broker.replace_order(order_id, request)
        if claim is not None:
            try:
                self._record_replacement(claim, order_id, new)
            except StoreError as exc:
                raise unrecorded(exc, f"the broker replaced order {order_id} by order {new.id}") from exc
        return new

    def _check_room(self, claim: Claim, qty: Decimal) -> datetime:
        """Raise ConfigError if `claim`'s exit grown to `qty` would sell more than is held (G3).

        Returns when the reads the room was sized from were done.
        """
        room, read_done = self._room_beside(claim)
        if qty - claim.filled_qty > room.qty:
            most = claim.filled_qty + max(room.qty, Decimal(0))
            raise ConfigError(
                f"qty {qty} would sell more than is held: exit {claim.client_order_id} may "
                f"grow to {most} ({room.describe(claim.symbol)}, besides this exit)"
            )
        return read_done

    def _room_beside(self, exit_claim: Claim) -> tuple[ExitRoom, datetime]:
        """Size what `exit_claim`'s order may leave unfilled: held minus the other exits (G3).

        Returns the room and when the reads it was sized from were done.

        The same rule an exit is sized by (`size_exit`), with this exit (and the other orders
        of its group: a leg's siblings) left out of the exits in flight and its unfilled shares
        given back to the broker's `qty_available` (the broker holds them for this very group),
        less what is not the agent's to sell, read as an exit reads it (`OrderGateway._sizing_read`:
        other agents' unbooked fills, sales and holds a trailing read may not show). Other agents'
        unbooked fills the read may not show yet are waited out once and the broker read again,
        as a new exit does (`OrderGateway._await_unbooked`): held back from a read that does not
        show them, they were taken twice, and past a phantom the exit grew onto another agent's
        fresh shares (G3). Read without the symbol's lock: an exit claimed in the instant
        between this read and the replace is not seen, but the broker still refuses a
        replacement beyond `qty_available` and `*_to_close` never opens a short.

        Raises:
            BrokerError: The position, or an order of another agent in motion, could not be
                read; nothing is replaced.
        """
        symbol, mine = exit_claim.symbol, self.store.agent_accounts()
        account = mine.get(self.agent_id)
        held = self.store.position(self.agent_id, symbol)
        read = self._sizing_read(symbol, held, self.clock.now())
        if read.unbooked_shows_at is not None:
            self._await_unbooked(symbol, read.unbooked_shows_at)
            read = self._sizing_read(symbol, held, self.clock.now())
        active = self.store.list_claims(states=sorted(ACTIVE_STATES), symbol=symbol, kind=Kind.EXIT)
        # The exit's group (a leg's siblings, which the broker holds the same shares for) is
        # this exit too: left out of the others, its largest unfilled qty given back.
        group = exit_group(exit_claim.intent, exit_claim.client_order_id)
        ours = [exit_claim] + [
            c
            for c in active
            if c.agent_id == self.agent_id
            and c.key != exit_claim.key
            and exit_group(c.intent, c.client_order_id) == group
        ]
        own = max((c.order_qty or Decimal(0)) - c.filled_qty for c in ours)
        # What the read holds back may include this exit's own hold, when the read does not show
        # it yet (given back above as held, it would count twice; see `holds_the_read_misses`).
        available = read.available + own - read.held_back if read.on_side else Decimal(0)
        holders = {
            p.agent_id: p.qty
            for p in self.store.all_positions()
            if p.symbol == symbol and same_account(account, mine.get(p.agent_id))
        }
        holders[self.agent_id] = held.qty
        left_out = {c.key for c in ours}
        exits = [
            (
                c.agent_id,
                c.state in ACKNOWLEDGED_STATES,
                (c.order_qty or Decimal(0)) - c.filled_qty,
                exit_group(c.intent, c.client_order_id),
            )
            for c in active
            if c.key not in left_out
            and (c.agent_id == self.agent_id or same_account(account, mine.get(c.agent_id)))
            # Legs waiting for their entry are no exit in flight yet (`domain.ledger.legs_wait`).
            and not self.reconciler.legs_wait(c)
        ]
        room = size_exit(self.agent_id, holders, exits, broker_available=available, requested=None)
        return room, self.clock.now()  # the room is as old as the reads above

    def claim_of_order(self, order_id: str) -> Claim | None:
        """Return this agent's live claim whose current broker order is `order_id`, or None."""
        for claim in self.store.list_claims(states=sorted(ACTIVE_STATES), agent_id=self.agent_id):
            if claim.broker_order_id == order_id:
                return claim
        return None

    def _record_replacement(self, claim: Claim, old_id: str, new: BrokerOrder) -> None:
        """Record the new order and its terms on the claim; the terms first asked stay matchable."""
        state = claim.state if claim.state is not ClaimState.PENDING else ClaimState.SUBMITTED
        spec = claim.spec
        terms = replace(
            spec,
            qty=spec.qty if spec.qty is None or new.qty is None else new.qty,
            limit_price=new.limit_price if spec.limit_price is not None else None,
            stop_price=new.stop_price if spec.stop_price is not None else None,
            trail_price=new.trail_price if spec.trail_price is not None else None,
            trail_percent=new.trail_percent if spec.trail_percent is not None else None,
            time_in_force=new.time_in_force,
        )
        payload = {**terms.as_payload(), "first": claim.payload.get("first", claim.payload)}
        try:
            self.store.transition(
                claim, state, reason=f"order {old_id} replaced by {new.id} (qty {new.qty})",
                broker_order_id=new.id, order_qty=new.qty, payload=payload,
                detail={"replaced": old_id, "by": new.id, "qty": str(new.qty),
                        "limit_price": str(new.limit_price), "stop_price": str(new.stop_price)},
            )  # fmt: skip
        except LeaseLost:
            fresh = self.store.get(claim.key)
            if fresh is not None:
                adopt_order(self.store, fresh, new, f"replaced {old_id}")

    def _follow(self, claim: Claim, order_id: str, *, asked: bool = False) -> Claim:
        """Adopt the broker's state of the claim's order after a cancel (a failed read changes nothing).

        The order may have been replaced meanwhile (a replace whose answer was lost): the claim
        then follows the chain to the live replacement (`adopt_order` with the broker).

        `asked`: the broker took the cancel (Alpaca's 204). Alpaca cancels asynchronously: the
        order reads `pending_cancel` (or still open) for a while, and the claim would stay as it
        was, its later CANCELED read by whoever looks next with nothing saying the bot ended it;
        the same order sent again was then answered as a retry with the canceled order and
        never placed (audit 56). So an unfilled claim the read leaves live (or unread) records
        the bot's cancel as its reason (`CANCELED_BY_THE_BOT`), which `adopt_order` keeps when
        the order ends canceled.

        The bot's cancel is the reason only for the order the bot named, when the broker took the
        cancel or that order reads canceled (refused as canceled already, or the cancel's answer
        lost): the bot was told its order is gone. A cancel refused because the order was
        replaced ended nothing: the claim follows the chain to the live replacement under a
        reason of its own. Recorded as the bot's cancel, the reason stayed on the live claim
        (`cancel_asked`), and when someone else canceled the replacement later, the same order
        sent again inside the dedup window was placed anew instead of answered as a retry (G1),
        and a client_order_id sent again was refused as one "the bot canceled".
        """
        order = None
        with contextlib.suppress(BrokerError):  # a failed read is no evidence
            order = self.broker.get_order(order_id)
        if order is not None:
            named = order.status is not OrderStatus.REPLACED  # not followed to another order
            bots = named and (asked or order.status is OrderStatus.CANCELED)
            why = (
                CANCELED_BY_THE_BOT if bots else f"after a cancel of order {order_id} the broker did not take"
            )
            claim = adopt_order(self.store, claim, order, why, broker=self.broker)
        if asked and claim.state is ClaimState.SUBMITTED and claim.filled_qty == 0:
            claim = self._note_cancel_asked(claim, order_id)
        return claim

    def settle_cancel(self, claim: Claim) -> Claim:
        """Read once more the order of a claim whose cancel the bot asked for; adopt what it shows.

        Alpaca finishes a cancel after answering it: the claim of an order the bot canceled may
        still read `pending_cancel` when the bot sends the same order again. Whether that ended
        the decision (canceled) or not (it filled first) is the broker's to say, read now; a
        claim without such a cancel, or a failed read, is returned as it is (G2).
        """
        if not cancel_asked(claim):
            return claim
        try:
            order = self.broker.get_order_by_client_id(claim.client_order_id)
        except BrokerError:
            return claim
        if order is None:
            return claim
        return adopt_order(self.store, claim, order, "refreshed from the broker", broker=self.broker)

    def _note_cancel_asked(self, claim: Claim, order_id: str) -> Claim:
        """Record on the claim that the broker took the bot's cancel of its order (see `_follow`)."""
        if claim.broker_order_id != order_id or claim.reason.startswith(CANCELED_BY_THE_BOT):
            return claim  # not the claim's current order (a replaced one), or noted already
        try:
            return self.store.transition(
                claim, ClaimState.SUBMITTED, reason=f"{CANCELED_BY_THE_BOT}: cancel requested",
                broker_order_id=order_id, detail={"cancel_requested": order_id},
            )  # fmt: skip
        except LeaseLost:
            return self.store.get(claim.key) or claim  # moved meanwhile: its own state stands
