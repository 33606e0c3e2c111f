"""The drift report from (bucket, feature, bin) counts: PSI and a binned KS statistic against
the training reference's decile proportions, missingness against the reference missing rate, the
flag rate, and an alert list, with small buckets suppressed and the thresholds printed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fairness import columns as C
from fairness.stats import wilson
from fairness.suppression import hide, hides, protect, shown

MISSING = -1  # the bin of a null (missing) value, counted last
ALL = "all"  # the bucket key of the whole window
SCORE = "score"  # the feature name of the predicted risk's rows
Row = dict[str, Any]
Cell = tuple[str, str, int, int]
"""(bucket, feature, bin or MISSING, predictions)."""
FlagCell = tuple[str, int, int]
"""(bucket, predictions, flagged high)."""
BINNING = (
    "the package's training deciles: bin i holds edges[i-1] <= value < edges[i] (searchsorted "
    "side='right'), with open outer bins; PSI and KS use non-missing values only"
)


@dataclass(frozen=True)
class DriftThresholds:
    """What the drift report flags and hides; printed into every report."""

    min_cell: int = 10  # a bucket (or its non-missing values) below this is "suppressed"
    min_psi_n: int = 100  # fewer non-missing values: PSI shown, level "underpowered"
    psi_warn: float = 0.1
    psi_alert: float = 0.25
    epsilon: float = 1e-4  # bin shares below this are raised to it in PSI (no renormalisation)
    missing_difference: float = 0.10  # |missing rate − reference missing rate| above: alert
    feature_share: float = 0.30  # drift alert when at least this share of features alert

    def psi_level(self, value: float, n: int) -> str:
        if n < self.min_psi_n:
            return "underpowered"
        return "alert" if value >= self.psi_alert else "warn" if value >= self.psi_warn else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "binning": BINNING,
            "psi": "sum over bins of (a − e)·ln(a/e), a and e the bucket's and reference's "
            "shares; without drift it is about (bins − 1)/n, hence min_psi_n",
            "ks": "binned: the largest gap between the bucket's and the reference's CDF at the "
            "bin edges (a lower bound of the unbinned KS statistic)",
            "alerts": "PSI ≥ psi_alert or missingness beyond missing_difference, in the latest "
            "complete bucket or the whole window",
        }


def psi(counts: Sequence[float], expected: Sequence[float], epsilon: float = 1e-4) -> float:
    """Population stability index of per-bin ``counts`` against reference shares ``expected``."""
    observed = np.asarray(counts, dtype=float)
    actual = np.maximum(observed / observed.sum(), epsilon)
    reference = np.maximum(np.asarray(expected, dtype=float), epsilon)
    return float(((actual - reference) * np.log(actual / reference)).sum())


def binned_ks(counts: Sequence[float], expected: Sequence[float]) -> float:
    """Largest absolute difference of the two cumulative distributions at the bin edges."""
    observed = np.asarray(counts, dtype=float)
    gap = np.cumsum(observed / observed.sum()) - np.cumsum(np.asarray(expected, dtype=float))
    return float(np.abs(gap).max())


def tally(cells: Iterable[Cell], bins: Mapping[str, int]) -> dict[tuple[str, str], np.ndarray]:
    """Counts per (bucket, feature) and (ALL, feature): ``bins[feature]`` bins, then the
    missing count."""
    found: dict[tuple[str, str], np.ndarray] = {}
    for bucket, feature, bin_, count in cells:
        for key in ((bucket, feature), (ALL, feature)):
            row = found.setdefault(key, np.zeros(bins[feature] + 1, dtype=np.int64))
            row[bin_] += count  # MISSING (−1) is the last slot
    return found


def drift_report(
    cells: Iterable[Cell],
    flags: Iterable[FlagCell],
    reference: Mapping[str, Any],
    complete: Sequence[str],
    expected_flag_rate: float | None = None,
    thresholds: DriftThresholds = DriftThresholds(),
) -> dict[str, Any]:
    """Rows per (feature or score, bucket and the whole window), flag rates and alerts.

    ``reference`` is the package's (``features`` and ``score``), ``complete`` the bucket keys
    whose whole period lies in the window, in time order.
    """
    references = {**reference["features"], SCORE: reference["score"]}
    counts = tally(cells, {name: len(ref["edges"]) + 1 for name, ref in references.items()})
    flags = list(flags)
    flag_rows = _flag_rows(flags, expected_flag_rate, thresholds.min_cell)
    buckets = [row["bucket"] for row in flag_rows]
    rows = [
        _row(name, bucket, counts.get((bucket, name)), references[name], thresholds)
        for name in references
        for bucket in buckets
    ]
    _complementary(rows, flag_rows, counts, flags, list(references), thresholds.min_cell)
    seen = {row["bucket"] for row in flag_rows if shown(row[C.N])}
    visible = [bucket for bucket in complete if bucket in seen]
    latest = visible[-1] if visible else None
    alerts = _alerts(rows, {ALL, latest} if latest else {ALL})
    drifting = {alert[C.FEATURE] for alert in alerts}
    share = len(drifting) / len(reference["features"]) if reference["features"] else 0.0
    return {
        "thresholds": thresholds.as_dict(),
        "latest_complete_bucket": latest,
        "features": [row for row in rows if row[C.FEATURE] != SCORE],
        "score": [row for row in rows if row[C.FEATURE] == SCORE],
        "flag_rate": flag_rows,
        "alerts": alerts,
        C.DRIFTING_SHARE: share,
        C.DRIFT_ALERT: bool(drifting) and share >= thresholds.feature_share,
    }


def _row(
    name: str,
    bucket: str,
    counts: np.ndarray | None,
    reference: Mapping[str, Any],
    thresholds: DriftThresholds,
) -> Row:
    row: Row = {C.FEATURE: name, "bucket": bucket}
    n = int(counts.sum()) if counts is not None else 0
    if counts is None or n < thresholds.min_cell:
        return row | dict.fromkeys(drift_columns(), C.SUPPRESSED)
    present, expected = counts[:-1], reference["proportions"]
    missing_rate = float(counts[-1] / n)
    difference = missing_rate - reference["missing_rate"]
    row |= {
        C.N: n,
        C.MISSING_RATE: missing_rate,
        C.REFERENCE_MISSING_RATE: reference["missing_rate"],
        C.MISSING_DIFFERENCE: difference,
        C.MISSING_ALERT: abs(difference) > thresholds.missing_difference,
    }
    if hides(int(counts[-1]), n, thresholds.min_cell):  # missing_rate × n: a small count
        row |= dict.fromkeys((C.MISSING_RATE, C.MISSING_DIFFERENCE), C.SUPPRESSED)
    if present.sum() < thresholds.min_cell or not expected:
        return row | dict.fromkeys((C.PSI, C.PSI_LEVEL, C.KS), C.SUPPRESSED if expected else None)
    value = psi(present, expected, thresholds.epsilon)
    return row | {
        C.PSI: value,
        C.PSI_LEVEL: thresholds.psi_level(value, int(present.sum())),
        C.KS: binned_ks(present, expected),
    }


def _complementary(
    rows: list[Row],
    flag_rows: list[Row],
    counts: Mapping[tuple[str, str], np.ndarray],
    flags: Sequence[FlagCell],
    names: Sequence[str],
    small: int,
) -> None:
    """Hide further cells so that the whole window minus the shown buckets never gives a hidden
    bucket's n, missing count (with n − missing) or flagged count; a bucket hidden in any set
    (a feature's rows or the flag rows) is hidden in all, since its n is the same in each."""
    flagged: dict[str, list[int]] = {}
    for bucket, n, count in flags:
        cell = flagged.setdefault(bucket, [0, 0])
        cell[0] += n
        cell[1] += count
    sets: list[tuple[list[Row], list[Any], Sequence[Any], Sequence[str]]] = []
    flag_blocks = [
        ([lambda c: c[0]], [C.N]),
        ([lambda c: c[1], lambda c: c[0] - c[1]], [C.FLAG_RATE]),
    ]
    drift_blocks = [
        ([lambda c: int(c.sum())], [C.N]),
        (
            [lambda c: int(c[-1]), lambda c: int(c[:-1].sum())],
            [C.MISSING_RATE, C.MISSING_DIFFERENCE],
        ),
    ]
    parts = [row for row in flag_rows if row["bucket"] != ALL]
    total = next(row for row in flag_rows if row["bucket"] == ALL)
    cells = [flagged.get(row["bucket"], [0, 0]) for row in parts]
    sets.append((parts, cells, flag_blocks, flag_columns()))
    zero = np.zeros(1, dtype=np.int64)
    for name in names:
        mine = [row for row in rows if row[C.FEATURE] == name]
        sets.append(
            (
                [row for row in mine if row["bucket"] != ALL],
                [counts.get((row["bucket"], name), zero) for row in mine if row["bucket"] != ALL],
                drift_blocks,
                drift_columns(),
            )
        )
    totals = [total] + [
        next(row for row in rows if row[C.FEATURE] == name and row["bucket"] == ALL)
        for name in names
    ]
    everything = [*flag_rows, *rows]
    before = None
    while before != everything:
        before = [dict(row) for row in everything]
        for (members, values, blocks, columns), whole in zip(sets, totals, strict=True):
            protect(members, values, whole, blocks, small, columns)
        gone = {  # a bucket with no values of a feature (n 0) is hidden only for want of them
            row["bucket"]
            for (members, values, _, _) in sets
            for row, value in zip(members, values, strict=True)
            if not shown(row.get(C.N)) and np.sum(value) > 0
        }
        for row in flag_rows:
            if row["bucket"] in gone:
                hide(row, flag_columns())
        for row in rows:
            if row["bucket"] in gone:
                hide(row, drift_columns())


def _alerts(rows: Sequence[Row], buckets: set[str]) -> list[Row]:
    """Features (not the score) alerting in any of ``buckets``, one entry per kind and bucket."""
    found = []
    for row in rows:
        if row[C.FEATURE] == SCORE or row["bucket"] not in buckets:
            continue
        if row[C.PSI_LEVEL] == "alert":
            found.append({C.FEATURE: row[C.FEATURE], "bucket": row["bucket"], "kind": "psi"})
        if row[C.MISSING_ALERT] is True:
            found.append({C.FEATURE: row[C.FEATURE], "bucket": row["bucket"], "kind": "missing"})
    return found


def _flag_rows(flags: Iterable[FlagCell], expected: float | None, small: int) -> list[Row]:
    """Flag rate (Wilson 95%) per bucket in time order, then the whole window (also when it
    holds no predictions)."""
    totals: dict[str, list[int]] = {ALL: [0, 0]}
    for bucket, n, flagged in flags:
        for key in (bucket, ALL):
            cell = totals.setdefault(key, [0, 0])
            cell[0] += n
            cell[1] += flagged
    rows = []
    for bucket in sorted(totals, key=lambda key: (key == ALL, key)):
        n, flagged = totals[bucket]
        row: Row = {"bucket": bucket, C.EXPECTED_FLAG_RATE: expected}
        if n < small:
            rows.append(row | dict.fromkeys(flag_columns(), C.SUPPRESSED))
            continue
        rate, low, high = wilson(flagged, n) or (None, None, None)
        if hides(flagged, n, small):  # flag_rate × n: a small count
            rate = low = high = C.SUPPRESSED
        row |= {C.N: n, C.FLAG_RATE: rate, C.FLAG_RATE + C.LOW: low, C.FLAG_RATE + C.HIGH: high}
        rows.append(row)
    return rows


def drift_columns() -> list[str]:
    """The metric columns of a feature or score row, in order."""
    return [
        C.N,
        C.MISSING_RATE,
        C.REFERENCE_MISSING_RATE,
        C.MISSING_DIFFERENCE,
        C.MISSING_ALERT,
        C.PSI,
        C.PSI_LEVEL,
        C.KS,
    ]


def flag_columns() -> list[str]:
    return [C.N, C.FLAG_RATE, C.FLAG_RATE + C.LOW, C.FLAG_RATE + C.HIGH]
