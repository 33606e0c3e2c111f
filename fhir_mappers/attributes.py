"""Coded patient attributes the safety reports group by (never names or identifiers)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_mappers.fhirtime import parse_fhir_datetime

US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
AGE_BANDS = ((18, "0-17"), (45, "18-44"), (65, "45-64"), (75, "65-74"), (200, "75+"))
UNKNOWN = "unknown"


def age_band(patient: dict[str, Any], index_time: datetime) -> str:
    birth = parse_fhir_datetime(patient.get("birthDate", ""))
    if birth is None or birth > index_time:
        return UNKNOWN
    years = (
        index_time.year
        - birth.year
        - ((index_time.month, index_time.day) < (birth.month, birth.day))
    )
    return next((label for upper, label in AGE_BANDS if years < upper), AGE_BANDS[-1][1])


def _us_core_category(patient: dict[str, Any], url: str) -> str:
    """The OMB category display (or text) of a US Core race/ethnicity extension."""
    for extension in patient.get("extension") or []:
        if not isinstance(extension, dict) or extension.get("url") != url:
            continue
        text = None
        for part in extension.get("extension") or []:
            if not isinstance(part, dict):
                continue
            if part.get("url") == "ombCategory" and isinstance(part.get("valueCoding"), dict):
                coding = part["valueCoding"]
                return str(coding.get("display") or coding.get("code") or UNKNOWN)
            if part.get("url") == "text" and isinstance(part.get("valueString"), str):
                text = part["valueString"]
        if text:
            return text
    return UNKNOWN


def _language(patient: dict[str, Any]) -> str:
    for communication in patient.get("communication") or []:
        if not isinstance(communication, dict):
            continue
        for coding in (communication.get("language") or {}).get("coding") or []:
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                return coding["code"]
    return UNKNOWN


def subgroup_attributes(patient: dict[str, Any], index_time: datetime) -> dict[str, str]:
    """sex, age band, race, ethnicity and preferred language, as coded in the Patient."""
    gender = patient.get("gender")
    return {
        "sex": gender if isinstance(gender, str) else UNKNOWN,
        "age_band": age_band(patient, index_time),
        "race": _us_core_category(patient, US_CORE_RACE),
        "ethnicity": _us_core_category(patient, US_CORE_ETHNICITY),
        "language": _language(patient),
    }
