"""Sending one claimed order and recording the broker's answer: shared by gateway and reconciler.

A claim is sent only while PENDING and owned by the sender. The broker's answer becomes a claim
transition: an acknowledgement adopts the order's state, a definite refusal REJECTED, a request
that never left NOT_SENT, and an ambiguous one UNKNOWN (resolved later by client_order_id).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from tradeguard import crashpoints
from tradeguard.domain import BrokerOrder, Claim, OrderClass, OrderStatus, PositionIntent, RejectKind, Side
from tradeguard.domain.frozen import fast_frozen_init
from tradeguard.domain.intents import Intent, Kind, OrderSpec, is_leg, leg_name
from tradeguard.domain.lifecycle import TRANSITIONS, ClaimState, state_for_order
from tradeguard.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    LeaseLost,
    OrderRejected,
    OutcomeUnknown,
    StoreError,
    UnrecordedOrder,
)
from tradeguard.ports import Broker, ClaimLedger, account_key_of, coid_scope

__all__ = [
    "CANCELED_BY_THE_BOT",
    "OrderResult",
    "Outcome",
    "adopt_order",
    "elsewhere_reason",
    "held_elsewhere",
    "MAX_CHAIN_HOPS",
    "foreign_chain",
    "is_position_rejection",
    "may_have_placed",
    "mismatch",
    "reread",
    "retry_unrecorded",
    "send_claim",
    "track_legs",
]

_T = TypeVar("_T")

CANCELED_BY_THE_BOT = "canceled by the bot through the guard"
"""The reason a claim records when the bot cancels its order through the guard (`amend`).

Recorded while the cancel is pending too (Alpaca answers a cancel 204 and shows the order
`pending_cancel` until it is done); `adopt_order` keeps it when the order then ends canceled,
so the decision reads as ended by the bot whoever reads the broker's final answer.
"""


class Outcome(enum.StrEnum):
    """What a call to `enter`, `exit` or `submit` did."""

    SUBMITTED = "submitted"  # sent now and acknowledged by the broker
    DUPLICATE = "duplicate"  # a retry of a known decision: nothing was sent
    REJECTED = "rejected"  # the broker refused it (now, or on an earlier attempt)
    UNKNOWN = "unknown"  # sent, no definite answer yet; resolved by lookup, never resent blind
    NOT_SENT = "not_sent"  # never reached the broker; calling again is safe
    SKIPPED = "skipped"  # nothing to do (an exit with nothing to sell)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class OrderResult:
    """The answer to one gateway call.

    Attributes:
        outcome: What happened.
        claim: The claim for the decision (None when nothing was claimed, e.g. an exit on flat).
        order: The broker's order, fetched fresh for a duplicate; None when there is none (yet).
        reason: A sentence for logs.
        error: The broker error behind REJECTED, UNKNOWN or NOT_SENT.
    """

    outcome: Outcome
    claim: Claim | None
    order: BrokerOrder | None
    reason: str
    error: BrokerError | None = None

    @property
    def sent(self) -> bool:
        """True when this call placed the order."""
        return self.outcome is Outcome.SUBMITTED


def is_position_rejection(error: BrokerError) -> bool:
    """True for a refusal saying the broker holds less than the order assumed (a phantom candidate)."""
    return isinstance(error, OrderRejected) and error.kind.is_position


def mismatch(claim: Claim, order: BrokerOrder) -> str | None:
    """Return why `order` cannot be the claim's order (another symbol, side, size or chain), or None.

    A client_order_id chosen by a caller can already name an order placed outside the guard, or
    a replacement of another claim's order (`ReplaceRequest.client_order_id`); adopting it would
    book another order's fills against this decision (G2). A replacement is this claim's when
    it is the order the claim recorded or replaced that one; one that carries the claim's id
    itself replaced some other order (ids are unique at the broker, so the claim's own first
    order cannot carry it too). A replacement reached by following the claim's id through the
    chain may differ in size; `adopt_order` checks its chain (`foreign_chain`). So may, smaller,
    an order of a bracket or OCO that the broker cut when another order of its group partly
    filled (`_cut_by_its_group`); the claim then records the new size.
    """
    spec = claim.spec
    wanted_qty = claim.order_qty if claim.order_qty is not None else spec.qty
    problems = []
    # Each test starts with the common case (the same symbol, the same side member): no string work.
    if order.symbol != claim.symbol and order.symbol.replace("/", "") != claim.symbol.replace("/", ""):
        problems.append(f"symbol {order.symbol} != {claim.symbol}")
    if order.side is not claim.side and order.side.value != claim.side:
        problems.append(f"side {order.side} != {claim.side}")
    if order.replaces is None:
        if (
            wanted_qty is not None
            and order.qty is not None
            and order.qty != wanted_qty
            and not (order.qty < wanted_qty and _cut_by_its_group(claim, order))
        ):
            problems.append(f"qty {order.qty} != {wanted_qty}")
    elif claim.client_order_id == order.client_order_id and claim.broker_order_id not in (
        order.id,
        order.replaces,
    ):
        problems.append(f"a replacement of order {order.replaces}, which is not this claim's")
    if spec.notional is not None and order.notional is not None and order.notional != spec.notional:
        problems.append(f"notional {order.notional} != {spec.notional}")
    if not problems:
        return None
    return _taken(claim, order, ", ".join(problems))


def _cut_by_its_group(claim: Claim, order: BrokerOrder) -> bool:
    """True when `order` may be the claim's own order with its quantity cut by the broker.

    Of a group's orders (a bracket's legs, an OCO's limit order and its stop-loss leg) only one
    fills: when one partly fills, Alpaca adjusts the others "to the remaining quantity" under
    their own ids (no replacement). A leg's claim is named after the broker's own ids
    (`track_legs`), so only that order carries its id; an OCO's claim has the order's class.
    """
    return is_leg(claim.intent) or (
        claim.spec.order_class is OrderClass.OCO and order.order_class is OrderClass.OCO
    )


def _taken(claim: Claim, order: BrokerOrder, problems: str) -> str:
    return (
        f"client_order_id {claim.client_order_id} is taken by another order at the broker "
        f"(id {order.id}: {problems}); this decision was not placed under it"
    )


def foreign_chain(
    store: ClaimLedger, claim: Claim, order: BrokerOrder, broker: Broker | None = None
) -> str | None:
    """Return why a replacement reached through the claim's id is in another claim's chain, or None.

    Only a replacement beyond what the claim recorded is checked (no work on the common path).
    The broker, when given, is read back along `replaces` to the order that carries the claim's
    id: the claim's own chain starts there (or passes its recorded order); a chain whose order
    under that id replaced another order is not the claim's. Without a broker (or when a read
    fails), another claim that recorded the order or its predecessor (a replace through the
    guard) marks it as that claim's; otherwise the order is taken as reached through the
    claim's own id, as the port promises.
    """
    if order.replaces is None or claim.broker_order_id in (order.id, order.replaces):
        return None
    if broker is not None:
        own = _own_chain(broker, claim, order)
        if own is not None:
            return None if own else _taken(claim, order, "its chain of replacements is another order's")
    for other in store.list_claims(symbol=claim.symbol):
        if other.key != claim.key and other.broker_order_id in (order.id, order.replaces):
            return _taken(claim, order, f"the replacement of claim {other.client_order_id}'s order")
    return None


def _derived(claim: Claim) -> bool:
    """Whether the claim's id is derived from its own key (`derive_client_order_id`): no other claim's."""
    return claim.client_order_id.endswith("-" + claim.key[:32])


def held_elsewhere(store: ClaimLedger, claim: Claim, broker: Broker | None) -> str | None:
    """Return why an order under the claim's id at `broker`'s account cannot be the claim's, or None.

    A caller's id is unique per broker account, not per store (`ports.coid_scope`, migration
    0012): bots on two accounts may both hold "entry-1". On one account the order under an id
    is that of the claim holding the id in the account's scope; when that claim is another one
    (or none: the claim's id is scoped to another account, its agent re-pointed since), an
    order found there under the id is another agent's, and one sent there would be adopted by
    that account's claim. A claim recorded on another known account than the broker's
    (`Claim.on_other_account`: its agent re-pointed since) is never this broker's, whatever
    its id: the order it sent is on its own account. Derived ids (no other claim carries one)
    and a call without a broker are not read: no store read on the common path.
    """
    if broker is None:
        return None
    if claim.coid_scope and claim.on_other_account(coid_scope(account_key_of(broker))):
        return elsewhere_reason(claim)
    if _derived(claim):
        return None
    holder = store.get_by_client_order_id(claim.client_order_id, account_key=account_key_of(broker))
    if holder is not None and holder.key == claim.key:
        return None
    where = "another claim holds it" if holder is not None else "this claim holds it on another account"
    return (
        f"client_order_id {claim.client_order_id} is not this claim's on the broker's account "
        f"({where}: ids are unique per account)"
    )


def elsewhere_reason(claim: Claim) -> str:
    """Return why a claim of another broker account (`Claim.on_other_account`) is left as it is."""
    return (
        f"claim {claim.client_order_id} ({claim.state}) was made on another broker account "
        f"({claim.coid_scope}): this broker's account says nothing of its order, so it is left as "
        "it is, never resent, settled or adopted here; that account's broker resolves it"
    )


MAX_CHAIN_HOPS = 16  # replacements followed at most (`foreign_chain`, the reconciler's listing)


def _own_chain(broker: Broker, claim: Claim, order: BrokerOrder) -> bool | None:
    """Walk `order`'s chain back: True if it comes from the claim's order, None if unreadable."""
    current = order
    for _ in range(MAX_CHAIN_HOPS):
        if current.id == claim.broker_order_id:
            return True
        if current.client_order_id == claim.client_order_id:
            return current.replaces is None  # the claim's id on a replacement: another order's chain
        if current.replaces is None:
            return False  # a first order under another id: the claim's id is on no order here
        try:
            previous = broker.get_order(current.replaces)
        except BrokerError:
            return None
        if previous is None:
            return None
        current = previous
    return None


def adopt_order(
    store: ClaimLedger,
    claim: Claim,
    order: BrokerOrder,
    why: str,
    *,
    broker: Broker | None = None,
    id_checked: bool = False,
) -> Claim:
    """Move `claim` to the broker's state for `order`; a no-op when nothing changed.

    A move the table forbids (e.g. a terminal claim) is left alone: broker evidence can only
    move a claim forward. An order that is not this claim's (see `mismatch` and
    `foreign_chain`, which reads `broker` when given) is never adopted: the claim becomes
    REJECTED with `RejectKind.ID_TAKEN` and the ledger is untouched. Nor is one under an id
    that on `broker`'s account is not this claim's (`held_elsewhere`; not read when
    `id_checked`: the answer to this claim's own POST, or checked by the caller): the claim is
    left as it is, as that account says nothing of its own order. A replaced order is
    followed through `broker` to the live order of its chain (without a broker it leaves the
    claim live: a replaced order never ends a decision).
    """
    if order.status is OrderStatus.REPLACED and broker is not None:
        # The port's lookup by client_order_id answers with the live order of the chain; an
        # unreadable one leaves the replaced order, which keeps the claim live for a later read.
        with contextlib.suppress(BrokerError):
            order = broker.get_order_by_client_id(claim.client_order_id) or order
    if order.id == claim.broker_order_id and not order.legs and _unchanged(claim, order):
        # The order the claim recorded (its own POST's answer, or an adoption that passed the
        # checks below: a broker's order id names one order on one account), as recorded: the
        # common answer to a retry of a decision already sent.
        return claim
    problem = mismatch(claim, order) or foreign_chain(store, claim, order, broker)
    if problem is None and not id_checked and held_elsewhere(store, claim, broker) is not None:
        # Another claim's order, on an account this claim's id is not scoped to: no evidence of
        # this claim's own order either way (its account's broker resolves it). Left as it is.
        return claim
    if problem is not None:
        if ClaimState.REJECTED not in TRANSITIONS[claim.state]:
            return claim
        try:
            return store.transition(
                claim, ClaimState.REJECTED, reason=problem, reject_kind=RejectKind.ID_TAKEN,
                detail={"other_order_id": order.id, "other_symbol": order.symbol,
                        "other_side": order.side.value},
            )  # fmt: skip
        except LeaseLost:
            return reread(store, claim)
    if order.legs:
        track_legs(store, claim, order)
    state = state_for_order(order.status, order.filled_qty > 0)
    if state is ClaimState.CANCELED and claim.reason.startswith(CANCELED_BY_THE_BOT):
        # The bot asked for this cancel and the broker has now done it (any reader: a refresh,
        # a retry's duplicate, a reconcile pass): it stays the bot's cancel.
        why = CANCELED_BY_THE_BOT
    if (claim.broker_order_id == order.id and _unchanged(claim, order)) or state not in TRANSITIONS[
        claim.state
    ]:
        return claim
    try:
        return store.transition(
            claim,
            state,
            reason=f"{why}: {order.status}",
            broker_order_id=order.id,
            filled_qty=max(order.filled_qty, claim.filled_qty),
            filled_avg_price=order.filled_avg_price,
            order_qty=order.qty,
        )
    except LeaseLost:
        fresh = reread(store, claim)
        if fresh.state is claim.state:
            return fresh
        return adopt_order(store, fresh, order, why, broker=broker, id_checked=id_checked)


def _unchanged(claim: Claim, order: BrokerOrder) -> bool:
    """Whether the claim records `order`'s state, fills and size already."""
    return (
        state_for_order(order.status, order.filled_qty > 0) is claim.state
        and order.filled_qty == claim.filled_qty
        # a size the broker changed in place (a group's order cut by its sibling's fill)
        and (order.qty is None or claim.order_qty is None or order.qty == claim.order_qty)
    )


def reread(store: ClaimLedger, claim: Claim) -> Claim:
    """Read `claim` again after a move lost its compare-and-set; StoreError if the store lost it.

    Claims are never deleted, so a claim that is gone means the store is not the one it was
    written to (a claim service restarted on another database): a store failure, which after
    a POST the caller hears as `UnrecordedOrder`, never a bare error for a placed order.
    """
    fresh = store.get(claim.key)
    if fresh is None:
        raise StoreError(
            f"claim {claim.client_order_id} is not in the claim store it was recorded in (a store "
            "behind the claim service replaced by another database?)"
        )
    return fresh


def track_legs(store: ClaimLedger, parent: Claim, order: BrokerOrder) -> None:
    """Give each leg of a bracket, OTO or OCO order an exit claim, and adopt the leg's state.

    A leg is an order of its own that closes what the parent opened (or, for an OCO, the same
    position), so it is tracked as one of the position's exits: its fills move the ledger and
    its cancellation is adopted like any exit's. The leg's claim is keyed by the parent's and
    the leg's client_order_ids, so seeing the parent again never makes a second one; a leg that
    replaced another (a new id in its place) stays with the claim of the leg it replaced.
    """
    for leg in order.legs:
        name = leg_name(parent.client_order_id, leg.client_order_id)
        intent = Intent(parent.agent_id, Kind.EXIT, parent.symbol, leg.side, name)
        claim = store.get(intent.key)
        if claim is None and leg.replaces is not None:
            claim = _replaced_leg(store, parent, leg)
        if claim is None:
            closes = PositionIntent.SELL_TO_CLOSE if leg.side is Side.SELL else PositionIntent.BUY_TO_CLOSE
            spec = OrderSpec(
                qty=leg.qty, order_type=leg.order_type, time_in_force=leg.time_in_force,
                limit_price=leg.limit_price, stop_price=leg.stop_price, position_intent=closes,
                trail_price=leg.trail_price, trail_percent=leg.trail_percent,
            )  # fmt: skip
            claim = store.claim(
                intent, spec, owner=parent.owner, client_order_id=leg.client_order_id,
                order_qty=leg.qty, reason=f"leg of {parent.client_order_id} ({order.order_class})",
            ).claim  # fmt: skip
        adopt_order(store, claim, leg, f"leg of {parent.client_order_id}")


def _replaced_leg(store: ClaimLedger, parent: Claim, leg: BrokerOrder) -> Claim | None:
    """Return the claim of the leg `leg` replaced (its order or its predecessor), or None."""
    prefix = leg_name(parent.client_order_id, "")
    for claim in store.list_claims(agent_id=parent.agent_id, symbol=parent.symbol, kind=Kind.EXIT):
        if claim.intent.startswith(prefix) and claim.broker_order_id in (leg.id, leg.replaces):
            return claim
    return None


def _id_taken(claim: Claim) -> OrderResult | None:
    if claim.state is ClaimState.REJECTED and claim.reject_kind is RejectKind.ID_TAKEN:
        error = OrderRejected(claim.reason, kind=RejectKind.ID_TAKEN, status_code=422)
        return OrderResult(Outcome.REJECTED, claim, None, claim.reason, error)
    return None


def send_claim(
    broker: Broker,
    store: ClaimLedger,
    claim: Claim,
    *,
    recheck: Callable[[Claim], OrderResult | None] | None = None,
) -> OrderResult:
    """Send a PENDING claim and record the answer; an ambiguous answer gets one lookup.

    Right before the POST the claim's lease is checked and renewed if it is nearly out (a
    sender that froze after claiming must not send on a lease another worker may act on).
    Then `recheck`, if given, sees the fenced claim right before the POST: an answer from it is
    returned instead of sending (the gateway re-sizes an exit whose sender was held up since
    sizing it).

    Raises:
        LeaseLost: The claim is no longer this sender's to send; nothing was sent.
        UnrecordedOrder: The order was sent but the store failed to record the answer; the
            claim is resolved by client_order_id on the next call or reconcile pass.
        StoreError: The store failed before the send; nothing was sent.
    """
    crashpoints.hit("after_claim")
    claim = store.fence_before_send(claim)
    crashpoints.hit("before_post")
    # Once more, for a sender held up right here (after its check, before its POST): a lease that
    # no longer outlasts one request is renewed or lost (a clock comparison otherwise, no I/O even
    # for a remote store), and an exit held up since it was sized is re-sized (`recheck`, run
    # here only: nothing happens between the two checks). What is left is the instant to the socket.
    if not store.settings.lease_outlasts_one_request(claim.lease_expires_at, store.clock.now()):
        claim = store.fence_before_send(claim)
    if recheck is not None:
        answer = recheck(claim)
        if answer is not None:
            return answer
    if claim.attempts > 1 or claim.epoch > 1:
        # A resend or a taken-over claim, maybe of an agent re-pointed to another account since
        # the claim: its caller's id must be its own on this broker's account (`held_elsewhere`),
        # else the order would land under an id that account's claim holds, and be adopted by
        # it. A fresh claim needs no read: its id was scoped to the account its agent registered
        # at start, this broker's.
        elsewhere = held_elsewhere(store, claim, broker)
        if elsewhere is not None:
            refused = store.transition(
                claim, ClaimState.REJECTED, reason=elsewhere, reject_kind=RejectKind.ID_TAKEN
            )
            return OrderResult(
                Outcome.REJECTED, refused, None, elsewhere,
                OrderRejected(elsewhere, kind=RejectKind.ID_TAKEN, status_code=422),
            )  # fmt: skip
    try:
        order = broker.submit_order(claim.request())
    except OrderRejected as exc:
        crashpoints.hit("after_post")
        if exc.kind is RejectKind.DUPLICATE_ID:
            # "client_order_id must be unique": the order exists (an earlier send landed late).
            # Whatever the broker adapter did not adopt is resolved like any ambiguous answer.
            return _recorded(partial(_unknown, broker, store, claim, exc), claim)
        return _refused(broker, store, claim, exc)
    except BrokerUnavailable as exc:
        crashpoints.hit("after_post")
        unsent = store.transition(claim, ClaimState.NOT_SENT, reason=f"not sent: {exc.message}")
        return OrderResult(Outcome.NOT_SENT, unsent, None, exc.message, exc)
    except OutcomeUnknown as exc:
        crashpoints.hit("after_post")
        return _recorded(partial(_unknown, broker, store, claim, exc), claim)
    crashpoints.hit("after_post")
    adopted = _recorded(
        partial(
            adopt_order, store, claim, order, "acknowledged by the broker", broker=broker, id_checked=True
        ),
        claim,
    )
    taken = _id_taken(adopted)
    if taken is not None:
        return taken
    return OrderResult(Outcome.SUBMITTED, adopted, order, f"sent as {adopted.client_order_id}")


def _refused(broker: Broker, store: ClaimLedger, claim: Claim, exc: OrderRejected) -> OrderResult:
    """Record a definite refusal of `claim`'s POST, after one lookup by its client_order_id.

    Alpaca's refusals are nearly always what they say, but errors have come back for orders
    that were in fact placed (ALPACA.md): told "rejected", a bot would decide again and buy
    twice, and the ledger would miss the shares. So the order is looked up once; found, it is
    adopted (the decision was sent; `adopt_order` refuses an order that is not this claim's).
    A lookup that fails leaves the broker's refusal standing: it said so in as many words.
    """
    try:
        found = broker.get_order_by_client_id(claim.client_order_id)
    except BrokerError:
        found = None
    if found is not None and _recorded(partial(held_elsewhere, store, claim, broker), claim) is not None:
        found = None  # another claim's order on this account (ids are unique per account)
    if found is not None:
        why = f"found by client_order_id after the broker answered {exc.status_code}: {exc.message}"
        adopt = partial(adopt_order, store, claim, found, why, broker=broker, id_checked=True)
        adopted = _recorded(adopt, claim)
        taken = _id_taken(adopted)
        if taken is not None:
            return taken
        if adopted.state is ClaimState.REJECTED:  # an order the broker holds as rejected: the same answer
            return OrderResult(Outcome.REJECTED, adopted, found, exc.message, exc)
        reason = f"sent as {adopted.client_order_id} (answered {exc.message!r}, yet the broker has it)"
        return OrderResult(Outcome.SUBMITTED, adopted, found, reason)
    try:
        rejected = store.transition(
            claim, ClaimState.REJECTED, reason=f"rejected ({exc.kind}): {exc.message}",
            reject_kind=exc.kind,
            detail={"status": exc.status_code, "code": exc.code, "body": exc.body},
        )  # fmt: skip
    except StoreError as failed:
        raise StoreError(
            f"the broker refused {claim.client_order_id} (nothing placed: {exc.message}) but the "
            f"refusal could not be recorded: {failed}"
        ) from failed
    return OrderResult(Outcome.REJECTED, rejected, None, exc.message, exc)


def _recorded(record: Callable[[], _T], claim: Claim) -> _T:
    """Run `record` (the store write after a POST); a store failure becomes UnrecordedOrder.

    A refusal of the caller's key (`ConfigError`: a claim service's 401/403, the key revoked
    while the order was in flight) is a failure to record as well: the order was placed.
    """
    try:
        return record()
    except (StoreError, ConfigError) as exc:
        # The store's own wording ends "nothing was sent", true before a POST, false after it.
        failure = str(exc).removesuffix("; nothing was sent")
        raise UnrecordedOrder(
            f"order {claim.client_order_id} was sent but the claim store failed before recording "
            f"the answer ({failure}); the order may be at the broker. Call again with the same decision "
            "(or run a reconcile pass) once the store works: it is looked up by client_order_id, "
            "never sent twice"
        ) from exc


def may_have_placed(claim: Claim) -> bool:
    """Whether `claim`'s order may be (or is) at the broker: sent, or being sent, and not refused.

    NOT_SENT and REJECTED claims placed nothing under their id (a refusal, an id that names
    another order, a request that never left); every other state was sent or is about to be.
    """
    return claim.state is not ClaimState.NOT_SENT and claim.state is not ClaimState.REJECTED


def retry_unrecorded(claim: Claim, exc: StoreError) -> UnrecordedOrder:
    """Return the error for a store failure while a call of `claim`'s decision was answered.

    The store's own wording ("nothing was sent") is true of this call, yet the decision's order
    may be at the broker, sent by an earlier attempt (a retry often comes right after an
    `UnrecordedOrder`, while the store still fails): told "nothing was sent", a bot would take
    the decision for unplaced and decide again (G1). So the caller gets an `OutcomeUnknown`.
    """
    failure = str(exc).removesuffix("; nothing was sent")
    return UnrecordedOrder(
        f"order {claim.client_order_id} of this decision ({claim.state} in the claim store) may be at "
        f"the broker; the claim store failed while this call was answered ({failure}), and this call "
        "sent nothing. Call again with the same decision (or run a reconcile pass) once the store "
        "works: it is looked up by client_order_id, never sent twice"
    )


def _unknown(broker: Broker, store: ClaimLedger, claim: Claim, exc: BrokerError) -> OrderResult:
    """Record an ambiguous send as UNKNOWN, then look it up once: most such orders landed.

    The POST went out, so a claim another worker moved meanwhile (a sender that froze past its
    lease check, whose claim the reconciler marked NOT_SENT and maybe resent) is never reported
    as not sent: the order is looked up and adopted onto the claim as it now is. Whose send
    placed it is then said only when known: a POST refused as a duplicate id placed nothing
    (DUPLICATE); a lost answer may have placed it or not (UNKNOWN, with the order).
    """
    moved = False
    try:
        claim = store.transition(
            claim,
            ClaimState.UNKNOWN,
            reason=f"outcome unknown: {exc.message}",
            detail={"status": exc.status_code},
        )
    except LeaseLost:
        claim, moved = reread(store, claim), True
    try:
        found = broker.get_order_by_client_id(claim.client_order_id)
    except BrokerError:
        found = None
    if found is not None and held_elsewhere(store, claim, broker) is not None:
        found = None  # another claim's order on this account (ids are unique per account)
    if found is None:
        return OrderResult(Outcome.UNKNOWN, claim, None, exc.message, exc)
    why = "found by client_order_id after an ambiguous send"
    claim = adopt_order(store, claim, found, why, broker=broker, id_checked=True)
    taken = _id_taken(claim)
    if taken is not None:
        return taken
    if moved:
        if isinstance(exc, OrderRejected):  # "client_order_id must be unique": another send placed it
            reason = f"{claim.client_order_id} was placed by another send of this decision; nothing sent now"
            return OrderResult(Outcome.DUPLICATE, claim, found, reason)
        reason = (
            f"{claim.client_order_id} is at the broker; another worker moved its claim while this "
            "send's answer was lost, so which send placed it is unknown"
        )
        return OrderResult(Outcome.UNKNOWN, claim, found, reason, exc)
    return OrderResult(
        Outcome.SUBMITTED, claim, found, f"sent as {claim.client_order_id} (confirmed by lookup)"
    )
