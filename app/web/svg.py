"""A SHAP waterfall as inline SVG: drawn on the server, so it needs no script or CDN."""

from __future__ import annotations

from html import escape
from typing import Any

ROW = 26
LABEL_WIDTH = 300
PLOT_WIDTH = 420


def waterfall(
    base_value: float, rows: list[dict[str, Any]], final_label: str, limit: int = 10
) -> str:
    """Bars from the average log-odds to this patient's, largest contributions first."""
    shown = rows[:limit]
    rest = sum(row["contribution"] for row in rows[limit:])
    steps = [(row["label"], _value_text(row), row["contribution"]) for row in shown]
    if rows[limit:]:
        steps.append((f"{len(rows) - limit} other inputs", "", rest))
    positions = [base_value]
    for _, _, contribution in steps:
        positions.append(positions[-1] + contribution)
    low, high = min(positions), max(positions)
    span = max(high - low, 1e-9)

    def x(value: float) -> float:
        return LABEL_WIDTH + (value - low) / span * PLOT_WIDTH

    height = ROW * (len(steps) + 2)
    width = LABEL_WIDTH + PLOT_WIDTH + 90
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" aria-label="Contribution of each input to the risk">'
    ]
    current = base_value
    for index, (label, value_text, contribution) in enumerate(steps):
        y = ROW * (index + 1)
        start, end = x(current), x(current + contribution)
        colour = "#c0392b" if contribution > 0 else "#2471a3"
        parts.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 16}" text-anchor="end" font-size="13">'
            f"{escape(label)} {escape(value_text)}</text>"
            f'<rect x="{min(start, end):.1f}" y="{y + 4}" width="{max(abs(end - start), 1):.1f}"'
            f' height="{ROW - 8}" fill="{colour}"><title>{contribution:+.3f}</title></rect>'
            f'<text x="{max(start, end) + 4:.1f}" y="{y + 16}" font-size="12">'
            f"{contribution:+.2f}</text>"
        )
        current += contribution
    parts.append(
        f'<line x1="{x(base_value):.1f}" y1="{ROW / 2}" x2="{x(base_value):.1f}" y2="{height}"'
        ' stroke="#888" stroke-dasharray="4 3"/>'
        f'<text x="{x(base_value):.1f}" y="12" font-size="11" text-anchor="middle">'
        "average patient</text>"
        f'<text x="{x(current):.1f}" y="{height - 4}" font-size="11" text-anchor="middle">'
        f"{escape(final_label)}</text></svg>"
    )
    return "".join(parts)


def _value_text(row: dict[str, Any]) -> str:
    value = row.get("value")
    if value is None:
        return "(missing)"
    unit = row.get("unit") or ""
    text = f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return f"({text} {unit})".replace(" )", ")")
