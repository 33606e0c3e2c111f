"""Prefetch templates derived from a feature spec: few queries, filtered to what is read."""

from __future__ import annotations

from pathlib import Path

from fhir_mappers.prefetch import render_template
from fhir_mappers.spec import load_spec
from fhir_mappers.templates import prefetch_templates, required_keys

SPEC = load_spec(Path(__file__).resolve().parents[2] / "fhir_mappers/specs/readmission_30d.yaml")


def test_discharge_templates_read_patient_stay_and_one_search_per_resource_type() -> None:
    templates = prefetch_templates(SPEC, "encounter-discharge")
    assert templates["patient"] == "Patient/{{context.patientId}}"
    assert templates["encounter"] == "Encounter/{{context.encounterId}}"
    assert templates["conditions"] == "Condition?patient={{context.patientId}}"
    assert templates["encounters"] == "Encounter?patient={{context.patientId}}"
    assert templates["medications"] == "MedicationRequest?patient={{context.patientId}}"
    assert set(templates) == {
        "patient",
        "encounter",
        "observations",
        "conditions",
        "encounters",
        "medications",
    }


def test_observation_search_is_filtered_to_every_code_the_spec_reads() -> None:
    query = prefetch_templates(SPEC, "encounter-discharge")["observations"]
    codes = set(query.split("&code=")[1].split(","))
    assert "http://loinc.org|38483-4" in codes  # the "blood" creatinine synonym
    assert "http://loinc.org|8480-6" in codes  # systolic, standalone
    assert "http://loinc.org|55284-4" in codes  # the blood pressure panel holding it
    assert len(codes) == len({c for f in SPEC.code_filters.values() for c in f})


def test_only_the_patient_is_required_at_patient_view() -> None:
    assert required_keys("patient-view") == frozenset({"patient"})
    assert required_keys("encounter-discharge") == frozenset({"patient", "encounter"})
    rendered = render_template(
        prefetch_templates(SPEC, "patient-view")["encounter"], {"patientId": "p1"}
    )
    assert rendered is None  # no encounter in context: "no such data", not a fetch
