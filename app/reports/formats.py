"""The fairness report as CSV: one row per group (and one for the whole population)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from fairness.report import metric_columns

CONTEXT = ("model", "versions", "start", "end", "label", "threshold")


def fairness_csv(body: dict[str, Any], attributes: Sequence[str]) -> str:
    """Every group row, prefixed by the model, versions, window, label and threshold used."""
    report = body["report"]
    header = [*CONTEXT, *attributes, *metric_columns(report["reference"] is not None)]
    context = {
        "model": body["model"],
        "versions": " ".join(seen["version"] for seen in body["versions"]),
        "start": body["window"]["start"],
        "end": body["window"]["end"],
        "label": body["label"],
        "threshold": body["threshold"],
    }
    out = io.StringIO()
    writer = csv.DictWriter(out, header, restval="", lineterminator="\n")
    writer.writeheader()
    for row in [*report["groups"], report["overall"]]:
        writer.writerow({**context, **{k: "" if v is None else v for k, v in row.items()}})
    return out.getvalue()
