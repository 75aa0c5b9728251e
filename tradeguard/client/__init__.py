"""The drop-in client: alpaca-py's `TradingClient` with guarded orders (one import to switch).

`GuardedTradingClient` is the client; `tradeguard.client.errors` holds the `APIError`s it raises
for situations only the guard can report (an unknown outcome, a claim store failure, ...).
"""

from tradeguard.client.convert import as_order, as_raw
from tradeguard.client.errors import (
    ClaimStoreError,
    ClientOrderIdReused,
    InvalidOrder,
    OrderInProgress,
    OrderNotSent,
    OrderOutcomeUnknown,
    StoreOfAnotherAccount,
)
from tradeguard.client.guarded import GuardedTradingClient

to_alpaca_order = as_order  # the name of earlier releases

__all__ = [
    "ClaimStoreError",
    "ClientOrderIdReused",
    "GuardedTradingClient",
    "InvalidOrder",
    "OrderInProgress",
    "OrderNotSent",
    "OrderOutcomeUnknown",
    "StoreOfAnotherAccount",
    "as_order",
    "as_raw",
    "to_alpaca_order",
]
