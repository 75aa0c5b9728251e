"""`GuardedTradingClient`: alpaca-py's `TradingClient` whose orders go through the gateway.

A bot switches by changing one import; every call keeps alpaca-py's signature, return types
and exceptions. What the guard changes:

- `submit_order` claims each order before sending it: a retry (same `client_order_id`, or the
  same content within `dedup_window_secs` when none is set) returns the first order and sends
  nothing; an intentional repeat without an id needs ``new_decision=True`` (a repeat inside the
  window logs a warning and is audited). An order without `position_intent` is classified the
  way Alpaca infers it, from the agent's position (and the broker's): a sell against a long, or a
  buy against a short, is a guarded exit, sized to what is held and sent with `*_to_close`;
  any other order opens and is sent with `*_to_open` (never left to Alpaca's inference, which
  would close another agent's position on the account). A closing order with nothing held on
  the side it closes is Alpaca's 422 "position intent mismatch", never the other side's exit.
  A retry is recognised before it is classified: a client_order_id already claimed, or the same
  order as the bot sent it within the window, answers from the first order even when the
  position moved meanwhile (a closing sell retried after it filled is not a short sale), with
  no adoption of outside shares and no refusal on a lagging position read.
- `close_position` (qty, percentage or all) and `close_all_positions` are guarded exits, one
  decision per call and position (a close of a position opened since is a new decision); an
  exit with every share held by open orders is Alpaca's 403 "insufficient qty available";
  `cancel_order_by_id`, `cancel_orders` and `replace_order_by_id` keep the claims in step with
  the broker.
- Brackets, OTO and OCO orders are claimed as one decision; their legs become the position's
  exit claims.
- Errors are alpaca-py's `APIError`, including tradeguard's own situations (see
  `tradeguard.client.errors`).

Every other method is alpaca-py's own, unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from http import HTTPStatus
from typing import Any, Concatenate, ParamSpec, TypeVar
from uuid import UUID

from alpaca.common.exceptions import APIError
from alpaca.common.utils import validate_uuid_id_param
from alpaca.trading.client import TradingClient
from alpaca.trading.models import ClosePositionResponse
from alpaca.trading.requests import CancelOrderResponse, ClosePositionRequest, ReplaceOrderRequest
from alpaca.trading.requests import OrderRequest as AlpacaOrderRequest
from pydantic import TypeAdapter

from tradeguard.amend import CANCELED_BY_THE_BOT
from tradeguard.broker.alpaca import AlpacaBroker
from tradeguard.client.answers import answer, as_api_errors, decimal_arg, json_body
from tradeguard.client.convert import DropInOrder, as_order, as_raw, read_order
from tradeguard.client.errors import ClientOrderIdReused, InvalidOrder
from tradeguard.client.inprocess import IN_PROCESS_URL, NO_KEY, mount
from tradeguard.client.lookups import (
    SHARE_STEP,
    id_at_broker,
    id_taken,
    in_shares,
    insufficient,
    intent_mismatch,
    no_position,
    nothing_to_close,
    nothing_to_sell,
    symbol_of,
)
from tradeguard.clock import Clock
from tradeguard.config import DEFAULT_STORE_URL, Settings
from tradeguard.domain import (
    BrokerPosition,
    Claim,
    LedgerPosition,
    OrderSpec,
    PositionIntent,
    ReplaceRequest,
    Side,
    TimeInForce,
    default_time_in_force,
    ledger_symbol,
    symbol_key,
)
from tradeguard.domain.claims import same_order
from tradeguard.domain.intents import Intent, Kind
from tradeguard.domain.ledger import orphan
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import BrokerUnavailable, OutcomeUnknown, StoreError, TradeguardError, UnrecordedOrder
from tradeguard.execution import OrderResult, retry_unrecorded
from tradeguard.gateway import OrderGateway
from tradeguard.ports import Broker, ClaimLedger, ForwardingBroker
from tradeguard.sessions.recorder import RecordTarget

__all__ = ["GuardedTradingClient"]

logger = logging.getLogger("tradeguard.client")

_CLOSES = frozenset({PositionIntent.SELL_TO_CLOSE, PositionIntent.BUY_TO_CLOSE})
_T = TypeVar("_T")
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _reconciling(
    method: Callable[Concatenate[GuardedTradingClient, _P], _R],
) -> Callable[Concatenate[GuardedTradingClient, _P], _R]:
    """Run the gateway's reconcile pass when one is due after the call, whatever it answered.

    After, not before: a pass that resolved an UNKNOWN order first could hand its content window
    on, so the bot's late retry of that very order (no client_order_id) would be a new decision.
    """

    def call(client: GuardedTradingClient, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(client, *args, **kwargs)
        finally:
            client._reconcile_if_due()

    functools.update_wrapper(call, method)  # alpaca-py's name and docstring stay
    return call


@contextlib.contextmanager
def _read_before_any_send() -> Iterator[None]:
    """Raise a failed broker read made before a new decision was claimed as "not sent".

    The reads that classify and size a new order (the broker's position, its price) come before
    its claim: nothing of the decision can be at the broker. alpaca-py's adapter calls a read
    that timed out or answered 5xx `OutcomeUnknown` ("the request may have been acted on": true
    of the read); raised as it is, the bot heard `OrderOutcomeUnknown`, "sent, the order may
    exist", for an order never sent. `BrokerUnavailable` (`OrderNotSent`): retrying is safe.
    """
    try:
        yield
    except UnrecordedOrder:
        raise  # an order of the store's failing write: never "not sent"
    except OutcomeUnknown as exc:
        status = exc.status_code if exc.status_code is not None and exc.status_code < 500 else None
        raise BrokerUnavailable(
            f"not sent: a broker read before the order failed ({exc.message}); nothing was claimed or sent",
            status_code=status,
        ) from exc


def _canceled_by_the_bot(claim: Claim) -> bool:
    """Whether the bot canceled the claim's order through this guard with nothing filled.

    As the content windows judge an ended decision (`windows._canceled_by_the_bot`). An order
    canceled after a part filled still answers a retry with its order: it tells the bot what
    it holds.
    """
    return (
        claim.state is ClaimState.CANCELED
        and claim.filled_qty == 0
        and claim.reason.startswith(CANCELED_BY_THE_BOT)
    )


def _closing(side: Side, held: Decimal) -> bool:
    """Whether an order on `side` closes a position of `held` shares (Alpaca's inference)."""
    return (side is Side.SELL and held > 0) or (side is Side.BUY and held < 0)


class GuardedTradingClient(TradingClient):
    """alpaca-py's `TradingClient` with guarded orders, exits, closes, cancels and replaces.

    Args:
        api_key: As for `TradingClient`.
        secret_key: As for `TradingClient`.
        oauth_token: As for `TradingClient`.
        paper: As for `TradingClient`.
        raw_data: As for `TradingClient`: order calls then return Alpaca's JSON dicts.
        url_override: As for `TradingClient` (e.g. the tradeguard paper server).
        store: A claim ledger (ClaimStore, MemoryClaimStore), a SQLAlchemy URL for the claims
            (default ``sqlite:///tradeguard.db``) or a claim service URL (with `store_api_key`).
        agent_id: The bot's stable name.
        dedup_window_secs: Orders without a client_order_id and with identical content within
            this many seconds are one decision.
        settings: Timeouts and grace periods.
        clock: Time source (tests, replays).
        broker: Send orders to this broker instead of Alpaca (e.g. a PaperBroker: no network).
            Without API keys and `url_override`, alpaca-py's own calls (`get_account`, ...)
            read that PaperBroker's account in process, or raise `ConfigError` for any other
            broker (`tradeguard.client.inprocess`).
        gateway: Send orders through this gateway (shared with the rest of a bot); `store`,
            `agent_id`, `dedup_window_secs`, `settings`, `clock`, `broker` and `record_to` are
            then its own. Without API keys, as for `broker`, with the gateway's broker.
        record_to: Record what the guard sees as a session file (see `OrderGateway`).
        store_api_key: The claim service's API key when `store` is a service URL
            (``https://host:8787``); `api_key` stays alpaca-py's.
    """

    def __init__(  # noqa: PLR0917 - the same positional arguments as alpaca-py's TradingClient
        self,
        api_key: str | None = None,
        secret_key: str | None = None,
        oauth_token: str | None = None,
        paper: bool = True,
        raw_data: bool = False,
        url_override: str | None = None,
        *,
        store: ClaimLedger | str = DEFAULT_STORE_URL,
        agent_id: str = "default",
        dedup_window_secs: float | None = None,
        settings: Settings | None = None,
        clock: Clock | None = None,
        broker: Broker | None = None,
        gateway: OrderGateway | None = None,
        record_to: RecordTarget = None,
        store_api_key: str | None = None,
    ) -> None:
        # Orders go to the given broker or gateway: keys are needed only for alpaca-py's own calls.
        given = broker is not None or gateway is not None
        keyless = given and api_key is None and secret_key is None and oauth_token is None
        in_process = keyless and url_override is None
        if keyless:
            api_key = secret_key = NO_KEY  # alpaca-py refuses a client without credentials
        if in_process:
            url_override = IN_PROCESS_URL
        super().__init__(api_key, secret_key, oauth_token, paper, raw_data, url_override)
        if in_process:
            mount(self._session, gateway.broker if gateway is not None else broker)
        # What this client opened it closes; a gateway or store handed in is the caller's, and
        # may serve other agents of the bot after this client is closed.
        self._owns_gateway = gateway is None
        self._owns_store = gateway is None and isinstance(store, str)
        if gateway is not None:
            self.settings = gateway.settings
            self.gateway = gateway
            return
        settings = settings or Settings()
        if dedup_window_secs is not None:
            settings = settings.with_changes(dedup_window_secs=dedup_window_secs)
        self.settings = settings
        if broker is None:
            # A separate client for guarded sends: its hidden retries are switched off and its
            # requests get timeouts, without changing this object's pass-through behaviour.
            inner = TradingClient(api_key, secret_key, oauth_token, paper, False, url_override)
            broker = AlpacaBroker(inner, settings=settings)
        self.gateway = OrderGateway(
            broker,
            store,
            agent_id=agent_id,
            settings=settings,
            clock=clock,
            record_to=record_to,
            api_key=store_api_key,
        )

    def close(self) -> None:
        """Close this client's HTTP sessions, and the gateway and claim store it opened itself.

        A `gateway=` or a store object given to the constructor is the caller's (shared with
        other agents of the bot, say) and is left open; a store opened from a URL is closed.
        """
        if self._owns_gateway:
            self.gateway.close()
            broker = self.gateway.broker
            while isinstance(broker, ForwardingBroker):  # a recording wraps the Alpaca adapter
                broker = broker.inner
            if isinstance(broker, AlpacaBroker):
                broker.client._session.close()
        self._session.close()
        if self._owns_store:
            self.gateway.store.close()

    def __enter__(self) -> GuardedTradingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reconcile_if_due(self) -> None:
        """Run the gateway's reconcile pass when one is due, as a live gateway's loop does.

        `OrderGateway.reconcile_if_due`, after each guarded call (`_reconciling`): every
        `Settings.reconcile_every_secs`, so unresolved claims are looked up and phantoms cleared
        while the bot trades (G2, G4) without a loop of its own. A pass that fails is logged and
        never hides the call's own answer.
        """
        try:
            self.gateway.reconcile_if_due()
        except TradeguardError as exc:
            logger.warning("reconcile pass failed, the call goes on: %s", exc)

    # -- orders ---------------------------------------------------------------------------

    @_reconciling
    def submit_order(self, order_data: AlpacaOrderRequest, *, new_decision: bool = False) -> Any:
        """Submit an order at most once per decision; see the module docstring.

        Args:
            order_data: Any alpaca-py order request.
            new_decision: This call is a decision of its own even if an identical order without
                a client_order_id came within the dedup window (a deliberate repeat). A retry of
                such a call is then NOT recognised: prefer a `client_order_id`.

        Returns:
            alpaca-py's `Order` (Alpaca's JSON dict with ``raw_data=True``).

        Raises:
            APIError: The broker refused the order (as alpaca-py raises it), or one of
                `tradeguard.client.errors`: the outcome is unknown (call again), the order was
                not sent, the claim store failed, the order is malformed.
        """
        with as_api_errors():
            order = read_order(order_data)
            try:
                result = self._submit(order, new_decision=new_decision)
            except StoreError as exc:
                taken = id_taken(self.gateway, order, exc)
                if taken is None:
                    raise
                raise taken from exc
        return answer(
            result,
            raw=self._use_raw_data,
            nothing_to_sell=lambda: (
                id_at_broker(self.gateway, order)
                or nothing_to_sell(self.gateway, order.symbol, order.side, order.spec.qty)
            ),
            broker=self.gateway.broker,
        )

    def _submit(self, order: DropInOrder, *, new_decision: bool) -> OrderResult:
        symbol, side = order.symbol, order.side
        # The window's content is the order as the bot sent it, not as it was classified: a
        # retry finds the first attempt's window whether that was an entry or an exit.
        content = {"symbol": symbol, "side": side.value, **order.spec.as_payload()}
        prior = self._retried(order, content, new_decision=new_decision)
        if prior is not None and order.client_order_id is not None:
            prior = self.gateway.settle_cancel(prior)  # Alpaca may have finished the bot's cancel since
        if prior is not None and order.client_order_id is not None and _canceled_by_the_bot(prior):
            # The bot canceled this id's order itself, unfilled, so the call is no retry of a lost
            # answer: it names a new order under a used id, which Alpaca refuses for good
            # (ALPACA.md). Answered with the canceled order, the bot took it for placed (audit 56).
            raise ClientOrderIdReused(
                f"{order.client_order_id} names {prior.side} {prior.symbol} order {prior.broker_order_id}, "
                "which the bot canceled; Alpaca refuses an id once used, even after its order was "
                "canceled: give the new order an id of its own. Nothing was sent"
            )
        try:
            return self._submit_classified(order, content, prior, new_decision=new_decision)
        except StoreError as exc:
            # A retry of a decision whose order may be at the broker (often right after an
            # UnrecordedOrder, the store still failing): never "the order was not sent" (G1).
            if prior is None or not self.gateway.may_have_placed(prior):
                raise
            raise retry_unrecorded(prior, exc) from exc

    def _submit_classified(
        self, order: DropInOrder, content: dict[str, Any], prior: Claim | None, *, new_decision: bool
    ) -> OrderResult:
        gateway, symbol, side, coid = self.gateway, order.symbol, order.side, order.client_order_id
        is_exit, free, spec = self._classify(order, prior)
        if is_exit:
            spec = replace(spec, position_intent=self._closes(side))
        elif spec.position_intent is None:
            # Said out loud, as `OrderGateway.enter` does: left to Alpaca's inference, a sell the
            # guard classified as opening (this agent flat) would close whatever long another
            # agent on the account bought meanwhile; `*_to_open` is refused against it instead.
            spec = replace(spec, position_intent=self._opens(side))
        if coid is not None:
            if is_exit:
                result = gateway.exit_order(symbol, spec, intent=f"coid:{coid}", client_order_id=coid)
            else:
                changed = None
                if prior is not None and not same_order(prior.payload, spec.as_payload()):
                    # The id's only attempt placed nothing (refused): Alpaca takes it again
                    # with another order, so the guard does (else IntentMismatch: its 422).
                    changed = gateway.resend_changed(prior, spec)
                intent = Intent(gateway.agent_id, Kind.ENTRY, symbol, side, f"coid:{coid}")
                result = changed or gateway.submit(intent, spec, client_order_id=coid)
        elif new_decision:
            name = f"new:{uuid.uuid4().hex}"
            if is_exit:
                result = gateway.exit_order(symbol, spec, intent=name)
            else:
                result = gateway.submit(Intent(gateway.agent_id, Kind.ENTRY, symbol, side, name), spec)
        else:
            kind = Kind.EXIT if is_exit else Kind.ENTRY
            result = gateway.submit_by_content(kind, symbol, side, spec, content=content)
        if is_exit:
            self._warn_if_trimmed(result, order, spec.qty, free)
        return result

    def _classify(self, order: DropInOrder, prior: Claim | None) -> tuple[bool, Decimal | None, OrderSpec]:
        """Return whether the order is an exit, the broker's qty_available when read, and its spec.

        A retry takes its claim's kind; a new order is classified (`_is_exit`) by reads made
        before anything is claimed, whose failure is "not sent" (`_read_before_any_send`).
        Exits are sized and claimed in shares (G3): a notional exit's dollars become the shares
        they buy now, and a retry keeps the shares its claim was sized from.
        """
        spec = order.spec
        if prior is not None:
            is_exit = prior.kind is Kind.EXIT
            return is_exit, None, prior.spec if is_exit and spec.notional is not None else spec
        with _read_before_any_send():
            is_exit, free = self._is_exit(order)
            if is_exit and spec.notional is not None:
                spec = in_shares(self.gateway, order)
        return is_exit, free, spec

    def _retried(self, order: DropInOrder, content: dict[str, Any], *, new_decision: bool) -> Claim | None:
        """Return the claim this call retries, looked up before the order is classified; or None.

        A retry is the same decision however the position moved since the first attempt: a sell
        that closed a long is not a short sale when it is retried after it filled. So a
        client_order_id already claimed, or the same order without one inside a live dedup
        window (`OrderGateway.window_retry`), answers from its claim, whatever kind it is, and a
        retry never adopts shares nor is refused on a position read (a lagging one included).
        """
        if order.client_order_id is not None:
            return self._claimed(order)
        if new_decision:
            return None
        return self.gateway.window_retry(order.symbol, order.side, content)

    def _claimed(self, order: DropInOrder) -> Claim | None:
        """Return the claim that already holds the order's client_order_id, or None."""
        gateway, coid = self.gateway, order.client_order_id
        for kind in (Kind.ENTRY, Kind.EXIT):
            intent = Intent(gateway.agent_id, kind, order.symbol, order.side, f"coid:{coid}")
            claim = gateway.store.get(intent.key)
            if claim is not None:
                return claim
        return None

    def _is_exit(self, order: DropInOrder) -> tuple[bool, Decimal | None]:
        """Classify an order as Alpaca infers its position intent (the caller's intent wins).

        The agent's ledger decides when it holds the symbol. When it is flat, or the order asks
        for more than it holds, the broker's position decides: shares held there that are
        provably no other agent's (held before tradeguard saw them, or bought outside it on top
        of this agent's own) are adopted into the ledger first, so the exit is sized and booked
        like any other (`_take_surplus`). A `*_to_close` the caller set takes the same path.
        Returns whether it is an exit, and the broker's `qty_available` before it when read.
        """
        intent = order.position_intent
        if intent is not None and intent not in _CLOSES:
            return False, None
        held = self.gateway.position(order.symbol, resolve=False)  # see `OrderGateway.position`
        if not held.is_flat and not _closing(order.side, held.qty):
            if intent is not None:
                # A caller's *_to_close on the side that adds to the position (a sell_to_close of
                # a short): Alpaca refuses it; sent as the position's exit it would trade the
                # other side (a buy), which the bot never asked for.
                raise intent_mismatch(order.side)
            return False, None  # adds to the position
        asked = order.spec.qty
        if not held.is_flat and asked is not None and asked <= abs(held.qty):
            return True, None  # the ledger covers it: no broker read
        held, at_broker = self._take_surplus(
            order.symbol, order.side, held, why=f"{order.side} {order.symbol}"
        )
        free = abs(at_broker.qty_available) if at_broker is not None else Decimal(0)
        if not held.is_flat:
            return True, free
        if at_broker is None or not _closing(order.side, at_broker.qty):
            # Nothing held to close: an opening order; a caller's *_to_close is answered by the
            # exit (nothing to sell), as before.
            return intent is not None, free
        raise self._not_yet_this_agents(order.symbol, asked, at_broker)

    def _take_surplus(
        self, symbol: str, side: Side | None, held: LedgerPosition, *, why: str
    ) -> tuple[LedgerPosition, BrokerPosition | None]:
        """Adopt the broker's shares beyond every ledger on the account, when provably this agent's.

        Reads the broker's position (a failed read raises: never "flat"). When it holds more on
        the side `side` closes (None: whichever it holds) than this agent's ledger, this agent's
        own PENDING/UNKNOWN orders in the symbol are looked up first (their fills are then booked,
        not taken for outside shares), and what is still left beyond every ledger is adopted
        (`OrderGateway.adopt_broker_position`, which refuses while the read could be wrong).
        Returns the agent's position after and the broker's position read.
        """
        gateway = self.gateway
        at_broker = gateway.broker.get_position(symbol)

        def surplus(mine: LedgerPosition) -> bool:
            # The adoption rule itself (`domain.ledger.orphan`, other agents' ledgers left to the
            # store): shares on the side this order closes beyond what the agent's ledger holds.
            if at_broker is None or (side is not None and not _closing(side, at_broker.qty)):
                return False
            return orphan(at_broker.qty, Decimal(0), mine.qty, top_up=True) != 0

        if not surplus(held):
            return held, at_broker
        # Its own unresolved orders' fills may be in the position: booked first, never adopted.
        gateway.resolve_unresolved(symbol)
        held = gateway.store.position(gateway.agent_id, ledger_symbol(symbol))
        if surplus(held):
            held = gateway.adopt_broker_position(symbol, why=why, top_up=True)
        return held, at_broker

    def _not_yet_this_agents(self, symbol: str, asked: Decimal | None, at_broker: BrokerPosition) -> APIError:
        """Alpaca's 403 for shares at the broker the guard cannot attribute to this agent (yet).

        Never a 404 while the broker holds a position. The message says what holds them up.
        """
        gateway = self.gateway
        states = [ClaimState.PENDING, ClaimState.UNKNOWN]
        mine = gateway.store.list_claims(
            states=states, agent_id=gateway.agent_id, symbol=ledger_symbol(symbol)
        )
        if mine:
            ids = ", ".join(f"{c.client_order_id} ({c.state})" for c in mine)
            why = (
                f"this agent's own order in {symbol} is unresolved ({ids}) and its fills cannot be told "
                "from the broker's shares until the broker shows it; it is looked up again on the next "
                "call and by each reconcile pass"
            )
        else:
            settle = self.settings.position_settle_secs
            why = (
                f"the {abs(at_broker.qty)} {symbol} at the broker are not this agent's to sell yet: other "
                "agents on this account hold them or have orders in motion there, or a fill there is "
                f"too recent for the broker's position to show it (up to {settle:g}s)"
            )
        return insufficient(gateway, symbol, asked, at_broker=at_broker, why=why)

    @staticmethod
    def _closes(side: Side) -> PositionIntent:
        return PositionIntent.SELL_TO_CLOSE if side is Side.SELL else PositionIntent.BUY_TO_CLOSE

    @staticmethod
    def _opens(side: Side) -> PositionIntent:
        return PositionIntent.SELL_TO_OPEN if side is Side.SELL else PositionIntent.BUY_TO_OPEN

    def _warn_if_trimmed(
        self, result: OrderResult, order: DropInOrder, asked: Decimal | None, free: Decimal | None
    ) -> None:
        """Warn that an exit was sent smaller than asked; `free`: the broker's qty_available before it.

        Alpaca refuses only what its qty_available cannot cover: only then does the warning say
        so. Anything else the guard held back is not this agent's to sell (another agent's, or
        not attributable yet). `free` None: not read (the ledger covered the order; what trimmed
        it is this agent's other exits in flight or the broker's qty_available).
        """
        sent_qty = result.claim.order_qty if result.claim is not None else None
        if not (result.sent and sent_qty is not None and asked is not None and sent_qty < asked):
            return
        if free is None:
            why = "the rest is in other exits or not free at the broker"
        elif free < asked:
            why = f"Alpaca would refuse {asked} with 403 insufficient qty: qty_available {free}"
        else:
            why = (
                f"the broker has {free} available; the rest is not this agent's to sell "
                "(other agents', or not attributable yet)"
            )
        logger.warning(
            "%s %s %s closes a position: sent %s, what is held and not in other exits (%s)",
            order.side, asked, order.symbol, sent_qty, why,
        )  # fmt: skip

    # -- positions ------------------------------------------------------------------------

    @_reconciling
    def close_position(
        self,
        symbol_or_asset_id: UUID | str,
        close_options: ClosePositionRequest | None = None,
        *,
        new_decision: bool = False,
    ) -> Any:
        """Close all of a position, `qty` shares of it or a `percentage` of it, as a guarded exit.

        Each call is its own decision; a retry of the same call (same arguments within
        `dedup_window_secs`) returns the first order. The remaining shares can always be closed.

        Raises:
            APIError: 404 "position does not exist" when the broker holds nothing (whatever the
                ledger says; the symbol is reconciled), and 403 "insufficient qty available"
                when every share is held by open orders, as Alpaca answers, or when the shares
                at the broker are not this agent's to sell yet (never 404 while it holds a
                position); see `submit_order` for the rest.
        """
        with as_api_errors():
            symbol = ledger_symbol(symbol_of(self.gateway, symbol_or_asset_id, self._read_asset))
            result = self._close(symbol, close_options, new_decision=new_decision)
        requested = decimal_arg(close_options.qty, "qty") if close_options is not None else None
        return answer(
            result,
            raw=self._use_raw_data,
            nothing_to_sell=lambda: nothing_to_close(self.gateway, symbol, requested),
            broker=self.gateway.broker,
        )

    def _close(self, symbol: str, options: ClosePositionRequest | None, *, new_decision: bool) -> OrderResult:
        qty = decimal_arg(options.qty, "qty") if options is not None else None
        percentage = decimal_arg(options.percentage, "percentage") if options is not None else None
        if qty is not None and not qty > 0:
            # Alpaca's 422, word for word; sized as an exit it was a 403 "insufficient qty" (audit 56).
            raise InvalidOrder("qty must be > 0")
        if percentage is not None and not 0 < percentage <= 100:
            raise InvalidOrder("percentage must be between 0 and 100")
        gateway = self.gateway
        held, at_broker = self._take_surplus(
            symbol, None, gateway.position(symbol, resolve=False), why="close_position"
        )
        if held.is_flat:
            at_broker = self._await_own_sale(symbol, at_broker)
            if at_broker is None or at_broker.qty == 0:
                raise no_position()
            raise self._not_yet_this_agents(symbol, qty, at_broker)  # never 404 while the broker holds
        requested = qty
        if percentage is not None:
            # As Alpaca closes a percentage: fractional shares only of a fractional position, so
            # 50% of 7 is 3 (3.5 would be refused for an asset that is not fractionable).
            whole = held.qty == held.qty.to_integral_value()
            requested = (abs(held.qty) * percentage / 100).quantize(
                Decimal(1) if whole else SHARE_STEP, ROUND_DOWN
            )
            if requested <= 0:
                raise InvalidOrder(f"{percentage}% of {abs(held.qty)} {symbol} is less than a tradable share")
        side = Side.SELL if held.qty > 0 else Side.BUY
        # A day order for an equity; gtc for a crypto pair (Alpaca refuses a day crypto order).
        tif = default_time_in_force(symbol)
        spec = OrderSpec(qty=requested, time_in_force=tif, position_intent=self._closes(side))
        if new_decision:
            return gateway.exit_order(symbol, spec, intent=f"close_position:new:{uuid.uuid4().hex}")
        # The call's arguments and the position it closes (its ledger turn): a retry of the
        # call is the same decision, a close of a position opened since is a new one.
        call: dict[str, Any] = {"close_position": symbol, "qty": None if qty is None else str(qty)}
        call["percentage"] = None if percentage is None else str(percentage)
        call["turn"] = held.turn_id
        return gateway.submit_by_content(Kind.EXIT, symbol, side, spec, content=call)

    def _await_own_sale(self, symbol: str, at_broker: BrokerPosition | None) -> BrokerPosition | None:
        """Read the position again while it may still show shares this agent's own fill just moved.

        Alpaca's positions read trails fills (up to `position_settle_secs`): a close right after
        the bot's own sale of all it held read the sold shares and was answered 403 where Alpaca,
        closing from its books, answers 404 "position does not exist" (audit 32). So while this
        agent's turn in the symbol moved that recently and the read shows more than the other
        agents on the account hold, it is read again every `settle_delay_secs`. Returns the last
        read; nothing is sold or adopted here.
        """
        gateway, settings = self.gateway, self.settings
        key, agent = symbol_key(symbol), gateway.agent_id
        settle = timedelta(seconds=settings.position_settle_secs)
        moved = [
            t.updated_at
            for t in gateway.store.moved_turns(gateway.clock.now() - settle)
            if t.agent_id == agent and symbol_key(t.symbol) == key and t.updated_at is not None
        ]
        if not moved:
            return at_broker
        shows_at = max(moved) + settle
        on_account = gateway.reconciler.on_account(agent)
        others = sum(
            (abs(p.qty) for p in gateway.store.all_positions()
             if p.agent_id != agent and symbol_key(p.symbol) == key and on_account(p.agent_id)),
            Decimal(0),
        )  # fmt: skip
        while at_broker is not None and abs(at_broker.qty) > others:
            left = (shows_at - gateway.clock.now()).total_seconds()
            if left <= 0:
                break
            gateway.clock.sleep(min(settings.settle_delay_secs, left))
            at_broker = gateway.broker.get_position(symbol)
        return at_broker

    def _read_asset(self, asset_id: UUID) -> dict[str, Any]:
        """Read an asset with alpaca-py's own session (a broker without an asset list)."""
        asset = self.get(f"/assets/{asset_id}")
        if not isinstance(asset, dict):
            raise InvalidOrder(f"asset {asset_id}: unexpected answer {asset!r}")
        return asset

    @_reconciling
    def close_all_positions(self, cancel_orders: bool | None = None) -> Any:
        """Close every position as guarded exits; return one answer per symbol, as alpaca-py does.

        Covers the positions the broker lists and those the agent's ledger holds, each closed
        as `close_position` does: Alpaca closes from its own books, which its positions read
        trails by seconds, so a position bought moments ago and not listed yet is closed too
        (the exit reads again until the read shows it). A symbol the broker then holds nothing
        of (a phantom, reconciled by the reconciler's rules) gets no answer, as at Alpaca. With
        ``cancel_orders=True`` open orders are canceled first (through the guard). When it
        returns, the ledger has adopted every fill the broker reported.
        """
        with as_api_errors():
            if cancel_orders:
                # As Alpaca's own close-all: the cancels done before any close (Alpaca finishes a
                # cancel after answering it; shares a pending cancel holds would be refused 403).
                self.gateway.await_cancels(self.gateway.cancel_all())
            # One close per asset: the broker's "BTCUSD" is the ledger's "BTC/USD" (its name wins).
            listed = {symbol_key(p.symbol): p.symbol for p in self.gateway.broker.list_positions()}
            booked = {symbol_key(p.symbol): p.symbol for p in self.gateway.positions(resolve=False)}
        answers: list[dict[str, Any]] = []
        gone: list[str] = []
        for key in sorted(listed.keys() | booked.keys()):
            symbol = booked.get(key) or listed[key]
            # The symbol as Alpaca lists a position ("BTCUSD"), as the plain client has it.
            listed_as = listed.get(key, key)
            try:
                with as_api_errors():
                    result = self._close(symbol, None, new_decision=False)
                refusal = functools.partial(nothing_to_close, self.gateway, symbol, None)
                order = answer(result, raw=True, nothing_to_sell=refusal, broker=self.gateway.broker)
                answers.append({"symbol": listed_as, "status": 200, "body": order})
            except APIError as exc:
                if exc.status_code == HTTPStatus.NOT_FOUND:
                    # The broker holds nothing (only the ledger held it, or the listing trailed a
                    # sale): Alpaca closes from its books and lists no such position, so it has
                    # no answer; the exit that found nothing had it reconciled.
                    gone.append(symbol)
                    continue
                answers.append({"symbol": listed_as, "status": exc.status_code, "body": json_body(exc)})
        with as_api_errors():
            if gone:
                self.gateway.reconcile(symbols=gone)
            self.gateway.refresh()
        if self._use_raw_data:
            return answers
        return TypeAdapter(list[ClosePositionResponse]).validate_python(answers)

    # -- cancel and replace ---------------------------------------------------------------

    @_reconciling
    def cancel_order_by_id(self, order_id: UUID | str) -> None:
        """Cancel an order; its claim adopts the result (CANCELED with what filled)."""
        order_id = validate_uuid_id_param(order_id, "order_id")  # ValueError first, as alpaca-py
        with as_api_errors():
            self.gateway.cancel(str(order_id))

    @_reconciling
    def cancel_orders(self) -> Any:
        """Cancel every open order of the account, as alpaca-py does; claims adopt the results."""
        with as_api_errors():
            results = self.gateway.cancel_all()
        # One entry per order canceled, a bracket's legs included, as Alpaca's bulk cancel
        # answers; a body only where a cancel failed.
        answers: list[dict[str, Any]] = [
            {"id": order.id, "status": 200} if error is None else
            {"id": order.id, "status": error.status_code or 500,
             "body": error.body or {"message": error.message}}
            for order, error in results
        ]  # fmt: skip
        if self._use_raw_data:
            return answers
        return TypeAdapter(list[CancelOrderResponse]).validate_python(answers)

    @_reconciling
    def replace_order_by_id(self, order_id: UUID | str, order_data: ReplaceOrderRequest | None = None) -> Any:
        """Replace an open order; its claim keeps its client_order_id and records the new order."""
        order_id = validate_uuid_id_param(order_id, "order_id")  # ValueError first, as alpaca-py
        fields = order_data.to_request_fields() if order_data is not None else {}
        tif = fields.get("time_in_force")
        request = ReplaceRequest(
            qty=decimal_arg(fields.get("qty"), "qty"),
            limit_price=decimal_arg(fields.get("limit_price"), "limit_price"),
            stop_price=decimal_arg(fields.get("stop_price"), "stop_price"),
            trail=decimal_arg(fields.get("trail"), "trail"),
            time_in_force=None if tif is None else TimeInForce(str(getattr(tif, "value", tif))),
            client_order_id=fields.get("client_order_id"),
        )
        with as_api_errors():
            new = self.gateway.replace(str(order_id), request)
        return as_raw(new) if self._use_raw_data else as_order(new)

    # -- answers --------------------------------------------------------------------------
