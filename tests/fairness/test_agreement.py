"""Agreement measures from aggregated cells: hand-computed tables, sklearn on the rows they
summarise, the kappa standard error by simulation, time-to-response quantiles, suppression."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score

from fairness import columns as C
from fairness.agreement import (
    RESPONSES,
    Cell,
    agreement_measures,
    agreement_report,
    from_cells,
    metric_columns,
    trend_columns,
)
from fairness.stats import cohen_kappa, histogram_quantile


def cells_of(group: np.ndarray, flag: np.ndarray, response: np.ndarray) -> list[Cell]:
    """What the SQL query returns for rows of (group, flag, response index), computed in numpy."""
    cells: list[Cell] = []
    for key in np.unique(group):
        for f in (0, 1):
            for r in range(3):
                count = int(((group == key) & (flag == f) & (response == r)).sum())
                if count:
                    cells.append(((str(key),), bool(f), RESPONSES[r], None, count, 0))
    return cells


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        # po = 0.7, pe = 0.5·0.6 + 0.5·0.4 = 0.5
        ([[20, 5], [10, 15]], (0.7, 40 / 55, 30 / 45, 0.4)),
        # high prevalence: po = 0.85 but pe = 0.9·0.85 + 0.1·0.15 = 0.78, kappa only 0.07/0.22
        ([[80, 10], [5, 5]], (0.85, 160 / 175, 10 / 25, 0.07 / 0.22)),
        # perfect agreement
        ([[30, 0], [0, 12]], (1.0, 1.0, 1.0, 1.0)),
    ],
)
def test_hand_computed_tables(table: list[list[int]], expected: tuple[float, ...]) -> None:
    found = agreement_measures(np.array(table))
    names = (C.RAW_AGREEMENT, C.POSITIVE_AGREEMENT, C.NEGATIVE_AGREEMENT, C.KAPPA)
    assert [found[name] for name in names] == pytest.approx(expected, abs=1e-12)
    assert found[C.KAPPA + C.LOW] <= found[C.KAPPA] <= found[C.KAPPA + C.HIGH]


def test_degenerate_tables_give_no_kappa() -> None:
    assert cohen_kappa(np.zeros((2, 2))) is None
    assert cohen_kappa(np.array([[7, 0], [0, 0]])) is None  # chance agreement 1
    assert agreement_measures(np.zeros((2, 2)))[C.RAW_AGREEMENT] is None


@pytest.mark.parametrize("seed", range(6))
def test_agreement_from_cells_matches_sklearn_on_the_rows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 3000
    group = rng.choice(np.array(["a", "b"]), n, p=[0.7, 0.3])
    flag = (rng.random(n) < rng.uniform(0.1, 0.6)).astype(int)
    response = rng.choice(3, n, p=[0.15, 0.6, 0.25])  # none, accepted, overridden
    groups = {g.key[0]: g for g in from_cells(cells_of(group, flag, response))}
    for key, counts in groups.items():
        where = (group == key) & (response > 0)
        model = flag[where]
        clinician = np.where(response[where] == 1, model, 1 - model)  # accepting agrees
        found = agreement_measures(counts.agreement_table())
        assert found[C.KAPPA] == pytest.approx(cohen_kappa_score(model, clinician), abs=1e-9)
        assert found[C.RAW_AGREEMENT] == pytest.approx((model == clinician).mean(), abs=1e-9)
        assert found[C.POSITIVE_AGREEMENT] == pytest.approx(f1_score(model, clinician), abs=1e-9)
        negative = f1_score(model, clinician, pos_label=0)
        assert found[C.NEGATIVE_AGREEMENT] == pytest.approx(negative, abs=1e-9)


def test_kappa_standard_error_matches_its_sampling_spread() -> None:
    rng = np.random.default_rng(7)
    truth = np.array([0.3, 0.1, 0.15, 0.45])
    n, draws = 400, 4000
    tables = rng.multinomial(n, truth, size=draws).reshape(draws, 2, 2)
    kappas = np.array([cohen_kappa(table)["value"] for table in tables])  # type: ignore[index]
    expected = cohen_kappa(truth.reshape(2, 2) * n)
    assert expected is not None
    assert kappas.std() == pytest.approx(expected["se"], rel=0.06)
    assert np.mean(np.abs(kappas - expected["value"]) <= 1.96 * expected["se"]) > 0.93


def test_time_to_response_quantiles_from_hour_buckets() -> None:
    assert histogram_quantile({}, 0.5) is None
    assert histogram_quantile({0: 1, 1: 1}, 0.5) == 1.0
    assert histogram_quantile({2: 4}, 0.25) == 2.25
    hours = np.random.default_rng(3).lognormal(1.0, 1.0, 20_000)
    buckets = dict(zip(*np.unique(np.floor(hours).astype(int), return_counts=True), strict=True))
    for q in (0.5, 0.9):
        found = histogram_quantile({int(k): int(v) for k, v in buckets.items()}, q)
        assert found == pytest.approx(np.quantile(hours, q), abs=0.5)


def test_small_groups_and_counts_are_suppressed_and_overall_adds_up() -> None:
    rng = np.random.default_rng(1)
    group = np.array(["big"] * 400 + ["tiny"] * 7)
    flag = (rng.random(407) < 0.4).astype(int)
    response = rng.choice(3, 407, p=[0.02, 0.78, 0.2])
    groups = from_cells(cells_of(group, flag, response))
    weeks = from_cells(
        cells_of(np.array(["2026-01-05"] * 400 + ["2026-01-12"] * 7), flag, response)
    )
    report = agreement_report(groups, ("site",), weeks)
    assert report["thresholds"]["min_cell"] == 10
    rows = {row["site"]: row for row in report["groups"]}
    assert all(rows["tiny"][name] == C.SUPPRESSED for name in metric_columns())
    big = rows["big"]
    assert big[C.CARDS] == 400 and big[C.NO_RESPONSE] == C.SUPPRESSED  # about 8 of 400
    overridden = int(((group == "big") & (response == 2)).sum())
    responded = int(((group == "big") & (response > 0)).sum())
    assert big[C.OVERRIDDEN] == overridden
    assert big[C.OVERRIDE_RATE] == pytest.approx(overridden / responded)
    assert big[C.OVERRIDE_RATE + C.LOW] < big[C.OVERRIDE_RATE] < big[C.OVERRIDE_RATE + C.HIGH]
    assert big[C.OVERRIDDEN_HIGH + C.EVENT_RATE_SUFFIX] is None  # no outcomes
    assert report["overall"][C.CARDS] == 407 and report["overall"]["site"] == "all"
    trend = report["trend"]
    assert [row["week"] for row in trend] == ["2026-01-05", "2026-01-12"]
    assert all(trend[1][name] == C.SUPPRESSED for name in trend_columns()[1:])
