"""Decisions without a name: an order's content within a dedup window is its key.

The drop-in path for bots that set no client_order_id. Identical orders within
`dedup_window_secs` are one decision; the window is taken atomically in the store, and an
expired window passes to a new order only once the order holding it is resolved (G1). A repeat
inside the window is answered as a retry of the first order, visibly: a warning on the
``tradeguard.gateway`` logger (saying whether anything was sent: a first order that placed
nothing is sent again under its id) and an audit record naming the window (G6).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from tradeguard.amend import CANCELED_BY_THE_BOT
from tradeguard.clock import Clock
from tradeguard.config import Settings
from tradeguard.domain import Claim, LedgerPosition, Side, ledger_symbol
from tradeguard.domain.claims import same_order
from tradeguard.domain.intents import Intent, Kind, OrderSpec, exit_group
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import BrokerError, ClaimInProgress, IntentMismatch, StoreError
from tradeguard.execution import OrderResult, Outcome, retry_unrecorded
from tradeguard.ports import ClaimLedger
from tradeguard.sessions.recorder import NullRecorder, Recorder

__all__ = ["ContentWindows"]

logger = logging.getLogger("tradeguard.gateway")


class ContentWindows:
    """Mixin of `OrderGateway`: orders keyed by their content within a window."""

    store: ClaimLedger
    settings: Settings
    clock: Clock
    agent_id: str
    recorder: Recorder | NullRecorder
    # Windows this gateway opened for exits that claimed nothing: content key -> the intent.
    _unclaimed_windows: dict[str, Intent]

    def submit(
        self,
        intent: Intent,
        spec: OrderSpec,
        *,
        client_order_id: str | None = None,
        window_opened: datetime | None = None,
    ) -> OrderResult:
        """Claim and send a named decision (`OrderGateway.submit`)."""
        raise NotImplementedError

    def refresh(self, symbol: str | None = None, *, created_after: datetime | None = None) -> None:
        """Adopt broker state for this agent's acknowledged live orders (`OrderGateway.refresh`)."""
        raise NotImplementedError

    def settle_cancel(self, claim: Claim) -> Claim:
        """Read the order of a claim the bot asked to cancel (`OrderGateway.settle_cancel`)."""
        raise NotImplementedError

    def exit_order(
        self,
        symbol: str,
        spec: OrderSpec,
        *,
        intent: str,
        client_order_id: str | None = None,
        window_opened: datetime | None = None,
    ) -> OrderResult:
        """Size, claim and send an exit (`OrderGateway.exit_order`)."""
        raise NotImplementedError

    def _ensure_started(self) -> None:
        raise NotImplementedError

    def _wait_out_recent_fills(self, symbol: str, side: Side) -> None:
        """Wait until recent fills in `symbol` show in a positions read (`OrderGateway`'s)."""
        raise NotImplementedError

    def may_have_placed(self, claim: Claim) -> bool:
        """Whether the claim's order may be at the broker (`RetryAnswers.may_have_placed`)."""
        raise NotImplementedError

    def _settle_unplaced(self, claim: Claim, to: ClaimState, reason: str) -> Claim | OrderResult:
        raise NotImplementedError  # RetryAnswers'

    def _existing(self, claim: Claim, held: LedgerPosition | None = None, *, note: str = "") -> OrderResult:
        raise NotImplementedError

    def submit_by_content(
        self,
        kind: Kind,
        symbol: str,
        side: Side,
        spec: OrderSpec,
        *,
        content: dict[str, Any] | None = None,
    ) -> OrderResult:
        """Submit an order that carries no decision name: its content within a window is the key.

        Identical orders (symbol, side and `spec`, or `content` when given) within
        `dedup_window_secs` are one decision (the drop-in path for bots that set no
        client_order_id). The window is taken atomically in the store, and an expired window
        passes to a new order only once the order holding it is resolved: while that claim is
        PENDING or UNKNOWN an identical order is its retry, however late it comes (G1). A repeat
        inside the window is answered from the first order, with a warning on the
        ``tradeguard.gateway`` logger and an audit record naming the window: an intentional
        repeat (a scale-in) needs its own decision name or client_order_id.

        Args:
            kind: ENTRY, or EXIT (sized against the position like `exit`).
            symbol: The symbol.
            side: The order's side.
            spec: The order.
            content: What makes two calls the same decision, whole (symbol and side included),
                when it is not the order as classified: the order as the bot sent it (the
                drop-in), or a close's arguments and the position it closes (a percentage
                close: the shares it comes to change as the position does). Two calls with
                equal content are one decision whether they are sent as an entry or an exit.

        Raises:
            ClaimInProgress: Another worker is claiming the identical order at this moment.
        """
        symbol = ledger_symbol(symbol)  # the key's and the ledger's spelling, as every Intent's
        named = content
        if named is None:
            named = {"symbol": symbol, "side": side.value, **spec.as_payload()}
            if kind is not Kind.ENTRY:
                named["kind"] = kind.value
        content_key = self._content_key(named)
        if kind is Kind.EXIT and self.store.window_holder(content_key) is None:
            # A new exit first waits for recent fills in the symbol to show in the positions
            # read (up to `position_settle_secs`): before its window opens, for a wait inside
            # it counted as the sender being held up, and the exit was refused NOT_SENT after
            # it (audit 32). A retry finds the window and is answered without waiting.
            self._ensure_started()
            self._wait_out_recent_fills(symbol, side)
        now = self.clock.now()
        intent = Intent(self.agent_id, kind, symbol, side, f"content:{content_key[:16]}@{now.isoformat()}")
        window = self.settings.dedup_window_secs
        holder = self._claim_window(content_key, intent, symbol, side, named)
        existing = self.store.get(holder)
        # The holder is this call's own name when the call opened the window, and also when an
        # earlier identical call claimed it at this very instant (a clock that stands still
        # between calls: `tradeguard run`'s bar clock, a ManualClock): that claim exists, and is
        # answered below like any holder, so that a decision it ended (the bot canceled the
        # order, or sold the position the entry opened) is followed by a new one (audit 43).
        if holder == intent.key and existing is None:
            if kind is Kind.EXIT:
                return self._exit_in_window(content_key, symbol, spec, intent, opened=now)
            return self.submit(intent, spec, window_opened=now)
        if existing is None:
            mine = self._unclaimed_windows.get(content_key)
            if mine is not None and mine.key == holder:
                # This gateway opened the window for an exit that claimed nothing (nothing to
                # sell then: every share held by open orders, or the position unreadable), so
                # nothing reached the broker. The window names that never-written claim until it
                # expires; the call goes on under names derived from it, so its own retries
                # meet the same claim: the exit sized again, or (the position gone meanwhile)
                # the order as an entry.
                if kind is Kind.EXIT:
                    return self._exit_in_window(content_key, symbol, spec, mine)
                return self.submit(Intent(self.agent_id, Kind.ENTRY, symbol, side, mine.name), spec)
            raise ClaimInProgress(
                f"an identical {symbol} order is being claimed by another worker right now; "
                "it will be returned on the next call"
            )
        existing, successor, left = self._after_ended(
            existing, content_key, kind, symbol, side, rest_of=content
        )
        if successor is not None:
            # The order that holds the window ended its decision (the bot canceled it, it was
            # the exit of a position since replaced by a new one, or an exit that sold only
            # part) and the same order comes again: a new decision, named after the ended claim
            # so that its own retries meet it; the rest of a part-done exit's shares, no more.
            spec = spec if left is None else replace(spec, qty=left)
            if successor.kind is Kind.EXIT:
                return self.exit_order(symbol, spec, intent=successor.name)
            return self.submit(successor, spec)
        self.recorder.attempt(replace(intent, name=existing.intent), spec)
        self._ensure_started()
        if content is None and kind is Kind.ENTRY and not same_order(existing.payload, spec.as_payload()):
            raise IntentMismatch(existing.key, existing.payload, spec.as_payload())
        age = (now - existing.created_at).total_seconds()
        note = (
            f"identical {side} {symbol} order {age:.1f}s after {existing.client_order_id}, inside the "
            f"{window:g}s dedup window: answered as a retry of it"
        )
        result = self._existing(existing, note=note)
        # Said after the answer: a retry of an order that placed nothing (refused, not sent) is
        # sent again under the first attempt's id; anything else sends nothing.
        after = result.claim
        resent = after is not None and after.key == existing.key and after.attempts > existing.attempts
        what = "nothing sent"
        if resent:
            what = f"sent again under {existing.client_order_id} (the first placed nothing)"
        logger.warning(
            "%s, %s. For an intentional repeat give the order its own client_order_id (or "
            "new_decision=True in the drop-in client).",
            note, what,
        )  # fmt: skip
        return result

    def _claim_window(
        self, content_key: str, intent: Intent, symbol: str, side: Side, content: dict[str, Any]
    ) -> str:
        """Open the window of `content_key` for `intent`, or return the claim key that holds it.

        Opening or taking over a window is a write. When it fails, the order that holds the
        window may be at the broker (a retry right after an UnrecordedOrder, the store still
        failing): the caller must not hear "nothing was sent" (G1), so the holder is read (a
        live window's, or the unresolved claim that keeps an expired one) and, when its order
        may exist, the failure is an `UnrecordedOrder`.
        """
        window = self.settings.dedup_window_secs
        try:
            return self.store.claim_window(content_key, window_secs=window, claim_key=intent.key)
        except StoreError as exc:
            try:
                prior = self.window_retry(symbol, side, content)
                if prior is None:
                    # An expired window stays with its order while that is unresolved; such
                    # claims are named after the window (`content:<key>@...`, `.../after:...`).
                    named = f"content:{content_key[:16]}"
                    unresolved = self.store.list_claims(
                        states=[ClaimState.PENDING, ClaimState.UNKNOWN], agent_id=self.agent_id, symbol=symbol
                    )
                    prior = next((c for c in unresolved if c.intent.startswith(named)), None)
            except (StoreError, BrokerError):
                prior = None  # unreadable too: this call sent nothing, and that is all it knows
            if prior is None or not self.may_have_placed(prior):
                raise
            raise retry_unrecorded(prior, exc) from exc

    def window_retry(self, symbol: str, side: Side, content: dict[str, Any]) -> Claim | None:
        """Return the claim a call with `content` retries: the live window's, while its decision lasts.

        A read, made before the call is classified (the drop-in): a retry inside the window is
        the first order's decision whatever moved since (the position flat after the first sell
        filled, a lagging position read, shares bought outside the guard meanwhile), so it is
        answered as that claim's kind and is neither classified afresh, nor adopts, nor is
        refused. None when no live window holds `content`, when its claim is not written (being
        claimed, or an exit that claimed nothing), or when its decision has ended
        (`_after_ended`): the call is then classified as a new one. `submit_by_content` with the
        same `content` answers it.
        """
        symbol = ledger_symbol(symbol)
        content_key = self._content_key(content)
        holder = self.store.window_holder(content_key)
        existing = None if holder is None else self.store.get(holder)
        if existing is None:
            return None
        last, successor, _ = self._after_ended(
            existing, content_key, existing.kind, symbol, side, rest_of=content
        )
        return last if successor is None else None

    def _content_key(self, content: dict[str, Any]) -> str:
        """The window key of a call: this agent and what makes two calls one decision, whole.

        The caller's content (the drop-in: the order as the bot sent it) alone names the
        decision, whatever kind it is sent as: a retry must find its window even when the
        position moved meanwhile and the same order is now classified the other way (a closing
        sell retried after it filled).
        """
        text = json.dumps(content, sort_keys=True)
        return hashlib.sha256(f"{self.agent_id}|{text}".encode()).hexdigest()

    def _held_up_past_window(self, claim: Claim, opened: datetime) -> OrderResult | None:
        """Settle a window's claim NOT_SENT when its sender was held up past half the window.

        A window whose claim is not written yet (the sender frozen between the two steps) passes
        to another identical order once it expires: that order's claim and POST go ahead, and
        this sender's, when it wakes, would be a second order for one decision (G1). Once the
        claim is written (PENDING) the window cannot change hands, so the check is made then
        (`OrderGateway._send`), with half the window as the margin for clocks of other hosts.
        Nothing was sent; the bot's retry is answered from whichever claim holds the window
        then. None: send as usual.
        """
        held_up = (self.clock.now() - opened).total_seconds()
        if held_up <= self.settings.dedup_window_secs / 2:
            return None
        reason = (
            f"not sent: {held_up:.1f}s passed between opening the dedup window and writing this claim "
            "(the sender was held up); another identical order may hold the window now"
        )
        unsent = self._settle_unplaced(claim, ClaimState.NOT_SENT, reason)
        if isinstance(unsent, OrderResult):
            return unsent
        return OrderResult(Outcome.NOT_SENT, unsent, None, reason)

    def _after_ended(
        self,
        existing: Claim,
        content_key: str,
        kind: Kind,
        symbol: str,
        side: Side,
        *,
        rest_of: dict[str, Any] | None = None,
    ) -> tuple[Claim, Intent | None, Decimal | None]:
        """Follow a window's claim past the orders whose decision has ended.

        Returns the last claim of the chain and, when that one ended too, the decision that
        follows it (not claimed yet); else None, and the claim answers the call. Third, the
        shares the following decision may still sell when it is the rest of a part-done exit
        (below); else None (the call's own size).

        A decision has ended when the bot itself canceled its order through the guard with
        nothing filled, when it was an exit whose position is gone and a new one is open
        (`_exit_superseded`), or when it was an entry whose position the bot has since closed
        by an exit of its own (`_entry_acted_on`): the same order sent again is the next
        decision. Its name derives from the ended claim (so every retry of it, from any process,
        finds the same claim); a chain is followed to its live end. An order the broker canceled
        on its own (an IOC, an expiry) keeps answering as before: the bot may not know it is gone.

        The next decision's kind: a canceled order's is the call's; a superseded exit's is always
        an exit (the newer position's, whatever a retry of it classifies as once that position is
        closed too); an acted-on entry's is what the first call after it classified (a re-entry,
        or, when the same order now closes a newer position, that position's exit, sized by the
        exit rule: sent as an entry it would sell shares kept for others, G3; audit 12a D1 and
        13 D2), and its retries find it under either kind.

        `rest_of` is the call's content (the drop-in's order as the bot sent it, or a close's
        arguments). An exit of it that filled only part of what it asked (trimmed to the shares
        free then: open orders held the rest; a whole close, likewise) and left the agent
        holding on the turn it closed has not done its decision (`_left_to_do`): the bot that
        sends it again (after canceling the orders that held the rest, say) gets the rest
        sold, as Alpaca would sell it then, under the `.../after:` name; never more than the
        call asked in all (a percentage close or a notional order stays a retry). Audit 43.
        """
        # A cancel the bot asked for that the broker had not finished when the claim was read
        # (Alpaca's pending_cancel): read whether it is done, so a canceled order ends its
        # decision as below, however late Alpaca finished it (audit 56).
        existing = self.settle_cancel(existing)
        if existing.state.is_terminal:
            # Whether its decision ended depends on the agent's other orders in the symbol: a
            # resting re-entry (or stop, or take-profit) that filled since at the broker is a
            # decision the bot acted on, and the claims must show its fill before the rules
            # below read them. Answered from stale claims, the same order sent again after it
            # would be swallowed as a retry: the bot then believes it is flat (or long) while
            # the broker says otherwise (audit 16 #2, #3). A claim still live is the retry's
            # own decision whatever else moved: no read needed.
            # Only orders claimed after it can have ended its decision: one read each.
            self.refresh(symbol, created_after=existing.created_at)
        claim = existing
        sold = Decimal(0)  # what the part-done exits of the chain sold so far
        while True:
            canceled = _canceled_by_the_bot(claim)
            superseded = not canceled and self._exit_superseded(claim)
            acted_on = not canceled and not superseded and self._entry_acted_on(claim)
            name = f"content:{content_key[:16]}/after:{claim.key[:16]}"
            left: Decimal | None = None
            rest = False
            if (
                rest_of is not None
                and not (canceled or superseded or acted_on)
                and _asks_for_rest(rest_of, claim)
            ):
                # The rest already followed it (its retry, whatever the position shows now).
                following = self.store.get(Intent(self.agent_id, Kind.EXIT, symbol, side, name).key)
                if following is not None:
                    sold += claim.filled_qty
                    claim = following
                    continue
                rest, left = self._left_to_do(claim, rest_of, sold + claim.filled_qty)
            if not (canceled or superseded or acted_on or rest):
                return claim, None, None
            kinds = (kind,) if canceled else (Kind.EXIT,) if superseded or rest else (kind, _other(kind))
            following = None
            for each in kinds:
                following = self.store.get(Intent(self.agent_id, each, symbol, side, name).key)
                if following is not None:
                    break
            if following is None:
                # A superseded exit begins a new decision only while there is a new position
                # for it to close; flat again, the same sell stays a retry (never a short sale).
                new = canceled or acted_on or rest or self._holds_a_newer_turn(claim)
                following_decision = Intent(self.agent_id, kinds[0], symbol, side, name) if new else None
                return claim, following_decision, left
            claim = following

    def _exit_superseded(self, claim: Claim) -> bool:
        """Whether `claim` is a finished exit of a position the agent has opened a new one since.

        A retry of a closing sell that filled meets the same turn as its latest (closed, or
        still open after a partial exit) and is answered from the first sell, never sent as an
        opening short; but once the agent has opened a new position in the symbol by a decision
        of its own, the same sell is that position's exit, as a close of a position opened
        since is (G4: the bot must not believe it is flat while the new shares are held).

        Only the agent's own decision counts: an entry claim in the symbol created after the
        exit, with a fill. A newer turn opened by an adoption (shares a person bought outside
        the guard) or a reconcile correction is no decision of the bot's, and the retry of its
        sell stays a retry: sent again it would sell those shares (G1).
        """
        if claim.kind is not Kind.EXIT or claim.turn_id is None or not claim.state.is_terminal:
            return False
        latest = self.store.latest_turn_id(self.agent_id, claim.symbol)
        if latest is None or latest <= claim.turn_id:
            return False
        since = self.store.list_claims(
            agent_id=self.agent_id, symbol=claim.symbol, kind=Kind.ENTRY, updated_since=claim.created_at
        )
        return any(
            entry.filled_qty > 0
            and (
                entry.created_at > claim.created_at
                # The same instant (a clock that stands still between calls): only an entry of
                # a newer turn than the exit's can have come after it.
                or (
                    entry.created_at == claim.created_at
                    and entry.turn_id is not None
                    and entry.turn_id > claim.turn_id
                )
            )
            for entry in since
        )

    def _entry_acted_on(self, claim: Claim) -> bool:
        """Whether `claim` is a filled entry whose position the agent has since closed by an exit of its own.

        A bot that closed the position an entry opened or added to, by an exit decision of its
        own, had that entry's shares in hand: the identical entry after it is the next decision
        (a re-entry), not a retry of the first. Answered from the first, it would leave the bot
        believing it holds shares it sold (its next sell then a short sale).

        Only proof that the entry itself was acted on counts (G1): the entry's turn closed (the
        agent is flat or on a newer turn), by an exit claim of the agent created after the
        entry, on that turn, on the closing side, with a fill. Not by a leg of the entry (a
        bracket's take-profit is part of the entry's own decision, tracked when the entry is
        adopted), and not while the turn is still open: an exit of older shares, or a partial
        one, does not show the bot ever saw the entry (its answer may have been lost, and a
        reconcile pass resolved it meanwhile); the retry of that entry stays a retry.
        """
        if claim.kind is not Kind.ENTRY or not claim.state.is_terminal or claim.filled_qty == 0:
            return False
        if claim.turn_id is None or self.store.position(self.agent_id, claim.symbol).turn_id == claim.turn_id:
            return False
        since = self.store.list_claims(
            agent_id=self.agent_id, symbol=claim.symbol, kind=Kind.EXIT, updated_since=claim.created_at
        )
        # At the same instant (a clock that stands still between calls) an exit of the entry's
        # turn that closed it came after the entry: one claimed before it was sized without
        # the entry's shares and could not have closed the turn they are in.
        return any(
            c.created_at >= claim.created_at
            and c.turn_id == claim.turn_id
            and c.side is not claim.side
            and c.filled_qty > 0
            and exit_group(c.intent, c.client_order_id) != claim.client_order_id
            for c in since
        )

    def _left_to_do(
        self, claim: Claim, content: dict[str, Any], sold: Decimal
    ) -> tuple[bool, Decimal | None]:
        """Whether `claim`, a finished exit of `content`, left part of its decision undone; and how much.

        Its order filled whole, the guard having sized it below what the call asked (`sold`:
        it and the part-done exits before it in the chain; a whole close asks for everything),
        and the agent still holds, on the side it closed, in the very turn it closed. An order
        the broker ended part-filled (an IOC, a cancel) is not one: it answers as before, as
        every order the broker canceled on its own. Returns (True, shares still to sell),
        None for a whole close; else (False, None).
        """
        if claim.state is not ClaimState.FILLED or claim.filled_qty == 0:
            return False, None
        if claim.order_qty is not None and claim.filled_qty < claim.order_qty:
            return False, None
        held = self.store.position(self.agent_id, claim.symbol)
        closes = held.qty > 0 if claim.side is Side.SELL else held.qty < 0
        if not (closes and held.turn_id is not None and held.turn_id == claim.turn_id):
            return False, None
        asked = content.get("qty")
        if asked is None:
            return True, None  # a whole close: the rest of the position
        left = Decimal(str(asked)) - sold
        return (True, left) if left > 0 else (False, None)

    def _holds_a_newer_turn(self, claim: Claim) -> bool:
        """Whether the agent holds a position that the claim's exit order would close, opened since."""
        held = self.store.position(self.agent_id, claim.symbol)
        closes = held.qty > 0 if claim.side is Side.SELL else held.qty < 0
        newer = held.turn_id is not None and claim.turn_id is not None and held.turn_id > claim.turn_id
        return closes and newer

    def _exit_in_window(
        self,
        content_key: str,
        symbol: str,
        spec: OrderSpec,
        intent: Intent,
        *,
        opened: datetime | None = None,
    ) -> OrderResult:
        """Send the exit that holds a window; remember the window if it ended with no claim."""
        result = self.exit_order(symbol, spec, intent=intent.name, window_opened=opened)
        if result.claim is None:
            self._unclaimed_windows[content_key] = intent
        else:
            self._unclaimed_windows.pop(content_key, None)
        return result


def _other(kind: Kind) -> Kind:
    return Kind.EXIT if kind is Kind.ENTRY else Kind.ENTRY


def _asks_for_rest(content: dict[str, Any], claim: Claim) -> bool:
    """Whether an exit claim of a call with `content` may leave a rest to sell (`_left_to_do`).

    A drop-in order in shares, or a close of the whole position or of a number of shares; not a
    notional order (sized in shares by the price at the time) nor a percentage close (of a
    position that changes as it is sold).
    """
    if claim.kind is not Kind.EXIT or content.get("percentage") is not None:
        return False
    if content.get("close_position"):
        return True
    return content.get("qty") is not None and content.get("notional") is None


def _canceled_by_the_bot(claim: Claim) -> bool:
    """Whether the claim's order was canceled through the guard with nothing filled."""
    return (
        claim.state is ClaimState.CANCELED
        and claim.filled_qty == 0
        and claim.reason.startswith(CANCELED_BY_THE_BOT)
    )
