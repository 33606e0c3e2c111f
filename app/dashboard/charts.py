"""Plotly figure specifications (data and layout) built from report bodies.

Only numbers a report publishes reach a chart: a suppressed or missing value becomes a gap
(``None``), and every hover text is written here, so no chart can show a hidden count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.dashboard.format import group_label, interval, number, shown
from fairness import columns as C

Row = Mapping[str, Any]
FONT = {"family": "system-ui, -apple-system, 'Segoe UI', sans-serif", "size": 13}
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"]
METRIC_NAMES = {C.TPR: "TPR", C.FNR: "FNR", C.PPV: "PPV", C.FLAG_RATE: "flag-rate"}
WHOLE_WINDOW = "all"
OVERALL = "all"
RATIO_TICKS = (0.05, 0.1, 0.2, 0.33, 0.5, 0.67, 0.8, 1, 1.25, 1.5, 2, 3, 5, 10, 20)
HOVER = "%{text}<extra></extra>"


@dataclass(frozen=True)
class Chart:
    """One figure: its element id, caption, what it shows in words, and the plotly spec."""

    id: str
    title: str
    description: str
    data: list[dict[str, Any]]
    layout: dict[str, Any] = field(default_factory=dict)

    def spec(self) -> dict[str, Any]:
        return {"data": self.data, "layout": _layout(self.layout)}


def _layout(overrides: Mapping[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "autosize": True,
        "height": 380,
        "font": FONT,
        "margin": {"l": 60, "r": 20, "t": 10, "b": 50},
        "colorway": PALETTE,
        "legend": {"orientation": "h", "y": -0.2},
        "hovermode": "closest",
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
    }
    return base | dict(overrides)


def _axis(title: str, **extra: Any) -> dict[str, Any]:
    return {"title": {"text": title}, "gridcolor": "#e5e5e5", "zeroline": False, **extra}


def _errors(rows: Sequence[Row], key: str) -> dict[str, Any]:
    """Asymmetric error bars of ``key``'s interval; zero where a bound is not published."""
    plus, minus = [], []
    for row in rows:
        value, low, high = (number(row.get(k)) for k in (key, key + C.LOW, key + C.HIGH))
        if value is None or low is None or high is None:
            plus.append(0.0)
            minus.append(0.0)
        else:
            plus.append(high - value)
            minus.append(value - low)
    return {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus}


def _described(label: str, row: Row, key: str, kind: str = "rate") -> str:
    found = interval(row, key, kind)
    return f"{label}: {shown(row.get(key), kind)}" + (f" (95% CI {found})" if found else "")


# --- fairness -------------------------------------------------------------------------------


def calibration_chart(body: Mapping[str, Any]) -> Chart | None:
    """Observed against predicted risk per group: by risk decile when the report has them, else
    one point per group (calibration in the large); the diagonal is perfect calibration."""
    report, columns = body["report"], body["group_by"]
    deciles = report.get("calibration")
    traces: list[dict[str, Any]] = []
    if deciles:
        names = dict.fromkeys(group_label(row, columns) for row in deciles)
        for name in names:
            rows = sorted(
                (row for row in deciles if group_label(row, columns) == name),
                key=lambda row: row.get("risk_decile", 0),
            )
            points = [_decile_point(row) for row in rows]
            points = [point for point in points if point is not None]
            if points:
                x, y, text = (list(values) for values in zip(*points, strict=True))
                traces.append(
                    {"type": "scatter", "mode": "lines+markers", "name": name, "x": x, "y": y}
                    | {"text": [f"{name}, {t}" for t in text], "hovertemplate": HOVER}
                )
        description = "Observed event rate against mean predicted risk in each risk decile."
    else:
        for row in report["groups"]:
            point = _group_point(row)
            if point is not None:
                name = group_label(row, columns)
                x, y, text = point
                traces.append(
                    {"type": "scatter", "mode": "markers", "name": name, "x": [x], "y": [y]}
                    | {"marker": {"size": 11}, "text": [f"{name}, {text}"], "hovertemplate": HOVER}
                )
        description = "Observed event rate against mean predicted risk of each group."
    if not traces:
        return None
    top = max(max(t["x"] + t["y"]) for t in traces) * 1.05
    diagonal = {"type": "scatter", "mode": "lines", "x": [0, top], "y": [0, top]}
    diagonal |= {"name": "perfect calibration", "hoverinfo": "skip"}
    diagonal |= {"line": {"color": "#888", "dash": "dash", "width": 1}}
    layout = {
        "xaxis": _axis("mean predicted risk", tickformat=".0%", range=[0, top]),
        "yaxis": _axis("observed event rate", tickformat=".0%", range=[0, top]),
        "height": 460,
        "legend": {"orientation": "h", "y": -0.3},
    }
    return Chart("calibration", "Calibration by group", description, [diagonal, *traces], layout)


def _decile_point(row: Row) -> tuple[float, float, str] | None:
    x, y = number(row.get(C.MEAN_PREDICTED)), number(row.get("observed_rate"))
    if x is None or y is None or number(row.get(C.N)) is None:
        return None
    text = f"decile {row.get('risk_decile')}: n {shown(row[C.N], 'count')}, "
    return x, y, text + f"predicted {shown(x)}, observed {shown(y)}"


def _group_point(row: Row) -> tuple[float, float, str] | None:
    predicted = number(row.get(C.MEAN_PREDICTED))
    events, labelled = number(row.get(C.EVENTS)), number(row.get(C.LABELLED))
    if predicted is None or events is None or not labelled:
        return None
    observed = events / labelled
    return predicted, observed, f"predicted {shown(predicted)}, observed {shown(observed)}"


def disparity_chart(body: Mapping[str, Any]) -> Chart | None:
    """A forest plot of each group's disparity ratios to the reference group, with 95% intervals
    on a log scale, the reference line at 1 and the warning and critical bands."""
    report, columns = body["report"], body["group_by"]
    rows = list(report["groups"])
    traces = []
    for metric, name in METRIC_NAMES.items():
        key = metric + C.RATIO
        values = [number(row.get(key)) for row in rows]
        if all(value is None for value in values):
            continue
        labels = [group_label(row, columns) for row in rows]
        traces.append(
            {"type": "scatter", "mode": "markers", "name": name, "orientation": "h"}
            | {"x": values, "y": labels, "error_x": _errors(rows, key)}
            | {
                "text": [
                    _described(f"{g}, {name} ratio", r, key, "ratio")
                    for g, r in zip(labels, rows, strict=True)
                ],
                "hovertemplate": HOVER,
            }
        )
    if not traces:
        return None
    thresholds = report["thresholds"]
    (warn_low, warn_high), (crit_low, crit_high) = thresholds["warning"], thresholds["critical"]
    band = {"type": "rect", "xref": "x", "yref": "paper", "y0": 0, "y1": 1, "line": {"width": 0}}
    shapes = [
        band | {"x0": warn_low, "x1": warn_high, "fillcolor": "rgba(44,160,44,0.10)"},
        *(
            {"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x, "y0": 0, "y1": 1}
            | {"line": {"color": "#d62728", "dash": "dot", "width": 1}}
            for x in (crit_low, crit_high)
        ),
        {"type": "line", "xref": "x", "yref": "paper", "x0": 1, "x1": 1, "y0": 0, "y1": 1}
        | {"line": {"color": "#333", "width": 1.5}},
    ]
    shown_values = [
        bound
        for trace in traces
        for value, plus, minus in zip(
            trace["x"], trace["error_x"]["array"], trace["error_x"]["arrayminus"], strict=True
        )
        if value is not None
        for bound in (value + plus, value - minus)
    ]
    low = min([crit_low, *(v for v in shown_values if v > 0)]) / 1.1
    high = max([crit_high, *shown_values]) * 1.1
    ticks = [t for t in RATIO_TICKS if low <= t <= high]
    layout = {
        "xaxis": _axis(
            "ratio to the reference group (log scale)",
            type="log",
            range=[math.log10(low), math.log10(high)],
            tickvals=ticks,
            ticktext=[f"{t:g}" for t in ticks],
        ),
        "yaxis": _axis("", autorange="reversed", type="category"),
        "scattermode": "group",
        "shapes": shapes,
        "height": max(300, 70 * len(rows) + 120),
        "margin": {"l": 200, "r": 20, "t": 10, "b": 50},
    }
    description = (
        f"Ratios with 95% intervals; green band {warn_low}–{warn_high} (warning outside), "
        f"dotted lines {crit_low} and {crit_high} (critical outside)."
    )
    return Chart("disparity", "Disparity ratios", description, traces, layout)


# --- agreement ------------------------------------------------------------------------------


def override_trend_chart(body: Mapping[str, Any]) -> Chart | None:
    """The weekly override rate with its 95% interval (rising overrides: alert fatigue)."""
    weeks = body["report"]["trend"]
    if not any(number(row.get(C.OVERRIDE_RATE)) is not None for row in weeks):
        return None
    trace = {"type": "scatter", "mode": "lines+markers", "name": "override rate"}
    trace |= {"x": [row["week"] for row in weeks]}
    trace |= {"y": [number(row.get(C.OVERRIDE_RATE)) for row in weeks]}
    trace |= {"error_y": _errors(weeks, C.OVERRIDE_RATE), "connectgaps": False}
    trace |= {
        "text": [_described(f"week of {r['week']}", r, C.OVERRIDE_RATE) for r in weeks],
        "hovertemplate": HOVER,
    }
    layout = {
        "xaxis": _axis("", type="date", tickformat="%d %b", tickangle=0),
        "yaxis": _axis("override rate", tickformat=".0%", rangemode="tozero"),
        "showlegend": False,
    }
    description = "Share of answered cards overridden, by week starting, with 95% intervals."
    return Chart("override-trend", "Override rate by week", description, [trace], layout)


def reasons_chart(body: Mapping[str, Any]) -> Chart | None:
    """How often each coded override reason was given over all cards (suppressed counts are
    left out; the per-group counts are in the table)."""
    rows = [row for row in body["report"]["reasons"] if row.get(body["group_by"]) == OVERALL]
    rows = sorted(rows, key=lambda row: number(row.get(C.REASON_COUNT)) or 0)
    counts = [number(row.get(C.REASON_COUNT)) for row in rows]
    if all(count is None for count in counts):
        return None
    reasons = [str(row.get("override_display") or "not coded") for row in rows]
    text = [f"{r}: {shown(c, 'count')}" for r, c in zip(reasons, counts, strict=True)]
    trace = {"type": "bar", "orientation": "h", "x": counts, "y": reasons, "text": text}
    trace |= {"hovertemplate": HOVER, "textposition": "none", "marker": {"color": PALETTE[0]}}
    layout = {
        "xaxis": _axis("overrides"),
        "yaxis": _axis("", type="category", automargin=True),
        "showlegend": False,
        "height": max(260, 48 * len(rows) + 90),
    }
    description = "How often each coded reason was given (all groups)."
    return Chart("reasons", "Override reasons", description, [trace], layout)


# --- drift ----------------------------------------------------------------------------------


def drift_heatmap(body: Mapping[str, Any]) -> Chart | None:
    """PSI of the score and each feature (rows) in each bucket and the whole window (columns)."""
    report = body["report"]
    rows = [*report["score"], *report["features"]]
    if not rows:
        return None
    features = list(dict.fromkeys(row[C.FEATURE] for row in rows))
    buckets = sorted({row["bucket"] for row in rows} - {WHOLE_WINDOW})
    columns = [*buckets, WHOLE_WINDOW]
    cells = {(row[C.FEATURE], row["bucket"]): row for row in rows}
    z, text = [], []
    for feature in features:
        z.append([_psi_colour(cells.get((feature, b), {})) for b in columns])
        text.append([_psi_text(feature, b, cells.get((feature, b), {})) for b in columns])
    thresholds = report["thresholds"]
    warn, alert = thresholds["psi_warn"], thresholds["psi_alert"]
    top = 2 * alert
    trace = {"type": "heatmap", "x": [_bucket(b) for b in columns], "y": features, "z": z}
    trace |= {"text": text, "hovertemplate": HOVER, "hoverongaps": False, "zmin": 0, "zmax": top}
    trace |= {"xgap": 1, "ygap": 1}
    trace |= {
        "colorscale": [
            [0, "#f7fbff"],
            [warn / top, "#c6dbef"],
            [warn / top, "#fdd49e"],
            [alert / top, "#fc8d59"],
            [alert / top, "#d7301f"],
            [1, "#7f0000"],
        ],
        "colorbar": {
            "title": {"text": "PSI"},
            "tickvals": [0, warn, alert, top],
            "ticktext": ["0", f"{warn} warn", f"{alert} alert", f"≥ {top}"],
        },
    }
    layout = {
        "xaxis": _axis("", type="category", side="top", tickangle=-45),
        "yaxis": _axis("", autorange="reversed", type="category"),
        "height": 22 * len(features) + 140,
        "margin": {"l": 190, "r": 20, "t": 90, "b": 20},
    }
    description = (
        f"PSI against the training reference; warn at {warn}, alert at {alert}. Blank cells are "
        f"suppressed, underpowered (fewer than {thresholds['min_psi_n']} values: PSI is noise "
        "there) or have no reference."
    )
    return Chart("drift-heatmap", "Drift by feature and window (PSI)", description, [trace], layout)


def _bucket(bucket: str) -> str:
    return "whole window" if bucket == WHOLE_WINDOW else bucket


def _psi_colour(row: Row) -> float | None:
    """The PSI a cell is coloured by: none where it is underpowered, so noise never looks red."""
    return None if row.get(C.PSI_LEVEL) == "underpowered" else number(row.get(C.PSI))


def _psi_text(feature: str, bucket: str, row: Row) -> str:
    head = f"{feature}, {_bucket(bucket)}: "
    if number(row.get(C.PSI)) is None:
        return head + shown(row.get(C.PSI), "stat")
    level = row.get(C.PSI_LEVEL)
    return head + f"PSI {shown(row[C.PSI], 'stat')} ({level}), n {shown(row.get(C.N), 'count')}"


def flag_rate_chart(body: Mapping[str, Any]) -> Chart | None:
    """The high-risk flag rate per bucket with its 95% interval, against the test split's."""
    rows = [row for row in body["report"]["flag_rate"] if row["bucket"] != WHOLE_WINDOW]
    if not any(number(row.get(C.FLAG_RATE)) is not None for row in rows):
        return None
    x = [row["bucket"] for row in rows]
    trace = {"type": "scatter", "mode": "lines+markers", "name": "flag rate", "x": x}
    trace |= {"y": [number(row.get(C.FLAG_RATE)) for row in rows]}
    trace |= {"error_y": _errors(rows, C.FLAG_RATE), "connectgaps": False}
    trace |= {
        "text": [_described(f"{r['bucket']}", r, C.FLAG_RATE) for r in rows],
        "hovertemplate": HOVER,
    }
    traces = [trace]
    expected = number(rows[0].get(C.EXPECTED_FLAG_RATE)) if rows else None
    if expected is not None:
        traces.append(
            {"type": "scatter", "mode": "lines", "name": "test split", "x": x}
            | {"y": [expected] * len(x), "line": {"dash": "dash", "color": "#888"}}
            | {"text": [f"test split: {shown(expected)}"] * len(x), "hovertemplate": HOVER}
        )
    layout = {
        "xaxis": _axis("", type="date", tickformat="%d %b", tickangle=0),
        "yaxis": _axis("flagged high risk", tickformat=".0%", rangemode="tozero"),
    }
    description = "Share of predictions flagged high risk, by window start, with 95% intervals."
    return Chart("flag-rate", "High-risk flag rate over time", description, traces, layout)
