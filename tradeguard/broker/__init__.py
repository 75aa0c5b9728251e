"""The broker adapters, one package per venue: `alpaca` (alpaca-py's `TradingClient`).

The port they implement is `tradeguard.ports.Broker`; their value types live in
`tradeguard.domain`. The offline simulator of Alpaca is `tradeguard.paper`, and fault injection
is `tradeguard.faults`.
"""
