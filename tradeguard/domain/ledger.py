"""The ledger's unit: what one agent holds in one symbol, as one turn (flat -> position -> flat)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

__all__ = ["LedgerPosition"]


@dataclass(frozen=True, slots=True)
class LedgerPosition:
    """The guard's view of one agent's holding in one symbol. `qty` is signed (short < 0)."""

    agent_id: str
    symbol: str
    qty: Decimal
    turn_id: int | None
    opened_at: datetime | None

    @property
    def is_flat(self) -> bool:
        """True when nothing is held."""
        return self.qty == 0
