"""tradeguard: exactly-once order execution for Alpaca trading bots.

One trading decision reaches the broker at most once across retries, crashes, processes and
hosts; exits never sell more than the broker holds; the guard's view of positions converges to
the broker's. Start with `OrderGateway` (or `GuardedTradingClient` as a drop-in for alpaca-py's
`TradingClient`), a `ClaimStore`, and a broker: `AlpacaBroker` or the offline `PaperBroker`.

The names below are imported on first use (PEP 562), not when `tradeguard` is imported: the
adapters pull in alpaca-py, SQLAlchemy and Alembic, which cost seconds that `tradeguard --help`,
`tradeguard audit` and a bot using only the paper broker should not pay.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# The domain first, eagerly (it is pure standard library, a few ms): `tradeguard.errors` and
# `tradeguard.domain` import each other, and that cycle resolves only when it is entered through
# `tradeguard.domain`. Every `import tradeguard.<module>` runs this file first, so this fixes
# the order for all entry points (it used to be fixed by accident, via the eager adapter imports).
import tradeguard.domain  # noqa: F401 - imported for the order it sets, not for a name

if TYPE_CHECKING:
    # What mypy and IDEs see; at run time `__getattr__` imports the same names from `_EXPORTS`
    # (tests/test_import_graph.py checks the two agree).
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
        default_time_in_force,
    )
    from tradeguard.domain.intents import Intent, Kind, OrderSpec, derive_client_order_id
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
        UnrecordedChange,
        UnrecordedOrder,
    )
    from tradeguard.execution import OrderResult, Outcome
    from tradeguard.gateway import OrderGateway
    from tradeguard.paper import PaperBroker
    from tradeguard.ports import Broker, ClaimLedger, ForwardingBroker
    from tradeguard.reconcile import (
        Action,
        ActionKind,
        BackgroundReconciler,
        BrokerSnapshot,
        Reconciler,
        ReconcileReport,
    )
    from tradeguard.reconcile.diff import diff
    from tradeguard.run.bars import Bar, Bars
    from tradeguard.run.strategy import Strategy, StrategyContext
    from tradeguard.sessions import (
        AnswerEvent,
        AttemptEvent,
        CancelEvent,
        EndEvent,
        ExternalEvent,
        NoteEvent,
        PositionEvent,
        PriceEvent,
        Recorder,
        ReplaceEvent,
        SessionHeader,
        SessionReader,
        SessionWriter,
        open_session,
    )
    from tradeguard.store import AuditQuery, ClaimStore, MemoryClaimStore

__version__ = "0.1.0"

__all__ = [
    # the gateway and the drop-in client
    "OrderGateway",
    "OrderResult",
    "Outcome",
    "GuardedTradingClient",
    # strategies run by `tradeguard run`
    "Strategy",
    "StrategyContext",
    "Bar",
    "Bars",
    # the claim store, ledger and audit log
    "ClaimStore",
    "MemoryClaimStore",
    "Claim",
    "ClaimState",
    "LedgerPosition",
    "AuditAction",
    "AuditQuery",
    "AuditRecord",
    "Intent",
    "Kind",
    "OrderSpec",
    "derive_client_order_id",
    # reconciliation
    "Reconciler",
    "ReconcileReport",
    "BackgroundReconciler",
    "BrokerSnapshot",
    "Action",
    "ActionKind",
    "diff",
    # recorded sessions (the format replay/ reads; `record_to=` writes it)
    "SessionHeader",
    "AttemptEvent",
    "AnswerEvent",
    "PriceEvent",
    "PositionEvent",
    "ExternalEvent",
    "NoteEvent",
    "EndEvent",
    "CancelEvent",
    "ReplaceEvent",
    "SessionReader",
    "SessionWriter",
    "Recorder",
    "open_session",
    # brokers and their value types
    "Broker",
    "ClaimLedger",
    "ForwardingBroker",
    "AlpacaBroker",
    "PaperBroker",
    "BrokerOrder",
    "BrokerPosition",
    "OrderClass",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "PositionIntent",
    "Side",
    "TimeInForce",
    "canonical_symbol",
    "default_time_in_force",
    "RejectKind",
    "ReplaceRequest",
    # time and settings
    "Clock",
    "ManualClock",
    "SystemClock",
    "Settings",
    # errors
    "TradeguardError",
    "ConfigError",
    "StoreError",
    "UnrecordedOrder",
    "UnrecordedChange",
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

# Each public name -> the module that defines it. Grouped by module, as imported above.
_EXPORTS: dict[str, str] = {
    "AlpacaBroker": "tradeguard.broker.alpaca",
    "PaperBroker": "tradeguard.paper",
    "GuardedTradingClient": "tradeguard.client",
    **dict.fromkeys(("Clock", "ManualClock", "SystemClock"), "tradeguard.clock"),
    "Settings": "tradeguard.config",
    **dict.fromkeys(
        (
            "AuditAction",
            "AuditRecord",
            "BrokerOrder",
            "BrokerPosition",
            "Claim",
            "LedgerPosition",
            "OrderClass",
            "OrderRequest",
            "OrderStatus",
            "OrderType",
            "PositionIntent",
            "Side",
            "TimeInForce",
            "RejectKind",
            "ReplaceRequest",
            "canonical_symbol",
            "default_time_in_force",
        ),
        "tradeguard.domain",
    ),
    **dict.fromkeys(("Intent", "Kind", "OrderSpec", "derive_client_order_id"), "tradeguard.domain.intents"),
    "ClaimState": "tradeguard.domain.lifecycle",
    **dict.fromkeys(
        (
            "BrokerError",
            "BrokerUnavailable",
            "ClaimInProgress",
            "ConfigError",
            "IllegalTransition",
            "IntentMismatch",
            "LeaseLost",
            "OrderRejected",
            "OutcomeUnknown",
            "SessionFormatError",
            "StoreError",
            "TradeguardError",
            "UnrecordedChange",
            "UnrecordedOrder",
        ),
        "tradeguard.errors",
    ),
    **dict.fromkeys(("OrderResult", "Outcome"), "tradeguard.execution"),
    "OrderGateway": "tradeguard.gateway",
    **dict.fromkeys(("Broker", "ClaimLedger", "ForwardingBroker"), "tradeguard.ports"),
    **dict.fromkeys(
        (
            "Action",
            "ActionKind",
            "BackgroundReconciler",
            "BrokerSnapshot",
            "Reconciler",
            "ReconcileReport",
        ),
        "tradeguard.reconcile",
    ),
    "diff": "tradeguard.reconcile.diff",
    **dict.fromkeys(("Bar", "Bars"), "tradeguard.run.bars"),
    **dict.fromkeys(("Strategy", "StrategyContext"), "tradeguard.run.strategy"),
    **dict.fromkeys(
        (
            "AnswerEvent",
            "AttemptEvent",
            "CancelEvent",
            "EndEvent",
            "ExternalEvent",
            "NoteEvent",
            "PositionEvent",
            "PriceEvent",
            "Recorder",
            "ReplaceEvent",
            "SessionHeader",
            "SessionReader",
            "SessionWriter",
            "open_session",
        ),
        "tradeguard.sessions",
    ),
    **dict.fromkeys(("AuditQuery", "ClaimStore", "MemoryClaimStore"), "tradeguard.store"),
}


if not TYPE_CHECKING:
    # Hidden from mypy: a module-level __getattr__ would make it accept any name imported from
    # tradeguard (typed as its return type) instead of reporting a typo.

    def __getattr__(name: str) -> object:
        """Import a public name on first access and keep it, so later lookups are plain."""
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        """List the public names too, before they are imported (for dir() and completion)."""
        return sorted(set(globals()) | set(__all__))
