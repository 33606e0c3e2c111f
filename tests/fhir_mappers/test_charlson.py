"""Charlson index: Quan's ICD-10 table, the curated SNOMED CT concepts, the hierarchy rules."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from fhir_mappers.charlson import (
    CATEGORIES,
    SNOMED_SYSTEM,
    CharlsonResult,
    categories_for,
    charlson_index,
)

ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10_WHO = "http://hl7.org/fhir/sid/icd-10"
SCT = SNOMED_SYSTEM

# One ICD-10-CM code per category, with the Charlson 1987 weight it must score alone.
ONE_CODE_PER_CATEGORY = [
    ("I21.4", "myocardial_infarction", 1),
    ("I50.9", "congestive_heart_failure", 1),
    ("I73.9", "peripheral_vascular_disease", 1),
    ("I63.9", "cerebrovascular_disease", 1),
    ("G30.9", "dementia", 1),
    ("J44.9", "chronic_pulmonary_disease", 1),
    ("M32.9", "rheumatic_disease", 1),
    ("K25.9", "peptic_ulcer_disease", 1),
    ("K74.60", "mild_liver_disease", 1),
    ("E11.9", "diabetes_without_complications", 1),
    ("E11.22", "diabetes_with_complications", 2),
    ("G81.90", "hemiplegia_paraplegia", 2),
    ("N18.4", "renal_disease", 2),
    ("C18.9", "malignancy", 2),
    ("K72.90", "moderate_severe_liver_disease", 3),
    ("C78.7", "metastatic_solid_tumour", 6),
    ("B20", "aids_hiv", 6),
]


# --- the tables ----------------------------------------------------------------------------


def test_the_seventeen_categories_carry_the_charlson_1987_weights() -> None:
    assert {category.name: category.weight for category in CATEGORIES} == {
        name: weight for _, name, weight in ONE_CODE_PER_CATEGORY
    }
    assert len(CATEGORIES) == 17


def test_no_icd10_code_can_fall_in_two_categories() -> None:
    owners = [(prefix, c.name) for c in CATEGORIES for prefix in c.icd10_prefixes]
    clashes = [
        (a, b)
        for a, owner_a in owners
        for b, owner_b in owners
        if owner_a != owner_b and b.startswith(a)
    ]
    assert clashes == []


def test_every_category_has_snomed_concepts_and_no_concept_is_in_two() -> None:
    seen: dict[str, str] = {}
    for category in CATEGORIES:
        assert category.snomed_codes, category.name
        for code in category.snomed_codes:
            assert seen.setdefault(code, category.name) == category.name, code


_VERHOEFF_D = [
    "0123456789", "1234067895", "2340178956", "3401289567", "4012395678",
    "5987604321", "6598710432", "7659821043", "8765932104", "9876543210",
]  # fmt: skip
_VERHOEFF_P = [
    "0123456789", "1576283094", "5803796142", "8916043527",
    "9453126870", "4286573901", "2793806415", "7046913258",
]  # fmt: skip


def is_concept_id(sctid: str) -> bool:
    """A well-formed SNOMED CT concept id: Verhoeff check digit, concept partition 00 or 10."""
    if not (sctid.isdigit() and 6 <= len(sctid) <= 18 and sctid[0] != "0"):
        return False
    check = 0
    for position, digit in enumerate(reversed(sctid)):
        check = int(_VERHOEFF_D[check][int(_VERHOEFF_P[position % 8][int(digit)])])
    return check == 0 and sctid[-3:-1] in {"00", "10"}


def test_the_concept_id_check_rejects_a_mistyped_id() -> None:
    assert is_concept_id("22298006")
    assert not is_concept_id("22298007")  # check digit
    assert not is_concept_id("22928006")  # swapped digits
    assert not is_concept_id("2229806")  # dropped digit


def test_every_curated_snomed_code_is_a_well_formed_concept_id() -> None:
    malformed = sorted(
        code for category in CATEGORIES for code in category.snomed_codes if not is_concept_id(code)
    )
    assert malformed == []


# --- one coding ----------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "name", "weight"), ONE_CODE_PER_CATEGORY)
def test_each_category_is_found_from_an_icd10_code_with_or_without_the_dot(
    code: str, name: str, weight: int
) -> None:
    for system in (ICD10_CM, ICD10_WHO):
        assert categories_for(system, code) == {name}
        assert categories_for(system, code.replace(".", "")) == {name}
    assert charlson_index([(ICD10_CM, code)]) == CharlsonResult(weight, (name,))


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("I50", {"congestive_heart_failure"}),
        ("I51.9", set()),  # heart disease, unspecified: next to I50, not listed
        ("I25.2", {"myocardial_infarction"}),  # old infarction
        ("I25.10", set()),  # coronary atherosclerosis is no infarction
        ("I25.5", {"congestive_heart_failure"}),  # ischaemic cardiomyopathy
        ("I42.4", set()),  # just below the range I42.5-I42.9
        ("I42.5", {"congestive_heart_failure"}),
        ("I42.9", {"congestive_heart_failure"}),
        ("I46.9", set()),  # cardiac arrest
        ("I13.0", {"congestive_heart_failure"}),
        ("I13.10", {"renal_disease"}),
        ("I12.0", {"renal_disease"}),
        ("I12.9", set()),  # hypertensive CKD stage 1-4: only I12.0 is listed
        ("N18.1", {"renal_disease"}),  # CKD stage 1: Quan's N18, applied to ICD-10-CM as published
        ("N17.9", set()),  # acute kidney failure
        ("E11.65", {"diabetes_without_complications"}),  # Quan counts E1x.6 as uncomplicated
        ("E11.51", {"diabetes_with_complications"}),
        ("R73.03", set()),  # prediabetes
        ("K70.30", {"mild_liver_disease"}),  # alcoholic cirrhosis without ascites
        ("K70.40", {"moderate_severe_liver_disease"}),  # alcoholic hepatic failure
        ("C43.9", {"malignancy"}),  # melanoma counts
        ("C44.91", set()),  # other malignant neoplasm of skin does not
        ("C76.0", {"malignancy"}),
        ("C77.0", {"metastatic_solid_tumour"}),
        ("C80.1", {"metastatic_solid_tumour"}),
        ("C81.90", {"malignancy"}),
        ("C86.0", set()),  # ICD-10-CM lymphoma outside Quan's C81-C85
        ("D07.5", set()),  # carcinoma in situ of prostate
        ("J45.909", {"chronic_pulmonary_disease"}),  # asthma
        ("J32.9", set()),  # chronic sinusitis
        ("B23.8", set()),  # Quan lists B20-B22 and B24, not B23
        ("Z21", set()),  # asymptomatic HIV status
    ],
)
def test_icd10_prefixes_stop_where_quans_table_stops(code: str, expected: set[str]) -> None:
    assert categories_for(ICD10_CM, code) == expected


@pytest.mark.parametrize("code", ["XI21.4", "1I214", "I2", "21.4"])
def test_an_icd10_code_must_start_with_the_prefix(code: str) -> None:
    assert categories_for(ICD10_CM, code) == frozenset()


def test_icd10_codes_are_read_case_and_space_insensitively() -> None:
    assert categories_for(ICD10_CM, " i21.4 ") == {"myocardial_infarction"}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        # Every Charlson-relevant concept in the Synthea samples ...
        ("88805009", {"congestive_heart_failure"}),  # Chronic congestive heart failure
        ("230690007", {"cerebrovascular_disease"}),  # Stroke
        ("26929004", {"dementia"}),  # Alzheimer's disease
        ("44054006", {"diabetes_without_complications"}),  # Diabetes (type 2)
        ("127013003", {"diabetes_with_complications"}),  # Diabetic renal disease
        ("368581000119106", {"diabetes_with_complications"}),  # Neuropathy due to type 2 DM
        ("431855005", {"renal_disease"}),  # CKD stage 1 (as ICD-10 N18.1)
        ("363406005", {"malignancy"}),  # Malignant tumor of colon
        # ... and the near misses there, which Quan's ICD-10 equivalents leave out.
        ("410429000", set()),  # Cardiac arrest (I46)
        ("429007001", set()),  # History of cardiac arrest
        ("49436004", set()),  # Atrial fibrillation
        ("38341003", set()),  # Hypertension
        ("15777000", set()),  # Prediabetes
        ("80394007", set()),  # Hyperglycemia
        ("237602007", set()),  # Metabolic syndrome X
        ("126906006", set()),  # Neoplasm of prostate: behaviour unspecified (D-code)
        ("92691004", set()),  # Carcinoma in situ of prostate (D07.5)
        ("68496003", set()),  # Polyp of colon
        ("40055000", set()),  # Chronic sinusitis (J32)
        ("10509002", set()),  # Acute bronchitis (J20)
        ("64859006", set()),  # Osteoporosis
        ("271737000", set()),  # Anemia
    ],
)
def test_snomed_concepts_of_the_synthea_samples_are_classified(
    code: str, expected: set[str]
) -> None:
    assert categories_for(SCT, code) == expected


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (None, "I21.4"),
        ("http://loinc.org", "I21.4"),
        ("http://hl7.org/fhir/sid/icd-9-cm", "410.01"),
        ("urn:oid:2.16.840.1.113883.6.96", "22298006"),  # SNOMED by OID: only the URI counts
        (SCT, "I21.4"),  # an ICD-10 code under the SNOMED system
        (ICD10_CM, "22298006"),  # a SNOMED code under an ICD-10 system
        (ICD10_CM, None),
        (ICD10_CM, ""),
        (SCT, None),
    ],
)
def test_codings_of_other_systems_or_without_a_code_are_ignored(
    system: str | None, code: str | None
) -> None:
    assert categories_for(system, code) == frozenset()
    assert charlson_index([(system, code)]) == CharlsonResult(0, ())


# --- a patient's codings -------------------------------------------------------------------


def test_a_patient_without_codings_scores_zero() -> None:
    assert charlson_index([]) == CharlsonResult(0, ())


@pytest.mark.parametrize(
    ("graver", "milder", "graver_name", "graver_weight", "milder_weight"),
    [
        ((ICD10_CM, "K76.6"), (SCT, "19943007"), "moderate_severe_liver_disease", 3, 1),
        ((SCT, "127013003"), (ICD10_CM, "E11.9"), "diabetes_with_complications", 2, 1),
        ((ICD10_CM, "C78.00"), (SCT, "254637007"), "metastatic_solid_tumour", 6, 2),
    ],
)
def test_the_graver_form_replaces_the_milder_one(
    graver: tuple[str, str],
    milder: tuple[str, str],
    graver_name: str,
    graver_weight: int,
    milder_weight: int,
) -> None:
    assert charlson_index([milder]).score == milder_weight
    assert charlson_index([milder, graver]) == CharlsonResult(graver_weight, (graver_name,))
    assert charlson_index([graver, milder]) == CharlsonResult(graver_weight, (graver_name,))


def test_a_hierarchy_rule_leaves_other_categories_alone() -> None:
    # Metastasis replaces malignancy only: uncomplicated diabetes still counts (6 + 1).
    result = charlson_index([(ICD10_CM, "C79.51"), (ICD10_CM, "E10.9"), (ICD10_CM, "C50.911")])
    assert result == CharlsonResult(
        7, ("diabetes_without_complications", "metastatic_solid_tumour")
    )


def test_a_hand_built_patient_scores_the_sum_of_the_categories_that_count() -> None:
    codings = [
        (ICD10_CM, "I21.4"),  # myocardial infarction: 1
        (SCT, "88805009"),  # chronic congestive heart failure: 1
        (ICD10_CM, "E11.9"),  # diabetes without complications: replaced below
        (SCT, "368581000119106"),  # neuropathy due to type 2 diabetes: 2
        (ICD10_CM, "C34.90"),  # lung cancer: replaced by the metastasis
        (SCT, "94222008"),  # metastatic malignant neoplasm to bone: 6
        ("http://loinc.org", "2160-0"),  # not a condition code system
    ]
    assert charlson_index(codings) == CharlsonResult(
        10,
        (
            "congestive_heart_failure",
            "diabetes_with_complications",
            "metastatic_solid_tumour",
            "myocardial_infarction",
        ),
    )


def test_every_category_at_once_scores_29_after_the_three_replacements() -> None:
    # 33 for all seventeen, less mild liver disease 1, uncomplicated diabetes 1, malignancy 2.
    result = charlson_index([(ICD10_CM, code) for code, _, _ in ONE_CODE_PER_CATEGORY])
    assert result.score == 29
    assert len(result.categories) == 14


def test_a_category_coded_many_times_counts_once() -> None:
    codings = [
        (ICD10_CM, "I50.9"),
        (ICD10_CM, "I50.9"),
        (ICD10_CM, "I509"),
        (ICD10_WHO, "I50.0"),
        (SCT, "84114007"),
        (SCT, "88805009"),
    ]
    assert charlson_index(codings) == CharlsonResult(1, ("congestive_heart_failure",))


def test_codings_may_be_any_iterable() -> None:
    codings = ((SCT, code) for code in ("26929004", "230690007"))
    assert charlson_index(codings) == CharlsonResult(2, ("cerebrovascular_disease", "dementia"))


# --- real data -----------------------------------------------------------------------------


def sample(folder: str, pattern: str) -> Path:
    """One file of the shared FHIR samples (skips when BEDSIDE_FHIR_SAMPLES is unset)."""
    root = os.environ.get("BEDSIDE_FHIR_SAMPLES")
    if not root:
        pytest.skip("BEDSIDE_FHIR_SAMPLES is not set")
    files = sorted((Path(root) / folder).glob(pattern))
    if len(files) != 1:
        pytest.skip(f"{folder}/{pattern} does not name one file under {root}")
    return files[0]


def condition_codings(resources: list[dict[str, Any]]) -> list[tuple[str | None, str | None]]:
    return [
        (coding.get("system"), coding.get("code"))
        for resource in resources
        if resource.get("resourceType") == "Condition"
        for coding in resource.get("code", {}).get("coding", [])
    ]


def bundle_codings(path: Path) -> list[tuple[str | None, str | None]]:
    bundle = json.loads(path.read_text(encoding="utf-8"))
    return condition_codings([entry["resource"] for entry in bundle.get("entry", [])])


def test_a_synthea_patient_with_diabetic_kidney_disease_and_colon_cancer_scores_6() -> None:
    # Stewart Stanton's 15 Conditions hold four Charlson concepts:
    #   44054006 Diabetes (type 2)                  -> diabetes without complications (1),
    #   127013003 Diabetic renal disease and
    #   368581000119106 Neuropathy due to type 2 DM -> diabetes with complications (2),
    #                                                  which replaces the uncomplicated form,
    #   431855005 Chronic kidney disease stage 1    -> renal disease (2),
    #   363406005 Malignant tumor of colon          -> malignancy (2), no metastasis coded.
    # Hypertension, prediabetes, hypertriglyceridaemia, metabolic syndrome, colon and rectal
    # polyps, anaemia and injuries are not Charlson conditions: 2 + 2 + 2 = 6.
    codings = bundle_codings(sample("synthea", "Stewart_Stanton_*.json"))
    assert len(codings) == 15
    assert charlson_index(codings) == CharlsonResult(
        6, ("diabetes_with_complications", "malignancy", "renal_disease")
    )


def test_a_synthea_prostate_neoplasm_coded_in_situ_is_no_malignancy() -> None:
    # Stevie Cormier has 126906006 Neoplasm of prostate and 92691004 Carcinoma in situ of
    # prostate (ICD-10 D-codes, outside Quan's C ranges); nothing else of Charlson's.
    codings = bundle_codings(sample("synthea", "Stevie_Cormier_*.json"))
    assert (SCT, "92691004") in codings
    assert charlson_index(codings) == CharlsonResult(0, ())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Condition-f002.json", ("malignancy",)),  # Non-small cell lung cancer
        ("Condition-f202.json", ("malignancy",)),  # Malignant neoplastic disease
        ("Condition-stroke.json", ("cerebrovascular_disease",)),  # Ischemic stroke
        ("Condition-f204.json", ()),  # Acute renal insufficiency due to procedure
        ("Condition-family-history.json", ()),  # Family history of cancer of colon
    ],
)
def test_hl7_example_conditions(name: str, expected: tuple[str, ...]) -> None:
    resource = json.loads(sample("hl7-r4-examples", name).read_text(encoding="utf-8"))
    assert charlson_index(condition_codings([resource])).categories == expected
