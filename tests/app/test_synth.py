"""The synthetic cohort generator: deterministic, valid FHIR, labels and features that agree with
``fhir_mappers``, and planted effects that can be measured back."""

from __future__ import annotations

import argparse
import csv
import math
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

import fhir_mappers
from app.training import synth
from app.training.synth import CohortConfig, PlantedEffects, generate_cohort
from fhir_mappers.charlson import categories_for
from fhir_mappers.fhirtime import parse_fhir_datetime
from fhir_mappers.labels import discharge_time, eligible_index_encounters, readmission_30d
from fhir_mappers.mapper import map_patient
from fhir_mappers.record import records_from_ndjson
from fhir_mappers.row import FeatureRow
from fhir_mappers.spec import FeatureSpec, load_spec

SPEC = load_spec(Path(fhir_mappers.__file__).parent / "specs" / "readmission_30d.yaml")
BLACK = ("race", "Black or African American")
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"


def truth_rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "truth.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def column(rows: list[dict[str, str]], name: str) -> np.ndarray:
    return np.array([float(row[name]) for row in rows])


def sub_spec(*names: str) -> FeatureSpec:
    return SPEC.model_copy(update={"features": tuple(f for f in SPEC.features if f.name in names)})


def mapped_stays(
    folder: Path, spec: FeatureSpec, limit: int | None = None
) -> list[tuple[dict[str, Any], FeatureRow]]:
    """(index encounter, feature row at its discharge) for the first ``limit`` eligible stays."""
    types = {*spec.resource_types, "Encounter"}
    stays = [
        (record, index)
        for record in records_from_ndjson(folder, types, spec.code_filters)
        for index in eligible_index_encounters(record.of_type("Encounter"), record.patient or {})
    ]
    return [
        (index, map_patient(record, spec, discharge_time(index) or datetime.now(UTC), index))
        for record, index in stays[:limit]
    ]


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 patients, nothing planted."""
    out = tmp_path_factory.mktemp("plain")
    generate_cohort(CohortConfig(patients=300, seed=3), out)
    return out


@pytest.fixture(scope="module")
def miscalibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """3,000 patients, true odds × 2.5 for Black patients."""
    out = tmp_path_factory.mktemp("miscalibrated")
    effects = PlantedEffects(miscalibrated_group=BLACK, miscalibration_odds_ratio=2.5)
    return out, generate_cohort(CohortConfig(patients=3000, seed=11, effects=effects), out)


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 patients, creatinine × 1.4 from 2024, albumin missing for 70 % of women."""
    out = tmp_path_factory.mktemp("drifted")
    effects = PlantedEffects(
        drift_feature="creatinine_last",
        drift_start=date(2024, 1, 1),
        drift_shift=1.4,
        missing_group=("sex", "female"),
        missing_feature="albumin_last",
        missing_rate=0.7,
    )
    generate_cohort(CohortConfig(patients=300, seed=5, effects=effects), out)
    return out


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    effects = PlantedEffects(miscalibrated_group=BLACK, drift_feature="albumin_last")
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        generate_cohort(CohortConfig(patients=40, seed=seed, effects=effects), tmp_path / name)
    names = sorted(path.name for path in (tmp_path / "a").iterdir())
    assert names == sorted(
        [*(f"{kind}.ndjson" for kind in synth.RESOURCE_TYPES), "truth.csv", "manifest.json"]
    )
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for name in ("Patient.ndjson", "Observation.ndjson", "truth.csv"):
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes(), name


def test_every_eligible_stay_has_a_truth_row_whose_outcome_the_labels_reproduce(
    plain: Path,
) -> None:
    truth = {row["encounter_id"]: row for row in truth_rows(plain)}
    records = records_from_ndjson(plain, resource_types={"Patient", "Encounter"})
    labelled: dict[str, Any] = {}
    planned_in_window = 0
    for record in records:
        patient, stays = record.patient or {}, record.of_type("Encounter")
        for index in eligible_index_encounters(stays, patient):
            labelled[index["id"]] = label = readmission_30d(index, stays, patient)
            row = truth[index["id"]]
            assert row["patient_id"] == patient["id"]
            assert (label.value, label.event_encounter_id or "") == (
                int(row["readmitted"]),
                row["readmission_encounter_id"],
            ), index["id"]
            planned_in_window += label.value == 0 and any(
                _elective_within_30_days(index, other) for other in stays
            )
    assert labelled.keys() == truth.keys()
    assert Counter(label.reason for label in labelled.values()).keys() == {
        "readmitted",
        "no_readmission",
    }
    assert planned_in_window > 0  # elective stays inside the window were written and ignored


def _elective_within_30_days(index: dict[str, Any], other: dict[str, Any]) -> bool:
    start = parse_fhir_datetime(other["period"]["start"])
    end = discharge_time(index)
    assert start is not None and end is not None
    elective = other.get("priority", {}).get("coding", [{}])[0].get("code") == "EL"
    return elective and 0 < (start - end).total_seconds() <= 30 * 86400


def test_resources_are_valid_fhir_r4_and_counted_in_the_manifest(plain: Path) -> None:
    counts = orjson.loads((plain / "manifest.json").read_bytes())["counts"]
    for kind in synth.RESOURCE_TYPES:
        lines = (plain / f"{kind}.ndjson").read_bytes().splitlines()
        assert counts[kind] == len(lines)
        model = get_fhir_model_class(kind)
        for line in lines[:: max(1, len(lines) // 50)]:
            model.model_validate(orjson.loads(line))


def test_mapped_features_equal_the_truth_inputs_and_raise_no_quality_notes(
    tmp_path: Path,
) -> None:
    generate_cohort(CohortConfig(patients=20, seed=8), tmp_path)
    truth = {row["encounter_id"]: row for row in truth_rows(tmp_path)}
    stays = mapped_stays(tmp_path, SPEC)
    assert len(stays) == len(truth)
    converted = 0
    for index, row in stays:
        assert row.is_finite_or_nan() and row.notes == []
        assert {"creatinine_last", "hemoglobin_last", "sodium_last"}.isdisjoint(row.missing)
        expected = truth[index["id"]]
        for term in synth.RISK_TERMS:
            if term.feature in row.missing:
                assert term.feature == "albumin_last"  # not recorded for this patient
                continue
            tolerance = 0.006 if term.feature == "creatinine_last" else 0  # umol/L rounding
            value = float(expected[f"x_{term.feature}"])
            assert row.values[term.feature] == pytest.approx(value, abs=tolerance), term.feature
        converted += row.provenance["creatinine_last"].converted
    assert converted > 0  # some creatinine came in umol/L and was converted


def test_comorbidity_codings_agree_on_charlson_and_admission_reasons_score_nothing() -> None:
    for comorbidity in synth.COMORBIDITIES.values():
        snomed = categories_for("http://snomed.info/sct", comorbidity.snomed)
        icd10 = categories_for(ICD10, comorbidity.icd10)
        assert snomed == icd10, comorbidity.key
    unscored = {c.key for c in synth.COMORBIDITIES.values() if not categories_for(ICD10, c.icd10)}
    assert unscored == {"hypertension", "atrial_fibrillation", "anaemia"}
    assert not any(categories_for("http://snomed.info/sct", r.code) for r in synth.REASONS)


def test_readmission_rate_is_about_15_percent_and_matches_the_true_risk(
    miscalibrated: tuple[Path, dict[str, Any]],
) -> None:
    folder, manifest = miscalibrated
    rows = truth_rows(folder)
    outcomes, risks = column(rows, "readmitted"), column(rows, "true_risk")
    assert 0.10 <= outcomes.mean() <= 0.20
    assert abs(outcomes.mean() - risks.mean()) < 0.02
    assert manifest["readmission_rate"] == pytest.approx(outcomes.mean())
    logits = sum(column(rows, f"lp_{t.feature}") for t in synth.RISK_TERMS) + synth.INTERCEPT
    logits += column(rows, "lp_miscalibration")
    assert np.allclose(logits, column(rows, "true_logit"), atol=1e-6)
    assert np.allclose(1 / (1 + np.exp(-logits)), risks, atol=1e-6)


def test_planted_miscalibration_shows_as_excess_events_in_the_group_only(
    miscalibrated: tuple[Path, dict[str, Any]],
) -> None:
    rows = truth_rows(miscalibrated[0])
    outcomes, risks = column(rows, "readmitted"), column(rows, "true_risk")
    shift = column(rows, "lp_miscalibration")
    in_group = np.array([row["race"] == BLACK[1] for row in rows])
    assert np.all(shift[in_group] == pytest.approx(math.log(2.5))) and np.all(shift[~in_group] == 0)
    unplanted = 1 / (1 + np.exp(-(column(rows, "true_logit") - shift)))  # what features explain
    assert abs(outcomes[in_group].mean() - risks[in_group].mean()) < 0.035
    ratio_group = outcomes[in_group].mean() / unplanted[in_group].mean()
    ratio_others = outcomes[~in_group].mean() / unplanted[~in_group].mean()
    assert 1.6 < ratio_group < 2.6
    assert 0.9 < ratio_others < 1.1


def test_manifest_documents_the_formula_and_the_largest_drivers(
    miscalibrated: tuple[Path, dict[str, Any]],
) -> None:
    folder, manifest = miscalibrated
    assert manifest == orjson.loads((folder / "manifest.json").read_bytes())
    model = manifest["risk_model"]
    assert model["intercept"] == synth.INTERCEPT
    assert [term["feature"] for term in model["terms"]] == [t.feature for t in synth.RISK_TERMS]
    by_spread = sorted(model["terms"], key=lambda term: -term["sd_of_contribution"])
    assert {term["feature"] for term in by_spread[:4]} == set(model["top_drivers"])
    assert {f.name for f in SPEC.features} >= set(model["top_drivers"])
    [effect] = manifest["planted_effects"]
    assert effect["group"] == {"attribute": "race", "value": BLACK[1]}
    assert "true odds × 2.5 for race = Black or African American" in manifest["description"]
    assert manifest["config"]["seed"] == 11 and manifest["config"]["start"] == "2023-01-01"


def test_planted_drift_scales_the_mapped_feature_from_its_start_and_nothing_else(
    drifted: Path,
) -> None:
    names = ("creatinine_last", "egfr_last", "hemoglobin_last")
    stays = mapped_stays(drifted, sub_spec(*names))
    truth = {row["encounter_id"]: row for row in truth_rows(drifted)}
    after = np.array([row.index_time >= datetime(2024, 1, 1, tzinfo=UTC) for _, row in stays])
    assert 150 < after.sum() < len(after) - 150
    for name in names:
        values = np.log([row.values[name] for _, row in stays])
        ratio = math.exp(values[after].mean() - values[~after].mean())
        assert ratio == pytest.approx(1.4 if name == "creatinine_last" else 1.0, abs=0.12), name
    # stay by stay: the written creatinine is the true one × 1.4 from the start on
    undrifted = np.array([float(truth[index["id"]]["x_creatinine_last"]) for index, _ in stays])
    shift = np.array([row.values["creatinine_last"] for _, row in stays]) / undrifted
    assert shift[after] == pytest.approx(1.4, abs=0.02)
    assert shift[~after] == pytest.approx(1.0, abs=0.02)


def test_planted_missingness_drops_the_feature_for_the_group_at_its_rate(drifted: Path) -> None:
    stays = mapped_stays(drifted, sub_spec("albumin_last", "sex_female"))
    female = np.array([row.values["sex_female"] == 1 for _, row in stays])
    missing = np.array(["albumin_last" in row.missing for _, row in stays])
    assert missing[female].mean() == pytest.approx(0.7, abs=0.12)
    assert missing[~female].mean() == pytest.approx(0.1, abs=0.08)


def test_cli_writes_the_cohort_with_the_planted_effects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    args = parser.parse_args(
        [
            "--patients=25",
            "--seed=4",
            f"--out={tmp_path}",
            "--start=2024-01-01",
            "--plant-miscalibration=race=Black or African American:3",
            "--plant-drift=creatinine_last:2024-07-01",
            "--plant-missingness=sex=female:albumin_last:0.5",
            "--plant-overrides=ethnicity=Hispanic or Latino:0.7",
        ]
    )
    assert synth.run(args) == 0
    assert "25 patients" in capsys.readouterr().out
    manifest = orjson.loads((tmp_path / "manifest.json").read_bytes())
    config = manifest["config"]
    assert config["start"] == "2024-01-01" and config["patients"] == 25
    assert config["effects"] == {
        **orjson.loads(orjson.dumps(PlantedEffects())),
        "miscalibrated_group": ["race", "Black or African American"],
        "miscalibration_odds_ratio": 3.0,
        "drift_feature": "creatinine_last",
        "drift_start": "2024-07-01",
        "missing_group": ["sex", "female"],
        "missing_feature": "albumin_last",
        "missing_rate": 0.5,
        "override_group": ["ethnicity", "Hispanic or Latino"],
        "override_rate_group": 0.7,
    }
    assert [effect["kind"] for effect in manifest["planted_effects"]] == [
        "miscalibration",
        "drift",
        "missingness",
        "overrides",
    ]


@pytest.mark.parametrize(
    "option",
    [
        "--plant-miscalibration=race=Martian",
        "--plant-miscalibration=colour=blue",
        "--plant-drift=smoking_current",
        "--plant-missingness=sex=female:not_a_feature",
        "--plant-overrides=sex",
    ],
)
def test_cli_rejects_unknown_groups_and_features(option: str, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--patients=1", f"--out={tmp_path}", option])
