"""Plain aligned text for the terminal: the per-event table, the totals, and a trader's summary."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from replay.engine import EventRow
from replay.metrics import AttemptOutcome, Mode, Totals

__all__ = ["FIGURES", "cell", "event_header", "event_line", "figure_value", "totals_table", "trader_summary"]

_TEXT = 46
_CELL = 24
_SYMBOL = 7
_RECORDED = 23  # "blocked by tradeguard" and a space
_FIGURE = 14  # the narrowest figure column of the totals

FIGURES: tuple[tuple[str, str], ...] = (
    ("duplicate_attempts", "duplicate attempts (retries of a decision already at the broker)"),
    ("duplicate_orders_sent", "duplicate orders sent (reached the broker)"),
    ("duplicate_exposure_sent_usd", "duplicate exposure sent, USD"),
    ("duplicate_orders_executed", "duplicate orders executed"),
    ("duplicate_shares_executed", "duplicate shares executed"),
    ("duplicate_exposure_executed_usd", "duplicate exposure executed, USD"),
    ("duplicate_attempts_blocked", "duplicate attempts blocked"),
    ("exposure_blocked_usd", "exposure blocked, USD"),
    ("duplicate_attempts_refused_by_broker", "duplicate attempts refused by the broker"),
    ("unintended_short_shares", "unintended short, shares"),
    ("phantom_entry_block_secs", "entry blocked by a phantom, seconds"),
    ("untracked_shares_at_end", "broker shares the bot's view lacks at the end"),
)


def _usd(value: Decimal) -> str:
    return f"{value:,.2f}"


def cell(outcome: AttemptOutcome | str) -> str:
    """Return one mode's outcome of an event as a short table cell."""
    if isinstance(outcome, str):
        return outcome
    label = outcome.label
    if label == "DUPLICATE EXECUTED":
        return f"DUPLICATE ${_usd(outcome.exposure_usd)}"
    if label == "blocked":
        return f"blocked (${_usd(outcome.exposure_usd)})"
    if label == "refused by broker":
        code = outcome.detail.split(" ", 1)[0]
        return f"refused {code}" if code.isdigit() else "refused"
    if label == "not sent":
        return outcome.detail.split(":", 1)[0] or "not sent"
    return label


def _col(text: str, width: int) -> str:
    """Return `text` in a column of `width`, cut short with `…` so that a space always follows."""
    if len(text) >= width:
        text = text[: width - 2] + "…"
    return text.ljust(width)


def event_header(modes: Sequence[Mode]) -> str:
    """Return the header line of the per-event table."""
    cols = "".join(_col(m.value, _CELL) for m in modes)
    return f"{'time':<9} {'event':<{_TEXT}} {'symbol':<{_SYMBOL}}{'recorded':<{_RECORDED}}{cols}".rstrip()


def event_line(row: EventRow, modes: Sequence[Mode]) -> str:
    """Return one row of the per-event table."""
    text = row.text if len(row.text) <= _TEXT else row.text[: _TEXT - 1] + "…"
    cells = (cell(row.outcomes[m]) if m in row.outcomes else "" for m in modes)
    cols = "".join(_col(c, _CELL) for c in cells)
    when = row.t.strftime("%H:%M:%S")
    symbol, recorded = _col(row.symbol or "", _SYMBOL), _col(row.recorded or "", _RECORDED)
    return f"{when:<9} {text:<{_TEXT}} {symbol}{recorded}{cols}".rstrip()


def figure_value(totals: Totals, key: str) -> str:
    """Return one figure of one mode as table text."""
    value = getattr(totals, key)
    if key.endswith("_usd"):
        return _usd(value)
    if key == "phantom_entry_block_secs":
        return f"{value:,.0f}"
    if key == "untracked_shares_at_end":
        return ", ".join(f"{sym} {qty:+}" for sym, qty in sorted(value.items())) or "none"
    return str(value)


def totals_table(totals: dict[Mode, Totals]) -> list[str]:
    """Return the totals as aligned lines, one column per mode."""
    modes = list(totals)
    width = max(len(label) for _, label in FIGURES) + 2
    values = {m: [figure_value(totals[m], key) for key, _ in FIGURES] for m in modes}
    # Each column as wide as its longest value and two spaces: wide figures never run together.
    widths = {m: max(_FIGURE, len(m.value) + 2, *(len(v) + 2 for v in values[m])) for m in modes}
    lines = [f"{'figure':<{width}}" + "".join(f"{m.value:>{widths[m]}}" for m in modes)]
    for i, (_, label) in enumerate(FIGURES):
        lines.append(f"{label:<{width}}" + "".join(f"{values[m][i]:>{widths[m]}}" for m in modes))
    return lines


def _shares(value: Decimal) -> str:
    return f"{abs(value):,f}".rstrip("0").rstrip(".") if value % 1 else f"{abs(value):,.0f}"


def trader_summary(totals: dict[Mode, Totals]) -> list[str]:
    """Say what each mode would have meant, in a trader's terms."""
    lines = []
    for mode, t in totals.items():
        dup_usd = _usd(t.duplicate_exposure_executed_usd)
        twice = (
            f"{t.duplicate_orders_sent:,} duplicate order(s) reached the broker, "
            f"{t.duplicate_orders_executed:,} executed (${dup_usd})"
            if t.duplicate_orders_sent
            else "nothing went out twice"
        )
        blocked = t.duplicate_attempts_blocked
        retries = "retry" if blocked == 1 else "retries"
        held_back = f", {blocked:,} {retries} held back (${_usd(t.exposure_blocked_usd)})"
        refused = (
            f", {t.duplicate_attempts_refused_by_broker:,} refused by the broker itself"
            if t.duplicate_attempts_refused_by_broker
            else ""
        )
        short = (
            f"a {_shares(t.unintended_short_shares)}-share short opened"
            if t.unintended_short_shares
            else "no short"
        )
        mins = t.phantom_entry_block_secs / 60
        phantom = (
            f"entries blocked by a phantom for {mins:,.1f} min"
            if t.phantom_entry_block_secs
            else "no phantom"
        )
        held = held_back if t.duplicate_attempts_blocked else ""
        lines.append(f"  {mode.value:<11} {twice}{held}{refused}; {short}; {phantom}")
    return lines
