"""Example bots built on tradeguard's public API."""
