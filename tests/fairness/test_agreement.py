"""Agreement measures from aggregated cells: hand-computed tables, sklearn on the rows they
summarise, the kappa standard error by simulation, time-to-response quantiles, suppression."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score

from fairness import columns as C
from fairness.agreement import (
    RELIANCE,
    RESPONSES,
    Cell,
    agreement_measures,
    agreement_report,
    from_cells,
    metric_columns,
    trend_columns,
)
from fairness.stats import cohen_kappa, histogram_quantile
from fairness.suppression import hides


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
    # overall (407) − big would give tiny's 7: big is hidden too (complementary suppression)
    assert all(rows["big"][name] == C.SUPPRESSED for name in metric_columns())
    assert report["overall"][C.CARDS] == 407 and report["overall"]["site"] == "all"
    trend = report["trend"]
    assert [row["week"] for row in trend] == ["2026-01-05", "2026-01-12"]
    assert all(trend[1][name] == C.SUPPRESSED for name in trend_columns()[1:])
    assert all(trend[0][name] == C.SUPPRESSED for name in trend_columns()[1:])


def leaky_groups(seed: int) -> tuple[list, list]:
    """Groups from big to tiny, with outcomes, comments, reasons and weeks: many small cells."""
    rng = np.random.default_rng(seed)
    cells: list = []
    week_cells: list = []
    reasons: list = []
    for size, key in ((600, "a"), (240, "b"), (90, "c"), (35, "d"), (14, "e"), (6, "f")):
        for f in (0, 1):
            for r in range(3):
                count = int(rng.binomial(size, [[0.35, 0.2, 0.05], [0.2, 0.12, 0.08]][f][r]))
                if count:
                    event = int(rng.random() < 0.3)
                    cells.append(((key,), bool(f), RESPONSES[r], event, count, count // 7))
                    week = ("2026-01-05", "2026-01-12", "2026-01-19")[int(rng.integers(3))]
                    week_cells.append(((week,), bool(f), RESPONSES[r], event, count, 0))
        for code in ("x", "y", "z"):
            number = int(rng.binomial(size, 0.03))
            if number:
                reasons.append(((key,), "s", code, code, number))
    return from_cells(cells, (), reasons), from_cells(week_cells)


def assert_nothing_hidden_follows(rows: list, counts: list, total: dict, names: dict) -> None:
    """No hidden count of a row follows from a rate × its denominator or cards − its other
    counts, and no hidden group's count from the overall − the shown groups."""
    for row, group in zip(rows, counts, strict=True):
        truth = {name: value(group) for name, value in names.items()}
        hidden = {v for name, v in truth.items() if row.get(name) == C.SUPPRESSED and 0 < v < 10}
        numbers = [v for v in row.values() if isinstance(v, int) and not isinstance(v, bool)]
        for rate in (C.RESPONSE_RATE, C.OVERRIDE_RATE, C.RAW_AGREEMENT):
            if isinstance(row.get(rate), float):
                for base in [
                    *numbers,
                    *(
                        n * row[C.RESPONSE_RATE]
                        for n in numbers
                        if isinstance(row.get(C.RESPONSE_RATE), float)
                    ),
                ]:
                    for derived in (row[rate] * base, (1 - row[rate]) * base):
                        assert round(derived, 6) not in hidden, (row, rate)
        parts = [C.ACCEPTED, C.OVERRIDDEN, C.NO_RESPONSE]
        if isinstance(row.get(C.CARDS), int) and all(n in truth for n in parts):
            gone = [truth[n] for n in parts if not isinstance(row.get(n), int) and truth[n]]
            assert len(gone) != 1, row  # cards − the others would give it back
    for name, value in names.items():
        if isinstance(total.get(name), int):
            gone = [
                value(g)
                for g, row in zip(counts, rows, strict=True)
                if row.get(name) == C.SUPPRESSED and value(g) > 0
            ]
            assert len(gone) != 1, name


COUNT_OF = {
    C.CARDS: lambda g: g.n,
    C.HIGH_RISK: lambda g: int(g.cards[1].sum()),
    C.ACCEPTED: lambda g: g.shown(1),
    C.OVERRIDDEN: lambda g: g.shown(2),
    C.NO_RESPONSE: lambda g: g.shown(0),
    C.COMMENTS: lambda g: g.comments,
}


@pytest.mark.parametrize("seed", range(6))
def test_no_hidden_count_follows_from_rates_rows_groups_reasons_or_weeks(seed: int) -> None:
    """The reviewer's leaks: override_rate × responded, cards − the other counts, overall − the
    groups (counts and reasons), and reason rows of a hidden group all gave a hidden count."""
    groups, weeks = leaky_groups(seed)
    report = agreement_report(groups, ("g",), weeks)
    rows, whole = report["groups"], report["overall"]
    assert_nothing_hidden_follows(rows, groups, whole, COUNT_OF)
    for name, flag, response in RELIANCE:
        rate = name + C.EVENT_RATE_SUFFIX
        for row, group in zip(rows, groups, strict=True):
            events, labelled = (
                int(group.events[flag, response]),
                int(group.labelled[flag, response]),
            )
            if isinstance(row[rate], float):
                assert not hides(events, labelled, 10)
    hidden = {row["g"] for row in rows if row[C.CARDS] == C.SUPPRESSED}
    assert "f" in hidden and len(hidden) >= 2
    assert not [r for r in report["reasons"] if r["g"] in hidden]  # a hidden group names none
    overall = {r["override_code"]: r[C.REASON_COUNT] for r in report["reasons"] if r["g"] == "all"}
    for code, number in overall.items():
        if isinstance(number, int):
            shown = sum(
                r[C.REASON_COUNT]
                for r in report["reasons"]
                if r["override_code"] == code
                and r["g"] != "all"
                and isinstance(r[C.REASON_COUNT], int)
            )
            gone = [g.reasons.get(("s", code, code), 0) for g in groups]
            gone = [
                v
                for g, v in zip(groups, gone, strict=True)
                if v
                and not any(
                    r["g"] == g.key[0]
                    and r["override_code"] == code
                    and isinstance(r[C.REASON_COUNT], int)
                    for r in report["reasons"]
                )
            ]
            assert len(gone) != 1 and (number - shown) not in [v for v in gone if v < 10]
    for row, group in zip(rows, groups, strict=True):  # overridden − its other reasons
        mine = [r for r in report["reasons"] if r["g"] == row["g"]]
        if isinstance(row[C.OVERRIDDEN], int):
            left = row[C.OVERRIDDEN] - sum(
                r[C.REASON_COUNT] for r in mine if isinstance(r[C.REASON_COUNT], int)
            )
            secret = [
                group.reasons[(r["override_system"], r["override_code"], r["override_display"])]
                for r in mine
                if r[C.REASON_COUNT] == C.SUPPRESSED
            ]
            assert not (len(secret) == 1 and left == secret[0] and left < 10)
    trend = report["trend"]
    trend_counts = {n: COUNT_OF[n] for n in (C.CARDS, C.ACCEPTED, C.OVERRIDDEN)}
    assert_nothing_hidden_follows(trend, sorted(weeks, key=lambda w: w.key), whole, trend_counts)
    for row, week in zip(trend, sorted(weeks, key=lambda w: w.key), strict=True):
        if isinstance(row[C.CARDS], int):  # the no-response count is cards − the others
            gone = [
                v
                for n, v in ((C.ACCEPTED, week.shown(1)), (C.OVERRIDDEN, week.shown(2)))
                if row[n] == C.SUPPRESSED and v
            ]
            assert not (not gone and 0 < week.shown(0) < 10), row


def test_the_reviewers_unit_leak_is_gone() -> None:
    """A tiny group of 3 overrides: its reason row was printed, and overall 33 − big 30 = 3."""
    cells = [
        (("big",), True, "overridden", None, 30, 0),
        (("big",), True, "accepted", None, 40, 0),
        (("tiny",), True, "overridden", None, 3, 0),
    ]
    reasons = [(("big",), "s", "c1", "d", 30), (("tiny",), "s", "c1", "d", 3)]
    report = agreement_report(from_cells(cells, (), reasons), ("unit",), [])
    assert all(row[C.CARDS] == C.SUPPRESSED for row in report["groups"])
    assert [r["unit"] for r in report["reasons"]] == ["all"]


def test_answer_delays_need_enough_answers_not_large_agreement_cells() -> None:
    """A group whose kappa is hidden (a 1-9 cell in its table) still shows its delay quantiles
    when enough cards were answered; a group with fewer than 10 timed answers does not."""
    cells = [
        (("wide",), True, "accepted", 1, 120, 0),
        (("wide",), False, "accepted", 0, 200, 0),
        (("wide",), True, "overridden", 0, 4, 0),  # a small cell: agreement measures hidden
        (("wide",), False, "overridden", 0, 60, 0),
        (("thin",), True, "accepted", 1, 300, 0),
        (("thin",), False, "accepted", 0, 300, 0),
    ]
    delays = [(("wide",), 2, 300), (("wide",), 5, 84), (("thin",), 1, 9)]
    report = agreement_report(from_cells(cells, delays), ("unit",), [])
    rows = {row["unit"]: row for row in report["groups"]}
    assert rows["wide"][C.KAPPA] == C.SUPPRESSED
    assert rows["wide"][C.HOURS_MEDIAN] == pytest.approx(histogram_quantile({2: 300, 5: 84}, 0.5))
    assert rows["wide"][C.HOURS_P90] == pytest.approx(histogram_quantile({2: 300, 5: 84}, 0.9))
    assert rows["thin"][C.HOURS_MEDIAN] == C.SUPPRESSED == rows["thin"][C.HOURS_P90]
