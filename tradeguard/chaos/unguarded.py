"""The unguarded path: the same strategy sending straight to the broker, as a plain bot does.

`PlainGateway` answers the calls a strategy makes of the gateway (`enter`, `exit`, `position`)
the way a bot on a bare alpaca-py `TradingClient` behaves: every attempt is a new order with a
fresh client_order_id (so a retry after a timeout is a second order), an exit sells what the
bot remembers holding (so a double exit goes short), and what it holds lives in the process's
memory (so a restart forgets it, and a lost answer leaves a phantom). It passes the crash
points a plain bot has (before and after the send, after sizing an exit), so the same seeds
kill it at the same moments. `tradeguard chaos
--unguarded` runs it on the same seeds so a user sees what the guard prevents.

Given a `Recorder`, it records what a plain bot's run looks like as a session: one attempt per
order it sends (a retry of a decision is that decision's next attempt, under its new id) and
each answer, so `tradeguard replay --compare` shows what a guard would have blocked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from tradeguard import crashpoints
from tradeguard.clock import Clock
from tradeguard.config import Settings
from tradeguard.domain import Intent, Kind, OrderRequest, OrderSpec, Side
from tradeguard.domain.ledger import LedgerPosition
from tradeguard.errors import BrokerUnavailable, OrderRejected, OutcomeUnknown
from tradeguard.execution import OrderResult, Outcome
from tradeguard.ports import Broker
from tradeguard.sessions.recorder import open_recorder

if TYPE_CHECKING:
    from tradeguard.sessions import Recorder

__all__ = ["PlainGateway", "SendLog"]


@dataclass
class SendLog:
    """Which decision every plain order was sent for; it outlives the bot's restarts (the checker's tap).

    Attributes:
        decisions: client_order_id -> (kind, symbol, intent).
        maybe_sent: Client ids whose answer the bot never got (timeouts, errors after accept).
    """

    decisions: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    maybe_sent: set[str] = field(default_factory=set)

    def next_id(self) -> str:
        """Return a fresh client_order_id (numbered, so a seed replays the same ids)."""
        return f"plain-{len(self.decisions) + 1}"


class PlainGateway:
    """A bot's own order code without tradeguard; see the module docstring.

    Args:
        broker: Where orders go (the fault plan applies).
        agent_id: The bot's name.
        clock: The run's clock.
        log: The send log shared across restarts.
        record_to: A recorder every incarnation writes to (a failing run's session), or None.
    """

    def __init__(
        self, broker: Broker, *, agent_id: str, clock: Clock, log: SendLog, record_to: Recorder | None = None
    ) -> None:
        self.recorder = open_recorder(
            record_to, agent_id=agent_id, settings=Settings(), clock=clock, audit=None
        )
        self.broker = self.recorder.wrap(broker)
        self.agent_id = agent_id
        self.clock = clock
        self.log = log
        self.held: dict[str, Decimal] = {}  # the bot's memory; a restart starts flat

    def position(self, symbol: str) -> LedgerPosition:
        """Return what the bot remembers holding."""
        return LedgerPosition(self.agent_id, symbol, self.held.get(symbol, Decimal(0)), None, None)

    def enter(
        self, symbol: str, *, qty: int | Decimal, intent: str, side: str | Side = Side.BUY, **_: object
    ) -> OrderResult:
        """Send `qty` on `side` under a fresh client_order_id (a sell opens a short, as guarded)."""
        return self._send("entry", symbol, Side(side), Decimal(qty), intent)

    def exit(self, symbol: str, *, intent: str, **_: object) -> OrderResult:
        """Close everything the bot remembers holding (sell a long, buy back a short)."""
        held = self.held.get(symbol, Decimal(0))
        crashpoints.hit("exit_before_claim")  # sized from memory; the send is next
        if held == 0:
            return OrderResult(Outcome.SKIPPED, None, None, "nothing held (as far as the bot knows)")
        return self._send("exit", symbol, Side.SELL if held > 0 else Side.BUY, abs(held), intent)

    def _send(self, kind: str, symbol: str, side: Side, qty: Decimal, intent: str) -> OrderResult:
        coid = self.log.next_id()
        self.log.decisions[coid] = (kind, symbol, intent)
        request = OrderRequest(symbol=symbol, side=side, client_order_id=coid, qty=qty)
        decision = Intent(self.agent_id, Kind.ENTRY if kind == "entry" else Kind.EXIT, symbol, side, intent)
        self.recorder.attempt(decision, OrderSpec(qty=qty), coid)
        sign = qty if side is Side.BUY else -qty
        crashpoints.hit("before_post")
        try:
            order = self.broker.submit_order(request)
        except OutcomeUnknown as exc:
            self.log.maybe_sent.add(coid)
            return OrderResult(Outcome.UNKNOWN, None, None, str(exc), exc)
        except OrderRejected as exc:
            return OrderResult(Outcome.REJECTED, None, None, str(exc), exc)
        except BrokerUnavailable as exc:
            return OrderResult(Outcome.NOT_SENT, None, None, str(exc), exc)
        crashpoints.hit("after_post")  # a death here forgets an order the broker filled
        self.held[symbol] = self.held.get(symbol, Decimal(0)) + sign
        return OrderResult(Outcome.SUBMITTED, None, order, "sent")

    # What the harness calls on a guarded gateway; a plain bot has no reconciler.
    def reconcile_if_due(self) -> None:
        """Do nothing: a plain bot never reconciles."""
