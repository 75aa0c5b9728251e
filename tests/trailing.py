"""Reads that trail: the state an account showed some time ago (test doubles' helper).

Alpaca's positions endpoint (and at times its order listing) trails fills by seconds. Doubles that
model it keep every state they passed through with the time it began, oldest first, and answer a
read from the state of `lag` ago (`as_of`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

_T = TypeVar("_T")


def as_of(history: Sequence[tuple[float, _T]], horizon: float) -> _T:
    """The state `history` held at `horizon`: the newest begun no later, else the oldest."""
    shown = history[0][1]
    for began, state in history:
        if began > horizon:
            break
        shown = state
    return shown
