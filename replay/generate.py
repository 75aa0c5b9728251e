"""Generated sessions for benchmarks and tests: a momentum-like bot, any number of attempts.

Deterministic from a seed and written as a stream (nothing is held but the bot's positions).
Each decision is an entry, an add or an exit of everything held; a fifth of first attempts lose
their answer after the broker placed the order and are retried, so every mode meets duplicates.
"""

from __future__ import annotations

import json
import os
import random
from datetime import datetime, timedelta
from decimal import Decimal
from typing import IO

__all__ = ["generate_session"]

_SYMBOLS = ("TQQQ", "SQQQ", "QQQ", "SPY")
_START = datetime.fromisoformat("2026-05-21T09:30:00-04:00")


def generate_session(
    target: str | os.PathLike[str] | IO[str], attempts: int, *, seed: int = 21, retry_share: float = 0.2
) -> int:
    """Write a session of about `attempts` attempts to `target`; return the number of lines.

    Args:
        target: A path or an open text stream.
        attempts: How many attempt lines to write (retries included).
        seed: The random seed: the same seed gives the same file.
        retry_share: The share of decisions whose first answer is lost and which are retried.
    """
    rng = random.Random(seed)
    if isinstance(target, str | os.PathLike):
        with open(target, "w", encoding="utf-8") as out:
            return _write(out, attempts, rng, retry_share)
    return _write(target, attempts, rng, retry_share)


def _write(out: IO[str], attempts: int, rng: random.Random, retry_share: float) -> int:
    header = {
        "type": "session",
        "version": 1,
        "name": f"generated: {attempts:,} attempts",
        "agent_id": "generated-bot",
        "start": _START.isoformat(),
        "reconcile_interval_secs": 60,
        "cash": "1000000000",
        "allow_short": True,
        "source": "replay.generate",
    }
    lines = [json.dumps(header)]
    held = dict.fromkeys(_SYMBOLS, 0)
    prices = {s: Decimal(rng.randint(2000, 40000)) / 100 for s in _SYMBOLS}
    t = _START
    written = count = decision = 0
    while count < attempts:
        decision += 1
        symbol = rng.choice(_SYMBOLS)
        t += timedelta(seconds=1)
        prices[symbol] = max(Decimal(1), prices[symbol] + Decimal(rng.randint(-20, 20)) / 100)
        lines.append(
            json.dumps({"type": "price", "t": t.isoformat(), "symbol": symbol, "price": str(prices[symbol])})
        )
        exiting = held[symbol] > 0 and rng.random() < 0.4
        qty = held[symbol] if exiting else rng.randint(1, 10)
        held[symbol] = 0 if exiting else held[symbol] + qty
        base = {
            "type": "attempt",
            "decision": f"d{decision} {'exit' if exiting else 'entry'} {symbol}",
            "kind": "exit" if exiting else "entry",
            "symbol": symbol,
            "side": "sell" if exiting else "buy",
            "qty": qty,
        }
        tries = 2 if rng.random() < retry_share and count + 2 <= attempts else 1
        for n in range(1, tries + 1):
            lines.append(json.dumps({**base, "t": t.isoformat(), "attempt": n}))
            count += 1
            if n < tries:
                answer = {"type": "answer", "decision": base["decision"], "attempt": n, "result": "timeout"}
                t += timedelta(seconds=2)
                lines.append(json.dumps({**answer, "t": t.isoformat(), "after_secs": 2, "placed": True}))
        if len(lines) >= 4096:
            out.write("\n".join(lines) + "\n")
            written += len(lines)
            lines.clear()
    lines.append(json.dumps({"type": "end", "t": (t + timedelta(seconds=1)).isoformat()}))
    out.write("\n".join(lines) + "\n")
    return written + len(lines)
