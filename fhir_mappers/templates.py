"""CDS Hooks prefetch templates derived from a feature spec: few, minimal queries.

CDS Hooks 2.0 templates have no date arithmetic, so lookback windows are applied by the mapper
after retrieval; code filters narrow the Observation query to what the spec reads.
"""

from __future__ import annotations

from fhir_mappers.spec import DERIVED_SOURCES, FeatureSpec

PATIENT_KEY = "patient"
ENCOUNTER_KEY = "encounter"
ENCOUNTER_HOOKS = frozenset({"encounter-start", "encounter-discharge"})
# The index encounter comes from its own key; the other derived features need searches.
SEARCHED_DERIVED_SOURCES = {
    name: source for name, source in DERIVED_SOURCES.items() if name != "length_of_stay_days"
}
SEARCH_KEYS = {
    "Observation": "observations",
    "Condition": "conditions",
    "Encounter": "encounters",
    "MedicationRequest": "medications",
    "Procedure": "procedures",
}


def prefetch_templates(spec: FeatureSpec, hook: str) -> dict[str, str]:
    """Prefetch key → query template for a service on ``hook`` that maps with ``spec``."""
    templates = {PATIENT_KEY: "Patient/{{context.patientId}}"}
    if hook in ENCOUNTER_HOOKS or hook == "patient-view":  # optional on patient-view
        templates[ENCOUNTER_KEY] = "Encounter/{{context.encounterId}}"

    observation_codes: set[str] = set()
    unfiltered: set[str] = set()
    for feature in spec.features:
        if feature.derived in SEARCHED_DERIVED_SOURCES:
            unfiltered.add(SEARCHED_DERIVED_SOURCES[feature.derived])
        if feature.source is None:
            continue
        if feature.source == "Observation":
            for group in (feature.codes, feature.component):
                if group is not None:
                    observation_codes.update(f"{s}|{c}" for s, c in spec.codes_of(group))
        else:
            unfiltered.add(feature.source)

    if observation_codes:
        code_filter = ",".join(sorted(observation_codes))
        templates[SEARCH_KEYS["Observation"]] = (
            "Observation?patient={{context.patientId}}&code=" + code_filter
        )
    for resource_type in sorted(unfiltered):
        templates[SEARCH_KEYS[resource_type]] = f"{resource_type}?patient={{{{context.patientId}}}}"
    return templates


def required_keys(hook: str) -> frozenset[str]:
    """Keys without which no prediction is made: the patient and, on encounter hooks, the stay."""
    if hook in ENCOUNTER_HOOKS:
        return frozenset({PATIENT_KEY, ENCOUNTER_KEY})
    return frozenset({PATIENT_KEY})
