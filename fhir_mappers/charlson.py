"""Charlson comorbidity index (Charlson 1987 weights, no age points) from coded Conditions.

Where the code lists come from:

- ICD-10 and ICD-10-CM: the Charlson ICD-10 coding algorithm of Quan et al., "Coding algorithms
  for defining comorbidities in ICD-9-CM and ICD-10 administrative data", Med Care
  2005;43(11):1130-9, table 1. The table is written below in the paper's notation ("I42.5-I42.9",
  "C00-C26") and expanded into dot-less prefixes; a code falls in a category when it starts with
  one of them ("I50.810" and "I50810" are heart failure). It is applied to ICD-10-CM as
  published, so N18 counts every CKD stage (WHO ICD-10 of 2005 had N18 as chronic renal failure
  only) and CM-only codes outside Quan's ranges (C86 lymphomas, C7A neuroendocrine tumours) are
  not counted.
- SNOMED CT: a curated list of concept ids, not a walk of the hierarchy. It holds the general
  concept of most categories, common specific ones, every Charlson-relevant concept in the
  project's Synthea samples and the other concepts Synthea uses for diabetic complications and
  lung, colon and prostate cancer. Each concept sits where its ICD-10 equivalent falls in Quan's
  table, so both code systems score a patient alike: carcinoma in situ and "neoplasm of
  prostate" (D codes, not C codes) are no malignancy, cardiac arrest is no infarction, every CKD
  stage is renal disease. A descendant concept that is not listed is missed; a terminology
  server answering subsumption (ECL ``<<``) or SNOMED's ICD-10 map would be complete and should
  replace this list when the deployment has one.

Which Conditions to pass is the caller's choice; Charlson counts history, so resolved
conditions count too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10"})
SNOMED_SYSTEM = "http://snomed.info/sct"


@dataclass(frozen=True)
class CharlsonCategory:
    """One Charlson condition: its weight, ICD-10 prefixes (no dots) and SNOMED CT concepts."""

    name: str
    weight: int
    icd10_prefixes: tuple[str, ...]
    snomed_codes: frozenset[str]


@dataclass(frozen=True)
class CharlsonResult:
    """The index and the sorted names of the categories that counted towards it."""

    score: int
    categories: tuple[str, ...]


def _quan(table: str) -> tuple[str, ...]:
    """Dot-less prefixes for a row of Quan's table: "I21 I25.2 I42.5-I42.9 C00-C26"."""
    prefixes: list[str] = []
    for span in table.split():
        first, _, last = span.replace(".", "").partition("-")
        last = last or first
        if last[0] != first[0] or len(last) != len(first):
            raise ValueError(f"not a range of one chapter and length: {span}")
        width = len(first) - 1
        numbers = range(int(first[1:]), int(last[1:]) + 1)
        prefixes.extend(f"{first[0]}{number:0{width}d}" for number in numbers)
    return tuple(prefixes)


def _diabetes(fourth_characters: str) -> tuple[str, ...]:
    """Quan's diabetes subcodes, alike for E10-E14: "01689" gives E10.0, E10.1, ... E14.9."""
    return tuple(f"E1{kind}{digit}" for kind in "01234" for digit in fourth_characters)


CATEGORIES: tuple[CharlsonCategory, ...] = (
    CharlsonCategory(
        "myocardial_infarction",
        1,
        _quan("I21 I22 I25.2"),
        frozenset(
            {
                "22298006",  # Myocardial infarction
                "57054005",  # Acute myocardial infarction
                "401303003",  # Acute ST segment elevation myocardial infarction
                "401314000",  # Acute non-ST segment elevation myocardial infarction
                "1755008",  # Old myocardial infarction
                "399211009",  # History of myocardial infarction
            }
        ),
    ),
    CharlsonCategory(
        "congestive_heart_failure",
        1,
        _quan("I09.9 I11.0 I13.0 I13.2 I25.5 I42.0 I42.5-I42.9 I43 I50 P29.0"),
        frozenset(
            {
                "84114007",  # Heart failure
                "42343007",  # Congestive heart failure
                "88805009",  # Chronic congestive heart failure
            }
        ),
    ),
    CharlsonCategory(
        "peripheral_vascular_disease",
        1,
        _quan("I70 I71 I73.1 I73.8 I73.9 I77.1 I79.0 I79.2 K55.1 K55.8 K55.9 Z95.8 Z95.9"),
        frozenset(
            {
                "400047006",  # Peripheral vascular disease
                "399957001",  # Peripheral arterial occlusive disease
                "840580004",  # Peripheral arterial disease
                "233985008",  # Abdominal aortic aneurysm
            }
        ),
    ),
    CharlsonCategory(
        "cerebrovascular_disease",
        1,
        _quan("G45 G46 H34.0 I60-I69"),
        frozenset(
            {
                "62914000",  # Cerebrovascular disease
                "230690007",  # Cerebrovascular accident (stroke)
                "422504002",  # Ischemic stroke
                "432504007",  # Cerebral infarction
                "266257000",  # Transient ischemic attack
            }
        ),
    ),
    CharlsonCategory(
        "dementia",
        1,
        _quan("F00-F03 F05.1 G30 G31.1"),
        frozenset(
            {
                "52448006",  # Dementia
                "26929004",  # Alzheimer's disease
                "230265002",  # Familial Alzheimer's disease of early onset
                "429998004",  # Vascular dementia
            }
        ),
    ),
    CharlsonCategory(
        "chronic_pulmonary_disease",
        1,
        _quan("I27.8 I27.9 J40-J47 J60-J67 J68.4 J70.1 J70.3"),
        frozenset(
            {
                "13645005",  # Chronic obstructive lung disease
                "185086009",  # Chronic obstructive bronchitis
                "87433001",  # Pulmonary emphysema
                "63480004",  # Chronic bronchitis
                "12295008",  # Bronchiectasis
                "195967001",  # Asthma
                "233678006",  # Childhood asthma
            }
        ),
    ),
    CharlsonCategory(
        "rheumatic_disease",
        1,
        _quan("M05 M06 M31.5 M32-M34 M35.1 M35.3 M36.0"),
        frozenset(
            {
                "69896004",  # Rheumatoid arthritis
                "55464009",  # Systemic lupus erythematosus
                "89155008",  # Systemic sclerosis
                "65323003",  # Polymyalgia rheumatica
            }
        ),
    ),
    CharlsonCategory(
        "peptic_ulcer_disease",
        1,
        _quan("K25-K28"),
        frozenset(
            {
                "13200003",  # Peptic ulcer
                "397825006",  # Gastric ulcer
                "51868009",  # Duodenal ulcer
            }
        ),
    ),
    CharlsonCategory(
        "mild_liver_disease",
        1,
        _quan(
            "B18 K70.0-K70.3 K70.9 K71.3-K71.5 K71.7 K73 K74 K76.0 K76.2-K76.4 K76.8 K76.9 Z94.4"
        ),
        frozenset(
            {
                "19943007",  # Cirrhosis of liver
                "420054005",  # Alcoholic cirrhosis
                "61977001",  # Chronic type B viral hepatitis
                "128302006",  # Chronic hepatitis C
                "197315008",  # Non-alcoholic fatty liver disease
            }
        ),
    ),
    CharlsonCategory(
        "diabetes_without_complications",
        1,
        _diabetes("01689"),
        frozenset(
            {
                "73211009",  # Diabetes mellitus
                "46635009",  # Type 1 diabetes mellitus
                "44054006",  # Type 2 diabetes mellitus
                "427089005",  # Diabetes mellitus due to cystic fibrosis
            }
        ),
    ),
    CharlsonCategory(
        "diabetes_with_complications",
        2,
        _diabetes("23457"),
        frozenset(
            {
                "127013003",  # Disorder of kidney due to diabetes mellitus
                "90781000119102",  # Microalbuminuria due to type 2 diabetes mellitus
                "157141000119108",  # Proteinuria due to type 2 diabetes mellitus
                "230572002",  # Neuropathy due to diabetes mellitus
                "368581000119106",  # Neuropathy due to type 2 diabetes mellitus
                "4855003",  # Retinopathy due to diabetes mellitus
                "422034002",  # Retinopathy due to type 2 diabetes mellitus
                "1551000119108",  # Nonproliferative retinopathy due to type 2 diabetes
                "1501000119109",  # Proliferative retinopathy due to type 2 diabetes
                "97331000119101",  # Macular edema and retinopathy due to type 2 diabetes
                "60951000119105",  # Blindness due to type 2 diabetes mellitus
            }
        ),
    ),
    CharlsonCategory(
        "hemiplegia_paraplegia",
        2,
        _quan("G04.1 G11.4 G80.1 G80.2 G81 G82 G83.0-G83.4 G83.9"),
        frozenset(
            {
                "50582007",  # Hemiplegia
                "60389000",  # Paraplegia
            }
        ),
    ),
    CharlsonCategory(
        "renal_disease",
        2,
        _quan("I12.0 I13.1 N03.2-N03.7 N05.2-N05.7 N18 N19 N25.0 Z49.0-Z49.2 Z94.0 Z99.2"),
        frozenset(
            {
                "709044004",  # Chronic kidney disease
                "431855005",  # Chronic kidney disease stage 1
                "431856006",  # Chronic kidney disease stage 2
                "433144002",  # Chronic kidney disease stage 3
                "700378005",  # Chronic kidney disease stage 3a
                "700379002",  # Chronic kidney disease stage 3b
                "431857002",  # Chronic kidney disease stage 4
                "433146000",  # Chronic kidney disease stage 5
                "46177005",  # End-stage renal disease
            }
        ),
    ),
    CharlsonCategory(
        "malignancy",
        2,
        _quan("C00-C26 C30-C34 C37-C41 C43 C45-C58 C60-C76 C81-C85 C88 C90-C97"),
        frozenset(
            {
                "363346000",  # Malignant neoplastic disease
                "363406005",  # Malignant neoplasm of colon
                "93761005",  # Primary malignant neoplasm of colon
                "109838007",  # Overlapping malignant neoplasm of colon
                "363358000",  # Malignant neoplasm of lung
                "254637007",  # Non-small cell lung cancer
                "424132000",  # Non-small cell carcinoma of lung, TNM stage 1
                "425048006",  # Non-small cell carcinoma of lung, TNM stage 2
                "422968005",  # Non-small cell carcinoma of lung, TNM stage 3
                "423121009",  # Non-small cell carcinoma of lung, TNM stage 4
                "254632001",  # Small cell carcinoma of lung
                "67811000119102",  # Primary small cell malignant neoplasm of lung, stage 1
                "67821000119109",  # Primary small cell malignant neoplasm of lung, stage 2
                "67831000119107",  # Primary small cell malignant neoplasm of lung, stage 3
                "67841000119103",  # Primary small cell malignant neoplasm of lung, stage 4
                "254837009",  # Malignant neoplasm of breast
                "399068003",  # Malignant neoplasm of prostate
                "372244006",  # Malignant melanoma
                "93143009",  # Leukemia
                "91861009",  # Acute myeloid leukemia
                "118600007",  # Malignant lymphoma
                "109989006",  # Multiple myeloma
            }
        ),
    ),
    CharlsonCategory(
        "moderate_severe_liver_disease",
        3,
        _quan("I85.0 I85.9 I86.4 I98.2 K70.4 K71.1 K72.1 K72.9 K76.5 K76.6 K76.7"),
        frozenset(
            {
                "28670008",  # Esophageal varices
                "34742003",  # Portal hypertension
                "59927004",  # Hepatic failure
            }
        ),
    ),
    CharlsonCategory(
        "metastatic_solid_tumour",
        6,
        _quan("C77-C80"),
        frozenset(
            {
                "128462008",  # Metastatic malignant neoplasm
                "94260004",  # Metastatic malignant neoplasm to colon
                "94503003",  # Metastatic malignant neoplasm to prostate
                "94222008",  # Metastatic malignant neoplasm to bone
                "94225005",  # Metastatic malignant neoplasm to brain
            }
        ),
    ),
    CharlsonCategory(
        "aids_hiv",
        6,
        _quan("B20-B22 B24"),
        frozenset(
            {
                "86406008",  # Human immunodeficiency virus infection
                "62479008",  # Acquired immune deficiency syndrome
            }
        ),
    ),
)

# (present category, category it replaces): the milder form does not count beside the graver.
_HIERARCHY = (
    ("moderate_severe_liver_disease", "mild_liver_disease"),
    ("diabetes_with_complications", "diabetes_without_complications"),
    ("metastatic_solid_tumour", "malignancy"),
)
_WEIGHTS = {category.name: category.weight for category in CATEGORIES}


def categories_for(system: str | None, code: str | None) -> frozenset[str]:
    """Charlson category names a single coding falls in (ICD-10 codes with or without the dot)."""
    if not code:
        return frozenset()
    if system in ICD10_SYSTEMS:
        normalised = code.strip().upper().replace(".", "")
        return frozenset(
            category.name
            for category in CATEGORIES
            if normalised.startswith(category.icd10_prefixes)
        )
    if system == SNOMED_SYSTEM:
        concept = code.strip()
        return frozenset(
            category.name for category in CATEGORIES if concept in category.snomed_codes
        )
    return frozenset()


def charlson_index(codings: Iterable[tuple[str | None, str | None]]) -> CharlsonResult:
    """Score over (system, code) pairs of a patient's conditions, with the hierarchy rules:
    mild liver disease not counted when moderate/severe liver disease is present; diabetes
    without complications not counted when diabetes with end-organ damage is present; any
    malignancy not counted when metastatic solid tumour is present. No age points."""
    present: set[str] = set()
    for system, code in codings:
        present |= categories_for(system, code)
    for graver, milder in _HIERARCHY:
        if graver in present:
            present.discard(milder)
    names = tuple(sorted(present))
    return CharlsonResult(score=sum(_WEIGHTS[name] for name in names), categories=names)
