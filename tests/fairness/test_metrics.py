"""Metrics from aggregated counts agree with fairlearn and sklearn on the rows they summarise."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    false_negative_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import average_precision_score, precision_score, roc_auc_score

from app.training.metrics import calibration
from fairness import columns as C
from fairness.calibration import decile_edges
from fairness.counts import BINS, Cell, GroupCounts, from_cells
from fairness.metrics import auprc_from_histograms, auroc_from_histograms, calibration_slope, rates
from fairness.report import ReportThresholds, fairness_report
from fairness.stats import katz_ratio, wilson

THRESHOLD = 0.3


def sample(seed: int, n: int = 4000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    group = rng.choice(np.array(["a", "b", "c"]), n, p=[0.6, 0.3, 0.1])
    p = 1 / (1 + np.exp(-(rng.normal(-1.2, 1.0, n) + (group == "b") * 0.4)))
    y = (rng.random(n) < p).astype(int)
    return group, p, y


def bin_of(probability: np.ndarray) -> np.ndarray:
    """The histogram bin of each risk, as the SQL query computes it."""
    return np.clip(np.floor(probability * BINS).astype(int), 0, BINS - 1)


def cells_of(group: np.ndarray, p: np.ndarray, y: np.ndarray | None) -> list[Cell]:
    """What the SQL query returns, computed row-wise in numpy for the tests."""
    bins = bin_of(p)
    cells = []
    events = np.full(len(p), -1) if y is None else y
    for key in np.unique(group):
        for b in np.unique(bins[group == key]):
            for event in (-1, 0, 1):
                where = (group == key) & (bins == b) & (events == event)
                if where.any():
                    cells.append(
                        (
                            (str(key),),
                            int(b),
                            None if event < 0 else event,
                            int(where.sum()),
                            int((p[where] >= THRESHOLD).sum()),
                            float(p[where].sum()),
                            float((p[where] ** 2).sum()),
                        )
                    )
    return cells


def by_key(groups: list[GroupCounts]) -> dict[str, GroupCounts]:
    return {group.key[0]: group for group in groups}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rates_from_counts_equal_fairlearn_metric_frame(seed: int) -> None:
    group, p, y = sample(seed)
    flagged = (p >= THRESHOLD).astype(int)
    frame = MetricFrame(
        metrics={
            C.FLAG_RATE: selection_rate,
            C.TPR: true_positive_rate,
            C.FNR: false_negative_rate,
            C.PPV: precision_score,
        },
        y_true=y,
        y_pred=flagged,
        sensitive_features=group,
    )
    groups = by_key(from_cells(cells_of(group, p, y)))
    for key, expected in frame.by_group.iterrows():
        found = rates(groups[key])
        for name in (C.FLAG_RATE, C.TPR, C.FNR, C.PPV):
            numerator, denominator = found[name]
            assert numerator / denominator == pytest.approx(expected[name], abs=1e-9)


@pytest.mark.parametrize("seed", [4, 5])
def test_auroc_and_calibration_slope_from_bins_match_the_row_level_values(seed: int) -> None:
    group, p, y = sample(seed, 6000)
    groups = by_key(from_cells(cells_of(group, p, y)))
    for key, counts in groups.items():
        rows = group == key
        auroc = auroc_from_histograms(counts.positives, counts.negatives)
        assert auroc is not None and auroc[1] < auroc[0] < auroc[2]
        assert auroc[0] == pytest.approx(roc_auc_score(y[rows], p[rows]), abs=2e-3)
        slope = calibration_slope(counts)
        assert slope == pytest.approx(calibration(y[rows], p[rows])["slope"], abs=0.02)
        assert counts.sum_squared_error / counts.labelled == pytest.approx(
            calibration(y[rows], p[rows])["brier"], abs=1e-9
        )


def test_wilson_and_katz_intervals_contain_the_estimate_and_shrink_with_n() -> None:
    widths, ratio_widths = [], []
    for scale in (1, 10, 100):
        p, low, high = wilson(30 * scale, 100 * scale)  # type: ignore[misc]
        assert low < p < high
        widths.append(high - low)
        ratio, r_low, r_high = katz_ratio(30 * scale, 100 * scale, 40 * scale, 100 * scale)  # type: ignore[misc]
        assert r_low < ratio < r_high
        ratio_widths.append(r_high - r_low)
    assert widths == sorted(widths, reverse=True)
    assert ratio_widths == sorted(ratio_widths, reverse=True)


def test_small_groups_are_suppressed_and_disparities_flagged() -> None:
    group, p, y = sample(6)
    group[:7] = "d"  # a group of 7
    group[7:157] = "e"  # 150 predictions, about 40 events
    p[group == "c"] *= 0.5  # c: flagged less often than a, the reference
    report = fairness_report(from_cells(cells_of(group, p, y)), ["g"], ReportThresholds())
    rows = {row["g"]: row for row in report["groups"]}
    assert report["reference"] == {"g": "a"}
    tiny = rows["d"]
    assert all(value == C.SUPPRESSED for name, value in tiny.items() if name != "g")
    assert rows["a"][C.TPR + C.RATIO] == 1.0 and rows["a"][C.REFERENCE] is True
    assert rows["c"][C.FLAG_RATE + C.RATIO + C.FLAG] == "critical"
    assert rows["c"][C.CALIBRATION_FLAG] == "critical"
    assert rows["b"][C.CALIBRATION_FLAG] == "ok"
    assert rows["e"][C.N] == C.SUPPRESSED  # complementary: overall − the others would give d
    assert rows["a"][C.UNDERPOWERED] is False


def test_without_outcomes_flag_rate_and_mean_risk_remain() -> None:
    group, p, _ = sample(7)
    [row, *_] = fairness_report(from_cells(cells_of(group, p, None)), ["g"])["groups"]
    assert row[C.FLAG_RATE] == pytest.approx(np.mean(p[group == "a"] >= THRESHOLD), abs=1e-12)
    assert row[C.MEAN_PREDICTED] == pytest.approx(p[group == "a"].mean(), abs=1e-12)
    assert row[C.TPR] is None and row[C.OBSERVED_EXPECTED] is None and row[C.AUROC] is None


def test_a_rate_that_would_reveal_a_small_count_is_suppressed() -> None:
    """Flag rate × n would give back a hidden flagged count; a handful labelled hides Brier."""
    few_flagged = GroupCounts(("x",))
    for index in range(40):
        few_flagged.add_cell(100 + index, None, 1, 1 if index < 3 else 0, 0.1, 0.01)
    for index in range(5):
        p = 0.2 + index / 1000
        few_flagged.add_cell(200 + index, 0, 1, 0, p, p * p)
    big = GroupCounts(("y",))
    big.add_cell(300, 1, 500, 0, 150, 45)
    big.add_cell(100, 0, 500, 0, 50, 5)
    report = fairness_report([big, few_flagged], ("a",))
    [row] = [r for r in report["groups"] if r["a"] == "x"]
    assert row[C.FLAGGED] == C.SUPPRESSED
    assert row[C.FLAG_RATE] == C.SUPPRESSED
    assert row[C.BRIER] == C.SUPPRESSED and row[C.LABELLED] == C.SUPPRESSED
    assert row[C.FLAG_RATE + C.RATIO] in (None, C.SUPPRESSED)  # a ratio would give it back
    assert row[C.N] == 45


def numbers(row: dict) -> dict:
    return {k: v for k, v in row.items() if isinstance(v, int) and not isinstance(v, bool)}


def test_overall_minus_the_shown_groups_gives_no_hidden_count() -> None:
    """The reviewer's leak: overall n − the shown groups gave a hidden group's n (4)."""
    group, p, y = sample(8)
    group[:4] = "d"
    report = fairness_report(from_cells(cells_of(group, p, y)), ["g"])
    groups = from_cells(cells_of(group, p, y))
    overall = report["overall"]
    for name in (C.N, C.LABELLED, C.EVENTS, C.FLAGGED):
        hidden = [
            g for g, row in zip(groups, report["groups"], strict=True) if row[name] == C.SUPPRESSED
        ]
        shown = [row[name] for row in report["groups"] if row[name] != C.SUPPRESSED]
        if isinstance(overall[name], int) and hidden:
            left = overall[name] - sum(shown)
            assert not any(left == getattr(g, name) and 0 < left < 10 for g in hidden)
            assert len([g for g in hidden if getattr(g, name) > 0]) != 1
    for row in report["groups"]:
        if isinstance(row[C.FLAG_RATE], float) and isinstance(row[C.N], int):
            assert not 0 < round(row[C.FLAG_RATE] * row[C.N]) < 10
    assert sum(1 for row in report["groups"] if row[C.N] == C.SUPPRESSED) == 2
    assert numbers(overall)[C.N] == 4000


@pytest.mark.parametrize("seed", [8, 9])
def test_auprc_from_bins_equals_sklearn_average_precision_on_the_binned_risks(seed: int) -> None:
    group, p, y = sample(seed, 6000)
    groups = by_key(from_cells(cells_of(group, p, y)))
    tied = bin_of(p) / BINS  # every risk of a bin tied, as the histogram holds them
    for key, counts in groups.items():
        rows = group == key
        found = auprc_from_histograms(counts.positives, counts.negatives)
        assert found is not None and found[1] < found[0] < found[2]
        assert found[0] == pytest.approx(average_precision_score(y[rows], tied[rows]), abs=1e-9)
        assert found[0] == pytest.approx(average_precision_score(y[rows], p[rows]), abs=5e-3)


def test_calibration_deciles_hold_the_rows_of_their_risk_range() -> None:
    group, p, y = sample(10, 8000)
    p[group == "b"] *= 0.5  # b: under-predicted
    groups = from_cells(cells_of(group, p, y))
    report = fairness_report(groups, ["g"], ReportThresholds())
    edges = decile_edges(groups)
    assert 8 <= len(edges) <= 10
    bins = bin_of(p)
    cells = {(row["g"], row[C.RISK_DECILE]): row for row in report["calibration"]}
    for (key, decile), row in cells.items():
        low, high = edges[decile]
        inside = (group == key) & (bins >= low) & (bins < high)
        if row[C.N] == C.SUPPRESSED:
            continue
        assert row[C.N] == inside.sum()
        assert row[C.MEAN_PREDICTED] == pytest.approx(p[inside].mean(), abs=1e-12)
        assert row[C.OBSERVED_RATE] == pytest.approx(y[inside].mean(), abs=1e-12)
    under = [
        row[C.OBSERVED_RATE] / row[C.MEAN_PREDICTED]
        for (key, _), row in cells.items()
        if key == "b" and row[C.N] != C.SUPPRESSED and row[C.N] >= 100
    ]
    assert len(under) >= 5 and np.median(under) > 1.5


def test_calibration_cells_below_the_minimum_are_suppressed_with_a_complement() -> None:
    group, p, y = sample(11, 4000)
    group[:6] = "d"  # a group of 6
    groups = from_cells(cells_of(group, p, y))
    report = fairness_report(groups, ["g"], ReportThresholds())
    for key in {row["g"] for row in report["calibration"]}:
        cells = [row for row in report["calibration"] if row["g"] == key]
        hidden = [row for row in cells if row[C.N] == C.SUPPRESSED]
        assert len(hidden) != 1, f"{key}: one hidden cell is its group's total minus the rest"
        for row in cells:
            if row[C.N] != C.SUPPRESSED:
                events = round(row[C.OBSERVED_RATE] * row[C.N])
                assert (row[C.N] >= 10 and events in (0, row[C.N])) or (
                    events >= 10 and row[C.N] - events >= 10
                )
    tiny = [row for row in report["calibration"] if row["g"] == "d"]
    assert tiny and all(row[C.N] == C.SUPPRESSED for row in tiny)
