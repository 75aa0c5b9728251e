"""The paper venue: Alpaca's semantics simulated offline, in process or over HTTP.

- `broker`: `PaperBroker`, the `Broker` port simulated in process (locking, write-or-roll-back).
- `venue`: what the rules and matching read: the account, prices, assets, settings.
- `accept`: a new order through Alpaca's checks, in Alpaca's order; `rules`: those checks.
- `classes`: bracket, OTO and OCO orders and their legs; `matching`: triggers, fills, groups.
- `replace`: replacing an open order; `assets`: the asset master (`assets.csv` ships with it).
- `orders`: one order and its Alpaca JSON; `state`: the account; `statefile`: its JSON file.
- `refusals`: Alpaca's error bodies; `prices`: where prices come from (`PriceSource`).
- `wire`: Alpaca's JSON for the server; `handlers`: one function per route; `routes`: the one
  route registry; `server`: `PaperServer`, the broker behind Alpaca's REST routes on loopback.

Only `PaperBroker` is imported here; import the server from `tradeguard.paper.server`.
"""

from tradeguard.paper.broker import PaperBroker

__all__ = ["PaperBroker"]
