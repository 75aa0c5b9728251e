"""The ledger's unit: what one agent holds in one symbol, as one turn (flat -> position -> flat)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

__all__ = ["ExitRoom", "LedgerPosition"]


@dataclass(frozen=True, slots=True)
class LedgerPosition:
    """The guard's view of one agent's holding in one symbol. `qty` is signed (short < 0)."""

    agent_id: str
    symbol: str
    qty: Decimal
    turn_id: int | None
    opened_at: datetime | None
    updated_at: datetime | None = None  # the turn's last fill or correction

    @property
    def is_flat(self) -> bool:
        """True when nothing is held."""
        return self.qty == 0


@dataclass(frozen=True, slots=True)
class ExitRoom:
    """How much one agent's exit may ask for now, and why (read under the symbol's lock).

    Attributes:
        held: The agent's signed ledger quantity.
        open_exits: The unfilled quantity of the agent's exits that may still fill (any active
            state): the ledger cannot back them twice.
        unacknowledged_exits: The part of `open_exits` the broker may not show yet (PENDING,
            UNKNOWN): its `qty_available` still counts those shares.
        reserved_by_others: Shares on the same side that other agents' ledgers hold and have not
            yet put into an acknowledged exit: never this agent's to sell.
        broker_available: The broker's `qty_available` on the agent's side (0 when the broker is
            flat or on the other side).
        qty: What the exit may send: min(requested or held, held - open exits, broker available
            - unacknowledged exits - reserved by others); zero or less means nothing.
    """

    held: Decimal
    open_exits: Decimal
    unacknowledged_exits: Decimal
    reserved_by_others: Decimal
    broker_available: Decimal
    qty: Decimal

    def describe(self, symbol: str) -> str:
        """Return a sentence for logs and audit records."""
        return (
            f"ledger holds {self.held} {symbol} with {self.open_exits} in open exits; broker has "
            f"{self.broker_available} available, {self.unacknowledged_exits} in unacknowledged exits, "
            f"{self.reserved_by_others} held by other agents"
        )
