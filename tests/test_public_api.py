"""The public surface is curated: everything in __all__ exists, nothing private leaks."""

from __future__ import annotations

import tradeguard

EXPECTED = {
    "OrderGateway",
    "OrderResult",
    "Outcome",
    "GuardedTradingClient",
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
    "Reconciler",
    "ReconcileReport",
    "BackgroundReconciler",
    "BrokerSnapshot",
    "Action",
    "ActionKind",
    "diff",
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
    "Clock",
    "ManualClock",
    "SystemClock",
    "Settings",
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
}


def test_all_is_exactly_the_curated_list() -> None:
    assert set(tradeguard.__all__) == EXPECTED
    assert len(tradeguard.__all__) == len(EXPECTED)


def test_every_exported_name_exists_and_is_public() -> None:
    for name in tradeguard.__all__:
        assert hasattr(tradeguard, name), name
        value = getattr(tradeguard, name)
        module = getattr(value, "__module__", "tradeguard")
        assert module.startswith("tradeguard"), (name, module)
        assert not name.startswith("_") or name == "__version__"


def test_errors_form_one_tree() -> None:
    for name in (
        "ConfigError",
        "StoreError",
        "IntentMismatch",
        "ClaimInProgress",
        "BrokerError",
        "SessionFormatError",
        "IllegalTransition",
    ):
        assert issubclass(getattr(tradeguard, name), tradeguard.TradeguardError)
    for name in ("OrderRejected", "OutcomeUnknown", "BrokerUnavailable"):
        assert issubclass(getattr(tradeguard, name), tradeguard.BrokerError)
