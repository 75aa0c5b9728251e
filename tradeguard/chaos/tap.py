"""The checker's taps: every sell the broker receives (with what was held), and each order's decision."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradeguard.domain import BrokerOrder, OrderRequest, PositionIntent, Side, symbol_key
from tradeguard.errors import OutcomeUnknown
from tradeguard.ports import Broker

__all__ = ["Ask", "AskTap", "DecisionScope", "Decisions", "Journal", "RequestTap", "new_ask"]

Journal = Callable[[dict[str, Any]], None]
"""Where a bot process writes its evidence, so it survives a SIGKILL (see `chaos.kill`)."""


@dataclass(frozen=True, slots=True)
class Ask:
    """A new sell order that reached the broker, and the long shares available when it did.

    `opens`: the order said `sell_to_open`, a short the bot meant (G3 is about accidental ones).
    """

    client_order_id: str
    symbol: str
    qty: Decimal
    available: Decimal
    opens: bool = False

    def to_json(self) -> list[object]:
        """The ask as a journal line holds it (`chaos.kill` reads it back with `from_json`)."""
        return [self.client_order_id, self.symbol, str(self.qty), str(self.available), self.opens]

    @classmethod
    def from_json(cls, entry: list[Any]) -> Ask:
        """Read an ask back from `to_json`."""
        coid, symbol, qty, available, *opens = entry
        return cls(coid, symbol, Decimal(qty), Decimal(available), bool(opens and opens[0]))


def order_of(request: OrderRequest) -> tuple[object, ...]:
    """What a request asks, whatever its client id: two equal ones are the same order."""
    return (
        symbol_key(request.symbol), request.side, request.qty, request.notional, request.order_type,
        request.time_in_force, request.limit_price, request.stop_price,
    )  # fmt: skip


def new_ask(paper: Broker, request: OrderRequest) -> Ask | None:
    """The ask `request` makes of `paper`, before it is submitted: None unless it is a new sell."""
    if request.side is not Side.SELL or paper.get_order_by_client_id(request.client_order_id) is not None:
        return None
    pos = paper.get_position(request.symbol)
    available = Decimal(0) if pos is None or pos.qty < 0 else pos.qty_available
    opens = request.position_intent is PositionIntent.SELL_TO_OPEN
    return Ask(request.client_order_id, request.symbol, request.qty or Decimal(0), available, opens)


class AskTap:
    """Wraps the paper account; records sells (resends of a known client id are not new asks)."""

    def __init__(self, paper: Broker, journal: Journal | None = None) -> None:
        self.paper = paper
        self.asks: list[Ask] = []
        self.journal = journal

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Record a new sell with the shares available (in the journal too, if any), then submit."""
        ask = new_ask(self.paper, request)
        if ask is not None:
            self.asks.append(ask)
            if self.journal is not None:
                # A real-kill run's checker reads its asks from here (`chaos.kill`).
                self.journal({"ask": ask.to_json()})
        return self.paper.submit_order(request)

    @property
    def inner(self) -> Broker:
        """The account beneath (wrappers are followed through ``inner``, as `ports.account_key_of` does)."""
        return self.paper

    def __getattr__(self, name: str) -> Any:
        return getattr(self.paper, name)  # reads pass straight through


class Decisions:
    """Which strategy decision each client_order_id was first sent for, whatever the guard did.

    `DecisionScope` sets the decision while the strategy's `enter`/`exit` call runs; `RequestTap`,
    above the fault plan, notes each client id submitted meanwhile. G1 then counts broker orders
    per decision the *strategy* made, so a guard that resends under a new claim is caught too.

    So is a bot that does it itself (audit 14b H1): an order sent again, the same order under a
    new client id (or a new decision name), in the same bar as an earlier send of it whose answer
    was lost, is that earlier decision's retry (May 21's duplicates were exactly this). The
    caller calls `at_bar` before each `on_bar`.
    """

    def __init__(self, journal: Journal | None = None) -> None:
        self.current: tuple[str, str, str] | None = None
        self.of: dict[str, tuple[str, str, str]] = {}
        self.journal = journal
        self._bar = 0
        self._lost: dict[tuple[object, ...], str] = {}  # this bar's orders whose answer was lost -> id

    def note(self, client_order_id: str, order: tuple[object, ...] | None = None) -> None:
        """Note that `client_order_id` is being sent for the current decision (its first one wins).

        `order`: what the request asks (`order_of`); a retry of an order whose answer was lost in
        this bar is noted under that order's decision.
        """
        if client_order_id in self.of:
            return
        decision = self.current
        lost = None if order is None else self._lost.get(order)
        if lost is not None and lost in self.of:
            decision = self.of[lost]
        if decision is None:
            return
        self.of[client_order_id] = decision
        if self.journal is not None:
            self.journal({"decision": [client_order_id, *decision]})

    def at_bar(self, index: int) -> None:
        """Note that the strategy is deciding on bar `index` now (a restart stays on its bar)."""
        if index != self._bar:
            self._bar = index
            self._lost.clear()

    def answer_lost(self, client_order_id: str, order: tuple[object, ...]) -> None:
        """Note that the send of `client_order_id` (asking `order`) got no answer in this bar."""
        self._lost[order] = client_order_id


class DecisionScope:
    """The gateway as the strategy sees it: every `enter`/`exit` runs inside its decision."""

    def __init__(self, gateway: Any, decisions: Decisions) -> None:
        self._gateway = gateway
        self._decisions = decisions

    def enter(self, symbol: str, *args: Any, intent: str, **kwargs: Any) -> Any:
        """Enter, with the decision noted."""
        return self._within(
            ("entry", symbol, intent), lambda: self._gateway.enter(symbol, *args, intent=intent, **kwargs)
        )

    def exit(self, symbol: str, *args: Any, intent: str, **kwargs: Any) -> Any:
        """Exit, with the decision noted."""
        return self._within(
            ("exit", symbol, intent), lambda: self._gateway.exit(symbol, *args, intent=intent, **kwargs)
        )

    def submit(self, intent: Any, *args: Any, **kwargs: Any) -> Any:
        """Submit a named decision (a drop-in order with a client_order_id), with the decision noted."""
        decision = (str(intent.kind), intent.symbol, intent.name)
        return self._within(decision, lambda: self._gateway.submit(intent, *args, **kwargs))

    def exit_order(self, symbol: str, *args: Any, intent: str, **kwargs: Any) -> Any:
        """Exit with a given order (a drop-in closing order), with the decision noted."""
        return self._within(
            ("exit", symbol, intent),
            lambda: self._gateway.exit_order(symbol, *args, intent=intent, **kwargs),
        )

    def _within(self, decision: tuple[str, str, str], call: Any) -> Any:
        self._decisions.current = decision
        try:
            return call()
        finally:
            self._decisions.current = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gateway, name)


class RequestTap:
    """Above the fault plan: notes the decision of every client id the guard tries to send."""

    def __init__(self, broker: Any, decisions: Decisions) -> None:
        self._broker = broker
        self._decisions = decisions

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Note the client id's decision (its first), then submit; note a lost answer."""
        order = order_of(request)
        self._decisions.note(request.client_order_id, order)
        try:
            return self._broker.submit_order(request)  # type: ignore[no-any-return]
        except OutcomeUnknown:
            self._decisions.answer_lost(request.client_order_id, order)
            raise

    @property
    def inner(self) -> Any:
        """The broker beneath (the fault plan's)."""
        return self._broker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)
