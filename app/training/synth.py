"""Synthetic 30-day readmission cohorts as FHIR R4 Bulk Data, with effects planted on purpose.

Tests and demos check that training, SHAP explanations and safety reports recover what was put in,
so the mechanism is fixed, documented here and in ``manifest.json``, and deterministic by seed.

**Every finished inpatient stay written is an index stay.** The training pipeline labels every
eligible discharge it finds (``fhir_mappers.labels``), so each stay, readmissions and the year of
history included, gets an outcome drawn from the risk model below and a row in ``truth.csv``.

Mechanism (generator version :data:`GENERATOR_VERSION`):

1. Patients: age at ``start`` 19-95 (``19 + 76·Beta(2.4, 1.5)``, median ≈ 67), 53 % female, race
   and ethnicity as US Core extensions (OMB: White 66 %, Black or African American 14 %, Asian
   5 %, American Indian or Alaska Native 1 %, Native Hawaiian or Other Pacific Islander 0.5 %,
   not recorded 13.5 %; Hispanic or Latino 15 %, not recorded 5 %), language (Spanish for 40 %
   of Hispanic patients, Chinese or Vietnamese for 25 % of Asian patients, else English). These
   attributes are independent of everything clinical.
2. Frailty ``f = 0.45·age_z + 0.9·N(0, 1)`` (``age_z = (age - 65) / 15``) raises the odds of each
   comorbidity (SNOMED CT and ICD-10-CM codings, onset 60 days to 8 years before the first stay),
   admissions, emergency visits, length of stay and lab derangement.
3. Stays: 1-3 admissions with uniform times in ``[start, end]`` and, in the year before
   ``start``, Poisson(same rate) more, so look-backs see stationary histories. In time order,
   each stay (LOS log-normal, median ≈ 3.7 days, 1-30 days) gets features from what was written,
   its true risk, and an outcome. Readmitted: an unplanned (EM/UR) stay starts 0.5-29.5 days after
   discharge (front-loaded) and is the next stay of the chain. Not readmitted: no unplanned stay
   starts within 30 days; with probability 4 % an elective (EL) stay starts 3-25 days after
   discharge (it does not count), with 10 % an unplanned one 45-60 days after. A scheduled
   admission that would break these rules is postponed; none starts after ``end`` except a
   readmission. Emergency (EMER) and ambulatory visits are Poisson over the same span, never
   inside a stay.
4. Observations: at every stay, draws from admission to discharge (daily or every other day, the
   last 5 h before discharge): basic metabolic panel with eGFR (CKD-EPI 2021), blood count and
   albumin; vital signs; BMI and smoking status. Values follow patient baselines (frailty, sex,
   comorbidities: CKD raises creatinine, anaemia lowers hemoglobin, …) plus the acute illness
   (AKI, infection, bleeding) recovering over the stay. Creatinine is coded 2160-0 (75 %),
   38483-4 (15 %) or 14682-9 in umol/L (10 %), per stay. Visits carry outpatient labs.
5. Risk: ``logit = INTERCEPT + Σ beta·(g(x) - center) / scale`` over :data:`RISK_TERMS`, with ``x``
   the feature as ``fhir_mappers`` computes it from the written data at discharge, before planted
   drift and missingness (a missing albumin still drives risk). The largest drivers are prior
   inpatient admissions, creatinine, albumin and the Charlson index. A readmission adds to the
   prior admissions of the stays after it, so risk clusters in frequent flyers (about 30 % of
   readmissions are readmitted again); ``INTERCEPT`` makes about 15 % of all stays readmitted.

Planted effects (:class:`PlantedEffects`): miscalibration adds ``log(odds ratio)`` to the logit of
a subgroup the features do not describe; drift multiplies one measurement by a factor in
observations from a date on, leaving the risk alone; missingness drops all of a patient's
observations of one measurement with a group-dependent probability (albumin, BMI and smoking
status are also dropped with ``base_missing_rate``); override rates go to the manifest only.

Output folder: ``Patient``, ``Encounter``, ``Observation``, ``Condition`` and ``MedicationRequest``
NDJSON files with relative references, ``manifest.json`` (configuration, counts, risk model,
planted effects, a Markdown description) and ``truth.csv``, one row per stay: ``patient_id``,
``encounter_id``, ``stay_kind`` (admission, readmission, planned, follow_up), admission and
discharge times (UTC), ``in_period`` (discharged within ``[start, end]``), the subgroup attributes
(sex, age_band, race, ethnicity, language), per risk term the input ``x_<feature>`` and its logit
contribution ``lp_<feature>``, ``lp_miscalibration``, ``true_logit``, ``true_risk`` (the
probability the outcome was drawn with), ``readmitted`` and ``readmission_encounter_id``.
"""

from __future__ import annotations

import argparse
import csv
import gc
import heapq
import math
import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

from fhir_mappers.attributes import AGE_BANDS, US_CORE_ETHNICITY, US_CORE_RACE, subgroup_attributes
from fhir_mappers.charlson import SNOMED_SYSTEM, charlson_index

GENERATOR_VERSION = "1"
RESOURCE_TYPES = ("Patient", "Encounter", "Observation", "Condition", "MedicationRequest")

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
OMB = "urn:oid:2.16.840.1.113883.6.238"
BCP47 = "urn:ietf:bcp:47"
_TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"

MINUTE, HOUR, DAY = 60, 3_600, 86_400
YEAR = 365 * DAY
READMISSION_WINDOW = 30 * DAY
EMERGENCY_LOOKBACK = 15_768_000  # 182.5 days, the spec's emergency_visits_6m window
CREATININE_UMOL_PER_MG_DL = 1e4 / 113.12  # the spec's molar mass

# --- configuration ---------------------------------------------------------------------------

Group = tuple[str, str]

RACES = (  # OMB code (None: no extension), display, share
    ("2106-3", "White", 0.66),
    ("2054-5", "Black or African American", 0.14),
    ("2028-9", "Asian", 0.05),
    ("1002-5", "American Indian or Alaska Native", 0.01),
    ("2076-8", "Native Hawaiian or Other Pacific Islander", 0.005),
    (None, "unknown", 0.135),
)
ETHNICITIES = (
    ("2135-2", "Hispanic or Latino", 0.15),
    ("2186-5", "Not Hispanic or Latino", 0.80),
    (None, "unknown", 0.05),
)
LANGUAGES = (("en", "English"), ("es", "Spanish"), ("zh", "Chinese"), ("vi", "Vietnamese"))
GROUP_VALUES: dict[str, frozenset[str]] = {
    "sex": frozenset({"female", "male"}),
    "age_band": frozenset(label for _, label in AGE_BANDS),
    "race": frozenset(display for _, display, _ in RACES),
    "ethnicity": frozenset(display for _, display, _ in ETHNICITIES),
    "language": frozenset(code for code, _ in LANGUAGES),
}
FEATURE_MEASUREMENTS = {  # spec feature → the measurement written for it
    "creatinine_last": "creatinine",
    "creatinine_slope": "creatinine",
    "glucose_last": "glucose",
    "urea_nitrogen_last": "urea_nitrogen",
    "sodium_last": "sodium",
    "potassium_last": "potassium",
    "hemoglobin_last": "hemoglobin",
    "leukocytes_last": "leukocytes",
    "albumin_last": "albumin",
    "egfr_last": "egfr",
    "hba1c_last": "hba1c",
    "systolic_bp_last": "blood_pressure",
    "systolic_bp_mean_1y": "blood_pressure",
    "heart_rate_last": "heart_rate",
    "temperature_max_30d": "body_temperature",
    "bmi_last": "bmi",
    "smoking_current": "smoking_status",
}
OPTIONAL_MEASUREMENTS = ("albumin", "bmi", "smoking_status")
"""Never recorded for a patient with probability ``base_missing_rate``."""


@dataclass(frozen=True)
class PlantedEffects:
    """Effects put into a cohort so that training, explanations and reports can be checked.

    Groups are (attribute, value) as ``fhir_mappers.attributes.subgroup_attributes`` reports
    them: sex, age_band, race, ethnicity or language; membership is judged at each discharge for
    miscalibration, at ``start`` for missingness (age bands move). ``drift_start`` defaults to the
    middle of the cohort period; a shift that leaves the spec's plausible range makes values
    unusable. ``missing_group`` None applies ``missing_rate`` to everyone.
    """

    miscalibrated_group: Group | None = None
    miscalibration_odds_ratio: float = 2.5
    drift_feature: str | None = None
    drift_start: date | None = None
    drift_shift: float = 1.4
    missing_group: Group | None = None
    missing_feature: str | None = None
    missing_rate: float = 0.7
    override_group: Group | None = None
    override_rate_group: float = 0.6
    override_rate_base: float = 0.2

    def __post_init__(self) -> None:
        for group in (self.miscalibrated_group, self.missing_group, self.override_group):
            if group is not None:
                check_group(group)
        if self.drift_feature is not None and (
            FEATURE_MEASUREMENTS.get(self.drift_feature) in (None, "smoking_status")
        ):
            raise ValueError(f"cannot drift {self.drift_feature!r}: not a measured quantity")
        if self.missing_feature is not None and self.missing_feature not in FEATURE_MEASUREMENTS:
            raise ValueError(f"cannot drop {self.missing_feature!r}: not a measured feature")
        if self.missing_group is not None and self.missing_feature is None:
            raise ValueError("missing_group needs a missing_feature")
        if self.miscalibration_odds_ratio <= 0 or self.drift_shift <= 0:
            raise ValueError("odds ratio and drift shift must be positive")
        for rate in (self.missing_rate, self.override_rate_group, self.override_rate_base):
            if not 0 <= rate <= 1:
                raise ValueError("rates must lie in [0, 1]")


@dataclass(frozen=True)
class CohortConfig:
    """What to generate: index discharges fall between ``start`` and ``end`` (plus a year of
    history before ``start``, and readmissions that run past ``end``)."""

    patients: int
    seed: int
    start: date = date(2023, 1, 1)
    end: date = date(2024, 12, 31)
    base_missing_rate: float = 0.1
    effects: PlantedEffects = PlantedEffects()

    def __post_init__(self) -> None:
        if self.patients < 1:
            raise ValueError("patients must be at least 1")
        if self.end <= self.start:
            raise ValueError("end must come after start")
        if not 0 <= self.base_missing_rate <= 1:
            raise ValueError("base_missing_rate must lie in [0, 1]")


def check_group(group: Group) -> None:
    """Raise ValueError unless the generator writes patients with this attribute value."""
    attribute, value = group
    if attribute not in GROUP_VALUES:
        raise ValueError(f"unknown attribute {attribute!r}; one of {sorted(GROUP_VALUES)}")
    if value not in GROUP_VALUES[attribute]:
        raise ValueError(f"unknown {attribute} {value!r}; one of {sorted(GROUP_VALUES[attribute])}")


# --- the risk model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RiskTerm:
    """``beta · (g(x) - center) / scale`` for one spec feature ``x``."""

    feature: str
    transform: Literal["identity", "log", "log1p"]
    center: float
    scale: float
    beta: float

    def contribution(self, value: float) -> float:
        if self.transform == "log":
            value = math.log(value)
        elif self.transform == "log1p":
            value = math.log1p(value)
        return self.beta * (value - self.center) / self.scale


RISK_TERMS = (
    RiskTerm("inpatient_admissions_12m", "log1p", 0.4, 0.55, 0.30),
    RiskTerm("creatinine_last", "log", 0.08, 0.42, 0.32),
    RiskTerm("albumin_last", "identity", 3.4, 0.55, -0.32),
    RiskTerm("charlson_index", "identity", 2.0, 2.5, 0.28),
    RiskTerm("hemoglobin_last", "identity", 12.0, 1.8, -0.15),
    RiskTerm("emergency_visits_6m", "log1p", 0.2, 0.36, 0.12),
    RiskTerm("length_of_stay_days", "log", 1.33, 0.62, 0.12),
    RiskTerm("sodium_last", "identity", 139.0, 2.5, -0.10),
    RiskTerm("age_years", "identity", 68.0, 17.0, 0.08),
)
INTERCEPT = -2.2
"""Chosen so that about 15 % of stays are readmitted without planted miscalibration."""
TOP_DRIVERS = ("inpatient_admissions_12m", "creatinine_last", "albumin_last", "charlson_index")


def sigmoid(logit: float) -> float:
    return 1 / (1 + math.exp(-logit))


# --- codes -------------------------------------------------------------------------------------


def _concept(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    return {
        "coding": [{"system": system, "code": code, "display": display}],
        "text": text or display,
    }


@dataclass(frozen=True)
class Comorbidity:
    """A chronic condition, coded in SNOMED CT and ICD-10-CM (same Charlson category)."""

    key: str
    snomed: str
    display: str
    icd10: str
    icd10_display: str

    @property
    def code(self) -> dict[str, Any]:
        return {
            "coding": [
                {"system": SNOMED_SYSTEM, "code": self.snomed, "display": self.display},
                {"system": ICD10CM, "code": self.icd10, "display": self.icd10_display},
            ],
            "text": self.display,
        }


COMORBIDITIES = {
    c.key: c
    for c in (
        Comorbidity(
            "hypertension", "38341003", "Hypertensive disorder", "I10", "Essential hypertension"
        ),
        Comorbidity(
            "diabetes",
            "44054006",
            "Diabetes mellitus type 2",
            "E11.9",
            "Type 2 diabetes mellitus without complications",
        ),
        Comorbidity(
            "diabetic_kidney",
            "127013003",
            "Disorder of kidney due to diabetes mellitus",
            "E11.22",
            "Type 2 diabetes mellitus with diabetic chronic kidney disease",
        ),
        Comorbidity(
            "heart_failure",
            "88805009",
            "Chronic congestive heart failure",
            "I50.9",
            "Heart failure, unspecified",
        ),
        Comorbidity(
            "copd",
            "13645005",
            "Chronic obstructive lung disease",
            "J44.9",
            "Chronic obstructive pulmonary disease, unspecified",
        ),
        Comorbidity(
            "ckd",
            "433144002",
            "Chronic kidney disease stage 3",
            "N18.30",
            "Chronic kidney disease, stage 3 unspecified",
        ),
        Comorbidity(
            "myocardial_infarction",
            "22298006",
            "Myocardial infarction",
            "I25.2",
            "Old myocardial infarction",
        ),
        Comorbidity(
            "stroke",
            "230690007",
            "Cerebrovascular accident",
            "I63.9",
            "Cerebral infarction, unspecified",
        ),
        Comorbidity(
            "dementia",
            "52448006",
            "Dementia",
            "F03.90",
            "Unspecified dementia without behavioral disturbance",
        ),
        Comorbidity(
            "atrial_fibrillation",
            "49436004",
            "Atrial fibrillation",
            "I48.91",
            "Unspecified atrial fibrillation",
        ),
        Comorbidity("anaemia", "271737000", "Anemia", "D64.9", "Anemia, unspecified"),
        Comorbidity(
            "colon_cancer",
            "363406005",
            "Malignant neoplasm of colon",
            "C18.9",
            "Malignant neoplasm of colon, unspecified",
        ),
        Comorbidity(
            "lung_cancer",
            "363358000",
            "Malignant neoplasm of lung",
            "C34.90",
            "Malignant neoplasm of unspecified part of unspecified bronchus or lung",
        ),
        Comorbidity(
            "breast_cancer",
            "254837009",
            "Malignant neoplasm of breast",
            "C50.919",
            "Malignant neoplasm of unspecified site of unspecified female breast",
        ),
        Comorbidity(
            "prostate_cancer",
            "399068003",
            "Malignant neoplasm of prostate",
            "C61",
            "Malignant neoplasm of prostate",
        ),
        Comorbidity(
            "metastatic",
            "128462008",
            "Metastatic malignant neoplasm",
            "C79.9",
            "Secondary malignant neoplasm of unspecified site",
        ),
    )
}
CANCERS = ("colon_cancer", "lung_cancer", "breast_cancer", "prostate_cancer")


@dataclass(frozen=True)
class Reason:
    """Why a stay happened: SNOMED CT code, display, share, and the acute illness it brings."""

    code: str
    display: str
    share: float
    infection: bool = False
    kidney_injury: bool = False
    bleeding: bool = False


REASONS = (  # none of them is a Charlson condition
    Reason("233604007", "Pneumonia", 0.18, infection=True),
    Reason("91302008", "Sepsis", 0.08, infection=True),
    Reason("68566005", "Urinary tract infectious disease", 0.12, infection=True),
    Reason("128045006", "Cellulitis", 0.07, infection=True),
    Reason("14669001", "Acute renal failure syndrome", 0.08, kidney_injury=True),
    Reason("74474003", "Gastrointestinal hemorrhage", 0.08, bleeding=True),
    Reason("5913000", "Fracture of neck of femur", 0.08),
    Reason("271594007", "Syncope", 0.09),
    Reason("29857009", "Chest pain", 0.12),
    Reason("267036007", "Dyspnea", 0.10),
)
_REASON_WEIGHTS = [reason.share for reason in REASONS]

MEDICATIONS: dict[str, tuple[tuple[str, str], ...]] = {  # comorbidity → RxNorm (code, display)
    "hypertension": (
        ("314076", "lisinopril 10 MG Oral Tablet"),
        ("197361", "amlodipine 5 MG Oral Tablet"),
        ("310798", "hydrochlorothiazide 25 MG Oral Tablet"),
    ),
    "heart_failure": (
        ("313988", "furosemide 40 MG Oral Tablet"),
        ("200031", "carvedilol 6.25 MG Oral Tablet"),
        ("313096", "spironolactone 25 MG Oral Tablet"),
    ),
    "diabetes": (("861007", "metformin hydrochloride 500 MG Oral Tablet"),),
    "diabetic_kidney": (
        (
            "106892",
            "insulin isophane, human 70 UNT/ML / insulin regular, human 30 UNT/ML "
            "Injectable Suspension",
        ),
    ),
    "copd": (
        ("745679", "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"),
        (
            "896188",
            "fluticasone propionate 0.25 MG/ACTUAT / salmeterol 0.05 MG/ACTUAT Dry Powder Inhaler",
        ),
    ),
    "myocardial_infarction": (
        ("243670", "aspirin 81 MG Oral Tablet"),
        ("259255", "atorvastatin 80 MG Oral Tablet"),
        ("309362", "clopidogrel 75 MG Oral Tablet"),
    ),
    "stroke": (
        ("243670", "aspirin 81 MG Oral Tablet"),
        ("259255", "atorvastatin 80 MG Oral Tablet"),
    ),
    "atrial_fibrillation": (("1364445", "apixaban 5 MG Oral Tablet"),),
    "anaemia": (("310325", "ferrous sulfate 325 MG Oral Tablet"),),
}
ENOXAPARIN = ("854235", "0.4 ML enoxaparin sodium 100 MG/ML Prefilled Syringe")
ACETAMINOPHEN = ("313782", "acetaminophen 325 MG Oral Tablet")
CEFTRIAXONE = ("1665021", "ceftriaxone 1000 MG Injection")


@dataclass(frozen=True)
class Measurement:
    """How one quantity is written: LOINC code, UCUM unit, decimals, category."""

    code: dict[str, Any]
    unit: str
    decimals: int
    category: list[dict[str, Any]]


def _category(code: str, display: str) -> list[dict[str, Any]]:
    return [_concept(_TERMINOLOGY + "observation-category", code, display)]


LAB = _category("laboratory", "Laboratory")
VITAL = _category("vital-signs", "Vital Signs")
SOCIAL = _category("social-history", "Social History")


def _lab(code: str, display: str, text: str, unit: str, decimals: int) -> Measurement:
    return Measurement(_concept(LOINC, code, display, text), unit, decimals, LAB)


def _vital(code: str, display: str, unit: str, decimals: int) -> Measurement:
    return Measurement(_concept(LOINC, code, display), unit, decimals, VITAL)


CREATININE_VARIANTS = (  # (measurement, share); values are generated in mg/dL
    (_lab("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "Creatinine", "mg/dL", 2), 0.75),
    (_lab("38483-4", "Creatinine [Mass/volume] in Blood", "Creatinine", "mg/dL", 2), 0.15),
    (
        _lab("14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "Creatinine", "umol/L", 0),
        0.10,
    ),
)
_CREATININE_WEIGHTS = [share for _, share in CREATININE_VARIANTS]
MEASUREMENTS = {
    "egfr": _lab(
        "33914-3",
        (
            "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum or Plasma"
            " by Creatinine-based formula (MDRD)"
        ),
        "eGFR",
        "mL/min/{1.73_m2}",
        0,
    ),
    "urea_nitrogen": _lab(
        "3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "BUN", "mg/dL", 0
    ),
    "glucose": _lab("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "Glucose", "mg/dL", 0),
    "sodium": _lab("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "Sodium", "mmol/L", 0),
    "potassium": _lab(
        "2823-3", "Potassium [Moles/volume] in Serum or Plasma", "Potassium", "mmol/L", 1
    ),
    "hemoglobin": _lab("718-7", "Hemoglobin [Mass/volume] in Blood", "Hemoglobin", "g/dL", 1),
    "leukocytes": _lab(
        "6690-2", "Leukocytes [#/volume] in Blood by Automated count", "WBC", "10*3/uL", 1
    ),
    "albumin": _lab("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "Albumin", "g/dL", 1),
    "hba1c": _lab("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "HbA1c", "%", 1),
    "heart_rate": _vital("8867-4", "Heart rate", "/min", 0),
    "body_temperature": _vital("8310-5", "Body temperature", "Cel", 1),
    "bmi": _vital("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 1),
}
BLOOD_PRESSURE = _concept(LOINC, "85354-9", "Blood pressure panel with all children optional")
SYSTOLIC = _concept(LOINC, "8480-6", "Systolic blood pressure")
DIASTOLIC = _concept(LOINC, "8462-4", "Diastolic blood pressure")
SMOKING = _concept(LOINC, "72166-2", "Tobacco smoking status")
SMOKING_VALUES = (
    _concept(SNOMED_SYSTEM, "449868002", "Smokes tobacco daily"),
    _concept(SNOMED_SYSTEM, "8517006", "Ex-smoker"),
    _concept(SNOMED_SYSTEM, "266919005", "Never smoked tobacco"),
)

ENCOUNTER_CLASSES = {
    code: {"system": _TERMINOLOGY + "v3-ActCode", "code": code, "display": display}
    for code, display in (
        ("IMP", "inpatient encounter"),
        ("EMER", "emergency"),
        ("AMB", "ambulatory"),
    )
}
ENCOUNTER_TYPES = {
    "IMP": [_concept(SNOMED_SYSTEM, "32485007", "Hospital admission")],
    "EMER": [_concept(SNOMED_SYSTEM, "50849002", "Emergency room admission")],
    "AMB": [_concept(SNOMED_SYSTEM, "185349003", "Encounter for check up")],
}
PRIORITIES = {
    code: _concept(_TERMINOLOGY + "v3-ActPriority", code, display)
    for code, display in (("EM", "emergency"), ("UR", "urgent"), ("EL", "elective"))
}
DISPOSITIONS = {
    code: _concept(_TERMINOLOGY + "discharge-disposition", code, display)
    for code, display in (
        ("home", "Home"),
        ("snf", "Skilled nursing facility"),
        ("rehab", "Rehabilitation"),
    )
}
FROM_EMERGENCY = _concept(
    _TERMINOLOGY + "admit-source", "emd", "From accident/emergency department"
)
SERVICES = {
    "medicine": _concept(SNOMED_SYSTEM, "419192003", "Internal medicine"),
    "oncology": _concept(SNOMED_SYSTEM, "394593009", "Medical oncology"),
}
_CONDITION_CLINICAL = _TERMINOLOGY + "condition-clinical"
ACTIVE = _concept(_CONDITION_CLINICAL, "active", "Active")
RESOLVED = _concept(_CONDITION_CLINICAL, "resolved", "Resolved")
CONFIRMED = _concept(_TERMINOLOGY + "condition-ver-status", "confirmed", "Confirmed")
PROBLEM_LIST = [
    _concept(_TERMINOLOGY + "condition-category", "problem-list-item", "Problem List Item")
]
DIAGNOSIS = [
    _concept(_TERMINOLOGY + "condition-category", "encounter-diagnosis", "Encounter Diagnosis")
]
FAMILY_NAMES = tuple(
    [
        "Smith",
        "Johnson",
        "Williams",
        "Brown",
        "Jones",
        "Garcia",
        "Miller",
        "Davis",
        "Rodriguez",
        "Martinez",
        "Hernandez",
        "Lopez",
        "Wilson",
        "Anderson",
        "Thomas",
        "Taylor",
        "Moore",
        "Jackson",
        "Nguyen",
        "Chen",
    ]
)
GIVEN_NAMES = {
    "female": tuple(
        [
            "Mary",
            "Patricia",
            "Linda",
            "Barbara",
            "Maria",
            "Susan",
            "Dorothy",
            "Carmen",
            "Helen",
            "Mei",
        ]
    ),
    "male": tuple(
        [
            "James",
            "Robert",
            "John",
            "Michael",
            "William",
            "David",
            "Jose",
            "Charles",
            "Thomas",
            "Minh",
        ]
    ),
}


# --- ids, times, files ---------------------------------------------------------------------------


class _Ids:
    """uuid-shaped ids from a seeded stream, made in batches."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self._batch: list[str] = []

    def __call__(self) -> str:
        if not self._batch:
            h = self._random.randbytes(16 * 4096).hex()
            self._batch = [
                f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-"
                f"{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
                for i in range(32 * 4095, -1, -32)
            ]
        return self._batch.pop()


class _Normals:
    """Gaussian draws from a seeded pool (numpy in bulk, far cheaper than one at a time)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._pool: list[float] = []

    def __call__(self, mean: float, sd: float) -> float:
        if not self._pool:
            self._pool = self._rng.standard_normal(1 << 16).tolist()
        return mean + sd * self._pool.pop()


def _iso(seconds: int) -> str:
    """A FHIR instant in UTC, to the second."""
    day, rest = divmod(seconds, DAY)
    hours, rest = divmod(rest, HOUR)
    return f"{_day(day)}T{hours:02d}:{rest // MINUTE:02d}:{rest % MINUTE:02d}Z"


@lru_cache(maxsize=4096)
def _day(days_since_epoch: int) -> str:
    return date.fromordinal(_EPOCH_ORDINAL + days_since_epoch).isoformat()


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _seconds(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


class _Files:
    """One NDJSON handle per resource type, and the count written to each."""

    def __init__(self, stack: ExitStack, out: Path) -> None:
        self._writers = {
            kind: stack.enter_context((out / f"{kind}.ndjson").open("wb", buffering=1 << 20)).write
            for kind in RESOURCE_TYPES
        }
        self.counts = dict.fromkeys(RESOURCE_TYPES, 0)

    def write(self, resource: dict[str, Any]) -> None:
        kind = resource["resourceType"]
        self._writers[kind](orjson.dumps(resource, option=orjson.OPT_APPEND_NEWLINE))
        self.counts[kind] += 1


# --- the population (vectorised) -----------------------------------------------------------------


def _population(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    """Per-patient attributes, latent frailty, comorbidities and lab baselines."""
    age = 19 + 76 * rng.beta(2.4, 1.5, n)
    age_z = (age - 65) / 15
    female = rng.random(n) < 0.53
    frailty = 0.45 * age_z + 0.9 * rng.standard_normal(n)
    race = rng.choice(len(RACES), n, p=[share for *_, share in RACES])
    ethnicity = rng.choice(len(ETHNICITIES), n, p=[share for *_, share in ETHNICITIES])
    conditions = _comorbidities(rng, frailty, age_z, female)
    c = {key: value.astype(float) for key, value in conditions.items()}
    cancer = sum(c[key] for key in CANCERS)
    noise = rng.standard_normal((11, n))
    columns: dict[str, Any] = {
        "age": age,
        "female": female,
        "frailty": frailty,
        "race": race,
        "ethnicity": ethnicity,
        "language": _languages(rng, race, ethnicity),
        "family": rng.integers(len(FAMILY_NAMES), size=n),
        "given": rng.integers(10, size=n),
        "admissions": _admission_counts(rng, frailty),
        "creatinine": np.exp(
            np.where(female, -0.29, -0.05)
            + 0.05 * frailty
            + 0.55 * c["ckd"]
            + 0.35 * c["diabetic_kidney"]
            + 0.10 * c["heart_failure"]
            + 0.15 * noise[0]
        ),
        "albumin": 3.85
        - 0.15 * frailty
        - 0.2 * c["heart_failure"]
        - 0.35 * cancer
        - 0.4 * c["metastatic"]
        - 0.15 * c["ckd"]
        + 0.3 * noise[1],
        "hemoglobin": np.where(female, 12.9, 14.2)
        - 0.25 * frailty
        - 1.8 * c["anaemia"]
        - 0.8 * c["ckd"]
        - 0.7 * cancer
        + 0.9 * noise[2],
        "glucose": 98 + 55 * c["diabetes"] + 20 * c["diabetic_kidney"] + 10 * noise[3],
        "sodium": 139.5 - 0.5 * frailty - 1.5 * c["heart_failure"] + 1.5 * noise[4],
        "potassium": 4.1 + 0.35 * c["ckd"] + 0.15 * c["diabetic_kidney"] + 0.25 * noise[5],
        "leukocytes": np.exp(np.log(7.2) + 0.08 * frailty + 0.2 * noise[6]),
        "systolic": 124 + 12 * c["hypertension"] + 3 * age_z + 10 * noise[7],
        "heart_rate": 78
        + 6 * c["heart_failure"]
        + 3 * c["copd"]
        + 5 * c["atrial_fibrillation"]
        + 8 * noise[8],
        "bmi": np.clip(np.exp(np.log(27.5) + 0.08 * c["diabetes"] + 0.18 * noise[9]), 15, 60),
        "hba1c": np.clip(7.4 + 0.9 * c["diabetic_kidney"] + 1.0 * noise[10], 5.6, 14),
        "smoking": _smoking(rng, c["copd"]),
        **conditions,
    }
    lists = {key: np.asarray(value).tolist() for key, value in columns.items()}
    return [{key: values[i] for key, values in lists.items()} for i in range(n)]


def _admission_counts(rng: np.random.Generator, frailty: np.ndarray) -> np.ndarray:
    """1-3 admissions in the cohort period, more for the frail."""
    second = rng.random(len(frailty)) < _sigmoid(-1.0 + 0.5 * frailty)
    third = rng.random(len(frailty)) < _sigmoid(-0.9 + 0.5 * frailty)
    return 1 + second + (second & third)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _comorbidities(
    rng: np.random.Generator, frailty: np.ndarray, age_z: np.ndarray, female: np.ndarray
) -> dict[str, np.ndarray]:
    n = len(frailty)

    def draw(logit: np.ndarray | float) -> np.ndarray:
        return rng.random(n) < _sigmoid(np.asarray(logit))

    f = frailty
    hypertension = draw(0.3 + 0.3 * f + 0.6 * age_z)
    diabetes = draw(-1.0 + 0.25 * f + 0.2 * age_z)
    diabetic_kidney = diabetes & draw(-0.9 + 0.3 * f)
    cancer = draw(-2.4 + 0.25 * f + 0.4 * age_z)
    site = rng.choice(3, n, p=[0.35, 0.35, 0.30])  # colon, lung, breast (female) or prostate
    heart_failure = draw(-1.9 + 0.5 * f + 0.4 * age_z)
    ckd = draw(-2.3 + 0.35 * f + 0.4 * age_z + 0.8 * diabetes + 0.5 * hypertension)
    return {
        "hypertension": hypertension,
        "diabetes": diabetes,
        "diabetic_kidney": diabetic_kidney,
        "heart_failure": heart_failure,
        "copd": draw(-1.9 + 0.35 * f + 0.2 * age_z),
        "ckd": ckd,
        "myocardial_infarction": draw(-2.4 + 0.3 * f + 0.4 * age_z + 0.3 * diabetes),
        "stroke": draw(-2.8 + 0.3 * f + 0.5 * age_z + 0.4 * hypertension),
        "dementia": draw(-3.6 + 0.25 * f + 1.2 * age_z),
        "atrial_fibrillation": draw(-2.2 + 0.2 * f + 0.8 * age_z + 0.6 * heart_failure),
        "anaemia": draw(-1.7 + 0.3 * f + 0.6 * ckd + 0.6 * cancer + 0.3 * female),
        "colon_cancer": cancer & (site == 0),
        "lung_cancer": cancer & (site == 1),
        "breast_cancer": cancer & (site == 2) & female,
        "prostate_cancer": cancer & (site == 2) & ~female,
        "metastatic": cancer & draw(-0.9 + 0.25 * f),
    }


def _languages(rng: np.random.Generator, race: np.ndarray, ethnicity: np.ndarray) -> np.ndarray:
    u = rng.random(len(race))
    hispanic = ethnicity == 0
    asian = race == 2
    language = np.zeros(len(race), dtype=int)
    language[hispanic & (u < 0.4)] = 1
    language[asian & (u < 0.15)] = 2
    language[asian & (u >= 0.15) & (u < 0.25)] = 3
    return language


def _smoking(rng: np.random.Generator, copd: np.ndarray) -> np.ndarray:
    u = rng.random(len(copd))
    current = 0.14 + 0.25 * copd
    former = current + 0.30 + 0.20 * copd
    return np.where(u < current, 0, np.where(u < former, 1, 2))


# --- one patient ------------------------------------------------------------------------------

Admission = tuple[int, str]  # (time, kind), kept in a heap
Values = dict[str, float]


@dataclass
class _Stay:
    encounter_id: str
    admitted: int
    discharged: int
    kind: str
    last: Values  # the last value of each risk-model measurement in the stay, before drift


@dataclass(frozen=True)
class _Acute:
    """The illness of one stay, fading after admission."""

    kidney_injury: float = 0.0
    albumin_drop: float = 0.0
    hemoglobin_drop: float = 0.0
    sodium_offset: float = 0.0
    glucose_offset: float = 0.0
    infection: float = 0.0


QUIET = _Acute()


@dataclass
class _Patient:
    id: str
    reference: dict[str, str]
    person: dict[str, Any]
    birth: int
    resource: dict[str, Any]
    omitted: frozenset[str]
    charlson: int
    medications: list[tuple[str, str]]
    stays: list[_Stay] = field(default_factory=list)
    emergency_visits: list[int] = field(default_factory=list)
    blocked_until: int = 0  # no unplanned admission before this: a 30-day window runs

    def inside_stay(self, moment: int) -> bool:
        return any(s.admitted - 2 * HOUR <= moment <= s.discharged + HOUR for s in self.stays)


class _Generator:
    """Writes one cohort; all randomness comes from ``config.seed``."""

    def __init__(self, config: CohortConfig, files: _Files) -> None:
        self.config = config
        self.effects = config.effects
        self.files = files
        streams = np.random.SeedSequence(config.seed).spawn(4)
        self.rng = np.random.default_rng(streams[0])
        self.random = random.Random(int(streams[1].generate_state(1)[0]))
        self.new_id = _Ids(int(streams[2].generate_state(1)[0]))
        self.normal = _Normals(np.random.default_rng(streams[3]))
        self.start = _seconds(config.start)
        self.end = _seconds(config.end) + DAY - 1
        self.history_start = self.start - YEAR
        drift_from = drift_start(config)
        self.drift_measurement = FEATURE_MEASUREMENTS.get(self.effects.drift_feature or "")
        self.drift_from = _seconds(drift_from) if drift_from else 0
        self.truth: list[dict[str, Any]] = []

    def run(self) -> None:
        for person in _population(self.rng, self.config.patients):
            self._patient(person)

    # patients and stays

    def _patient(self, person: dict[str, Any]) -> None:
        patient = self._new_patient(person)
        queue = self._scheduled_admissions(person)
        self._write_conditions(patient, first_admission=queue[0][0])
        visits = self._visit_times(person)
        patient.emergency_visits = visits["EMER"]
        while queue:
            moment, kind = heapq.heappop(queue)
            admitted = self._admission_time(patient, moment, kind)
            if admitted <= self.end:
                self._chain(patient, admitted, kind, queue)
        for kind, moments in visits.items():
            for moment in moments:
                if not patient.inside_stay(moment):
                    self._visit(patient, kind, moment)

    def _new_patient(self, person: dict[str, Any]) -> _Patient:
        patient_id = self.new_id()
        birth_day = date.fromordinal(self.config.start.toordinal() - int(person["age"] * 365.25))
        sex = "female" if person["female"] else "male"
        resource = {
            "resourceType": "Patient",
            "id": patient_id,
            "extension": _race_extensions(person),
            "identifier": [
                {
                    "system": "https://bedside.example.org/synthetic-mrn",
                    "value": f"SYN{self.random.getrandbits(32):010d}",
                }
            ],
            "name": [
                {
                    "use": "official",
                    "family": FAMILY_NAMES[person["family"]],
                    "given": [GIVEN_NAMES[sex][person["given"]]],
                }
            ],
            "gender": sex,
            "birthDate": birth_day.isoformat(),
            "communication": [
                {"language": _concept(BCP47, *LANGUAGES[person["language"]]), "preferred": True}
            ],
        }
        self.files.write(resource)
        codings = [
            (coding["system"], coding["code"])
            for key, comorbidity in COMORBIDITIES.items()
            if person[key]
            for coding in comorbidity.code["coding"]
        ]
        at_start = subgroup_attributes(resource, datetime.fromtimestamp(self.start, UTC))
        return _Patient(
            id=patient_id,
            reference={"reference": f"Patient/{patient_id}"},
            person=person,
            birth=_seconds(birth_day),
            resource=resource,
            omitted=self._omitted(at_start),
            charlson=charlson_index(codings).score,
            medications=self._chronic_medications(person),
        )

    def _omitted(self, attributes: dict[str, str]) -> frozenset[str]:
        """Measurements never recorded for this patient (baseline and planted missingness)."""
        r, effects = self.random, self.effects
        base = self.config.base_missing_rate
        omitted = {name for name in OPTIONAL_MEASUREMENTS if r.random() < base}
        planted = FEATURE_MEASUREMENTS.get(effects.missing_feature or "")
        if planted is not None:
            group = effects.missing_group
            in_group = group is None or attributes[group[0]] == group[1]
            omitted.discard(planted)
            if r.random() < (effects.missing_rate if in_group else base):
                omitted.add(planted)
        return frozenset(omitted)

    def _chronic_medications(self, person: dict[str, Any]) -> list[tuple[str, str]]:
        chosen: dict[str, str] = {}
        for key, options in MEDICATIONS.items():
            for code, display in options if person[key] else ():
                if self.random.random() < 0.8:
                    chosen.setdefault(code, display)
        return list(chosen.items())

    def _scheduled_admissions(self, person: dict[str, Any]) -> list[Admission]:
        """1-3 admissions in [start, end] and, at the same rate, more in the year before."""
        r = self.random
        span = self.end - self.start
        moments = [self.start + int(r.random() * span) for _ in range(person["admissions"])]
        history = _poisson(r, person["admissions"] * YEAR / span)
        moments += [self.history_start + int(r.random() * YEAR) for _ in range(history)]
        queue = [(moment, "admission") for moment in moments]
        heapq.heapify(queue)
        return queue

    def _visit_times(self, person: dict[str, Any]) -> dict[str, list[int]]:
        r, frailty = self.random, person["frailty"]
        span = self.end - self.history_start
        rates = {"EMER": math.exp(-0.5 + 0.5 * frailty), "AMB": math.exp(0.5 + 0.2 * frailty)}
        return {
            kind: sorted(
                self.history_start + int(r.random() * span)
                for _ in range(_poisson(r, rate * span / YEAR))
            )
            for kind, rate in rates.items()
        }

    def _admission_time(self, patient: _Patient, moment: int, kind: str) -> int:
        """``moment``, postponed past the last stay and (unless planned) a running window."""
        if not patient.stays:
            return moment
        earliest = patient.stays[-1].discharged + 3 * DAY
        if kind != "planned":
            earliest = max(earliest, patient.blocked_until + HOUR)
        return moment if moment >= earliest else earliest + int(self.random.random() * 14 * DAY)

    def _chain(self, patient: _Patient, admitted: int, kind: str, queue: list[Admission]) -> None:
        """A stay, then its readmission for as long as the outcomes say readmitted."""
        previous: dict[str, Any] | None = None
        while True:
            stay = self._stay(patient, admitted, kind)
            if previous is not None:
                previous["readmission_encounter_id"] = stay.encounter_id
            previous = self._outcome(patient, stay)
            if not previous["readmitted"]:
                patient.blocked_until = stay.discharged + READMISSION_WINDOW
                self._follow_ups(stay, queue)
                return
            admitted, kind = self._readmission_time(patient, stay), "readmission"

    def _follow_ups(self, stay: _Stay, queue: list[Admission]) -> None:
        """After a stay without readmission: sometimes an elective stay inside its 30 days, or an
        unplanned one 45-60 days after discharge."""
        r = self.random
        if r.random() < 0.04:
            heapq.heappush(queue, (stay.discharged + int((3 + 22 * r.random()) * DAY), "planned"))
        if r.random() < 0.10:
            moment = stay.discharged + int((45 + 15 * r.random()) * DAY)
            heapq.heappush(queue, (moment, "follow_up"))

    def _readmission_time(self, patient: _Patient, stay: _Stay) -> int:
        """0.5-29.5 days after discharge, front-loaded, and after any window still running."""
        earliest = max(stay.discharged + DAY // 2, patient.blocked_until + HOUR)
        latest = stay.discharged + 29 * DAY + DAY // 2
        return earliest + int((latest - earliest) * self.random.betavariate(1.0, 1.6))

    def _stay(self, patient: _Patient, admitted: int, kind: str) -> _Stay:
        r = self.random
        los_days = _clip(r.lognormvariate(1.3 + 0.15 * patient.person["frailty"], 0.6), 1, 30)
        discharged = admitted + int(los_days * DAY) // MINUTE * MINUTE
        encounter_id = self.new_id()
        reason = r.choices(REASONS, _REASON_WEIGHTS)[0]
        self.files.write(
            self._inpatient_encounter(patient, encounter_id, admitted, discharged, kind, reason)
        )
        encounter = {"reference": f"Encounter/{encounter_id}"}
        self._write_reason(patient, encounter, reason, admitted, discharged)
        last = self._stay_observations(
            patient, encounter, admitted, discharged, self._acute(patient, reason)
        )
        self._stay_medications(patient, encounter, reason, admitted, discharged)
        stay = _Stay(encounter_id, admitted, discharged, kind, last)
        patient.stays.append(stay)
        return stay

    def _inpatient_encounter(
        self,
        patient: _Patient,
        encounter_id: str,
        admitted: int,
        discharged: int,
        kind: str,
        reason: Reason,
    ) -> dict[str, Any]:
        r, person = self.random, patient.person
        priority = _priority(kind, r.random())
        disposition = "snf" if r.random() < sigmoid(-2.2 + 0.8 * person["frailty"]) else "home"
        if disposition == "home" and r.random() < 0.05:
            disposition = "rehab"
        hospitalization: dict[str, Any] = {"dischargeDisposition": DISPOSITIONS[disposition]}
        if priority == "EM":
            hospitalization = {"admitSource": FROM_EMERGENCY, **hospitalization}
        cancer = any(person[key] for key in CANCERS)
        service = "oncology" if cancer and r.random() < 0.5 else "medicine"
        return {
            "resourceType": "Encounter",
            "id": encounter_id,
            "status": "finished",
            "class": ENCOUNTER_CLASSES["IMP"],
            "type": ENCOUNTER_TYPES["IMP"],
            "serviceType": SERVICES[service],
            "priority": PRIORITIES[priority],
            "subject": patient.reference,
            "period": {"start": _iso(admitted), "end": _iso(discharged)},
            "reasonCode": [_concept(SNOMED_SYSTEM, reason.code, reason.display)],
            "hospitalization": hospitalization,
        }

    def _write_conditions(self, patient: _Patient, first_admission: int) -> None:
        for key, comorbidity in COMORBIDITIES.items():
            if not patient.person[key]:
                continue
            onset = _iso(first_admission - int((60 + self.random.random() * 2860) * DAY))
            self.files.write(
                {
                    "resourceType": "Condition",
                    "id": self.new_id(),
                    "clinicalStatus": ACTIVE,
                    "verificationStatus": CONFIRMED,
                    "category": PROBLEM_LIST,
                    "code": comorbidity.code,
                    "subject": patient.reference,
                    "onsetDateTime": onset,
                    "recordedDate": onset,
                }
            )

    def _write_reason(
        self,
        patient: _Patient,
        encounter: dict[str, str],
        reason: Reason,
        admitted: int,
        discharged: int,
    ) -> None:
        self.files.write(
            {
                "resourceType": "Condition",
                "id": self.new_id(),
                "clinicalStatus": RESOLVED,
                "verificationStatus": CONFIRMED,
                "category": DIAGNOSIS,
                "code": _concept(SNOMED_SYSTEM, reason.code, reason.display),
                "subject": patient.reference,
                "encounter": encounter,
                "onsetDateTime": _iso(admitted),
                "abatementDateTime": _iso(discharged),
                "recordedDate": _iso(admitted + HOUR),
            }
        )

    # outcome and truth

    def _outcome(self, patient: _Patient, stay: _Stay) -> dict[str, Any]:
        """Features at discharge, true risk and the drawn outcome: the stay's truth row."""
        attributes = subgroup_attributes(
            patient.resource, datetime.fromtimestamp(stay.discharged, UTC)
        )
        values = self._features(patient, stay)
        contributions = {
            term.feature: term.contribution(values[term.feature]) for term in RISK_TERMS
        }
        group = self.effects.miscalibrated_group
        shift = 0.0
        if group is not None and attributes[group[0]] == group[1]:
            shift = math.log(self.effects.miscalibration_odds_ratio)
        logit = INTERCEPT + sum(contributions.values()) + shift
        risk = sigmoid(logit)
        row = {
            "patient_id": patient.id,
            "encounter_id": stay.encounter_id,
            "stay_kind": stay.kind,
            "admission_time": _iso(stay.admitted),
            "discharge_time": _iso(stay.discharged),
            "in_period": int(self.start <= stay.discharged <= self.end),
            **{name: attributes[name] for name in SUBGROUPS},
            **{f"x_{name}": value for name, value in values.items()},
            **{f"lp_{name}": value for name, value in contributions.items()},
            "lp_miscalibration": shift,
            "true_logit": logit,
            "true_risk": risk,
            "readmitted": int(self.random.random() < risk),
            "readmission_encounter_id": "",
        }
        self.truth.append(row)
        return row

    def _features(self, patient: _Patient, stay: _Stay) -> Values:
        """The risk model's inputs as ``fhir_mappers`` computes them from what was written."""
        admitted, discharged = stay.admitted, stay.discharged
        prior = sum(1 for s in patient.stays if discharged - YEAR < s.admitted < admitted)
        emergency = sum(
            1
            for moment in patient.emergency_visits
            if discharged - EMERGENCY_LOOKBACK < moment < admitted
            and not patient.inside_stay(moment)
        )
        return {
            "inpatient_admissions_12m": float(prior),
            "creatinine_last": stay.last["creatinine"],
            "albumin_last": stay.last["albumin"],
            "charlson_index": float(patient.charlson),
            "hemoglobin_last": stay.last["hemoglobin"],
            "emergency_visits_6m": float(emergency),
            "length_of_stay_days": (discharged - admitted) / DAY,
            "sodium_last": stay.last["sodium"],
            "age_years": (discharged - patient.birth) / DAY / 365.25,
        }

    # observations

    def _acute(self, patient: _Patient, reason: Reason) -> _Acute:
        r = self.random
        kidney = 0.0
        if reason.kidney_injury:
            kidney = 0.8 + 1.2 * r.random()
        elif r.random() < 0.25 * (1 + patient.person["ckd"]):
            kidney = 0.15 + 0.65 * r.random()
        return _Acute(
            kidney_injury=kidney,
            albumin_drop=max(0.0, self.normal(0.2 + 0.25 * reason.infection, 0.15)),
            hemoglobin_drop=max(0.0, self.normal(0.3 + 2.0 * reason.bleeding, 0.4)),
            sodium_offset=self.normal(0, 2.5),
            glucose_offset=self.normal(30 * reason.infection, 15),
            infection=float(reason.infection),
        )

    def _stay_observations(
        self,
        patient: _Patient,
        encounter: dict[str, str],
        admitted: int,
        discharged: int,
        acute: _Acute,
    ) -> Values:
        """Draws from an hour after admission to 5 h before discharge; the last values."""
        r = self.random
        step = 1 if r.random() < 0.6 else 2
        draws = min(12, 1 + math.ceil((discharged - admitted) / DAY / step))
        first, last = admitted + HOUR, discharged - 5 * HOUR
        creatinine = r.choices(CREATININE_VARIANTS, _CREATININE_WEIGHTS)[0][0]
        albumin_again = r.random() < 0.3
        hba1c = patient.person["diabetes"] and r.random() < 0.5
        latest: Values = {}
        for i in range(draws):
            moment = first + (last - first) * i // (draws - 1)
            days = (moment - admitted) / DAY
            values = self._lab_values(patient, acute, days, moment)
            extras = []
            if i == 0 or (albumin_again and i == draws - 1):
                extras.append("albumin")
                latest["albumin"] = values["albumin"]
            if i == 0 and hba1c:
                extras.append("hba1c")
            self._labs(patient, encounter, moment, values, creatinine, extras)
            self._vitals(patient, encounter, moment + 30 * MINUTE, acute, days, i == 0)
            latest.update({name: values[name] for name in ("creatinine", "hemoglobin", "sodium")})
        return latest

    def _lab_values(self, patient: _Patient, acute: _Acute, days: float, moment: int) -> Values:
        """One draw, rounded as written (creatinine in mg/dL), before drift."""
        g, p = self.normal, patient.person
        fading = math.exp(-days / 2.5)
        slow = math.exp(-days / 3)
        creatinine = round(
            _clip(
                p["creatinine"] * (1 + acute.kidney_injury * fading) * math.exp(g(0, 0.05)), 0.3, 15
            ),
            2,
        )
        age = (moment - patient.birth) / DAY / 365.25
        heart = 1.2 if p["heart_failure"] else 1.0
        values = {
            "creatinine": creatinine,
            "egfr": _clip(_ckd_epi(creatinine, age, p["female"]), 3, 150),
            "urea_nitrogen": _clip(14 * creatinine**0.85 * heart * math.exp(g(0, 0.15)), 3, 150),
            "glucose": _clip(
                p["glucose"] + acute.glucose_offset * slow + g(0, 15 + 25 * p["diabetes"]), 45, 600
            ),
            "sodium": _clip(p["sodium"] + acute.sodium_offset * slow + g(0, 1.2), 118, 158),
            "potassium": _clip(
                p["potassium"] + 0.25 * acute.kidney_injury * fading + g(0, 0.3), 2.6, 6.8
            ),
            "hemoglobin": _clip(
                p["hemoglobin"] - acute.hemoglobin_drop - 0.06 * days + g(0, 0.3), 5, 19.5
            ),
            "leukocytes": _clip(
                p["leukocytes"] * (1 + 0.8 * acute.infection * fading) * math.exp(g(0, 0.12)),
                0.8,
                45,
            ),
            "albumin": _clip(p["albumin"] - acute.albumin_drop + g(0, 0.12), 1.3, 5.4),
            "hba1c": _clip(p["hba1c"] + g(0, 0.3), 4, 16),
        }
        for name in ("sodium", "hemoglobin", "albumin"):
            values[name] = round(values[name], MEASUREMENTS[name].decimals)
        return values

    def _labs(
        self,
        patient: _Patient,
        encounter: dict[str, str],
        moment: int,
        values: Values,
        creatinine: Measurement,
        extras: list[str],
    ) -> None:
        when, issued = _iso(moment), _iso(moment + 90 * MINUTE)
        measured = values["creatinine"]
        if creatinine.unit == "umol/L":
            measured *= CREATININE_UMOL_PER_MG_DL
        self._quantity(patient, encounter, "creatinine", creatinine, when, issued, moment, measured)
        for name in (*BASIC_LABS, *extras):
            self._quantity(
                patient, encounter, name, MEASUREMENTS[name], when, issued, moment, values[name]
            )

    def _vitals(
        self,
        patient: _Patient,
        encounter: dict[str, str],
        moment: int,
        acute: _Acute,
        days: float,
        with_status: bool,
    ) -> None:
        """Blood pressure, heart rate, temperature; BMI and smoking status when asked."""
        g, p = self.normal, patient.person
        when = _iso(moment)
        fever = acute.infection * math.exp(-days / 1.5)
        systolic = _clip(p["systolic"] + g(0, 11), 75, 220)
        diastolic = _clip(
            74 + 0.3 * (p["systolic"] - 124) + 0.4 * (systolic - p["systolic"]) + g(0, 6), 35, 130
        )
        self._blood_pressure(patient, encounter, when, moment, systolic, diastolic)
        vitals = {
            "heart_rate": _clip(p["heart_rate"] + 15 * fever + g(0, 8), 40, 160),
            "body_temperature": _clip(36.8 + 1.2 * fever + g(0, 0.25), 35, 40.5),
        }
        if with_status:
            vitals["bmi"] = p["bmi"] + g(0, 0.3)
            self._smoking_status(patient, encounter, when)
        for name, value in vitals.items():
            self._quantity(patient, encounter, name, MEASUREMENTS[name], when, None, moment, value)

    def _quantity(
        self,
        patient: _Patient,
        encounter: dict[str, str],
        name: str,
        measurement: Measurement,
        when: str,
        issued: str | None,
        moment: int,
        value: float,
    ) -> None:
        """A valueQuantity Observation: unless omitted for the patient, drifted when due."""
        if name in patient.omitted:
            return
        if name == self.drift_measurement and moment >= self.drift_from:
            value *= self.effects.drift_shift
        digits = measurement.decimals
        resource = {
            "resourceType": "Observation",
            "id": self.new_id(),
            "status": "final",
            "category": measurement.category,
            "code": measurement.code,
            "subject": patient.reference,
            "encounter": encounter,
            "effectiveDateTime": when,
            "valueQuantity": {
                "value": round(value, digits) if digits else round(value),
                "unit": measurement.unit,
                "system": UCUM,
                "code": measurement.unit,
            },
        }
        if issued is not None:
            resource["issued"] = issued
        self.files.write(resource)

    def _blood_pressure(
        self,
        patient: _Patient,
        encounter: dict[str, str],
        when: str,
        moment: int,
        systolic: float,
        diastolic: float,
    ) -> None:
        if "blood_pressure" in patient.omitted:
            return
        if self.drift_measurement == "blood_pressure" and moment >= self.drift_from:
            systolic *= self.effects.drift_shift
        self.files.write(
            {
                "resourceType": "Observation",
                "id": self.new_id(),
                "status": "final",
                "category": VITAL,
                "code": BLOOD_PRESSURE,
                "subject": patient.reference,
                "encounter": encounter,
                "effectiveDateTime": when,
                "component": [
                    {"code": SYSTOLIC, "valueQuantity": _mm_hg(systolic)},
                    {"code": DIASTOLIC, "valueQuantity": _mm_hg(diastolic)},
                ],
            }
        )

    def _smoking_status(self, patient: _Patient, encounter: dict[str, str], when: str) -> None:
        if "smoking_status" in patient.omitted:
            return
        self.files.write(
            {
                "resourceType": "Observation",
                "id": self.new_id(),
                "status": "final",
                "category": SOCIAL,
                "code": SMOKING,
                "subject": patient.reference,
                "encounter": encounter,
                "effectiveDateTime": when,
                "valueCodeableConcept": SMOKING_VALUES[patient.person["smoking"]],
            }
        )

    def _visit(self, patient: _Patient, kind: str, moment: int) -> None:
        """An emergency or ambulatory visit: vital signs, and labs six times in ten."""
        r = self.random
        length = (2 + 6 * r.random()) * HOUR if kind == "EMER" else (20 + 20 * r.random()) * MINUTE
        encounter_id = self.new_id()
        self.files.write(
            {
                "resourceType": "Encounter",
                "id": encounter_id,
                "status": "finished",
                "class": ENCOUNTER_CLASSES[kind],
                "type": ENCOUNTER_TYPES[kind],
                "subject": patient.reference,
                "period": {"start": _iso(moment), "end": _iso(moment + int(length))},
            }
        )
        encounter = {"reference": f"Encounter/{encounter_id}"}
        self._vitals(patient, encounter, moment + 5 * MINUTE, QUIET, 0.0, kind == "AMB")
        if r.random() < 0.6:
            drawn = moment + 10 * MINUTE
            values = self._lab_values(patient, QUIET, 0.0, drawn)
            variant = r.choices(CREATININE_VARIANTS, _CREATININE_WEIGHTS)[0][0]
            extras = [name for name in ("albumin", "hba1c") if r.random() < 0.3]
            if not patient.person["diabetes"] and "hba1c" in extras:
                extras.remove("hba1c")
            self._labs(patient, encounter, drawn, values, variant, extras)

    # medications

    def _stay_medications(
        self,
        patient: _Patient,
        encounter: dict[str, str],
        reason: Reason,
        admitted: int,
        discharged: int,
    ) -> None:
        """Inpatient orders (completed) after admission; home medications (active) at discharge."""
        r = self.random
        inpatient = [ENOXAPARIN] if r.random() < 0.7 else []
        if r.random() < 0.6:
            inpatient.append(ACETAMINOPHEN)
        if reason.infection:
            inpatient.append(CEFTRIAXONE)
        for medication in inpatient:
            self._medication(patient, encounter, medication, "completed", admitted + 2 * HOUR)
        for medication in patient.medications:
            self._medication(patient, encounter, medication, "active", discharged - 2 * HOUR)

    def _medication(
        self,
        patient: _Patient,
        encounter: dict[str, str],
        medication: tuple[str, str],
        status: str,
        moment: int,
    ) -> None:
        self.files.write(
            {
                "resourceType": "MedicationRequest",
                "id": self.new_id(),
                "status": status,
                "intent": "order",
                "medicationCodeableConcept": _concept(RXNORM, *medication),
                "subject": patient.reference,
                "encounter": encounter,
                "authoredOn": _iso(moment),
            }
        )


BASIC_LABS = ("egfr", "urea_nitrogen", "glucose", "sodium", "potassium", "hemoglobin", "leukocytes")
SUBGROUPS = ("sex", "age_band", "race", "ethnicity", "language")


def _priority(kind: str, u: float) -> str:
    """Elective for planned stays, never for readmissions; else mostly emergency."""
    if kind == "planned":
        return "EL"
    if kind in ("readmission", "follow_up"):
        return "EM" if u < 0.8 else "UR"
    return "EM" if u < 0.65 else "UR" if u < 0.87 else "EL"


def _race_extensions(person: dict[str, Any]) -> list[dict[str, Any]]:
    """US Core race and ethnicity (OMB category and text); none when not recorded."""
    extensions = []
    for url, table, index in (
        (US_CORE_RACE, RACES, person["race"]),
        (US_CORE_ETHNICITY, ETHNICITIES, person["ethnicity"]),
    ):
        code, display, _ = table[index]
        if code is not None:
            category = {"system": OMB, "code": code, "display": display}
            extensions.append(
                {
                    "url": url,
                    "extension": [
                        {"url": "ombCategory", "valueCoding": category},
                        {"url": "text", "valueString": display},
                    ],
                }
            )
    return extensions


def _ckd_epi(creatinine: float, age: float, female: bool) -> float:
    """eGFR by the 2021 CKD-EPI creatinine equation (mL/min/1.73 m²)."""
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine / kappa
    egfr = 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.2 * 0.9938**age
    return egfr * 1.012 if female else egfr


def _mm_hg(value: float) -> dict[str, Any]:
    return {"value": round(value), "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}


def _clip(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def _poisson(r: random.Random, mean: float) -> int:
    """Knuth's method (the means here are small)."""
    threshold, count, product = math.exp(-mean), 0, r.random()
    while product > threshold:
        count += 1
        product *= r.random()
    return count


# --- the cohort, its truth and manifest ----------------------------------------------------------


def drift_start(config: CohortConfig) -> date | None:
    """When planted drift begins: as configured, else the middle of the cohort period."""
    effects = config.effects
    if effects.drift_feature is None:
        return None
    middle = (config.start.toordinal() + config.end.toordinal()) // 2
    return effects.drift_start or date.fromordinal(middle)


def generate_cohort(config: CohortConfig, out: Path) -> dict[str, Any]:
    """Write the NDJSON folder, ``truth.csv`` and ``manifest.json`` to ``out``; the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        files = _Files(stack, out)
        generator = _Generator(config, files)
        stack.enter_context(_no_garbage_collection())
        generator.run()
    _write_truth(out / "truth.csv", generator.truth)
    manifest = orjson.dumps(
        _manifest(config, files.counts, generator.truth),
        option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
    )
    (out / "manifest.json").write_bytes(manifest)
    return orjson.loads(manifest)


@contextmanager
def _no_garbage_collection() -> Iterator[None]:
    """The generator makes no reference cycles; collecting while it allocates costs a quarter."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _write_truth(path: Path, rows: list[dict[str, Any]]) -> None:
    """One row per stay; floats as Python writes them (they read back exactly)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def _manifest(
    config: CohortConfig, counts: dict[str, int], truth: list[dict[str, Any]]
) -> dict[str, Any]:
    outcomes = np.array([row["readmitted"] for row in truth])
    risks = np.array([row["true_risk"] for row in truth])
    spread = {
        term.feature: float(np.std([row[f"lp_{term.feature}"] for row in truth]))
        for term in RISK_TERMS
    }
    return {
        "generator": {"name": "app.training.synth", "version": GENERATOR_VERSION},
        "seed": config.seed,
        "config": config,
        "counts": {
            **counts,
            "index_stays": len(truth),
            "index_stays_in_period": sum(row["in_period"] for row in truth),
            "readmitted": int(outcomes.sum()),
        },
        "readmission_rate": float(outcomes.mean()),
        "mean_true_risk": float(risks.mean()),
        "risk_model": {
            "formula": (
                "logit P(readmitted) = intercept + sum(beta * (g(x) - center) / scale)"
                " + log(odds_ratio) in the miscalibrated group"
            ),
            "intercept": INTERCEPT,
            "terms": [
                {**asdict(term), "sd_of_contribution": spread[term.feature]} for term in RISK_TERMS
            ],
            "top_drivers": list(TOP_DRIVERS),
        },
        "planted_effects": planted_effects(config),
        "description": describe(config),
    }


def planted_effects(config: CohortConfig) -> list[dict[str, Any]]:
    """The planted effects, one entry each, with what a check should find."""
    e = config.effects
    effects: list[dict[str, Any]] = []
    if e.miscalibrated_group is not None:
        effects.append(
            {
                "kind": "miscalibration",
                "group": _group(e.miscalibrated_group),
                "odds_ratio": e.miscalibration_odds_ratio,
                "expect": "observed/predicted odds in the group ≈ odds_ratio for a model trained "
                "on everyone (the group is no feature)",
            }
        )
    if e.drift_feature is not None:
        effects.append(
            {
                "kind": "drift",
                "feature": e.drift_feature,
                "measurement": FEATURE_MEASUREMENTS[e.drift_feature],
                "start": drift_start(config),
                "factor": e.drift_shift,
                "expect": "the feature's values × factor from start on; true risk unchanged",
            }
        )
    if e.missing_feature is not None:
        effects.append(
            {
                "kind": "missingness",
                "feature": e.missing_feature,
                "measurement": FEATURE_MEASUREMENTS[e.missing_feature],
                "group": _group(e.missing_group) if e.missing_group else None,
                "rate_group": e.missing_rate,
                "rate_others": config.base_missing_rate,
                "expect": "all of a patient's observations omitted at these rates; the true "
                "risk still uses the unrecorded value",
            }
        )
    if e.override_group is not None:
        effects.append(
            {
                "kind": "overrides",
                "group": _group(e.override_group),
                "rate_group": e.override_rate_group,
                "rate_others": e.override_rate_base,
                "expect": "simulated clinicians override alerts at these rates (not in the data)",
            }
        )
    return effects


def _group(group: Group) -> dict[str, str]:
    return {"attribute": group[0], "value": group[1]}


def describe(config: CohortConfig) -> str:
    """A Markdown description of the cohort's mechanism, for the docs."""
    lines = [
        f"# Synthetic readmission cohort (generator {GENERATOR_VERSION}, seed {config.seed})",
        "",
        f"{config.patients} patients with inpatient discharges from {config.start} to "
        f"{config.end}, and their history from a year before. Every finished inpatient stay "
        "is an index stay with an outcome drawn from the risk model and a row in truth.csv; "
        "a readmission is an unplanned inpatient stay starting 0.5-29.5 days after discharge.",
        "",
        "## Risk model",
        "",
        f"logit P(readmitted) = {INTERCEPT} + Σ β·(g(x) − center)/scale, x computed by "
        "fhir_mappers from the written data at discharge, before planted drift and missingness.",
        "",
        "| feature | g | center | scale | β |",
        "|---|---|---|---|---|",
        *(
            f"| {t.feature} | {t.transform} | {t.center:g} | {t.scale:g} | {t.beta:+g} |"
            for t in RISK_TERMS
        ),
        "",
        f"Largest drivers: {', '.join(TOP_DRIVERS)}.",
        "",
        "## Planted effects",
        "",
    ]
    effects = planted_effects(config)
    lines += [_describe_effect(effect) for effect in effects] or ["None."]
    return "\n".join(lines) + "\n"


def _describe_effect(effect: dict[str, Any]) -> str:
    kind = effect["kind"]
    group = effect.get("group")
    who = f"{group['attribute']} = {group['value']}" if group else "everyone"
    if kind == "miscalibration":
        return f"- Miscalibration: true odds × {effect['odds_ratio']:g} for {who}."
    if kind == "drift":
        return (
            f"- Drift: {effect['feature']} ({effect['measurement']}) × {effect['factor']:g} in "
            f"observations from {effect['start']}; the true risk is unchanged."
        )
    if kind == "missingness":
        return (
            f"- Missingness: {effect['feature']} never recorded for {effect['rate_group']:.0%} of "
            f"patients with {who}, {effect['rate_others']:.0%} of the others."
        )
    return (
        f"- Overrides: simulated clinicians override {effect['rate_group']:.0%} of alerts for "
        f"{who}, {effect['rate_others']:.0%} for the others."
    )


# --- command line ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bedside synth``."""
    parser.add_argument("--patients", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    parser.add_argument("--start", type=date.fromisoformat, default=CohortConfig.start)
    parser.add_argument("--end", type=date.fromisoformat, default=CohortConfig.end)
    parser.add_argument("--base-missing-rate", type=float, default=CohortConfig.base_missing_rate)
    parser.add_argument(
        "--plant-miscalibration",
        type=_miscalibration,
        metavar="ATTR=VALUE[:ODDS_RATIO]",
        help="multiply the true odds of a group (e.g. 'race=Black or African American')",
    )
    parser.add_argument(
        "--plant-drift",
        type=_drift,
        metavar="FEATURE[:START[:FACTOR]]",
        help="multiply a measured feature from a date on (e.g. creatinine_last:2024-07-01)",
    )
    parser.add_argument(
        "--plant-missingness",
        type=_missingness,
        metavar="[ATTR=VALUE:]FEATURE[:RATE]",
        help="omit a measured feature for a group (e.g. sex=female:albumin_last)",
    )
    parser.add_argument(
        "--plant-overrides",
        type=_overrides,
        metavar="ATTR=VALUE[:RATE_GROUP[:RATE_OTHERS]]",
        help="override rates of simulated clinicians (manifest only)",
    )


def run(args: argparse.Namespace) -> int:
    """``bedside synth``: write the cohort and print a summary."""
    effects: dict[str, Any] = {}
    for planted in (
        args.plant_miscalibration,
        args.plant_drift,
        args.plant_missingness,
        args.plant_overrides,
    ):
        effects.update(planted or {})
    config = CohortConfig(
        patients=args.patients,
        seed=args.seed,
        start=args.start,
        end=args.end,
        base_missing_rate=args.base_missing_rate,
        effects=PlantedEffects(**effects),
    )
    manifest = generate_cohort(config, args.out)
    counts = manifest["counts"]
    print(
        f"wrote {counts['Patient']} patients, {counts['index_stays']} index stays "
        f"({manifest['readmission_rate']:.1%} readmitted) to {args.out}"
    )
    return 0


def _planted(parse: Callable[[list[str]], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
    """An argparse type: ``parse`` the ':'-separated parts, validated as PlantedEffects."""

    def convert(text: str) -> dict[str, Any]:
        try:
            fields = parse(text.split(":"))
            PlantedEffects(**fields)
        except (ValueError, TypeError, IndexError) as error:
            raise argparse.ArgumentTypeError(f"{text!r}: {error}") from error
        return fields

    return convert


def _parse_group(text: str) -> Group:
    attribute, separator, value = text.partition("=")
    if not separator:
        raise ValueError("a group is ATTRIBUTE=VALUE")
    return attribute.strip(), value.strip()


def _options(names: tuple[str, ...], parts: list[str], kinds: tuple[type, ...]) -> dict[str, Any]:
    if len(parts) > len(names):
        raise ValueError("too many ':'-separated parts")
    return {name: kind(part) for name, kind, part in zip(names, kinds, parts, strict=False)}


@_planted
def _miscalibration(parts: list[str]) -> dict[str, Any]:
    return {
        "miscalibrated_group": _parse_group(parts[0]),
        **_options(("miscalibration_odds_ratio",), parts[1:], (float,)),
    }


@_planted
def _drift(parts: list[str]) -> dict[str, Any]:
    return {
        "drift_feature": parts[0],
        **_options(("drift_start", "drift_shift"), parts[1:], (date.fromisoformat, float)),
    }


@_planted
def _missingness(parts: list[str]) -> dict[str, Any]:
    group = _parse_group(parts.pop(0)) if "=" in parts[0] else None
    return {
        "missing_group": group,
        "missing_feature": parts[0],
        **_options(("missing_rate",), parts[1:], (float,)),
    }


@_planted
def _overrides(parts: list[str]) -> dict[str, Any]:
    return {
        "override_group": _parse_group(parts[0]),
        **_options(("override_rate_group", "override_rate_base"), parts[1:], (float, float)),
    }
