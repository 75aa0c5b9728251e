"""Deliberately broken guards for the chaos tests: the checker must catch each of them."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from decimal import Decimal
from typing import Any

from tradeguard import OrderGateway
from tradeguard.domain import OrderRequest, Side
from tradeguard.errors import BrokerError, OutcomeUnknown
from tradeguard.execution import OrderResult, Outcome


class _HiddenRetry:
    """A transport that resends a POST whose answer was lost, under a new client id."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def submit_order(self, request: OrderRequest) -> Any:
        try:
            return self.inner.submit_order(request)
        except OutcomeUnknown:
            return self.inner.submit_order(replace(request, client_order_id=f"{request.client_order_id}-r"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class ResendsUnderANewId(OrderGateway):
    """A guard whose transport resends after a timeout under a new client id (alpaca-py's hidden retry)."""

    def __init__(self, broker: Any, store: Any, **kwargs: Any) -> None:
        super().__init__(_HiddenRetry(broker), store, **kwargs)


class ExitsIgnoreExitsInFlight(OrderGateway):
    """An exit whose answer was lost is sold again at the ledger's size, as if nothing were in flight."""

    def exit(self, symbol: str, *, intent: str, **kwargs: Any) -> OrderResult:
        held = self.position(symbol).qty
        result = super().exit(symbol, intent=intent, **kwargs)
        if result.outcome is Outcome.UNKNOWN and held > 0:
            coid = f"again-{result.claim.client_order_id if result.claim else intent}"[:48]
            request = OrderRequest(symbol=symbol, side=Side.SELL, client_order_id=coid, qty=Decimal(held))
            with contextlib.suppress(BrokerError):  # a refusal is what the checker looks at
                self.broker.submit_order(request)
        return result
