"""The domain: value types and rules that every layer shares and that import no adapter.

Orders and positions (`orders`), intents and their keys (`intents`), the claim lifecycle
(`lifecycle`), claims (`claims`), ledger positions (`ledger`) and audit records (`audit`).
Nothing here touches a database, a network or a clock.
"""

from tradeguard.domain.audit import AuditAction, AuditRecord
from tradeguard.domain.claims import Claim, ClaimOutcome
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.ledger import LedgerPosition
from tradeguard.domain.lifecycle import ACTIVE_STATES, TRANSITIONS, ClaimState
from tradeguard.domain.orders import (
    BrokerOrder,
    BrokerPosition,
    OrderClass,
    OrderRequest,
    OrderStatus,
    OrderType,
    PositionIntent,
    RejectKind,
    ReplaceRequest,
    Side,
    TimeInForce,
    canonical_symbol,
    crypto_pair,
    default_time_in_force,
    ledger_symbol,
    same_symbol,
    symbol_key,
)

__all__ = [
    "ACTIVE_STATES",
    "TRANSITIONS",
    "AuditAction",
    "AuditRecord",
    "BrokerOrder",
    "BrokerPosition",
    "Claim",
    "ClaimOutcome",
    "ClaimState",
    "Intent",
    "Kind",
    "LedgerPosition",
    "OrderClass",
    "OrderRequest",
    "OrderSpec",
    "OrderStatus",
    "OrderType",
    "PositionIntent",
    "RejectKind",
    "ReplaceRequest",
    "Side",
    "TimeInForce",
    "canonical_symbol",
    "crypto_pair",
    "default_time_in_force",
    "ledger_symbol",
    "same_symbol",
    "symbol_key",
]
