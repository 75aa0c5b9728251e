"""A bot process that holds skip notes when it ends: run as ``python -m tests.skip_notes_worker URL MODE``.

`exit`: claims one decision, records three duplicates of it and returns without closing its
store (the interpreter's exit writes the notes). `kill`: claims decision "a" and records three
duplicates of it, then claims "b" (a write: the three notes go with it), moves "b" to SUBMITTED,
records two duplicates of "b" (held: the timer is set to an hour), prints ``ready`` and waits to
be killed.
"""

from __future__ import annotations

import sys
import threading
from decimal import Decimal

from tradeguard.domain.intents import Intent, Kind, OrderSpec
from tradeguard.domain.lifecycle import ClaimState
from tradeguard.domain.orders import Side
from tradeguard.store import ClaimStore, skip_notes

SPEC = OrderSpec(qty=Decimal(1))


def _intent(name: str) -> Intent:
    return Intent("bot", Kind.ENTRY, "QQQ", Side.BUY, name)


def main(url: str, mode: str) -> None:
    """Run `mode` on the store at `url`."""
    skip_notes.MAX_AGE_SECS = 3600.0  # only the exit, a write or a full buffer writes the notes
    store = ClaimStore(url)
    a = store.claim(_intent("a"), SPEC, owner="w").claim
    for i in range(3):
        store.record_skip(a, agent_id="bot", reason=f"duplicate a{i}")
    if mode == "exit":
        globals()["kept"] = store  # alive at exit: the exit handler writes its notes
        return
    b = store.claim(_intent("b"), SPEC, owner="w").claim
    store.transition(b, ClaimState.SUBMITTED, reason="acknowledged", broker_order_id="order-b")
    for i in range(2):
        store.record_skip(b, agent_id="bot", reason=f"duplicate b{i}")
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
