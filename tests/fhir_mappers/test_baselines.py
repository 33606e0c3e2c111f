"""LACE index and HOSPITAL score from FHIR: hand-built patients with known scores, then the
Synthea samples read from ``$BEDSIDE_FHIR_SAMPLES`` (those tests skip when it is unset)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_mappers.baselines import (
    ED_TO_ADMISSION,
    HOSPITAL_HIGH_RISK,
    LACE_HIGH_RISK,
    BaselineScore,
    hospital_score,
    lace_index,
)
from fhir_mappers.labels import discharge_time, eligible_index_encounters
from fhir_mappers.record import records_from_bundle
from tests.support.fhir_builders import collection, encounter, observation, patient

SNOMED = "http://snomed.info/sct"
ADMITTED = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
# Charlson (SNOMED CT concepts of fhir_mappers.charlson, weight in brackets)
HEART_FAILURE = "42343007"  # [1]
DEMENTIA = "52448006"  # [1]
CHRONIC_KIDNEY_DISEASE = "709044004"  # [2]
MALIGNANCY = "363346000"  # [2]
DIABETIC_KIDNEY_DISEASE = "127013003"  # [2]
METASTASIS = "128462008"  # [6]
HYPERTENSION = "38341003"  # not a Charlson condition
MEDICAL_ONCOLOGY = "394593009"
PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"
ADMIT_SOURCE = "http://terminology.hl7.org/CodeSystem/admit-source"


def at(days: float = 0, hours: float = 0) -> str:
    """An instant relative to the index admission, as FHIR writes it."""
    return (ADMITTED + timedelta(days=days, hours=hours)).isoformat()


def coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def index_stay(days: float = 2, **fields: Any) -> dict[str, Any]:
    return encounter("index", at(), at(days), **fields)


def emergency_visit(start: str, end: str, **fields: Any) -> dict[str, Any]:
    return encounter(uuid.uuid4().hex, start, end, class_code="EMER", **fields)


def admission(start_days: float) -> dict[str, Any]:
    return encounter(uuid.uuid4().hex, at(start_days), at(start_days + 2))


def condition(code: str, onset: str, **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": uuid.uuid4().hex,
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "onsetDateTime": onset,
        **fields,
    }


def procedure(when: str | None, status: str = "completed", **fields: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "Procedure",
        "id": uuid.uuid4().hex,
        "status": status,
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": SNOMED, "code": "387713003"}]},  # Surgical procedure
        **fields,
    }
    if when is not None:
        resource["performedDateTime"] = when
    return resource


def hemoglobin(value: float, when: str, unit: str = "g/dL", **fields: Any) -> dict[str, Any]:
    return observation("718-7", value, unit, when, **fields)


def sodium(value: float, when: str, unit: str = "mmol/L", **fields: Any) -> dict[str, Any]:
    return observation("2951-2", value, unit, when, **fields)


def scores(
    index: dict[str, Any], *resources: dict[str, Any], index_time: datetime | None = None
) -> tuple[BaselineScore, BaselineScore]:
    """(LACE, HOSPITAL) of the stay ``index``, scored at its discharge unless told otherwise."""
    (record,) = records_from_bundle(collection(patient(), index, *resources))
    when = index_time or discharge_time(index)
    assert when is not None
    return lace_index(record, index, when), hospital_score(record, index, when)


def lace(index: dict[str, Any], *resources: dict[str, Any]) -> BaselineScore:
    return scores(index, *resources)[0]


def hospital(index: dict[str, Any], *resources: dict[str, Any]) -> BaselineScore:
    return scores(index, *resources)[1]


# Length of stay


@pytest.mark.parametrize(
    ("days", "points"),
    [(0.5, 0), (1, 1), (2, 2), (3.9, 3), (4, 4), (6.9, 4), (7, 5), (13.9, 5), (14, 7)],
)
def test_lace_length_of_stay_points_count_whole_days(days: float, points: int) -> None:
    assert lace(index_stay(days)).components["L"] == points


@pytest.mark.parametrize(("days", "points"), [(4.9, 0), (5, 2), (14, 2)])
def test_hospital_length_of_stay_scores_two_from_five_days(days: float, points: int) -> None:
    assert hospital(index_stay(days)).components["L"] == points


def test_unreadable_admission_time_leaves_the_stay_letters_missing() -> None:
    stay = index_stay(3)
    stay["period"]["start"] = "not a date"
    lace_score, hospital_score_ = scores(stay, procedure(at(1)))
    assert (lace_score.components["L"], lace_score.missing) == (0, ("L",))
    assert hospital_score_.missing == ("H", "S", "P", "L")
    assert hospital_score_.score == 0


# Acuity (LACE A) and index admission type (HOSPITAL I)


@pytest.mark.parametrize(
    ("fields", "emergent"),
    [
        ({"priority": coded(PRIORITY, "EM")}, True),
        ({"priority": coded(PRIORITY, "UR")}, True),
        ({"priority": coded(PRIORITY, "EL")}, False),
        ({"hospitalization": {"admitSource": coded(ADMIT_SOURCE, "emd")}}, True),
        ({"hospitalization": {"admitSource": coded(ADMIT_SOURCE, "gp")}}, False),
        ({}, False),
    ],
)
def test_emergent_priority_or_admission_from_the_ed_scores_acuity(
    fields: dict[str, Any], emergent: bool
) -> None:
    lace_score, hospital_score_ = scores(index_stay(2, **fields))
    assert lace_score.components["A"] == (3 if emergent else 0)
    assert hospital_score_.components["I"] == int(emergent)


def test_ed_visit_ending_within_the_window_before_admission_led_to_it() -> None:
    window_hours = ED_TO_ADMISSION.total_seconds() / 3600
    ended_in_time = emergency_visit(at(hours=-window_hours - 2), at(hours=-window_hours))
    lace_score, hospital_score_ = scores(index_stay(2), ended_in_time)
    assert (lace_score.components["A"], lace_score.components["E"]) == (3, 0)
    assert hospital_score_.components["I"] == 1


def test_ed_visit_ending_earlier_is_a_prior_visit_not_the_way_in() -> None:
    window_hours = ED_TO_ADMISSION.total_seconds() / 3600
    ended_before = emergency_visit(at(hours=-window_hours - 2), at(hours=-window_hours - 0.1))
    lace_score, hospital_score_ = scores(index_stay(2), ended_before)
    assert (lace_score.components["A"], lace_score.components["E"]) == (0, 1)
    assert hospital_score_.components["I"] == 0


def test_ed_visit_starting_at_the_admission_instant_led_to_it() -> None:
    """Synthea's form: the EMER encounter starts with the stay and ends 90 minutes into it."""
    same_start = emergency_visit(at(), at(hours=1.5))
    assert lace(index_stay(2), same_start).components == {"L": 2, "A": 3, "C": 0, "E": 0}


# Charlson (LACE C)


@pytest.mark.parametrize(
    ("codes", "points"),
    [
        ((HYPERTENSION,), 0),  # Charlson 0
        ((HEART_FAILURE, CHRONIC_KIDNEY_DISEASE), 3),  # 1 + 2 = 3
        ((MALIGNANCY, DIABETIC_KIDNEY_DISEASE), 5),  # 2 + 2 = 4
        ((METASTASIS, DEMENTIA), 5),  # 6 + 1 = 7
    ],
)
def test_lace_charlson_points(codes: tuple[str, ...], points: int) -> None:
    conditions = [condition(code, at(days=-400)) for code in codes]
    assert lace(index_stay(2), *conditions).components["C"] == points


def test_charlson_counts_history_known_at_the_index_time_only() -> None:
    resolved = condition(HEART_FAILURE, at(-900), clinicalStatus=coded("x", "resolved"))
    diagnosed_in_stay = condition(DEMENTIA, at(1))
    after_discharge = condition(METASTASIS, at(3))
    recorded_after = condition(MALIGNANCY, at(-30), recordedDate=at(5))
    voided = condition(CHRONIC_KIDNEY_DISEASE, at(-30), verificationStatus=coded("x", "refuted"))
    in_error = condition(
        DIABETIC_KIDNEY_DISEASE, at(-30), verificationStatus=coded("x", "entered-in-error")
    )
    conditions = (resolved, diagnosed_in_stay, after_discharge, recorded_after, voided, in_error)
    # heart failure 1 + dementia 1 = 2
    assert lace(index_stay(2), *conditions).components["C"] == 2


# ED visits in six months (LACE E)


@pytest.mark.parametrize(("visits", "points"), [(0, 0), (3, 3), (4, 4), (9, 4)])
def test_lace_counts_ed_visits_in_six_months_but_not_the_one_that_led_to_admission(
    visits: int, points: int
) -> None:
    prior = [emergency_visit(at(-10 - 15 * n), at(-10 - 15 * n, hours=3)) for n in range(visits)]
    seven_months_ago = emergency_visit(at(-213), at(-213, hours=3))
    way_in = emergency_visit(at(hours=-4), at(hours=-1))
    lace_score = lace(index_stay(2), *prior, seven_months_ago, way_in)
    assert (lace_score.components["E"], lace_score.components["A"]) == (points, 3)


def test_one_ed_visit_recorded_twice_counts_once() -> None:
    visit, replay = (emergency_visit(at(-20), at(-20, hours=3)) for _ in range(2))
    assert lace(index_stay(2), visit, replay).components["E"] == 1


# Haemoglobin and sodium at discharge (HOSPITAL H and S)


@pytest.mark.parametrize(
    ("value", "unit", "points"),
    [(11.9, "g/dL", 1), (12.0, "g/dL", 0), (119, "g/L", 1), (120, "g/L", 0)],
)
def test_hemoglobin_below_12_g_per_dl_scores_one(value: float, unit: str, points: int) -> None:
    score = hospital(index_stay(2), hemoglobin(value, at(1.5), unit))
    assert (score.components["H"], score.missing) == (points, ("S",))


def test_the_last_hemoglobin_of_the_stay_counts() -> None:
    readings = (hemoglobin(9.0, at(-3)), hemoglobin(10.5, at(0.5)), hemoglobin(12.4, at(1.5)))
    assert hospital(index_stay(2), *readings).components["H"] == 0


@pytest.mark.parametrize(
    ("value", "unit", "points"), [(134, "mmol/L", 1), (135, "mmol/L", 0), (134, "meq/L", 1)]
)
def test_sodium_below_135_mmol_per_l_scores_one(value: float, unit: str, points: int) -> None:
    score = hospital(index_stay(2), sodium(value, at(1.5), unit))
    assert (score.components["S"], score.missing) == (points, ("H",))


def test_labs_missing_from_the_stay_score_zero_and_are_listed() -> None:
    before_admission = (hemoglobin(8.0, at(-2)), sodium(120, at(-2)))
    unconvertible = observation("718-7", 9.0, "mmol/mol", at(1))
    score = hospital(index_stay(2), *before_admission, unconvertible)
    assert (score.components["H"], score.components["S"]) == (0, 0)
    assert score.missing == ("H", "S")


# Procedure during the stay (HOSPITAL P)


@pytest.mark.parametrize(
    ("performed", "points"),
    [
        ({"performedDateTime": at(1)}, 1),
        ({"performedDateTime": at(-1)}, 0),
        ({"performedDateTime": at(2, hours=1)}, 0),
        ({"performedDateTime": ADMITTED.date().isoformat()}, 1),  # date only, admission day
        ({"performedPeriod": {"start": at(hours=-2), "end": at(hours=1)}}, 1),
        ({"performedPeriod": {"start": at(-3), "end": at(-2)}}, 0),
    ],
)
def test_a_procedure_performed_within_the_stay_scores_one(
    performed: dict[str, Any], points: int
) -> None:
    assert hospital(index_stay(2), procedure(None, **performed)).components["P"] == points


@pytest.mark.parametrize("status", ["not-done", "entered-in-error", "preparation"])
def test_procedures_not_performed_do_not_count(status: str) -> None:
    assert hospital(index_stay(2), procedure(at(1), status)).components["P"] == 0


# Admissions in twelve months (HOSPITAL A)


@pytest.mark.parametrize(("admissions", "points"), [(1, 0), (2, 2), (5, 2), (6, 5)])
def test_admissions_in_the_previous_twelve_months(admissions: int, points: int) -> None:
    prior = [admission(-20 - 30 * n) for n in range(admissions)]
    thirteen_months_ago = admission(-396)
    score = hospital(index_stay(2), *prior, thirteen_months_ago)
    assert score.components["A"] == points


# Oncology service (HOSPITAL O)


@pytest.mark.parametrize(
    ("fields", "points"),
    [
        ({"serviceType": coded(SNOMED, MEDICAL_ONCOLOGY)}, 2),
        ({"type": [coded(SNOMED, "394592004")]}, 2),  # clinical oncology
        ({"serviceType": [{"concept": coded(SNOMED, "418002000")}]}, 2),  # R5, paediatric
        ({"serviceType": coded(SNOMED, "418112009")}, 0),  # pulmonary medicine
        ({"serviceType": coded("http://example.org/services", MEDICAL_ONCOLOGY)}, 0),
    ],
)
def test_discharge_from_an_oncology_service_scores_two(fields: dict[str, Any], points: int) -> None:
    assert hospital(index_stay(2, **fields)).components["O"] == points


def test_an_active_cancer_is_not_an_oncology_service() -> None:
    cancer = condition(MALIGNANCY, at(-60), clinicalStatus=coded("x", "active"))
    assert hospital(index_stay(2), cancer).components["O"] == 0


# Time and status


def test_nothing_dated_after_the_index_time_counts() -> None:
    """Scored on day 4 of a stay recorded as ending on day 6."""
    stay = index_stay(6)
    known = (hemoglobin(10.0, at(1)), condition(HEART_FAILURE, at(-100)))
    later = (
        hemoglobin(13.0, at(5)),
        hemoglobin(14.0, at(3), issued=at(4, hours=1)),  # drawn before, resulted after
        sodium(130, at(5)),
        procedure(at(5)),
        condition(METASTASIS, at(5)),
    )
    lace_score, hospital_score_ = scores(stay, *known, *later, index_time=ADMITTED + timedelta(4))
    assert lace_score.components == {"L": 4, "A": 0, "C": 1, "E": 0}
    assert hospital_score_.components == {"H": 1, "O": 0, "S": 0, "P": 0, "I": 0, "A": 0, "L": 0}
    assert hospital_score_.missing == ("S",)


def test_entered_in_error_and_cancelled_data_is_ignored() -> None:
    voided = (
        hemoglobin(10.0, at(1)),
        hemoglobin(13.0, at(1.5), status="entered-in-error"),
        sodium(130, at(1.5), status="cancelled"),
        procedure(at(1), "entered-in-error"),
        condition(METASTASIS, at(-10), verificationStatus=coded("x", "entered-in-error")),
        emergency_visit(at(hours=-3), at(hours=-1), status="entered-in-error"),
        emergency_visit(at(-20), at(-20, hours=2), status="cancelled"),
        *(admission(-30 * n) | {"status": "entered-in-error"} for n in (1, 2)),
    )
    lace_score, hospital_score_ = scores(index_stay(2), *voided)
    assert lace_score.components == {"L": 2, "A": 0, "C": 0, "E": 0}
    assert hospital_score_.components == {"H": 1, "O": 0, "S": 0, "P": 0, "I": 0, "A": 0, "L": 0}
    assert hospital_score_.missing == ("S",)


def test_malformed_resources_do_not_raise_and_do_not_count() -> None:
    stay = index_stay(2, serviceType="oncology", priority=["EM"], hospitalization="emd")
    subject = {"subject": {"reference": "Patient/p1"}}
    malformed = (
        {"resourceType": "Encounter", "id": "e1", "status": ["finished"], "period": "x", **subject},
        {
            "resourceType": "Encounter",
            "id": "e2",
            "status": "done",
            "period": {"start": 5},
            **subject,
        },
        {"resourceType": "Procedure", "id": "p1", "status": {}, "performedDateTime": 3, **subject},
        {"resourceType": "Condition", "id": "c1", "code": "C78", "onsetDateTime": "x", **subject},
        hemoglobin(1e400, at(1)),
        observation("2951-2", None, None, at(1), valueQuantity={"value": "130"}),
    )
    lace_score, hospital_score_ = scores(stay, *malformed)
    assert (lace_score.score, hospital_score_.score) == (2, 0)
    assert hospital_score_.missing == ("H", "S")


# Whole patients


def test_high_risk_patient_scores_every_letter() -> None:
    stay = index_stay(5.5, serviceType=coded(SNOMED, MEDICAL_ONCOLOGY))
    lace_score, hospital_score_ = scores(
        stay,
        emergency_visit(at(hours=-5), at(hours=-1)),  # the way in: acuity, not an ED visit
        emergency_visit(at(-40), at(-40, hours=4)),
        emergency_visit(at(-90), at(-90, hours=4)),
        condition(MALIGNANCY, at(-200)),
        condition(CHRONIC_KIDNEY_DISEASE, at(-700)),
        *(admission(-60 * n) for n in (1, 2, 3)),
        hemoglobin(10.8, at(5)),
        sodium(132, at(5)),
        procedure(at(1)),
    )
    # LACE = L 4 (5 days) + A 3 (via the ED) + C 5 (Charlson 2 + 2 = 4) + E 2 = 14
    assert lace_score.components == {"L": 4, "A": 3, "C": 5, "E": 2}
    assert (lace_score.score, lace_score.missing) == (14, ())
    # HOSPITAL = H 1 + O 2 + S 1 + P 1 + I 1 + A 2 (3 admissions) + L 2 (5.5 days) = 10
    assert hospital_score_.components == {"H": 1, "O": 2, "S": 1, "P": 1, "I": 1, "A": 2, "L": 2}
    assert (hospital_score_.score, hospital_score_.missing) == (10, ())
    assert lace_score.score >= LACE_HIGH_RISK and hospital_score_.score >= HOSPITAL_HIGH_RISK


def test_long_elective_stay_of_a_frequent_visitor() -> None:
    stay = index_stay(14, priority=coded(PRIORITY, "EL"))
    lace_score, hospital_score_ = scores(
        stay,
        *(emergency_visit(at(-3 - 20 * n), at(-3 - 20 * n, hours=2)) for n in range(5)),
        *(admission(-50 * n) for n in range(1, 7)),
        condition(HYPERTENSION, at(-1000)),
        hemoglobin(12.5, at(13)),
        sodium(134, at(13)),
    )
    # LACE = L 7 (14 days) + A 0 (elective) + C 0 + E 4 (5 visits) = 11
    assert lace_score.components == {"L": 7, "A": 0, "C": 0, "E": 4}
    assert lace_score.score == 11
    # HOSPITAL = H 0 + O 0 + S 1 + P 0 + I 0 + A 5 (6 admissions) + L 2 = 8
    assert hospital_score_.components == {"H": 0, "O": 0, "S": 1, "P": 0, "I": 0, "A": 5, "L": 2}
    assert (hospital_score_.score, hospital_score_.missing) == (8, ())


# Synthea samples


def synthea_bundles() -> list[Path]:
    root = os.environ.get("BEDSIDE_FHIR_SAMPLES")
    if not root:
        pytest.skip("BEDSIDE_FHIR_SAMPLES is not set")
    paths = sorted((Path(root) / "synthea").glob("*.json"))
    if not paths:
        pytest.skip("no Synthea bundles in BEDSIDE_FHIR_SAMPLES")
    return paths


def synthea_scores() -> dict[str, tuple[BaselineScore, BaselineScore]]:
    """(LACE, HOSPITAL) of every eligible inpatient stay, scored at discharge, by Encounter id."""
    scored = {}
    for path in synthea_bundles():
        for record in records_from_bundle(orjson.loads(path.read_bytes())):
            assert record.patient is not None
            for stay in eligible_index_encounters(record.of_type("Encounter"), record.patient):
                discharged = discharge_time(stay)
                assert discharged is not None
                scored[stay["id"]] = (
                    lace_index(record, stay, discharged),
                    hospital_score(record, stay, discharged),
                )
    return scored


def test_every_synthea_stay_is_scored() -> None:
    scored = synthea_scores()
    assert len(scored) == 8  # inpatient stays in the 24 bundles
    for lace_score, hospital_score_ in scored.values():
        for score, top in ((lace_score, 19), (hospital_score_, 13)):
            assert score.score == sum(score.components.values())
            assert 0 <= score.score <= top
        assert "H" in hospital_score_.missing  # this Synthea build draws no blood count in a stay


def test_synthea_stay_checked_by_hand() -> None:
    """Clorinda Wilkinson, Encounter/eb052e33-12d5-4b7c-8d46-aa1637b7813d, IMP "Inpatient stay"
    2019-06-28T21:51:36 → 2019-06-29T21:51:36 UTC.

    LACE = 1 + 3 + 3 + 0 = 7: L 1 (exactly one day); A 3 (EMER Encounter/34cb78be starts at
    the admission instant); C 3 (stroke 230690007 since 2007, Alzheimer's 26929004 since 2015,
    chronic congestive heart failure 88805009 since 2018: 1 + 1 + 1; hypertension, prediabetes,
    hyperlipidaemia, osteoporosis and fractures are no Charlson conditions); E 0 (her only other
    encounters in the year before are ambulatory).
    HOSPITAL = 0 + 0 + 0 + 1 + 1 + 0 + 0 = 2: H missing (no haemoglobin drawn); O 0 (type
    "Inpatient stay (finding)", no service type); S 0 (last sodium 2947-0 at discharge, 139.6
    mmol/L); P 1 (transthoracic echocardiography and chest X-rays during the stay); I 1 (via the
    ED); A 0 (no inpatient stay in the year before); L 0 (1 day).
    """
    lace_score, hospital_score_ = synthea_scores()["eb052e33-12d5-4b7c-8d46-aa1637b7813d"]
    assert lace_score == BaselineScore("LACE", 7, {"L": 1, "A": 3, "C": 3, "E": 0}, ())
    assert hospital_score_ == BaselineScore(
        "HOSPITAL", 2, {"H": 0, "O": 0, "S": 0, "P": 1, "I": 1, "A": 0, "L": 0}, ("H",)
    )
