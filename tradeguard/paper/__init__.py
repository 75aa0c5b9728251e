"""The paper venue: Alpaca's semantics simulated offline, in process or over HTTP.

- `broker`: `PaperBroker`, the `Broker` port simulated in process.
- `state`: the account's orders, positions and cash, and its state file.
- `rules`: Alpaca's order checks, each raising Alpaca's exact refusal.
- `prices`: where fill prices come from (`PriceSource` and its sources).
- `wire`: Alpaca's JSON for the server (parse requests, render answers).
- `handlers`: one function per served route over a `PaperBroker`.
- `server`: `PaperServer`, the paper broker behind Alpaca's REST routes on loopback.

Only `PaperBroker` is imported here; import the server from `tradeguard.paper.server`.
"""

from tradeguard.paper.broker import PaperBroker

__all__ = ["PaperBroker"]
