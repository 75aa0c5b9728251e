"""The end of `tradeguard demo`: the May 21 session replayed three ways, in a trader's terms."""

from __future__ import annotations

from decimal import Decimal

from replay.cli import MAY21, resolve_session
from replay.engine import replay_session
from replay.metrics import Mode, Totals

__all__ = ["may21_comparison"]

_WHO = {
    Mode.NONE: "without a guard",
    Mode.ENTRY_ONLY: "with the entry guard of May 21",
    Mode.FULL: "with tradeguard",
}


def _usd(value: Decimal) -> str:
    return f"${value:,.2f}"


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def _line(mode: Mode, t: Totals) -> str:
    parts = []
    if t.duplicate_orders_sent:
        sent = f"{_plural(t.duplicate_orders_sent, 'duplicate order')} reached the broker"
        if t.duplicate_orders_executed:
            shares = f"{t.duplicate_shares_executed:,f} shares, {_usd(t.duplicate_exposure_executed_usd)}"
            sent += f", {t.duplicate_orders_executed} executed ({shares} traded twice)"
        if t.duplicate_attempts_refused_by_broker:
            # Alpaca's own checks (e.g. a sell that would cross from long to short), not a guard.
            sent += f", {t.duplicate_attempts_refused_by_broker} refused by the broker itself"
        parts.append(sent)
    else:
        parts.append("nothing went out twice")
    if t.duplicate_attempts_blocked:
        held = _plural(t.duplicate_attempts_blocked, "retry", "retries")
        parts.append(f"{held} held back ({_usd(t.exposure_blocked_usd)})")
    if t.unintended_short_shares:
        parts.append(f"a {-t.unintended_short_shares:,f}-share short opened")
    else:
        parts.append("no short")
    minutes = t.phantom_entry_block_secs / 60
    if t.phantom_entry_block_secs >= 120:
        parts.append(f"entries blocked {minutes:,.0f} min by a position the broker did not hold")
    elif t.phantom_entry_block_secs:
        parts.append(f"the phantom position cleared in {t.phantom_entry_block_secs:,.0f} s")
    left = ", ".join(f"{qty:+} {sym}" for sym, qty in sorted(t.untracked_shares_at_end.items()))
    if left:
        parts.append(f"ends with {left} at the broker that the bot does not know of")
    return f"  {_WHO[mode] + ':':<32}{'; '.join(parts)}"


def may21_comparison() -> list[str]:
    """Return the comparison lines (the May 21 session shipped with tradeguard, three modes)."""
    result = replay_session(resolve_session(MAY21), list(Mode))
    lines = [f"The May 21 session replayed three ways (tradeguard replay {MAY21} --compare):"]
    lines += [_line(mode, result.totals[mode]) for mode in Mode]
    return lines
