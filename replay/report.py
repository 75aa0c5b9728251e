"""`--report`: one self-contained HTML page with the totals, the per-event table and the chart."""

from __future__ import annotations

import base64
import html

from replay.engine import ReplayResult
from replay.plot import plot_png
from replay.table import FIGURES, cell, figure_value, trader_summary
from tradeguard import ConfigError

__all__ = ["render_report", "write_report"]

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 13px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.note td { color: #666; }
.dup { color: #b00; font-weight: bold; }
img { max-width: 100%; }
"""


def _esc(text: object) -> str:
    return html.escape(str(text))


def render_report(result: ReplayResult) -> str:
    """Return the report page; the chart is embedded as a PNG when matplotlib is installed."""
    return _render(result)[0]


def _render(result: ReplayResult) -> tuple[str, str | None]:
    """Return the page, and why it has no chart (None: it has one)."""
    modes = list(result.totals)
    head = "".join(f"<th>{_esc(m.value)}</th>" for m in modes)
    figures = "".join(
        f"<tr><td>{_esc(label)}</td>"
        + "".join(f'<td class="num">{_esc(figure_value(result.totals[m], key))}</td>' for m in modes)
        + "</tr>"
        for key, label in FIGURES
    )
    rows = []
    for row in result.rows:
        cells = []
        for m in modes:
            text = cell(row.outcomes[m]) if m in row.outcomes else ""
            css = ' class="dup"' if text.startswith("DUPLICATE") else ""
            cells.append(f"<td{css}>{_esc(text)}</td>")
        rows.append(
            f'<tr class="{row.kind}"><td>{row.t:%H:%M:%S}</td><td>{_esc(row.text)}</td>'
            f"<td>{_esc(row.symbol or '')}</td><td>{_esc(row.recorded or '')}</td>{''.join(cells)}</tr>"
        )
    missing: str | None = None
    try:
        png = base64.b64encode(plot_png(result)).decode()
        chart = f'<img alt="position over the session, per mode" src="data:image/png;base64,{png}">'
    except ConfigError as exc:
        missing = str(exc)
        chart = f"<p><em>No chart: {_esc(exc)}</em></p>"
    summary = "".join(f"<li>{_esc(line.strip())}</li>" for line in trader_summary(result.totals))
    header = result.header
    return (
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(header.name)}</title><style>{_STYLE}</style></head>
<body>
<h1>{_esc(header.name)}</h1>
<p>{_esc(header.description or "")}</p>
<p>{result.events:,} events from {header.start:%Y-%m-%d %H:%M} ({_esc(header.timezone)});
source: {_esc(header.source or "unknown")}.</p>
<h2>Figures</h2>
<table><tr><th>figure</th>{head}</tr>{figures}</table>
<ul>{summary}</ul>
<h2>Position over the session</h2>
{chart}
<h2>Every attempt, outside event and note</h2>
<table><tr><th>time</th><th>event</th><th>symbol</th><th>recorded</th>{head}</tr>
{"".join(rows)}
</table>
<p>Definitions of the figures: sessions/README.md in the tradeguard repository.</p>
</body></html>
""",
        missing,
    )


def write_report(result: ReplayResult, path: str) -> str | None:
    """Write the report page to `path`; return why it has no chart (None: it has one)."""
    page, missing = _render(result)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)
    return missing
