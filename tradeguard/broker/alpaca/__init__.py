"""The Alpaca adapter: `AlpacaBroker`, the `Broker` port over alpaca-py's `TradingClient`.

- `adapter`: `AlpacaBroker`: submit, lookups (following replacements), listings, replace, cancel.
- `transport`: its transport policy on the client (no hidden POST retry, timeouts).
- `convert`: tradeguard's value types to and from Alpaca's JSON.
- `errors`: every alpaca-py / requests failure to a `BrokerError`, in one place.
- `errors_map`: Alpaca's error vocabulary (status, code, message) to exception class and
  `RejectKind`; pure, so the paper broker, which answers with Alpaca's bodies, uses it too.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tradeguard.broker.alpaca.adapter import AlpacaBroker

__all__ = ["AlpacaBroker"]


def __getattr__(name: str) -> Any:
    # Lazy: the paper broker and the fault injector import `errors_map` (pure), which must not
    # drag alpaca-py in through this package's __init__.
    if name == "AlpacaBroker":
        from tradeguard.broker.alpaca.adapter import AlpacaBroker  # noqa: PLC0415

        return AlpacaBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
