"""The three ways a replay guards the bot: one paper account per mode, on a manual clock.

- `NoGuard` (`none`): every attempt goes straight to the broker as the bot sent it (its own
  client_order_id when it recorded one, else a fresh one); the bot's position belief is the
  session's own (`position`, view `bot`).
- `EntryOnlyGuard` (`entry-only`): the published guard of the time. Attempts from the bot's
  order path are claimed under SafeAgent's key `order:<SYM>:<side>:<qty>:<bar>` and a second
  attempt with a claimed key is blocked; exits go straight through; no reconciliation.
- `FullGuard` (`full`): tradeguard. Entries through `OrderGateway.enter`, exits through
  `OrderGateway.exit` (with the decision as the intent), on an in-memory claim store, with a
  reconcile pass every `Settings.reconcile_every_secs` of session time (and when a put-off symbol
  comes due), as a live gateway schedules them, so a phantom clears within the header's
  `reconcile_interval_secs` (G4). Entries are decided by the
  guard's ledger, so that is the position view.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from replay.broker import ReplayBroker, plan_for
from replay.metrics import AttemptOutcome, Metrics, Mode, Totals
from tradeguard import (
    AnswerEvent,
    AttemptEvent,
    BrokerError,
    BrokerOrder,
    CancelEvent,
    ClaimState,
    ExternalEvent,
    Intent,
    Kind,
    ManualClock,
    MemoryClaimStore,
    OrderClass,
    OrderGateway,
    OrderRejected,
    OrderRequest,
    OrderResult,
    OrderSpec,
    OrderType,
    PaperBroker,
    PositionEvent,
    PositionIntent,
    PriceEvent,
    ReconcileReport,
    Recorder,
    ReplaceEvent,
    ReplaceRequest,
    SessionHeader,
    Settings,
    Side,
    TimeInForce,
    TradeguardError,
)

__all__ = [
    "FORGET_ABOVE",
    "RETRY_HORIZON_SECS",
    "EntryOnlyGuard",
    "FullGuard",
    "NoGuard",
    "Simulation",
    "make_simulation",
    "safeagent_key",
    "session_zone",
]

# Claims whose state a later pass may still change by time alone (resolved after their grace).
_IN_MOTION = [ClaimState.PENDING, ClaimState.SUBMITTED, ClaimState.PARTIALLY_FILLED, ClaimState.UNKNOWN]

_ZERO = Decimal(0)

RETRY_HORIZON_SECS = 3600.0
"""A decision's attempts all come within this much session time of its first (see `Simulation`)."""

FORGET_ABOVE = 4096
"""A mode's account forgets its past only once it holds more than this many orders, claims or
audit records: a session of a day (the May 21 one has a few dozen) keeps everything."""

_FORGET_EVERY = timedelta(seconds=60)

_MAX_ORDERS_OF = 4 * FORGET_ABOVE
"""How many decisions' latest orders a mode remembers for the cancels and replaces that name them."""

Sent = tuple[str | None, str, "BrokerOrder | None"]
"""What driving an attempt did: the client id whose order is still to be looked up (None: none
is: nothing was sent, the broker answered, or the mode looked it up itself), a phrase, the order
placed for the attempt (None: none, or not known yet)."""


def _num(value: Decimal) -> str:
    return format(value.normalize(), "f")


def session_zone(header: SessionHeader) -> tzinfo:
    """Return the zone the session's times are shown in (its header's, else its start's offset)."""
    try:
        return ZoneInfo(header.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = header.start.tzinfo
        assert zone is not None  # the header's start is an aware time
        return zone


def safeagent_key(event: AttemptEvent) -> str:
    """Return the key the entry-only guard of the time claimed: `order:<SYM>:<side>:<qty>:<bar>`."""
    size = _num(event.qty) if event.qty is not None else f"${_num(event.notional or _ZERO)}"
    bar = event.bar.isoformat() if event.bar is not None else event.decision
    return f"order:{event.symbol}:{event.side}:{size}:{bar}"


class Simulation:
    """One mode's account: a paper broker and the figures, driven event by event.

    Memory follows the live account, not the session's length: once a minute of session time,
    if the account holds more than `forget_above` orders (or, in `full`, claims or audit
    records), it forgets what no later event can read. A decision's attempts come within
    `RETRY_HORIZON_SECS` of its first, so whatever was last touched before that horizon belongs
    to decisions that are over: terminal orders (`PaperBroker.forget_terminal_orders`), resolved
    claims (`MemoryClaimStore.prune_resolved`, which keeps what the reconciler still reads) and
    the replay's own per-decision counts. The figures never read the audit log (they are the
    replay's own, `Metrics`): once it holds more than `forget_above`, only its last
    `forget_above // 2` are kept (a cheap trim, with no walk over the rest). A session that
    retries a decision (or reuses a client_order_id, or, in `entry-only`, a bar's key) later
    than the horizon would replay it as new; `forget_above=None` keeps everything.

    Args:
        header: The session header (start, cash, shorting, reconcile interval).
        track: Keep the position history for plots.
        forget_above: Forget the past once more than this many objects are kept (None: never).
    """

    mode = Mode.NONE
    # Called with a terminal order's client_order_id by `forget_before`: True keeps the order.
    _keep_order: Callable[[str], bool] | None = None

    def __init__(
        self, header: SessionHeader, *, track: bool = False, forget_above: int | None = FORGET_ABOVE
    ) -> None:
        self.header = header
        self.clock = ManualClock(header.start.astimezone(UTC))
        self.forget_above = forget_above
        self._horizon = timedelta(seconds=RETRY_HORIZON_SECS)
        self._next_forget = self.clock.now() + _FORGET_EVERY
        self.paper = PaperBroker(clock=self.clock, cash=header.cash, allow_short=header.allow_short)
        self.broker = ReplayBroker(self.paper, self.clock)
        self.metrics = Metrics(self.mode, tz=session_zone(header), track=track)
        self.symbols: dict[str, None] = {}
        self.belief: dict[str, Decimal] = {}
        self._sent = 0
        # Each decision's latest order here (its broker id; `full`: its claim's client id), for the
        # cancels and replaces that name the decision (bounded: the oldest are forgotten first).
        self._orders_of: OrderedDict[str, str] = OrderedDict()

    # -- events ------------------------------------------------------------------------------

    def advance(self, when: datetime) -> datetime:
        """Move the clock to `when` (never back: a reconcile pass may have waited past it).

        Returns `when` in UTC (the figures keep their times so: they compare them later).
        """
        # The clock is kept in UTC: the store and the broker read it several times per order, and
        # each read of a session's local time would be converted again. `when` is converted once
        # (none when it is in UTC already, as `replay_session` hands each event's time):
        # comparing times in two zones costs a conversion of each side.
        when = when.astimezone(UTC)
        if when > self.clock.now():
            self.clock.set(when)
            if when >= self._next_forget:
                self.forget()
        return when

    def forget(self) -> None:
        """If the account is over its bound, forget what was done before the retry horizon."""
        now = self.clock.now()
        self._next_forget = now + _FORGET_EVERY
        if self.forget_above is not None and self.kept() > self.forget_above:
            self.forget_before(now - self._horizon)

    def kept(self) -> int:
        """The most objects any one of the account's records holds now (orders, claims, ...)."""
        return self.paper.order_count()

    def forget_before(self, before: datetime) -> None:
        """Forget the terminal orders and decisions last touched before `before` (see the class)."""
        self.paper.forget_terminal_orders(before, keep=self._keep_order)
        self.metrics.forget(before)

    def price(self, event: PriceEvent, at: datetime | None = None) -> None:
        """Pin the symbol's price: market orders fill at it from now on.

        `at`, here and in the other event methods: the event's time in UTC, when the caller has
        it (a replay converts each event's once); else the event's own time is converted.
        """
        self.advance(event.t if at is None else at)
        self.paper.set_price(event.symbol, event.price)

    def position(self, event: PositionEvent, at: datetime | None = None) -> None:
        """Take the bot's belief as it was recorded (other views are only informative)."""
        self.advance(event.t if at is None else at)
        if event.view == "bot":
            self.belief[event.symbol] = event.qty
            self.symbols[event.symbol] = None
            self.sample(event.symbol)

    def external(self, event: ExternalEvent, at: datetime | None = None) -> str:
        """Close the broker position outside the bot; return what happened."""
        self.advance(event.t if at is None else at)
        self.symbols[event.symbol] = None
        held = self.paper.get_position(event.symbol)
        if held is None or held.qty == 0:
            return "nothing held"
        try:
            self.paper.close_position(event.symbol)
            cancelled = ""
        except OrderRejected:
            # The account's own orders stand in the way (Alpaca refuses the close as a potential
            # wash trade, or holds the shares for them); whoever closed the position outside the
            # bot cancelled them first, as Alpaca's dashboard offers to. The session says it closed.
            open_orders = self.paper.list_orders(status="open", symbols=[event.symbol])
            for order in open_orders:
                self.paper.cancel_order(order.id)
            self.paper.close_position(event.symbol)
            cancelled = f" (its {len(open_orders)} open order(s) in {event.symbol} cancelled first)"
        self.sample(event.symbol)
        return f"closed {_num(held.qty)} at the broker{cancelled}"

    def attempt(
        self, event: AttemptEvent, answer: AnswerEvent | None, at: datetime | None = None
    ) -> AttemptOutcome:
        """Drive one attempt with its recorded transport fault armed; return what it led to."""
        # In UTC: `Metrics.forget` compares it with the clock's times.
        at = self.advance(event.t if at is None else at)
        symbol = event.symbol
        self.symbols[symbol] = None
        broker = self.broker
        plan = None if answer is None else plan_for(answer)  # most attempts lost no answer
        if plan is not None:
            broker.arm(plan)
        sends = broker.sends
        try:
            coid, detail, answered = self.drive(event)
        finally:
            if plan is not None:
                broker.disarm()
        order = self._new_order(coid, answered)
        self._note_order(event.decision, coid, order)
        qty = event.qty
        price = self.paper.price(symbol)
        if qty is None:  # a notional entry, or an exit of all held: what the order asked for
            qty = _ZERO if order is None else (order.qty or order.filled_qty)
            if not qty and event.notional is not None and price:  # no order: the notional's shares
                qty = event.notional / price
        outcome = self.metrics.attempt(
            at,
            event.decision,
            symbol,
            sends_short=event.kind == "entry" and event.side == "sell",
            sent=broker.sends > sends,
            placed=0 if order is None else 1,
            qty=qty,
            price=price,
            detail=detail,
        )
        self.sample(symbol)
        return outcome

    def cancel(self, event: CancelEvent, at: datetime | None = None) -> str:
        """Cancel as the bot did (its decision's order, or every open order); return what happened."""
        self.advance(event.t if at is None else at)
        if event.symbol is not None:
            self.symbols[event.symbol] = None
        if event.result == _NEVER_SENT:
            return _NOT_SENT_PHRASE  # the broker never heard of it that day, in no mode either
        try:
            if event.scope == "all":
                done = self.cancel_all()
            else:
                order_id = self.order_of(event)
                if order_id is None:
                    return "no order of it here"
                done = self.cancel_one(order_id)
        except TradeguardError as exc:
            return _refusal(exc)
        finally:
            for symbol in self.symbols:
                self.sample(symbol)
        return done

    def replace(self, event: ReplaceEvent, at: datetime | None = None) -> str:
        """Replace as the bot did (its decision's order, with the terms it asked); return what happened."""
        self.advance(event.t if at is None else at)
        if event.symbol is not None:
            self.symbols[event.symbol] = None
        if event.result == _NEVER_SENT:
            return _NOT_SENT_PHRASE
        order_id = self.order_of(event)
        if order_id is None:
            return "no order of it here"
        request = ReplaceRequest(
            qty=event.qty, limit_price=event.limit_price, stop_price=event.stop_price, trail=event.trail,
            time_in_force=None if event.time_in_force is None else TimeInForce(event.time_in_force),
            client_order_id=event.new_client_order_id,
        )  # fmt: skip
        try:
            new = self.replace_one(order_id, request)
        except TradeguardError as exc:
            return _refusal(exc)
        finally:
            if event.symbol is not None:
                self.sample(event.symbol)
        if event.decision is not None and event.leg is None and self.mode is not Mode.FULL:
            # The decision's order from now on (a leg's replacement stays a leg of its parent).
            self._remember(event.decision, new.id)
        return f"replaced ({new.status.value})"

    def order_of(self, event: CancelEvent | ReplaceEvent) -> str | None:
        """The broker id of the order a cancel or replace names here (None: none is known)."""
        order_id = None if event.decision is None else self._orders_of.get(event.decision)
        if event.leg is not None:
            return _leg_of(self.paper, order_id, event.leg)
        if order_id is None and event.client_order_id is not None:
            found = self.paper.get_order_by_client_id(event.client_order_id)
            order_id = None if found is None else found.id
        return order_id

    def cancel_one(self, order_id: str) -> str:
        """Cancel one order at the broker, as the bot's `cancel_order_by_id` does."""
        self.broker.cancel_order(order_id)
        return "canceled"

    def cancel_all(self) -> str:
        """Cancel every open order, as the bot's `cancel_orders` does."""
        return f"canceled {len(self.paper.cancel_all_orders())} open order(s)"

    def replace_one(self, order_id: str, request: ReplaceRequest) -> BrokerOrder:
        """Replace one order at the broker, as the bot's `replace_order_by_id` does."""
        return self.broker.replace_order(order_id, request)

    def _note_order(self, decision: str, coid: str | None, order: BrokerOrder | None) -> None:
        if order is not None:
            self._remember(decision, order.id)

    def _remember(self, decision: str, key: str) -> None:
        orders = self._orders_of
        orders[decision] = key
        orders.move_to_end(decision)
        if len(orders) > _MAX_ORDERS_OF:
            orders.popitem(last=False)

    def finish(self, end: datetime) -> Totals:
        """Run the clock to `end` and return the figures."""
        self.advance(end)
        for symbol in self.symbols:
            self.sample(symbol)
        gaps = {symbol: self.broker_qty(symbol) - self.view(symbol) for symbol in self.symbols}
        return self.metrics.finish(self.clock.now(), gaps)

    # -- what each mode decides --------------------------------------------------------------

    def drive(self, event: AttemptEvent) -> Sent:
        """Send the attempt as the bot did; return the client id used, a phrase, the order answered."""
        return self.send_as_bot(event)

    def view(self, symbol: str) -> Decimal:
        """The position view that decides entries: the bot's belief."""
        return self.belief.get(symbol, _ZERO)

    # -- helpers -----------------------------------------------------------------------------

    def broker_qty(self, symbol: str) -> Decimal:
        """The broker's position (signed)."""
        return self.paper.position_qty(symbol)

    def sample(self, symbol: str) -> None:
        """Note the view and the broker in `symbol` now."""
        self.metrics.sample(self.clock.now(), symbol, self.view(symbol), self.broker_qty(symbol))

    def _new_order(self, coid: str | None, answered: BrokerOrder | None) -> BrokerOrder | None:
        """Return the order the broker accepted under `coid` (a lost answer is looked up)."""
        if answered is not None or coid is None:
            return answered
        return self.paper.get_order_by_client_id(coid)

    def send_as_bot(self, event: AttemptEvent) -> Sent:
        """Send the bot's own request, with a fresh client_order_id (or the bot's own)."""
        self._sent += 1
        coid = event.client_order_id or f"bot-{self.mode.value}-{self._sent}"
        qty = event.qty
        if qty is None and event.notional is None:
            held = self.broker_qty(event.symbol)
            if held == 0:
                self.broker.sends += 1  # DELETE /v2/positions/{symbol} reached the broker
                return None, "404 position does not exist", None
            qty = abs(held)
        request = OrderRequest(
            event.symbol,
            Side(event.side),
            coid,
            qty=qty,
            notional=event.notional,
            order_type=OrderType(event.order_type),
            time_in_force=TimeInForce(event.time_in_force),
            limit_price=event.limit_price,
            stop_price=event.stop_price,
            position_intent=PositionIntent(event.position_intent) if event.position_intent else None,
            trail_price=event.trail_price,
            trail_percent=event.trail_percent,
            **_order_class_of(event),
        )
        # A client id the bot chose may already name an order of an earlier attempt: that order is
        # not this attempt's (a lost answer looked up by it would otherwise find it).
        taken = bool(event.client_order_id) and (
            self.paper.get_order_by_client_id(coid, follow=False, nested=False) is not None
        )
        try:
            order = self.broker.submit_order(request)
        except OrderRejected as exc:
            # Refused (422 "client_order_id must be unique" among others): nothing placed, and
            # nothing to look up (the order under its client id, if any, is an earlier attempt's).
            return None, f"{exc.status_code} {exc.message}", None
        except BrokerError as exc:
            # The answer was lost: was it placed? Not under an id an earlier attempt already
            # holds (ids are unique forever: a submit under it never places a new order).
            found = None if taken else self.paper.get_order_by_client_id(coid)
            return None, f"answer lost: {exc.message}", found
        return coid, "", order


class NoGuard(Simulation):
    """`none`: what the bot did alone."""

    mode = Mode.NONE


class EntryOnlyGuard(Simulation):
    """`entry-only`: SafeAgent's claim on the bot's order path; exits unguarded; no reconciliation."""

    mode = Mode.ENTRY_ONLY

    def __init__(
        self, header: SessionHeader, *, track: bool = False, forget_above: int | None = FORGET_ABOVE
    ) -> None:
        super().__init__(header, track=track, forget_above=forget_above)
        self._claimed: set[str] = set()
        self._claimed_at: deque[tuple[datetime, str]] = deque()  # in claim order, for `forget_before`

    def drive(self, event: AttemptEvent) -> Sent:
        """Claim the key on the order path (a claimed key blocks); send."""
        if event.bot_path == "order":
            key = safeagent_key(event)
            if key in self._claimed:
                return None, f"SKIP: {key} already claimed", None
            self._claimed.add(key)
            self._claimed_at.append((event.t, key))
        return self.send_as_bot(event)

    def forget_before(self, before: datetime) -> None:
        """Also forget the keys claimed before `before` (their decisions are past retrying)."""
        super().forget_before(before)
        _discard_older(self._claimed, self._claimed_at, before)


class FullGuard(Simulation):
    """`full`: every attempt through tradeguard's `OrderGateway`, reconciled on an interval.

    Args:
        header: The session header.
        track: Keep the position history for plots.
        record_to: Record the session the gateway sees (a path, stream or `Recorder`).
    """

    mode = Mode.FULL

    def __init__(
        self,
        header: SessionHeader,
        *,
        track: bool = False,
        record_to: Any = None,
        forget_above: int | None = FORGET_ABOVE,
    ) -> None:
        super().__init__(header, track=track, forget_above=forget_above)
        interval = header.reconcile_interval_secs
        # As the live run decided (a recording names the settings it ran with).
        named: dict[str, Any] = {**(header.settings or {}), "reconcile_interval_secs": interval}
        self.settings = Settings(**named)
        store = MemoryClaimStore(settings=self.settings, clock=self.clock)
        extra: dict[str, Any] = {} if record_to is None else {"record_to": record_to}
        self.gateway = OrderGateway(
            self.broker, store, agent_id=header.agent_id, settings=self.settings, clock=self.clock, **extra
        )
        self.recorder = getattr(self.gateway, "recorder", None) if record_to is not None else None
        self._store, self._agent_id = store, header.agent_id  # read by `view` after every event
        # An order whose claim is still kept may yet be read through it (see `forget_before`).
        self._keep_order = lambda coid: store.get_by_client_order_id(coid) is not None
        # As a live gateway schedules them (G4: within one interval, a put-off symbol when due).
        self._next_pass = self.clock.now() + timedelta(seconds=self.settings.reconcile_every_secs)
        self._counted: set[str] = set()
        self._counted_at: deque[tuple[datetime, str]] = deque()  # in count order, for `forget_before`

    def advance(self, when: datetime) -> datetime:
        """Run every reconcile pass due before `when`, then move the clock there; return `when` in UTC."""
        when = when.astimezone(UTC)  # once: every comparison below is then between UTC times
        while self._next_pass <= when:
            at = self._next_pass
            super().advance(at)
            report = self.gateway.reconcile()
            for symbol in self.symbols:
                self.sample(symbol)
            self._next_pass = report.next_pass_at(self.settings)
            if self._next_pass <= when and self._quiet(report):
                # The passes due before `when` would find what this one found: nothing. Run, they
                # made a bot log's overnight and weekend gaps cost a pass a minute (118,000 passes
                # for a log of a few lines over weeks); skipped, the schedule keeps its phase.
                every = timedelta(seconds=self.settings.reconcile_every_secs)
                self._next_pass += ((when - self._next_pass) // every + 1) * every
        if when > self.clock.now():  # `Simulation.advance`, inlined: it runs for every event
            self.clock.set(when)
            if when >= self._next_forget:
                self.forget()
        return when

    def _quiet(self, report: ReconcileReport) -> bool:
        """Whether no pass before the next event can change anything: all settled and nothing due by time.

        The pass proposed, put off and resent nothing; the broker has no open order (none to
        fill, expire or be adopted); the agent has no claim in motion (none to resolve after its
        grace) and no NOT_SENT claim still probed for a late order; and the guard's ledger is
        the broker's position in every symbol (no phantom to clear, no orphan to report).
        """
        snapshot = report.snapshot
        if (
            report.actions or report.put_off or report.sent or report.aborted is not None
            or snapshot is None or snapshot.open_orders or not snapshot.open_orders_complete
        ):  # fmt: skip
            return False
        store, agent = self._store, self._agent_id
        if store.list_claims(states=_IN_MOTION, agent_id=agent):
            return False
        probed_since = self.clock.now() - timedelta(seconds=self.settings.not_sent_probe_secs)
        if store.list_claims(states=[ClaimState.NOT_SENT], agent_id=agent, updated_since=probed_since):
            return False
        return all(store.position_qty(agent, s) == self.paper.position_qty(s) for s in self.symbols)

    def forget(self) -> None:
        """Trim the audit log on its own, then forget the past if orders or claims are over the bound.

        The log grows by several records an attempt and costs one slice to trim; the rest is a walk
        over every kept claim and order, run only when those are over the bound.
        """
        store = self._store
        if self.forget_above is not None and store.audit_kept() > self.forget_above:
            store.trim_audit(self.forget_above // 2)
        super().forget()

    def kept(self) -> int:
        """The most objects kept that only a walk forgets: orders or claims."""
        return max(self.paper.order_count(), self._store.claim_count())

    def forget_before(self, before: datetime) -> None:
        """Also forget resolved claims and counted client ids (the audit log is trimmed by `forget`)."""
        self._store.prune_resolved(before)
        super().forget_before(before)  # after the claims: the orders kept are those of claims kept
        _discard_older(self._counted, self._counted_at, before)

    def drive(self, event: AttemptEvent) -> Sent:
        """Send through the gateway; the decision is the intent."""
        gateway = self.gateway
        try:
            if event.order_type == "trailing_stop" or event.order_class or event.extended_hours:
                # `enter` and `exit` take no trail and no legs: the order as a whole spec, as a
                # drop-in bot's.
                result = self._as_spec(event)
            elif event.kind == "entry":
                result = gateway.enter(
                    event.symbol, qty=event.qty, notional=event.notional, side=event.side,
                    intent=event.decision, order_type=event.order_type, limit_price=event.limit_price,
                    stop_price=event.stop_price, time_in_force=event.time_in_force,
                )  # fmt: skip
            else:
                result = gateway.exit(
                    event.symbol, intent=event.decision, qty=event.qty, order_type=event.order_type,
                    limit_price=event.limit_price, stop_price=event.stop_price,
                    time_in_force=event.time_in_force,
                )  # fmt: skip
        except TradeguardError as exc:
            return None, f"refused by tradeguard: {exc}", None
        coid = result.claim.client_order_id if result.claim is not None else None
        return coid, f"{result.outcome}: {result.reason}", result.order

    def _as_spec(self, event: AttemptEvent) -> OrderResult:
        """Send an attempt as a whole spec through the gateway: `submit` an entry, `exit_order` an exit.

        For what `enter` and `exit` do not take: a trailing stop's trail, an order class's legs.
        """
        side = Side(event.side)
        if event.kind == "entry":
            opens = PositionIntent.BUY_TO_OPEN if side is Side.BUY else PositionIntent.SELL_TO_OPEN
        else:
            opens = PositionIntent.SELL_TO_CLOSE  # `exit_order` sides it from what is held
        spec = OrderSpec(
            qty=event.qty,
            notional=event.notional,
            order_type=OrderType(event.order_type),
            time_in_force=TimeInForce(event.time_in_force),
            limit_price=event.limit_price,
            stop_price=event.stop_price,
            position_intent=opens,
            trail_price=event.trail_price,
            trail_percent=event.trail_percent,
            **_order_class_of(event),
        )
        if event.kind == "entry":
            intent = Intent(self._agent_id, Kind.ENTRY, event.symbol, side, event.decision)
            return self.gateway.submit(intent, spec)
        return self.gateway.exit_order(event.symbol, spec, intent=event.decision)

    def _note_order(self, decision: str, coid: str | None, order: BrokerOrder | None) -> None:
        # The decision's claim: its order is whatever the claim holds when the bot amends it
        # (a replace moves the claim to the new order).
        if coid is not None:
            self._remember(decision, coid)

    def order_of(self, event: CancelEvent | ReplaceEvent) -> str | None:
        """The order the decision's claim holds now (else the order under the event's client id)."""
        coid = None if event.decision is None else self._orders_of.get(event.decision)
        claim = None if coid is None else self._store.get_by_client_order_id(coid)
        if event.leg is not None:  # a leg of the order the decision's claim holds
            return _leg_of(self.paper, None if claim is None else claim.broker_order_id, event.leg)
        if claim is not None and claim.broker_order_id is not None:
            return claim.broker_order_id
        if event.client_order_id is not None:
            claim = self._store.get_by_client_order_id(event.client_order_id)
            if claim is not None and claim.broker_order_id is not None:
                return claim.broker_order_id
        return super().order_of(event) if coid is None else None

    def cancel_one(self, order_id: str) -> str:
        """Cancel through the gateway, as the run's bot did (its claim adopts the answer)."""
        claim = self.gateway.cancel(order_id)
        return "canceled" if claim is None else f"canceled (claim {claim.state.value})"

    def cancel_all(self) -> str:
        """Cancel every open order through the gateway, as the run's bot did."""
        results = self.gateway.cancel_all()
        return f"canceled {sum(error is None for _, error in results)} open order(s)"

    def replace_one(self, order_id: str, request: ReplaceRequest) -> BrokerOrder:
        """Replace through the gateway, as the run's bot did (its claim records the new order)."""
        return self.gateway.replace(order_id, request)

    def _new_order(self, coid: str | None, answered: BrokerOrder | None) -> BrokerOrder | None:
        # One client id per decision, reused by every retry: count its order once.
        if coid is None or coid in self._counted:
            return None
        order = super()._new_order(coid, answered)
        if order is not None:
            self._counted.add(coid)
            self._counted_at.append((self.clock.now(), coid))
        return order

    def view(self, symbol: str) -> Decimal:
        """The guard's ledger: what `gateway.position()` answers a bot asking before it enters."""
        return self._store.position_qty(self._agent_id, symbol)

    def sample(self, symbol: str) -> None:
        """Note the ledger and the broker in `symbol` now (`Simulation.sample`, its reads inlined)."""
        self.metrics.sample(
            self.clock.now(), symbol, self._store.position_qty(self._agent_id, symbol),
            self.paper.position_qty(symbol),
        )  # fmt: skip


# A cancel or replace recorded `dropped` never left the bot (the broker unreachable): the replay
# does not do it either, in any mode (its faults are not injected again; doing it would cancel an
# order that rested all day).
_NEVER_SENT = "dropped"
_NOT_SENT_PHRASE = "not sent (the broker was unreachable)"

# A simple order's fields (legs come only with a class): built once, not per attempt.
_SIMPLE_ORDER: Mapping[str, Any] = MappingProxyType(
    {
        "extended_hours": False,
        "order_class": OrderClass.SIMPLE,
        "take_profit_limit_price": None,
        "stop_loss_stop_price": None,
        "stop_loss_limit_price": None,
    }
)


def _order_class_of(event: AttemptEvent) -> Mapping[str, Any]:
    """An attempt's order class, legs and extended hours, as `OrderRequest` and `OrderSpec` take them."""
    if event.order_class is None and not event.extended_hours:
        return _SIMPLE_ORDER
    profit, loss = event.take_profit, event.stop_loss
    return {
        "extended_hours": bool(event.extended_hours),
        "order_class": OrderClass(event.order_class or "simple"),
        "take_profit_limit_price": None if profit is None else profit.limit_price,
        "stop_loss_stop_price": None if loss is None else loss.stop_price,
        "stop_loss_limit_price": None if loss is None else loss.limit_price,
    }


def _leg_of(paper: PaperBroker, parent_id: str | None, leg: str) -> str | None:
    """The broker id of `parent_id`'s current `take_profit` or `stop_loss` leg here (None: none).

    A leg replaced before is found as its replacement: the parent lists its current legs.
    """
    parent = None if parent_id is None else paper.get_order(parent_id)
    if parent is None:
        return None
    stops = (OrderType.STOP, OrderType.STOP_LIMIT)
    for order in parent.legs:
        if (order.order_type in stops) == (leg == "stop_loss"):
            return order.id
    return None


def _refusal(exc: TradeguardError) -> str:
    """A refusal as a table cell: the broker's status and words, or tradeguard's."""
    status = getattr(exc, "status_code", None)
    if isinstance(exc, BrokerError):
        return f"{status} {exc.message}" if status else f"failed: {exc.message}"
    return f"refused by tradeguard: {exc}"


def _discard_older(keys: set[str], added: deque[tuple[datetime, str]], before: datetime) -> None:
    """Discard from `keys` those `added` (in time order) says came before `before`."""
    while added and added[0][0] < before:
        keys.discard(added.popleft()[1])


_MODES: dict[Mode, type[Simulation]] = {
    Mode.NONE: NoGuard,
    Mode.ENTRY_ONLY: EntryOnlyGuard,
    Mode.FULL: FullGuard,
}


def make_simulation(
    mode: Mode,
    header: SessionHeader,
    *,
    track: bool = False,
    record_to: Any = None,
    forget_above: int | None = FORGET_ABOVE,
) -> Simulation:
    """Return a fresh simulation of `mode` for a session with `header` (see `Simulation`)."""
    if mode is Mode.FULL:
        if record_to is not None and not isinstance(record_to, Recorder):
            # The replay plays the bot, which knows its account: the recording keeps the header's.
            source = f"recorded by tradeguard replaying {header.name}"
            record_to = Recorder(record_to, header=header.model_copy(update={"source": source}))
        return FullGuard(header, track=track, record_to=record_to, forget_above=forget_above)
    if record_to is not None:
        raise ValueError("only a full-mode replay records (the gateway is the recorder)")
    return _MODES[mode](header, track=track, forget_above=forget_above)
