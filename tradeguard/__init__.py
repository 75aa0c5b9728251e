"""tradeguard: exactly-once order execution for Alpaca trading bots.

One trading decision reaches the broker at most once across retries, crashes, processes and
hosts; exits never sell more than the broker holds; the guard's view of positions converges to
the broker's. Start with `OrderGateway` (or `GuardedTradingClient` as a drop-in for alpaca-py's
`TradingClient`), a `ClaimStore`, and a broker: `AlpacaBroker` or the offline `PaperBroker`.
"""

from tradeguard.broker.alpaca import AlpacaBroker
from tradeguard.client import GuardedTradingClient
from tradeguard.clock import Clock, ManualClock, SystemClock
from tradeguard.config import Settings
from tradeguard.domain import (
    AuditAction,
    AuditRecord,
    BrokerOrder,
    BrokerPosition,
    Claim,
    LedgerPosition,
    OrderRequest,
    OrderStatus,
    OrderType,
    PositionIntent,
    Side,
    TimeInForce,
)
from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.errors import (
    BrokerError,
    BrokerUnavailable,
    ClaimInProgress,
    ConfigError,
    IllegalTransition,
    IntentMismatch,
    LeaseLost,
    OrderRejected,
    OutcomeUnknown,
    SessionFormatError,
    StoreError,
    TradeguardError,
)
from tradeguard.execution import OrderResult, Outcome
from tradeguard.gateway import OrderGateway
from tradeguard.paper import PaperBroker
from tradeguard.ports import Broker
from tradeguard.reconcile import (
    Action,
    ActionKind,
    BackgroundReconciler,
    BrokerSnapshot,
    Reconciler,
    ReconcileReport,
    diff,
)
from tradeguard.store import AuditQuery, ClaimStore

__version__ = "0.1.0"

__all__ = [
    # the gateway and the drop-in client
    "OrderGateway",
    "OrderResult",
    "Outcome",
    "GuardedTradingClient",
    # the claim store, ledger and audit log
    "ClaimStore",
    "Claim",
    "ClaimState",
    "LedgerPosition",
    "AuditAction",
    "AuditQuery",
    "AuditRecord",
    "Intent",
    "Kind",
    "OrderSpec",
    # reconciliation
    "Reconciler",
    "ReconcileReport",
    "BackgroundReconciler",
    "BrokerSnapshot",
    "Action",
    "ActionKind",
    "diff",
    # brokers and their value types
    "Broker",
    "AlpacaBroker",
    "PaperBroker",
    "BrokerOrder",
    "BrokerPosition",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "PositionIntent",
    "Side",
    "TimeInForce",
    # time and settings
    "Clock",
    "ManualClock",
    "SystemClock",
    "Settings",
    # errors
    "TradeguardError",
    "ConfigError",
    "StoreError",
    "IntentMismatch",
    "ClaimInProgress",
    "LeaseLost",
    "IllegalTransition",
    "BrokerError",
    "OrderRejected",
    "OutcomeUnknown",
    "BrokerUnavailable",
    "SessionFormatError",
    "__version__",
]
