"""Reconciliation: a pure diff of claims and ledger against a broker snapshot, and its runner."""

from tradeguard.reconcile.diff import diff, plan
from tradeguard.reconcile.runner import BackgroundReconciler, Reconciler, ReconcileReport
from tradeguard.reconcile.snapshot import Action, ActionKind, BrokerSnapshot

__all__ = [
    "Action",
    "ActionKind",
    "BackgroundReconciler",
    "BrokerSnapshot",
    "ReconcileReport",
    "Reconciler",
    "diff",
    "plan",
]
