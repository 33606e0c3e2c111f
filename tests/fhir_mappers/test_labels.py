"""Outcome labels: every rule and boundary on hand-built histories, then the real FHIR samples."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fhir_mappers.labels import (
    TRANSFER_WINDOW,
    LabelResult,
    discharge_time,
    eligible_index_encounters,
    in_hospital_mortality,
    is_emergency,
    is_inpatient,
    readmission_30d,
)

V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
NUBC = "http://www.nubc.org/patient-discharge"
PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"
SNOMED = "http://snomed.info/sct"

DISCHARGE = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
WINDOW_END = DISCHARGE + timedelta(days=30)
PATIENT = {"resourceType": "Patient", "id": "p1"}


def at(offset: timedelta) -> str:
    return (DISCHARGE + offset).isoformat()


def encounter(
    id_: str, start: str, end: str | None, *, code: str = "IMP", **fields: Any
) -> dict[str, Any]:
    period = {"start": start} if end is None else {"start": start, "end": end}
    resource = {
        "resourceType": "Encounter",
        "id": id_,
        "status": "finished",
        "class": {"system": V3_ACT_CODE, "code": code},
        "subject": {"reference": "Patient/p1"},
        "period": period,
    }
    return resource | fields


def index_stay(**fields: Any) -> dict[str, Any]:
    """Admitted four days before DISCHARGE, discharged at DISCHARGE."""
    return encounter("index", at(-timedelta(days=4)), at(timedelta(0)), **fields)


def admission(id_: str, after: timedelta, **fields: Any) -> dict[str, Any]:
    """An encounter starting ``after`` the index discharge and lasting two days."""
    return encounter(id_, at(after), at(after + timedelta(days=2)), **fields)


def disposition(system: str, code: str) -> dict[str, Any]:
    return {"dischargeDisposition": {"coding": [{"system": system, "code": code}]}}


def label_after(
    *later: dict[str, Any], index: dict[str, Any] | None = None, patient: dict = PATIENT, **kw: Any
) -> LabelResult:
    index = index or index_stay()
    return readmission_30d(index, [index, *later], patient, **kw)


def deceased(value: str) -> dict[str, Any]:
    return PATIENT | {"deceasedDateTime": value}


# --- readmission window -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("after", "value", "reason"),
    [
        (timedelta(days=29.9), 1, "readmitted"),
        (timedelta(days=30), 1, "readmitted"),
        (timedelta(days=30, seconds=1), 0, "no_readmission"),
        (timedelta(days=30.1), 0, "no_readmission"),
    ],
    ids=["day-29.9", "exactly-window-end", "one-second-late", "day-30.1"],
)
def test_readmission_counts_up_to_and_including_the_window_end(
    after: timedelta, value: int, reason: str
) -> None:
    result = label_after(admission("again", after))

    assert (result.value, result.reason) == (value, reason)
    if value:
        assert result.event_encounter_id == "again"
        assert result.event_time == DISCHARGE + after


def test_result_names_the_label_and_the_index() -> None:
    result = label_after()

    assert result == LabelResult("readmission_30d", 0, "no_readmission", "index")


def test_window_days_changes_the_window() -> None:
    assert label_after(admission("again", timedelta(days=6)), window_days=7).value == 1
    assert label_after(admission("again", timedelta(days=8)), window_days=7).value == 0


def test_window_end_compares_instants_not_wall_clock_times() -> None:
    # WINDOW_END is 2024-03-31T12:00Z. 13:30+02:00 is 11:30Z (inside); 10:30-02:00 is 12:30Z.
    inside = encounter("inside", "2024-03-31T13:30:00+02:00", "2024-04-02T10:00:00+02:00")
    outside = encounter("outside", "2024-03-31T10:30:00-02:00", "2024-04-02T10:00:00-02:00")

    assert label_after(inside).value == 1
    assert label_after(outside).value == 0


def test_earliest_unplanned_readmission_is_the_event() -> None:
    result = label_after(
        admission("late", timedelta(days=20)), admission("soon", timedelta(days=9))
    )

    assert result.event_encounter_id == "soon"


def test_elective_readmission_is_ignored_but_a_later_unplanned_one_counts() -> None:
    elective = admission(
        "elective",
        timedelta(days=5),
        priority={"coding": [{"system": PRIORITY, "code": "EL"}]},
    )
    urgent = admission("urgent", timedelta(days=20))

    assert label_after(elective).reason == "no_readmission"
    assert label_after(elective, urgent).event_encounter_id == "urgent"


def test_planned_encounter_types_are_configurable() -> None:
    orthopedic = {"coding": [{"system": SNOMED, "code": "183495009"}]}
    planned = admission("planned", timedelta(days=5), type=[orthopedic])

    assert label_after(planned).value == 1
    assert label_after(planned, planned_types={(SNOMED, "183495009")}).value == 0


def test_admit_source_does_not_make_an_admission_planned() -> None:
    # R4's admit-source code system has no "elective" code; only priority and type decide.
    from_gp = {"admitSource": {"coding": [{"code": "gp"}]}}

    assert label_after(admission("again", timedelta(days=5), hospitalization=from_gp)).value == 1


@pytest.mark.parametrize("code", ["AMB", "EMER", "HH", "OBSENC", "VR"])
def test_non_inpatient_encounters_are_never_readmissions_or_transfers(code: str) -> None:
    result = label_after(
        admission("soon", timedelta(hours=1), code=code),
        admission("later", timedelta(days=3), code=code),
    )

    assert (result.value, result.reason) == (0, "no_readmission")


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled", "planned"])
def test_voided_or_unrealised_encounters_are_never_readmissions_or_transfers(status: str) -> None:
    result = label_after(
        admission("soon", timedelta(hours=1), status=status),
        admission("later", timedelta(days=3), status=status),
    )

    assert (result.value, result.reason) == (0, "no_readmission")


def test_readmission_still_in_progress_counts() -> None:
    ongoing = encounter("ongoing", at(timedelta(days=3)), None, status="in-progress")

    assert label_after(ongoing).value == 1


# --- transfers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "after", [timedelta(0), timedelta(hours=2), TRANSFER_WINDOW], ids=["0h", "2h", "exactly-6h"]
)
def test_inpatient_stay_starting_within_six_hours_is_a_transfer(after: timedelta) -> None:
    result = label_after(admission("next", after))

    assert (result.value, result.reason) == (None, "transferred")
    assert (result.event_encounter_id, result.event_time) == ("next", DISCHARGE + after)


def test_inpatient_stay_starting_just_after_six_hours_is_a_readmission() -> None:
    result = label_after(admission("next", TRANSFER_WINDOW + timedelta(minutes=1)))

    assert (result.value, result.reason) == (1, "readmitted")


def test_transfer_continuation_is_an_index_of_its_own() -> None:
    index = index_stay()
    continuation = admission("next", timedelta(hours=2))
    history = [index, continuation, admission("again", timedelta(days=20))]

    eligible = eligible_index_encounters(history, PATIENT)

    assert [e["id"] for e in eligible] == ["index", "next", "again"]
    assert readmission_30d(continuation, history, PATIENT).event_encounter_id == "again"


@pytest.mark.parametrize(
    ("system", "code"), [(DISPOSITION, "other-hcf"), (NUBC, "02"), (NUBC, "66")]
)
def test_discharge_to_another_acute_hospital_is_a_transfer(system: str, code: str) -> None:
    index = index_stay(hospitalization=disposition(system, code))

    assert label_after(index=index).reason == "transferred"
    assert in_hospital_mortality(index, PATIENT).value == 0


def test_routine_discharge_disposition_does_not_stop_a_readmission() -> None:
    index = index_stay(hospitalization=disposition(NUBC, "01"))

    assert label_after(admission("again", timedelta(days=3)), index=index).value == 1


def test_zero_length_stay_and_a_duplicate_of_it_are_not_its_own_transfer() -> None:
    index = encounter("index", at(timedelta(0)), at(timedelta(0)))

    assert label_after(dict(index), index=index).reason == "no_readmission"


# --- deaths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("system", "code"), [(DISPOSITION, "exp"), (NUBC, "20")])
def test_expired_disposition_is_death_in_hospital(system: str, code: str) -> None:
    index = index_stay(hospitalization=disposition(system, code))

    readmission = label_after(index=index)
    mortality = in_hospital_mortality(index, PATIENT)

    assert (readmission.value, readmission.reason) == (None, "died_in_hospital")
    assert (mortality.value, mortality.reason, mortality.event_time) == (
        1,
        "died_in_hospital",
        DISCHARGE,
    )


@pytest.mark.parametrize(
    "death", [DISCHARGE - timedelta(days=2), DISCHARGE], ids=["during-stay", "at-discharge"]
)
def test_recorded_death_up_to_discharge_is_death_in_hospital(death: datetime) -> None:
    patient = deceased(death.isoformat())

    readmission = label_after(patient=patient)
    mortality = in_hospital_mortality(index_stay(), patient)

    assert (readmission.value, readmission.reason) == (None, "died_in_hospital")
    assert (mortality.value, mortality.reason, mortality.event_time) == (
        1,
        "died_in_hospital",
        death,
    )


def test_death_after_discharge_is_excluded_or_negative_by_policy() -> None:
    patient = deceased(at(timedelta(days=10)))

    excluded = label_after(patient=patient)
    negative = label_after(patient=patient, death_policy="negative")

    assert (excluded.value, excluded.reason) == (None, "died_after_discharge")
    assert (negative.value, negative.reason) == (0, "died_after_discharge")
    assert excluded.event_time == DISCHARGE + timedelta(days=10)
    assert in_hospital_mortality(index_stay(), patient).value == 0


def test_readmission_before_death_is_positive_under_either_policy() -> None:
    patient = deceased(at(timedelta(days=10)))
    again = admission("again", timedelta(days=5))

    assert label_after(again, patient=patient).value == 1
    assert label_after(again, patient=patient, death_policy="negative").value == 1


def test_death_after_the_window_does_not_touch_the_label() -> None:
    assert label_after(patient=deceased(at(timedelta(days=40)))).reason == "no_readmission"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2024-03-02", "died_after_discharge"),
        ("2024-03-30", "died_after_discharge"),
        ("2024-03-31", "death_time_unknown"),  # the window ends at 12:00 that day
        ("2024-04-01", "no_readmission"),
    ],
)
def test_date_only_death_after_the_discharge_day_is_placed_by_the_whole_day(
    value: str, reason: str
) -> None:
    assert label_after(patient=deceased(value)).reason == reason


@pytest.mark.parametrize("value", ["2024-03-01", "2024-03", "not a date"])
def test_death_that_may_fall_either_side_of_discharge_leaves_labels_unknown(value: str) -> None:
    patient = deceased(value)

    assert label_after(patient=patient).reason == "death_time_unknown"
    assert label_after(patient=patient, death_policy="negative").value is None
    assert in_hospital_mortality(index_stay(), patient).reason == "death_time_unknown"


def test_deceased_without_a_date_is_unknown_unless_readmitted_or_expired() -> None:
    patient = PATIENT | {"deceasedBoolean": True}
    expired = index_stay(hospitalization=disposition(DISPOSITION, "exp"))

    assert label_after(patient=patient).reason == "death_time_unknown"
    assert label_after(admission("again", timedelta(days=3)), patient=patient).value == 1
    assert in_hospital_mortality(index_stay(), patient).value is None
    assert in_hospital_mortality(expired, patient).value == 1


def test_patient_alive_is_discharged_alive() -> None:
    result = in_hospital_mortality(index_stay(), PATIENT | {"deceasedBoolean": False})

    assert result == LabelResult("in_hospital_mortality", 0, "discharged_alive", "index")


# --- follow-up ----------------------------------------------------------------------------------


def test_follow_up_ending_before_the_window_leaves_the_label_unknown() -> None:
    result = label_after(follow_up_until=DISCHARGE + timedelta(days=10))

    assert (result.value, result.reason) == (None, "insufficient_follow_up")


def test_follow_up_to_exactly_the_window_end_is_enough() -> None:
    assert label_after(follow_up_until=WINDOW_END).value == 0


def test_readmission_seen_before_follow_up_ends_is_known() -> None:
    again = admission("again", timedelta(days=5))

    assert label_after(again, follow_up_until=DISCHARGE + timedelta(days=10)).value == 1


def test_naive_follow_up_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        label_after(follow_up_until=datetime(2024, 3, 10))


# --- encounter classes, shapes and eligibility --------------------------------------------------


@pytest.mark.parametrize(
    ("klass", "inpatient"),
    [
        ({"system": V3_ACT_CODE, "code": "IMP"}, True),
        ({"system": V3_ACT_CODE, "code": "ACUTE"}, True),
        ({"system": V3_ACT_CODE, "code": "NONAC"}, True),
        ([{"coding": [{"system": V3_ACT_CODE, "code": "IMP"}]}], True),
        ({"system": "http://hl7.org/fhir/encounter-class", "code": "inpatient"}, True),
        ({"system": V3_ACT_CODE, "code": "AMB"}, False),
        ({"system": V3_ACT_CODE, "code": "EMER"}, False),
        ([{"coding": [{"system": V3_ACT_CODE, "code": "EMER"}]}], False),
        ({"coding": "IMP"}, False),
        ([{"coding": [{"code": 7}]}, None], False),
        (None, False),
    ],
)
def test_inpatient_class_in_r4_r5_and_dstu2_forms(klass: Any, inpatient: bool) -> None:
    assert is_inpatient({"class": klass}) is inpatient


def test_emergency_class() -> None:
    assert is_emergency({"class": {"system": V3_ACT_CODE, "code": "EMER"}})
    assert is_emergency({"class": [{"coding": [{"code": "EMER"}]}]})
    assert not is_emergency({"class": {"system": V3_ACT_CODE, "code": "IMP"}})


def test_r5_shaped_encounters_work_as_index_and_as_readmission() -> None:
    def r5(id_: str, start: timedelta, end: timedelta, **fields: Any) -> dict[str, Any]:
        return {
            "resourceType": "Encounter",
            "id": id_,
            "status": "completed",
            "class": [{"coding": [{"system": V3_ACT_CODE, "code": "IMP"}]}],
            "actualPeriod": {"start": at(start), "end": at(end)},
        } | fields

    index = r5("index", -timedelta(days=4), timedelta(0))
    expired = r5(
        "dead", -timedelta(days=4), timedelta(0), admission=disposition(DISPOSITION, "exp")
    )

    assert label_after(r5("again", timedelta(days=3), timedelta(days=5)), index=index).value == 1
    assert in_hospital_mortality(expired, PATIENT).value == 1


@pytest.mark.parametrize(
    ("end", "expected"),
    [
        ("2024-03-01T12:00:00+01:00", datetime(2024, 3, 1, 11, tzinfo=UTC)),
        ("2024-03-01", datetime(2024, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2024-02", datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2024-02-30", None),
        ("2200-12-31", datetime(2200, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("9999-12-31", None),  # a placeholder year, not a usable time
        ("yesterday", None),
        (20240301, None),
    ],
)
def test_discharge_time_is_the_last_instant_of_period_end(end: Any, expected: Any) -> None:
    assert discharge_time({"period": {"start": "2024-02-01", "end": end}}) == expected


@pytest.mark.parametrize(
    ("index", "reason"),
    [
        (index_stay(code="EMER"), "not_inpatient"),
        (index_stay(status="in-progress"), "not_finished"),
        (index_stay(status="entered-in-error"), "not_finished"),
        (index_stay(status="cancelled"), "not_finished"),
        (index_stay(period={"start": at(-timedelta(days=4))}), "no_discharge_time"),
        (index_stay(subject={"reference": "Patient/p2"}), "other_patient"),
    ],
)
def test_ineligible_index_encounters_get_no_labels(index: dict[str, Any], reason: str) -> None:
    readmission = readmission_30d(index, [index, admission("again", timedelta(days=3))], PATIENT)
    mortality = in_hospital_mortality(index, PATIENT)

    assert (readmission.value, readmission.reason) == (None, reason)
    assert (mortality.value, mortality.reason) == (None, reason)
    assert eligible_index_encounters([index], PATIENT) == []


def test_eligible_index_encounters_are_the_patients_finished_stays_by_discharge() -> None:
    long_stay = encounter("long", at(timedelta(days=-20)), at(timedelta(days=10)))
    short_stay = encounter("short", at(timedelta(days=1)), at(timedelta(days=2)))
    history = [
        long_stay,
        short_stay,
        index_stay(),
        admission("clinic", timedelta(days=1), code="AMB"),
        admission("voided", timedelta(days=3), status="entered-in-error"),
        encounter("ongoing", at(timedelta(days=5)), None, status="in-progress"),
        admission("someone else", timedelta(days=4), subject={"reference": "Patient/p2"}),
    ]

    eligible = eligible_index_encounters(history, PATIENT)

    assert [e["id"] for e in eligible] == ["index", "short", "long"]


def test_encounters_of_other_patients_are_ignored() -> None:
    theirs = admission("theirs", timedelta(days=3), subject={"reference": "Patient/p2"})
    mine = admission(
        "mine",
        timedelta(days=9),
        subject={"reference": "https://ehr.example/Patient/p1/_history/2"},
    )

    assert label_after(theirs).reason == "no_readmission"
    assert label_after(theirs, mine).event_encounter_id == "mine"


MALFORMED: list[Any] = [
    {},
    None,
    "Encounter/1",
    {"resourceType": "Encounter", "class": None, "period": None, "status": 3},
    {"class": {"code": "IMP"}, "status": "finished", "period": "2024-03-02"},
    {"class": {"code": "IMP"}, "status": "finished", "period": {"start": "soon", "end": []}},
    {"class": {"code": "IMP"}, "status": "finished", "period": {"start": {"x": 1}, "end": "?"}},
    {"class": [{"coding": [None, {"code": ["IMP"]}]}], "period": {"start": "2024-03-04"}},
    {"class": {"code": "IMP"}, "period": {"start": "2024-03-04"}, "priority": 5, "type": "x"},
    {"class": {"code": "IMP"}, "subject": {"reference": 5}, "hospitalization": []},
    {"class": {"code": "IMP"}, "status": ["finished"], "period": {"end": "2024-03-02"}},
]


def test_malformed_encounters_are_tolerated_and_do_not_count() -> None:
    result = label_after(*MALFORMED)

    assert (result.value, result.reason) == (0, "no_readmission")
    assert eligible_index_encounters([*MALFORMED, index_stay()], PATIENT) == [index_stay()]


def test_malformed_priority_and_type_do_not_make_a_readmission_planned() -> None:
    garbled = admission(
        "again",
        timedelta(days=3),
        priority=5,
        type=["x", {"coding": [{"system": {}, "code": "1"}]}],
    )

    assert label_after(garbled, planned_types={(SNOMED, "1")}).value == 1


@pytest.mark.parametrize("index", MALFORMED)
def test_malformed_index_encounters_are_labelled_without_raising(index: Any) -> None:
    readmission_30d(index, [*MALFORMED, index_stay()], PATIENT)
    in_hospital_mortality(index, {"deceasedDateTime": 12})


def test_latest_usable_discharge_is_labelled_and_a_placeholder_year_has_no_discharge() -> None:
    latest = encounter("index", "2200-12-20T00:00:00Z", "2200-12-31T00:00:00Z")
    placeholder = encounter("index", "9999-12-20T00:00:00Z", "9999-12-31T00:00:00Z")

    assert readmission_30d(latest, [latest], PATIENT).reason == "no_readmission"
    assert readmission_30d(placeholder, [placeholder], PATIENT).reason == "no_discharge_time"


# --- real data ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples() -> Path:
    folder = os.environ.get("BEDSIDE_FHIR_SAMPLES")
    if not folder:
        pytest.skip("BEDSIDE_FHIR_SAMPLES is not set")
    return Path(folder)


def load_synthea(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The patient and the encounters of one Synthea bundle."""
    resources = [
        entry["resource"] for entry in json.loads(path.read_text(encoding="utf-8"))["entry"]
    ]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    return patient, [r for r in resources if r["resourceType"] == "Encounter"]


def test_synthea_label_counts(samples: Path) -> None:
    bundles = sorted((samples / "synthea").glob("*.json"))
    readmissions, mortality = [], []
    for path in bundles:
        patient, encounters = load_synthea(path)
        for index in eligible_index_encounters(encounters, patient):
            readmissions.append(readmission_30d(index, encounters, patient).reason)
            mortality.append(in_hospital_mortality(index, patient).value)

    # 553 encounters (516 AMB, 29 EMER, 8 IMP) in 24 bundles; every IMP stay is an index stay.
    # No patient is readmitted within 30 days; two die one and two days after discharge.
    assert len(bundles) == 24
    assert len(readmissions) == 8
    assert sorted(readmissions) == ["died_after_discharge"] * 2 + ["no_readmission"] * 6
    assert mortality == [0] * 8


def test_synthea_patient_labels_checked_by_hand(samples: Path) -> None:
    # Roberto Graham (died 1987-10-19T14:38:07Z) has 30 encounters, two of them inpatient:
    # - 5d93f2dd, 1948-09-11T14:38:07Z → 1948-09-12T17:38:07Z, "Non-urgent orthopedic admission";
    #   his next encounter is an AMB visit in 1962: no readmission.
    # - 5d191527, 1987-10-17T14:38:07Z → 1987-10-18T14:38:07Z, "Inpatient stay", entered via the
    #   EMER encounter 7741416c starting at the same instant (an ED visit, not a readmission);
    #   he dies 24 h after discharge: excluded by default, negative under death_policy="negative".
    (path,) = (samples / "synthea").glob("Roberto_Graham_*.json")
    patient, encounters = load_synthea(path)

    first, last = eligible_index_encounters(encounters, patient)
    death = datetime(1987, 10, 19, 14, 38, 7, tzinfo=UTC)

    assert (first["id"][:8], last["id"][:8]) == ("5d93f2dd", "5d191527")
    assert discharge_time(last) == datetime(1987, 10, 18, 14, 38, 7, tzinfo=UTC)
    assert readmission_30d(first, encounters, patient) == LabelResult(
        "readmission_30d", 0, "no_readmission", first["id"]
    )
    assert readmission_30d(last, encounters, patient) == LabelResult(
        "readmission_30d", None, "died_after_discharge", last["id"], event_time=death
    )
    negative = readmission_30d(last, encounters, patient, death_policy="negative")
    assert (negative.value, negative.reason) == (0, "died_after_discharge")
    assert in_hospital_mortality(first, patient).value == 0
    assert in_hospital_mortality(last, patient).value == 0


def test_hl7_encounter_examples_are_labelled_without_errors(samples: Path) -> None:
    folder = samples / "hl7-r4-examples"
    patients = {
        p["id"]: p
        for p in (json.loads(f.read_text(encoding="utf-8")) for f in folder.glob("Patient-*.json"))
    }
    encounters = [
        json.loads(f.read_text(encoding="utf-8")) for f in sorted(folder.glob("Encounter-*.json"))
    ]
    results = {}
    for index in encounters:
        reference = index.get("subject", {}).get("reference", "")
        patient = patients.get(reference.removeprefix("Patient/"), {})
        results[index["id"]] = (
            readmission_30d(index, encounters, patient),
            in_hospital_mortality(index, patient),
        )

    # Only f203 is a finished inpatient stay with an end ("2013-03-20": the end of that day);
    # "emerg" and "example" are inpatient but still in progress, the rest are AMB or HH.
    f203 = next(e for e in encounters if e["id"] == "f203")
    eligible = [e["id"] for e in encounters if eligible_index_encounters([e], {})]
    assert len(encounters) == 10
    assert not any(is_emergency(e) for e in encounters)
    assert eligible == ["f203"]
    assert discharge_time(f203) == datetime(2013, 3, 20, 23, 59, 59, 999999, tzinfo=UTC)
    assert [r.reason for r in results["f203"]] == ["no_readmission", "discharged_alive"]
    assert results["emerg"][0].reason == results["example"][0].reason == "not_finished"
    assert {r[0].reason for k, r in results.items() if k not in {"f203", "emerg", "example"}} == {
        "not_inpatient"
    }
