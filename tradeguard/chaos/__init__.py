"""Fault-injection runs of a user's own strategy: `tradeguard chaos` and `tradeguard.testing.chaos`.

- `plan`: each run's faults and crash points, drawn from its seed.
- `harness`: one run in process, the bot killed at crash points and restarted on the same store
  and account; `unguarded`: the same strategy through a plain bot's order path.
- `tap` and `checker`: what the broker received, and G1-G4 checked after every run.
- `campaign`: `chaos(...)`, many runs, the `ChaosResult`, sessions of failing runs; `command`:
  `tradeguard chaos` and its report.

Nothing is imported here, so `tradeguard --help` stays light: `from tradeguard.chaos.campaign
import chaos`, or `tradeguard.testing.chaos`.
"""
