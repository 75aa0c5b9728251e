"""The public surface is curated: `__all__` is exactly what each public module exports.

`tradeguard` resolves its names lazily (`__getattr__` over the `_EXPORTS` table, with the same
names imported under TYPE_CHECKING for mypy); `tradeguard.testing` is the kit users test with.
"""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
import types
from pathlib import Path

import tradeguard
import tradeguard.testing as kit
from tests.store_workers import subprocess_env

EXPECTED = {
    "OrderGateway",
    "OrderResult",
    "Outcome",
    "GuardedTradingClient",
    "Strategy",
    "StrategyContext",
    "Bar",
    "Bars",
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
    "Reconciler",
    "ReconcileReport",
    "BackgroundReconciler",
    "BrokerSnapshot",
    "Action",
    "ActionKind",
    "diff",
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
    "UnrecordedOrder",
    "UnrecordedChange",
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


def _fresh(code: str) -> object:
    """Run `code` in a new interpreter (nothing imported yet); return what it prints as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=subprocess_env()
    )
    return json.loads(done.stdout)


def test_all_has_no_repeats() -> None:
    for module in (tradeguard, kit):
        assert len(module.__all__) == len(set(module.__all__)), module.__name__


def test_every_name_in_all_resolves_lazily_to_the_module_the_table_names() -> None:
    unresolved = _fresh(
        "import importlib, json, tradeguard as t\n"
        "bad = [n for n in t.__all__ if n != '__version__' and n in vars(t)]\n"
        "for n in t.__all__:\n"
        "    if n == '__version__': continue\n"
        "    v = getattr(t, n)\n"
        "    if v is not getattr(importlib.import_module(t._EXPORTS[n]), n): bad.append(n)\n"
        "print(json.dumps(bad))"
    )
    assert unresolved == [], "imported eagerly, or resolved to another object than _EXPORTS names"


def test_dir_lists_all_and_otherwise_only_modules() -> None:
    listed = _fresh("import json, tradeguard as t; print(json.dumps(dir(t)))")
    assert isinstance(listed, list)
    assert set(tradeguard.__all__) <= set(listed)
    extra = {n for n in listed if not n.startswith("_")} - set(tradeguard.__all__)
    plumbing = {"TYPE_CHECKING", "annotations", "importlib"}
    assert all(n in plumbing or isinstance(getattr(tradeguard, n), types.ModuleType) for n in extra), extra


def test_type_checking_block_and_exports_table_name_exactly_all() -> None:
    tree = ast.parse(Path(inspect.getfile(tradeguard)).read_text())
    (block,) = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    for_mypy = {a.asname or a.name for n in block.body if isinstance(n, ast.ImportFrom) for a in n.names}
    public = set(tradeguard.__all__) - {"__version__"}
    assert for_mypy == public, "seen by mypy but not in __all__, or the reverse"
    assert set(tradeguard._EXPORTS) == public, "resolvable at run time but not in __all__, or the reverse"


def test_every_name_in_the_kits_all_exists_in_the_kit() -> None:
    for name in kit.__all__:
        assert hasattr(kit, name), name
        assert getattr(kit, name).__module__.startswith("tradeguard"), name


def test_the_kit_exports_everything_it_defines() -> None:
    defined = {
        name
        for name, value in vars(kit).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == kit.__name__
    }
    assert defined <= set(kit.__all__), defined - set(kit.__all__)
    star: dict[str, object] = {}
    exec("from tradeguard.testing import *", star)
    assert set(star) - {"__builtins__"} == set(kit.__all__)
