"""Replay recorded sessions through tradeguard in three guard modes; reports and importers.

`replay_session(path, modes)` streams a session file (the format of `tradeguard.sessions`)
through the real `OrderGateway`, the paper broker (with the session's lost answers turned into
faults) and the reconciler, on a manual clock, and returns each mode's figures. Uses only
tradeguard's public API.
"""

from replay.engine import EventRow, ReplayResult, replay_session
from replay.metrics import AttemptOutcome, Mode, Totals

__all__ = ["AttemptOutcome", "EventRow", "Mode", "ReplayResult", "Totals", "replay_session"]
