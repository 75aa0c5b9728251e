"""What the reconciler knows of the broker at one moment, and the actions it may take.

Pure value types: `diff` reads them and returns actions without touching a database or a
network, so most reconciliation tests need neither.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from tradeguard.domain import BrokerOrder, BrokerPosition, LedgerPosition, symbol_key

__all__ = ["Action", "ActionKind", "BrokerSnapshot", "PutOff"]


@dataclass(frozen=True, slots=True)
class BrokerSnapshot:
    """One complete read of the broker.

    Symbols are matched by `symbol_key`: Alpaca lists a crypto position as "BTCUSD" while its
    orders and the ledger say "BTC/USD", and `qty("BTC/USD")` must find it (G4: a real holding
    is never read as flat because of how it is spelt).

    Attributes:
        taken_at: When the read finished.
        positions_read_at: When the positions read began (None: not known; `taken_at` stands in):
            an exit acknowledged after it may still count as available in `positions`.
        positions: Every open position by the broker's symbol (a symbol absent here is flat at
            the broker).
        open_orders: Every open order.
        open_orders_complete: False when the open-order list may have been cut by a page limit;
            then no symbol is believed free of open orders.
        orders_by_client_id: Lookups made for claims: the order, or None when the broker said
            "not found". A claim with no entry was not looked up.
        earlier: The previous read of the same pass, when a second read was taken to confirm a
            phantom position or an absent order.
        account_scope: The account read (`ports.coid_scope` of the broker's key), "" unknown.
    """

    taken_at: datetime
    positions: Mapping[str, BrokerPosition]
    open_orders: tuple[BrokerOrder, ...] = ()
    open_orders_complete: bool = True
    orders_by_client_id: Mapping[str, BrokerOrder | None] = field(default_factory=dict)
    earlier: BrokerSnapshot | None = None
    positions_read_at: datetime | None = None
    # The broker's account (`ports.coid_scope` of its key; "" unknown): claims made on another
    # known account (`Claim.on_other_account`) are not looked up here, only reported.
    account_scope: str = ""
    _by_key: Mapping[str, BrokerPosition] = field(init=False, repr=False, compare=False)
    _ordered: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", {symbol_key(s): p for s, p in self.positions.items()})
        object.__setattr__(self, "_ordered", frozenset(symbol_key(o.symbol) for o in self.open_orders))

    @property
    def symbols(self) -> dict[str, str]:
        """Return the broker's symbol of every position, by `symbol_key`."""
        return {key: pos.symbol for key, pos in self._by_key.items()}

    def position(self, symbol: str) -> BrokerPosition | None:
        """Return the broker's position in `symbol` however it is spelt ("BTC/USD", "BTCUSD")."""
        return self._by_key.get(symbol_key(symbol))

    def qty(self, symbol: str) -> Decimal:
        """Return the broker's signed quantity in `symbol` (0 when flat)."""
        pos = self.position(symbol)
        return Decimal(0) if pos is None else pos.qty

    def has_open_orders(self, symbol: str) -> bool:
        """True when an open order for `symbol` exists, or the list may be incomplete."""
        if not self.open_orders_complete:
            return True
        return symbol_key(symbol) in self._ordered

    def open_in(self, symbol: str) -> dict[str, BrokerOrder]:
        """Return every open order in `symbol`, by broker order id."""
        key = symbol_key(symbol)
        if key not in self._ordered:
            return {}
        return {o.id: o for o in self.open_orders if symbol_key(o.symbol) == key}


class ActionKind(enum.StrEnum):
    """What the reconciler does (or, for reports, tells)."""

    ADOPT_ORDER = "adopt_order"  # a claim takes the state and fills of its broker order
    MARK_NOT_SENT = "mark_not_sent"  # an unresolved claim is absent at the broker on two probes
    CLEAR_PHANTOM = "clear_phantom"  # the ledger holds, the broker is flat: close the turn
    TRIM_PHANTOM = "trim_phantom"  # the ledger holds more than the broker: drop one agent's excess
    ADOPT_DRIFT = "adopt_drift"  # one agent's ledger holds less than the broker: take the rest
    RELEASE_EXIT = "release_exit"  # an exit refused for position reasons; broker still holds
    ADOPT_ORPHAN = "adopt_orphan"  # take a position the ledger lacks into an agent's ledger
    REPORT_ORPHAN = "report_orphan"  # the broker holds what no ledger does
    REPORT_DRIFT = "report_drift"  # broker and ledger quantities differ
    REPORT_MISSING = "report_missing"  # an acknowledged order the broker no longer knows
    # A claim, or a ledger turn with its fills, made on another broker account than the one read
    # (its agent re-pointed since): this account's word says nothing of it; left as it is.
    REPORT_ELSEWHERE = "report_elsewhere"

    @property
    def is_report(self) -> bool:
        """True for actions that only tell, never change."""
        return self.value.startswith("report_")


@dataclass(frozen=True, slots=True)
class PutOff:
    """A symbol whose ledger and broker read differ, left for later: the ledger moved too recently.

    Attributes:
        symbol: The symbol.
        ledger_qty: What the ledgers hold in it.
        broker_qty: What the broker's positions read shows.
        until: When the positions endpoint has had `position_settle_secs` to catch up.
    """

    symbol: str
    ledger_qty: Decimal
    broker_qty: Decimal
    until: datetime


@dataclass(frozen=True, slots=True)
class Action:
    """One reconcile action with its evidence.

    Attributes:
        kind: What to do.
        symbol: The symbol concerned.
        reason: A sentence for the audit log.
        agent_id: The agent whose ledger or claim it concerns (None for account-wide reports).
        claim_key: The claim concerned, if any.
        order: The broker order adopted, if any.
        qty: The quantity concerned (ledger qty cleared, exit re-size, orphan size, drift).
        evidence: Broker facts behind the action, for the audit record.
        position: The ledger position the action was computed from; a correction applies only
            while the ledger still holds exactly that (compare-and-set).
    """

    kind: ActionKind
    symbol: str
    reason: str
    agent_id: str | None = None
    claim_key: str | None = None
    order: BrokerOrder | None = None
    qty: Decimal | None = None
    evidence: Mapping[str, str] = field(default_factory=dict)
    position: LedgerPosition | None = None
