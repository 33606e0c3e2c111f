"""The model card (JSON and markdown): intended use, data, performance against baselines, limits."""

from __future__ import annotations

from typing import Any

from fhir_mappers.spec import FeatureSpec

INTENDED_USE = (
    "Flags adult inpatients at discharge (and during the stay) whose risk of unplanned "
    "readmission within 30 days is high, so that the care team can plan follow-up. It supports "
    "and does not replace clinical judgement; it is not for use outside inpatient care, in "
    "children, or to deny care."
)
LIMITATIONS = [
    "Trained on the data named in the fingerprint; performance elsewhere must be checked "
    "locally before use (see the reports).",
    "Race and ethnicity are not model inputs; calibration per group is reported and monitored.",
    "Missing laboratory values are allowed but make the estimate less certain.",
    "Readmissions to other hospitals are invisible unless the EHR records them.",
]


def _interval(metric: dict[str, Any] | None) -> str:
    if not metric:
        return "n/a"
    return f"{metric['value']:.3f} ({metric['low']:.3f}–{metric['high']:.3f})"


def model_card(
    name: str,
    version: str,
    trained_at: str,
    spec: FeatureSpec,
    fingerprint: dict[str, Any],
    evaluation: dict[str, Any],
) -> dict[str, Any]:
    test = evaluation["test"]
    return {
        "name": name,
        "version": version,
        "date": trained_at,
        "title": "Readmission risk",
        "outcome": "unplanned readmission within 30 days",
        "outcome_definition": (
            "An unplanned inpatient admission starting within 30 days of discharge; transfers "
            "(within 6 h or to another acute facility), planned (elective) admissions and stays "
            "ending in death are excluded (fhir_mappers.labels)."
        ),
        "intended_use": INTENDED_USE,
        "intended_use_short": "For discharge planning; not a substitute for clinical judgement.",
        "population": {
            "patients": fingerprint["patients"],
            "index_stays": fingerprint["index_stays"],
            "events": fingerprint["events"],
            "period": [fingerprint["first_index"], fingerprint["last_index"]],
        },
        "inputs": [
            {"name": feature.name, "label": feature.display_name, "unit": feature.unit}
            for feature in spec.features
        ],
        "performance": {
            "test_n": test["n"],
            "test_events": test["events"],
            "auroc": test["auroc"],
            "auprc": test["auprc"],
            "calibration": test["calibration"],
            "baselines": {
                name: {"auroc": result["auroc"]} for name, result in evaluation["baselines"].items()
            },
        },
        "limitations": LIMITATIONS,
    }


def model_card_markdown(card: dict[str, Any]) -> str:
    performance = card["performance"]
    calibration = performance["calibration"] or {}
    lines = [
        f"# {card['title']} — {card['name']} v{card['version']}",
        "",
        f"Trained {card['date']}.",
        "",
        "## Intended use",
        card["intended_use"],
        "",
        "## Outcome",
        card["outcome_definition"],
        "",
        "## Population",
        f"{card['population']['patients']} patients, {card['population']['index_stays']} "
        f"discharges, {card['population']['events']} readmissions, "
        f"{card['population']['period'][0][:10]} to {card['population']['period'][1][:10]}.",
        "",
        "## Performance on the held-out test split",
        "| measure | value (95% CI) |",
        "|---|---|",
        f"| AUROC | {_interval(performance['auroc'])} |",
        f"| AUPRC | {_interval(performance['auprc'])} |",
        f"| calibration slope | {calibration.get('slope', float('nan')):.2f} |",
        f"| calibration intercept | {calibration.get('intercept', float('nan')):.2f} |",
        f"| Brier score | {calibration.get('brier', float('nan')):.3f} |",
    ]
    for name, baseline in performance["baselines"].items():
        lines.append(f"| {name} AUROC (baseline) | {_interval(baseline['auroc'])} |")
    lines += ["", "## Inputs"]
    lines += [
        f"- {item['label']}" + (f" ({item['unit']})" if item["unit"] else "")
        for item in card["inputs"]
    ]
    lines += ["", "## Limitations"]
    lines += [f"- {limitation}" for limitation in card["limitations"]]
    return "\n".join(lines) + "\n"
