"""Named points on the order path where a test or a chaos run may stop, freeze or kill a process.

The gateway, the send path and the reconciler call `hit(name)` at each point below. With no hook
installed (the default, and always in production) a call is one global read and a comparison.
A hook is any callable taking the point's name: a crash test installs one that sends SIGKILL or
SIGSTOP to its own process at the point it wants to exercise.

Points, in the order an order passes them:

- ``after_claim``: the claim is durable; the lease check and the POST have not happened.
- ``before_post``: the lease was checked (renewed if nearly out); the POST is next (a sender held
  up here checks its lease, and an exit its size, once more first).
- ``after_post``: the broker answered (or failed); the answer is not recorded yet.
- ``exit_before_claim``: an exit (a new one, or the resend of one that placed nothing) read the
  broker's position; sizing and claiming are next.
- ``reconcile_after_read``: a reconcile pass read the broker; its actions are not applied yet.

``after_post`` is the issue's "after the answer, before the claim's update"; ``exit_before_claim``
its "between an exit's sizing and its claim" (the exit is sized from that read and claimed in one
store transaction). `tradeguard chaos` (`tradeguard.chaos`) kills a user's bot at each of them.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["POINTS", "hit", "set_hook"]

POINTS = ("after_claim", "before_post", "after_post", "exit_before_claim", "reconcile_after_read")

_hook: Callable[[str], None] | None = None


def set_hook(hook: Callable[[str], None] | None) -> None:
    """Install `hook` (called with each point's name), or remove it with None."""
    global _hook  # noqa: PLW0603 - one process-wide switch, off unless a test turns it on
    _hook = hook


def hit(name: str) -> None:
    """Pass point `name`; calls the installed hook, if any."""
    if _hook is not None:
        _hook(name)
