"""The fairness report from group counts: one flat row per group, small cells suppressed,
disparity ratios to a reference group, and the thresholds used."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fairness import columns as C
from fairness.calibration import calibration_rows
from fairness.counts import GroupCounts, GroupKey, overall
from fairness.metrics import (
    auprc_from_histograms,
    auroc_from_histograms,
    brier,
    calibration_slope,
    mean_predicted,
    observed_expected,
    rates,
)
from fairness.stats import katz_ratio, wilson
from fairness.suppression import Row, hide, hides, protect


@dataclass(frozen=True)
class ReportThresholds:
    """What the report flags and hides; printed into every report."""

    min_cell: int = 10  # a group, count or denominator below this is "suppressed"
    min_events: int = 100  # fewer events or non-events: underpowered
    warning: tuple[float, float] = (0.80, 1.25)  # ratio outside: warning (four-fifths rule)
    critical: tuple[float, float] = (0.67, 1.5)  # ratio outside: critical

    def level(self, low: float, high: float) -> str:
        """critical/warning when [low, high] lies wholly outside that band, else ok."""
        for name, (lower, upper) in (("critical", self.critical), ("warning", self.warning)):
            if high < lower or low > upper:
                return name
        return "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "disparity_flag": "the ratio's point estimate outside the band",
            "calibration_flag": "the observed/expected interval wholly outside the band",
        }


def fairness_report(
    groups: Sequence[GroupCounts],
    attributes: Sequence[str],
    thresholds: ReportThresholds = ReportThresholds(),
    reference: GroupKey | None = None,
) -> dict[str, Any]:
    """Rows for the groups (and overall), with disparities to ``reference`` (default: largest)."""
    visible = [group for group in groups if group.n >= thresholds.min_cell]
    by_key = {group.key: group for group in visible}
    if reference is None and visible:
        reference = max(visible, key=lambda group: group.n).key
    base = by_key.get(reference) if reference is not None else None
    rows = [_row(group, attributes, thresholds, base) for group in groups]
    whole = overall(groups, len(attributes))
    total = _row(whole, attributes, thresholds, None)
    _complementary(rows, groups, total, thresholds.min_cell, base is not None)
    return {
        "thresholds": thresholds.as_dict(),
        "reference": dict(zip(attributes, reference, strict=True)) if base else None,
        "overall": total,
        "groups": rows,
        "calibration": calibration_rows(groups, rows, attributes, thresholds.min_cell),
    }


LABEL_RATES = (C.TPR, C.FNR, C.SPECIFICITY, C.PPV, C.NPV)


def _complementary(
    rows: list[Row], groups: Sequence[GroupCounts], total: Row, small: int, ratios: bool
) -> None:
    """Hide further cells so that the overall row minus the shown groups never gives a hidden
    count: the group size, labelled, events, flagged (with the flag rate, n − flagged) and the
    confusion-matrix counts behind the label rates (hidden together)."""
    label = [*LABEL_RATES, *((name + C.RATIO for name in LABEL_RATES) if ratios else ())]
    flag = [C.FLAGGED, C.FLAG_RATE, *([C.FLAG_RATE + C.RATIO] if ratios else [])]
    blocks: list[tuple[Sequence[Callable[[Any], int]], Sequence[str]]] = [
        ([lambda g: g.n], [C.N]),
        ([lambda g: g.labelled], [C.LABELLED]),
        ([lambda g: g.events], [C.EVENTS]),
        ([lambda g: g.flagged, lambda g: g.n - g.flagged], flag),
        ([lambda g: g.tp, lambda g: g.fn, lambda g: g.tn, lambda g: g.fp], label),
    ]
    hidden = protect(rows, groups, total, blocks, small, metric_columns(ratios))
    if ratios and any(rows[i].get(C.REFERENCE) is True for i in hidden):
        for row in rows:  # a ratio to a hidden reference would give back its rates
            hide(row, [name + C.RATIO for name in C.DISPARITY_METRICS])


def _row(
    group: GroupCounts,
    attributes: Sequence[str],
    thresholds: ReportThresholds,
    base: GroupCounts | None,
) -> Row:
    row: Row = dict(zip(attributes, group.key, strict=True))
    small = thresholds.min_cell
    if group.n < small:
        return row | dict.fromkeys(metric_columns(base is not None), C.SUPPRESSED)

    def count(value: int) -> int | str:
        return C.SUPPRESSED if 0 < value < small else value

    row |= {
        C.N: group.n,
        C.LABELLED: count(group.labelled),
        C.EVENTS: count(group.events),
        C.FLAGGED: count(group.flagged),
        C.MEAN_PREDICTED: mean_predicted(group),
        C.UNDERPOWERED: min(group.events, group.non_events) < thresholds.min_events,
    }
    for name, (numerator, denominator) in rates(group).items():
        found = wilson(numerator, denominator)
        _interval(
            row,
            name,
            [C.SUPPRESSED] * 3 if found and hides(numerator, denominator, small) else found,
        )
    ratio = _suppress(observed_expected(group), group.events, small)
    _interval(row, C.OBSERVED_EXPECTED, ratio)
    row[C.CALIBRATION_FLAG] = (
        thresholds.level(ratio[1], ratio[2]) if ratio and ratio[0] != C.SUPPRESSED else None
    )
    few = 0 < min(group.events, group.non_events) < small or 0 < group.labelled < small
    row[C.CALIBRATION_SLOPE] = C.SUPPRESSED if few else calibration_slope(group)
    row[C.BRIER] = C.SUPPRESSED if few else brier(group)
    auroc = auroc_from_histograms(group.positives, group.negatives)
    _interval(row, C.AUROC, [C.SUPPRESSED] * 3 if few and auroc else auroc)
    auprc = auprc_from_histograms(group.positives, group.negatives)
    _interval(row, C.AUPRC, [C.SUPPRESSED] * 3 if few and auprc else auprc)
    if base is not None:
        row[C.REFERENCE] = group.key == base.key
        _disparities(row, group, base, thresholds)
    return row


def _disparities(
    row: Row, group: GroupCounts, base: GroupCounts, thresholds: ReportThresholds
) -> None:
    mine, theirs = rates(group), rates(base)
    for name in C.DISPARITY_METRICS:
        (x1, n1), (x2, n2) = mine[name], theirs[name]
        small = thresholds.min_cell
        shown = not (hides(x1, n1, small) or hides(x2, n2, small))
        found = katz_ratio(x1, n1, x2, n2) if shown else None
        _interval(row, name + C.RATIO, found)
        row[name + C.RATIO + C.FLAG] = (
            thresholds.level(found[0], found[0]) if found is not None else None
        )


def _suppress(value: list[float] | None, denominator: int, small: int) -> list[Any] | None:
    return [C.SUPPRESSED] * 3 if value is not None and denominator < small else value


def _interval(row: Row, name: str, value: list[Any] | None) -> None:
    row[name], row[name + C.LOW], row[name + C.HIGH] = value or (None, None, None)


def metric_columns(with_reference: bool) -> list[str]:
    """Every metric column of a row, in order."""
    names = [C.N, C.LABELLED, C.EVENTS, C.FLAGGED, C.MEAN_PREDICTED, C.UNDERPOWERED]
    for name in (*rates(GroupCounts(())), C.OBSERVED_EXPECTED):
        names += [name, name + C.LOW, name + C.HIGH]
    names += [C.CALIBRATION_FLAG, C.CALIBRATION_SLOPE, C.BRIER]
    for name in (C.AUROC, C.AUPRC):
        names += [name, name + C.LOW, name + C.HIGH]
    if with_reference:
        names.append(C.REFERENCE)
        for name in C.DISPARITY_METRICS:
            ratio = name + C.RATIO
            names += [ratio, ratio + C.LOW, ratio + C.HIGH, ratio + C.FLAG]
    return names
