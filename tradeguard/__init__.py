"""tradeguard."""
