"""FHIR → features: one patient, one index time, one spec → a :class:`FeatureRow`.

The same code serves hook calls and builds training sets, so there is no training/serving skew.
Nothing dated after the index time reaches a feature. A unit that cannot be converted or a value
outside the plausible range makes the value unusable and leaves a data-quality note — never a
wrong number. Resources that determine a value are validated with the FHIR R4B models; an invalid
one is skipped and reported, an invalid Patient raises :class:`InvalidPatient`.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from fhir_mappers.aggregate import Point, aggregate
from fhir_mappers.attributes import subgroup_attributes
from fhir_mappers.derived import DERIVED_FEATURES, DerivedContext
from fhir_mappers.fhirtime import lookback_start
from fhir_mappers.record import PatientRecord, Resource, typed_key
from fhir_mappers.row import FeatureRow, Provenance, QualityNote
from fhir_mappers.selection import (
    Codes,
    available_at,
    codings,
    component_quantity,
    is_ignored,
    is_preliminary,
    quantity,
    resource_time,
)
from fhir_mappers.spec import FeatureDefinition, FeatureSpec
from fhir_mappers.units import convert, normalise_unit


class InvalidPatient(ValueError):
    """The Patient resource is missing or not valid FHIR R4 (answered with 400)."""


class _Run:
    """State of one mapping run: the notes it collects and the validations it has done."""

    def __init__(self, spec: FeatureSpec, record: PatientRecord, index_time: datetime) -> None:
        self.spec = spec
        self.record = record
        self.index_time = index_time
        self.notes: list[QualityNote] = []
        self.validation = record.validation
        self.validated_before = record.validation.validated
        self._reported_invalid: set[int] = set()

    def note(
        self, code: str, detail: str, feature: str | None = None, resource: Resource | None = None
    ) -> None:
        self.notes.append(
            QualityNote(
                code=code,
                detail=detail,
                feature=feature,
                resource=typed_key(resource) if resource else None,
            )
        )

    def valid(self, resource: Resource, feature: str | None = None) -> bool:
        """Validate once; report each invalid resource once."""
        error = self.validation.error(resource)
        if error is not None and id(resource) not in self._reported_invalid:
            self._reported_invalid.add(id(resource))
            self.note("invalid_resource", error, feature, resource)
        return error is None


def map_patient(
    record: PatientRecord,
    spec: FeatureSpec,
    index_time: datetime,
    index_encounter: Resource | None = None,
    unavailable: frozenset[str] = frozenset(),
) -> FeatureRow:
    """Compute every feature of ``spec`` for the patient of ``record`` at ``index_time``.

    Features computed from a resource type in ``unavailable`` (its data could not be obtained)
    are missing, with a note, rather than computed from nothing.
    """
    if index_time.tzinfo is None:
        raise ValueError("index_time must be timezone-aware")
    run = _Run(spec, record, index_time)
    patient = record.patient
    if patient is None:
        raise InvalidPatient("no Patient resource")
    error = run.validation.error(patient)
    if error is not None:
        raise InvalidPatient(f"invalid Patient: {error}")

    values: dict[str, float] = {}
    provenance: dict[str, Provenance] = {}
    missing: set[str] = set()
    derived_context = DerivedContext(
        record=record, index_time=index_time, index_encounter=index_encounter, valid=run.valid
    )
    for feature in spec.features:
        if feature.source_type in unavailable:  # unknown, even under a "zero" missing policy
            run.note("source_unavailable", f"no {feature.source_type} data", feature.name)
            missing.add(feature.name)
            values[feature.name] = float("nan")
            continue
        if feature.derived is not None:
            value, sources = DERIVED_FEATURES[feature.derived](derived_context, feature)
            origin = Provenance(sources=sources) if sources else None
        else:
            value, origin = _sourced_feature(run, feature)
        if math.isnan(value):
            missing.add(feature.name)
            value = feature.missing_fill
        values[feature.name] = value
        if origin is not None:
            provenance[feature.name] = origin
    return FeatureRow(
        index_time=index_time,
        values=values,
        missing=frozenset(missing),
        provenance=provenance,
        notes=run.notes,
        attributes=subgroup_attributes(patient, index_time),
        validated_resources=run.validation.validated - run.validated_before,
    )


def _sourced_feature(run: _Run, feature: FeatureDefinition) -> tuple[float, Provenance | None]:
    assert feature.source is not None and feature.codes is not None
    points = _points(run, feature)
    if feature.read in ("presence", "count"):
        points = [point for point in points if run.valid(point.resource, feature.name)]
        value = float(len(points)) if feature.read == "count" else float(bool(points))
        sources = tuple(key for point in points if (key := typed_key(point.resource)))
        return value, Provenance(sources=sources) if sources else None

    assert feature.aggregation is not None
    while points:
        value, contributors = aggregate(feature.aggregation, points, run.index_time)
        invalid = [p for p in contributors if not run.valid(p.resource, feature.name)]
        if not invalid:
            if math.isinf(value):
                run.note("non_finite", "the aggregate is not a finite number", feature.name)
                return float("nan"), None
            return value, _provenance(feature, contributors)
        dropped = {id(point) for point in invalid}
        points = [point for point in points if id(point) not in dropped]
    return float("nan"), None


def _provenance(feature: FeatureDefinition, contributors: list[Point]) -> Provenance:
    last = contributors[-1]
    return Provenance(
        sources=tuple(key for point in contributors if (key := typed_key(point.resource))),
        raw_value=last.raw_value,
        raw_unit=last.raw_unit,
        unit=feature.unit,
        converted=any(point.converted for point in contributors),
        preliminary=any(is_preliminary(point.resource) for point in contributors),
        time=last.time,
    )


def _points(run: _Run, feature: FeatureDefinition) -> list[Point]:
    """Usable values of a sourced feature inside its window, sorted by time, duplicates dropped."""
    spec = run.spec
    codes = spec.codes_of(feature.codes)  # type: ignore[arg-type]
    component_codes = spec.codes_of(feature.component) if feature.component else frozenset()
    earliest = lookback_start(run.index_time, feature.window_days) if feature.window_days else None
    points: list[Point] = []
    seen: set[tuple[datetime, float]] = set()
    source: str = feature.source  # type: ignore[assignment]
    # Candidates carry one of the codes as their own code: a panel holding the component, or
    # the component reported on its own (``standalone``).
    standalone = {id(resource) for resource in run.record.with_codes(source, component_codes)}
    for resource in run.record.with_codes(source, codes | component_codes):
        if is_ignored(resource):
            continue
        when = resource_time(resource)
        if when is None:
            run.note("no_time", "no effective time; not used", feature.name, resource)
            continue
        if when > run.index_time or (earliest is not None and when <= earliest):
            continue
        issued = available_at(resource)
        if issued is not None and issued > run.index_time:
            continue  # drawn before, resulted after the index time: not known then
        point = _read(run, feature, resource, when, component_codes, id(resource) in standalone)
        if point is None or (point.time, point.value) in seen:
            continue
        seen.add((point.time, point.value))
        points.append(point)
    points.sort(key=lambda point: point.time)
    return points


def _read(
    run: _Run,
    feature: FeatureDefinition,
    resource: Resource,
    when: datetime,
    component_codes: Codes,
    standalone_component: bool,
) -> Point | None:
    if feature.read in ("presence", "count"):
        return Point(time=when, value=1.0, resource=resource)
    if feature.read == "concept":
        return _read_concept(run, feature, resource, when)
    if feature.read == "component" and not standalone_component:
        element: Any = component_quantity(resource, component_codes)
    else:
        element = resource.get("valueQuantity")
    read = quantity(element)
    if read is None:
        run.note("no_value", "no numeric value", feature.name, resource)
        return None
    raw_value, raw_unit, comparator = read
    if comparator:
        run.note("comparator", f"value reported as {comparator}{raw_value}", feature.name, resource)
    if not math.isfinite(raw_value):
        run.note("unreadable_value", "value is not a finite number", feature.name, resource)
        return None
    value = convert(
        raw_value,
        raw_unit,
        feature.unit,  # type: ignore[arg-type]
        molar_mass=feature.molar_mass,
        valence=feature.valence,
    )
    if value is None:
        run.note(
            "unknown_unit",
            f"cannot convert {raw_unit!r} to {feature.unit!r}",
            feature.name,
            resource,
        )
        return None
    if feature.plausible is not None and not feature.plausible[0] <= value <= feature.plausible[1]:
        run.note(
            "implausible",
            f"{value:g} {feature.unit} outside {feature.plausible}",
            feature.name,
            resource,
        )
        return None
    converted = normalise_unit(raw_unit) != normalise_unit(feature.unit)
    return Point(
        time=when,
        value=value,
        resource=resource,
        raw_value=raw_value,
        raw_unit=raw_unit,
        converted=converted,
    )


def _read_concept(
    run: _Run, feature: FeatureDefinition, resource: Resource, when: datetime
) -> Point | None:
    table = feature.concept_values or {}
    for system, code in codings(resource.get("valueCodeableConcept")):
        if f"{system}|{code}" in table:
            return Point(time=when, value=float(table[f"{system}|{code}"]), resource=resource)
    run.note("unmapped_concept", "value concept not in the feature's table", feature.name, resource)
    return None
