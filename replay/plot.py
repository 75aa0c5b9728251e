"""`--plot`: each mode's broker position over the session, with duplicates, shorts and phantoms marked.

matplotlib is an optional extra (`pip install 'tradeguard[plot]'`); it is imported only here,
when a plot is asked for.
"""

from __future__ import annotations

import io
from datetime import datetime
from decimal import Decimal
from typing import Any

from replay.engine import ReplayResult
from tradeguard import ConfigError

__all__ = ["plot_png", "write_plot"]


def _pyplot() -> Any:
    try:
        # Imported here, not at the top: matplotlib is an optional extra.
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")  # files only: no display is needed or wanted
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError(
            f"plots need matplotlib, which is not installed ({exc}): pip install 'tradeguard[plot]'"
        ) from None
    return plt


def _steps(points: list[tuple[datetime, Decimal]], end: datetime) -> tuple[list[datetime], list[float]]:
    xs = [t for t, _ in points] + [end]
    ys = [float(q) for _, q in points]
    return xs, [*ys, ys[-1]]


def plot_png(result: ReplayResult) -> bytes:
    """Return the chart as PNG bytes (one panel per mode, shared time axis)."""
    plt = _pyplot()
    from matplotlib.dates import DateFormatter  # noqa: PLC0415 - optional extra, loaded by _pyplot

    modes = list(result.totals)
    fig, axes = plt.subplots(len(modes), 1, figsize=(11, 2.6 * len(modes) + 0.6), sharex=True, squeeze=False)
    end = result.end.astimezone(result.header.start.tzinfo)
    for ax, mode in zip(axes[:, 0], modes, strict=True):
        metrics = result.simulations[mode].metrics
        totals = result.totals[mode]
        by_symbol: dict[str, list[tuple[datetime, Decimal]]] = {}
        for t, symbol, qty in metrics.positions:
            by_symbol.setdefault(symbol, []).append((t, qty))
        for symbol, points in sorted(by_symbol.items()):
            xs, ys = _steps(points, end)
            ax.step(xs, ys, where="post", label=f"{symbol} at the broker")
            ax.fill_between(xs, ys, 0, where=[y < 0 for y in ys], step="post", color="red", alpha=0.25)
        for span in totals.phantom_spans:
            ax.axvspan(span.start, span.end, color="orange", alpha=0.25)
        for t, _symbol, _what in metrics.marks:
            ax.axvline(t, color="red", linestyle=":", linewidth=1)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_ylabel("shares")
        # matplotlib ships DateFormatter untyped in some releases, typed in others.
        ax.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=end.tzinfo))  # type: ignore[no-untyped-call,unused-ignore]
        ax.set_title(
            f"{mode.value}: {totals.duplicate_orders_executed} duplicate(s) executed (red dotted), "
            f"short {totals.unintended_short_shares} (red), "
            f"phantom {totals.phantom_entry_block_secs:,.0f} s (orange)",
            fontsize=9,
            loc="left",
        )
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(result.header.name, fontsize=11)
    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def write_plot(result: ReplayResult, path: str) -> None:
    """Write the chart to `path` (PNG)."""
    png = plot_png(result)
    with open(path, "wb") as fh:
        fh.write(png)
