"""PSI and the binned KS statistic against hand-computed values and numpy on random data, and the
drift report's levels, alerts, suppression and flag rates from hand-made cells."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fairness import columns as C
from fairness.drift import ALL, MISSING, SCORE, DriftThresholds, binned_ks, drift_report, psi

EDGES = [1.0, 2.0]
UNIFORM = {"missing_rate": 0.1, "edges": EDGES, "proportions": [0.25, 0.5, 0.25]}
REFERENCE = {"features": {"a": UNIFORM, "b": UNIFORM}, "score": UNIFORM}


def test_psi_and_binned_ks_match_hand_computed_values() -> None:
    assert psi([50, 30, 20], [0.4, 0.4, 0.2]) == pytest.approx(
        0.1 * math.log(0.5 / 0.4) - 0.1 * math.log(0.3 / 0.4), abs=1e-12
    )
    assert binned_ks([50, 30, 20], [0.4, 0.4, 0.2]) == pytest.approx(0.1, abs=1e-12)
    empty = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + 0.5 * math.log(2)  # the empty bin gets epsilon
    assert psi([0, 10], [0.5, 0.5]) == pytest.approx(empty, abs=1e-12)
    assert psi([0, 10, 10], [0.0, 0.5, 0.5]) == pytest.approx(0.0, abs=1e-12)
    assert binned_ks([0, 10], [0.5, 0.5]) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_psi_and_binned_ks_match_numpy_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    training = rng.normal(0, 1, 5000)
    current = rng.normal(rng.uniform(-0.5, 0.5), rng.uniform(0.7, 1.5), int(rng.integers(50, 3000)))
    edges = np.unique(np.quantile(training, np.linspace(0, 1, 11)[1:-1]))
    bounds = [-np.inf, *edges, np.inf]
    expected = np.histogram(training, bounds)[0] / len(training)  # [e(i-1), e(i)) like SQL
    counts = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    shares = np.clip(np.histogram(current, bounds)[0] / len(current), 1e-4, None)
    reference = np.clip(expected, 1e-4, None)
    assert psi(counts, expected) == pytest.approx(
        np.sum((shares - reference) * np.log(shares / reference)), abs=1e-9
    )
    below = [abs(np.mean(current < e) - np.mean(training < e)) for e in edges]
    assert binned_ks(counts, expected) == pytest.approx(max(below), abs=1e-12)


def cells_for(bucket: str, feature: str, counts: list[int], missing: int) -> list:
    return [(bucket, feature, i, n) for i, n in enumerate(counts) if n] + [
        (bucket, feature, MISSING, missing)
    ]


def report(cells: list, flags: list, complete: list[str], **thresholds: float) -> dict:
    return drift_report(cells, flags, REFERENCE, complete, 0.2, DriftThresholds(**thresholds))


def rows_of(found: dict, feature: str) -> dict:
    section = found["score"] if feature == SCORE else found["features"]
    return {row["bucket"]: row for row in section if row[C.FEATURE] == feature}


def test_levels_alerts_and_the_share_of_drifting_features() -> None:
    stable, shifted = [50, 100, 50], [10, 40, 150]
    cells = []
    for bucket, a in (("w1", stable), ("w2", shifted)):
        cells += cells_for(bucket, "a", a, 22) + cells_for(bucket, "b", stable, 22)
        cells += cells_for(bucket, SCORE, stable, 0)
    flags = [("w1", 200, 40), ("w2", 200, 80)]
    found = report(cells, flags, ["w1", "w2"])
    a = rows_of(found, "a")
    assert a["w1"][C.PSI] == pytest.approx(0.0) and a["w1"][C.PSI_LEVEL] == "ok"
    assert a["w2"][C.PSI] == pytest.approx(psi(shifted, UNIFORM["proportions"]))
    assert a["w2"][C.PSI_LEVEL] == "alert" and a[ALL][C.PSI_LEVEL] in ("warn", "alert")
    assert a["w2"][C.MISSING_RATE] == pytest.approx(22 / 222) and not a["w2"][C.MISSING_ALERT]
    assert found["latest_complete_bucket"] == "w2"
    assert (found["alerts"][0][C.FEATURE], found["alerts"][0]["kind"]) == ("a", "psi")
    assert {x[C.FEATURE] for x in found["alerts"]} == {"a"}
    assert found[C.DRIFTING_SHARE] == 0.5 and found[C.DRIFT_ALERT]
    assert not report(cells, flags, ["w2"], feature_share=0.6)[C.DRIFT_ALERT]
    assert report(cells, flags, ["w1"])["latest_complete_bucket"] == "w1"
    rates = {row["bucket"]: row for row in found["flag_rate"]}
    assert [row["bucket"] for row in found["flag_rate"]] == ["w1", "w2", ALL]
    assert rates[ALL][C.FLAG_RATE] == 0.3 and rates["w2"][C.EXPECTED_FLAG_RATE] == 0.2
    assert found["thresholds"]["psi_alert"] == 0.25 and "binned" in found["thresholds"]["ks"]


def test_missingness_drift_alerts_and_few_values_are_underpowered() -> None:
    cells = cells_for("w1", "a", [5, 10, 5], 180) + cells_for("w1", "b", [50, 100, 50], 22)
    found = report(cells, [("w1", 200, 10)], ["w1"])
    a = rows_of(found, "a")["w1"]
    assert a[C.MISSING_RATE] == 0.9 and a[C.MISSING_ALERT]
    assert a[C.MISSING_DIFFERENCE] == pytest.approx(0.8)
    assert a[C.PSI] == pytest.approx(0.0) and a[C.PSI_LEVEL] == "underpowered"
    assert {(x[C.FEATURE], x["kind"]) for x in found["alerts"]} == {("a", "missing")}
    assert report(cells, [("w1", 200, 10)], ["w1"], missing_difference=0.85)["alerts"] == []


def test_small_buckets_are_suppressed_and_never_alert() -> None:
    cells = cells_for("w1", "a", [0, 1, 8], 0) + cells_for("w2", "a", [5, 10, 5], 2)
    cells += cells_for("w2", "b", [0, 0, 5], 17)
    found = report(cells, [("w1", 9, 1), ("w2", 22, 3)], ["w1", "w2"])
    a, b = rows_of(found, "a"), rows_of(found, "b")
    assert all(a["w1"][name] == C.SUPPRESSED for name in (C.N, C.PSI, C.KS, C.MISSING_RATE))
    assert b["w1"][C.PSI] == C.SUPPRESSED  # no counts at all
    # the whole window (31) − w2 (22) would give w1's 9: w2 is hidden too (complementary)
    assert b["w2"][C.N] == C.SUPPRESSED and b["w2"][C.PSI] == C.SUPPRESSED
    assert rows_of(found, SCORE)["w1"][C.N] == C.SUPPRESSED
    flags = {row["bucket"]: row for row in found["flag_rate"]}
    assert flags["w1"][C.FLAG_RATE] == C.SUPPRESSED and flags["w2"][C.N] == C.SUPPRESSED
    only_small = report(cells_for("w1", "a", [0, 1, 8], 0), [("w1", 9, 9)], ["w1"])
    assert only_small["latest_complete_bucket"] is None and only_small["alerts"] == []


def test_a_window_without_predictions_has_its_whole_window_rows_suppressed() -> None:
    """It was a 500 (no whole-window row to protect against) on every empty report."""
    found = report([], [], [])
    assert [row["bucket"] for row in found["flag_rate"]] == [ALL]
    assert found["flag_rate"][0][C.N] == C.SUPPRESSED
    for feature in ("a", "b", SCORE):
        assert rows_of(found, feature)[ALL][C.N] == C.SUPPRESSED
    assert found["latest_complete_bucket"] is None and found["alerts"] == []
    assert found[C.DRIFT_ALERT] is False


def test_no_hidden_count_follows_from_rates_or_the_whole_window() -> None:
    """The reviewer's leaks: missing_rate × n and flag_rate × n gave a small count, and the whole
    window's n − the other buckets gave a hidden bucket's n."""
    sizes = {"w1": 500, "w2": 6, "w3": 300, "w4": 40}
    missing = {"w1": 4, "w2": 1, "w3": 60, "w4": 35}
    flagged = {"w1": 50, "w2": 2, "w3": 297, "w4": 5}
    cells: list = []
    for bucket, n in sizes.items():
        present = n - missing[bucket]
        cells += cells_for(
            bucket, "a", [present // 3, present // 3, present - 2 * (present // 3)], missing[bucket]
        )
        cells += cells_for(bucket, SCORE, [n // 2, 0, n - n // 2], 0)
    flags = [(bucket, n, flagged[bucket]) for bucket, n in sizes.items()]
    found = report(cells, flags, list(sizes))
    truth = {ALL: sum(sizes.values()), **sizes}
    for rows, small in (
        (rows_of(found, "a"), {b: missing[b] for b in sizes} | {ALL: sum(missing.values())}),
        ({row["bucket"]: row for row in found["flag_rate"]}, None),
    ):
        for bucket, row in rows.items():
            if isinstance(row[C.N], int):
                assert row[C.N] == truth[bucket]
                for rate in (C.MISSING_RATE, C.FLAG_RATE):
                    if isinstance(row.get(rate), float):
                        for derived in (row[rate] * row[C.N], (1 - row[rate]) * row[C.N]):
                            assert not 0 < round(derived, 6) < 10, (bucket, rate)
        hidden = [truth[b] for b, row in rows.items() if row[C.N] == C.SUPPRESSED]
        assert len(hidden) != 1  # the whole window − the other buckets would give it back
        if small is not None and isinstance(rows[ALL][C.MISSING_RATE], float):
            gone = [small[b] for b in sizes if rows[b][C.MISSING_RATE] == C.SUPPRESSED and small[b]]
            assert len(gone) != 1
    # a bucket is hidden alike in every section (its n is the same in each)
    for section in (rows_of(found, "a"), rows_of(found, SCORE)):
        assert {b for b, r in section.items() if r[C.N] == C.SUPPRESSED} == {
            r["bucket"] for r in found["flag_rate"] if r[C.N] == C.SUPPRESSED
        }
    assert rows_of(found, "a")["w2"][C.N] == C.SUPPRESSED
    assert rows_of(found, "a")["w4"][C.N] == C.SUPPRESSED  # the complement of w2
    assert rows_of(found, "a")["w1"][C.MISSING_RATE] == C.SUPPRESSED  # 4 of 500 missing


def test_the_reviewers_unit_drift_leak_is_gone() -> None:
    """4 of 500 missing was missing_rate × n; all (506) − 2026-01-05 (500) gave the other's 6."""
    cells = cells_for("b1", "a", [0, 496, 0], 4) + cells_for("b2", "a", [0, 6, 0], 0)
    found = report(cells, [("b1", 500, 50), ("b2", 6, 2)], ["b1"])
    a = rows_of(found, "a")
    assert a["b1"][C.N] == a["b2"][C.N] == C.SUPPRESSED
    assert a[ALL][C.N] == 506 and a[ALL][C.MISSING_RATE] == C.SUPPRESSED
    rates = {row["bucket"]: row for row in found["flag_rate"]}
    assert rates["b1"][C.N] == rates["b2"][C.N] == C.SUPPRESSED and rates[ALL][C.N] == 506
