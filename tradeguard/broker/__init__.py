"""The broker adapters: Alpaca (alpaca-py), the in-process paper broker, and fault injection.

The port they implement is `tradeguard.ports.Broker`; their value types live in
`tradeguard.domain`.
"""
