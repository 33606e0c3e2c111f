"""One patient's FHIR resources, gathered from any input form, with references resolved.

Inputs: transaction, searchset and collection Bundles, a hook's resolved prefetch, and FHIR Bulk
Data NDJSON folders. References may be ``urn:uuid:``, relative (``Patient/123``), absolute URLs
or contained (``#id``); they are all reduced to a ``Type/id`` key.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from fhir_mappers.gcpause import gc_paused
from fhir_mappers.validation import ValidationCache

Resource = dict[str, Any]

_TYPED_REFERENCE = re.compile(
    r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$"
)
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
PATIENT_LINKS = ("subject", "patient")
IGNORED_STATUSES = frozenset({"entered-in-error", "cancelled", "canceled"})


def typed_key(resource: Resource) -> str | None:
    """``Type/id`` of a resource, or None without an id."""
    resource_id = resource.get("id")
    if not isinstance(resource_id, str) or not resource_id:
        return None
    return f"{resource.get('resourceType')}/{resource_id}"


def reference_key(reference: str, aliases: Mapping[str, str]) -> str | None:
    """Reduce any reference form to ``Type/id`` (``urn:uuid`` via the bundle's fullUrls)."""
    if reference in aliases:
        return aliases[reference]
    match = _TYPED_REFERENCE.search(reference)
    return f"{match.group(1)}/{match.group(2)}" if match else None


@dataclass
class PatientRecord:
    """The resources of one patient, by type, with a reference index."""

    patient: Resource | None
    # Shared indexes can hold a whole cohort: never part of the repr.
    resources: dict[str, list[Resource]] = field(default_factory=dict, repr=False)
    aliases: dict[str, str] = field(default_factory=dict, repr=False)
    by_key: dict[str, Resource] = field(default_factory=dict, repr=False)
    _code_index: dict[str, dict[tuple[str, str], list[int]]] = field(
        default_factory=dict, repr=False
    )
    validation: ValidationCache = field(default_factory=ValidationCache, repr=False)

    def of_type(self, resource_type: str) -> list[Resource]:
        return self.resources.get(resource_type, [])

    def with_codes(self, resource_type: str, codes: Iterable[tuple[str, str]]) -> list[Resource]:
        """Resources of a type whose own code is one of ``codes``, in record order.

        The index from code to resources is built once per type and record, so each feature
        looks up only what it reads instead of scanning every resource.
        """
        resources = self.of_type(resource_type)
        index = self._code_index.get(resource_type)
        if index is None:
            index = self._code_index[resource_type] = _index_by_code(resources)
        found = {position for pair in codes for position in index.get(pair, ())}
        return [resources[position] for position in sorted(found)]

    def resolve(self, reference: Any, container: Resource | None = None) -> Resource | None:
        """The resource a Reference (dict or string) points to, contained ones included."""
        if isinstance(reference, dict):
            reference = reference.get("reference")
        if not isinstance(reference, str) or not reference:
            return None
        if reference.startswith("#") and container is not None:
            for contained in as_list(container.get("contained")):
                if isinstance(contained, dict) and contained.get("id") == reference[1:]:
                    return contained
            return None
        key = reference_key(reference, self.aliases)
        return self.by_key.get(key) if key else None

    @property
    def patient_key(self) -> str | None:
        return typed_key(self.patient) if self.patient else None


def as_list(value: Any) -> list[Any]:
    """A repeating element's items; anything but a list (malformed data) has none."""
    return value if isinstance(value, list) else []


def codings_of(concept: Any) -> Iterator[tuple[str, str]]:
    if isinstance(concept, dict):
        for coding in as_list(concept.get("coding")):
            if isinstance(coding, dict):
                system, code = coding.get("system"), coding.get("code")
                if isinstance(system, str) and isinstance(code, str):
                    yield system, code


def _index_by_code(resources: list[Resource]) -> dict[tuple[str, str], list[int]]:
    """Positions in ``resources`` of the resources with each (system, code) as their code."""
    index: dict[tuple[str, str], list[int]] = defaultdict(list)
    for position, resource in enumerate(resources):
        for pair in set(codings_of(resource.get("code"))):
            index[pair].append(position)
    return index


def entries_of(bundle: Resource) -> Iterator[tuple[str | None, Resource]]:
    """(fullUrl, resource) of every entry of a Bundle, nested Bundles flattened."""
    for entry in as_list(bundle.get("entry")):
        if not isinstance(entry, dict):
            continue
        resource = entry.get("resource")
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            continue
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        if resource["resourceType"] == "Bundle":
            yield from entries_of(resource)
        else:
            yield full_url, resource


def records_from_resources(
    items: Iterable[tuple[str | None, Resource]],
) -> list[PatientRecord]:
    """Group resources by the patient they belong to; one record per Patient resource.

    Resources that name no known patient are dropped (they are not about anyone we score);
    shared resources without a patient link (Medication, Practitioner, …) go to every record's
    reference index so that references to them resolve.

    A resource without an id (a transaction entry to be POSTed, named only by its ``urn:uuid``
    fullUrl) gets the id its fullUrl implies, on a copy. A ``Type/id`` seen more than once (the
    same resource in two searchsets, or a file and a Bundle) is held once: the last copy wins,
    as it does for reference resolution. A patient's resource that cannot be keyed at all is
    still kept in its record.
    """
    aliases: dict[str, str] = {}
    by_key: dict[str, Resource] = {}
    linked: dict[str, tuple[Resource, str]] = {}
    unkeyed: list[tuple[Resource, str]] = []
    patients: dict[str, Resource] = {}
    for full_url, item in items:
        if not isinstance(item.get("resourceType"), str):
            continue
        resource = _with_id_from_full_url(item, full_url)
        key = typed_key(resource)
        if key is not None:
            by_key[key] = resource
            if full_url:
                aliases[full_url] = key
        if resource["resourceType"] == "Patient":
            if key is not None:
                patients[key] = resource
            continue
        link = _patient_link(resource)
        if link is None:
            continue
        if key is None:
            unkeyed.append((resource, link))
        else:
            linked.pop(key, None)  # re-insert, so the kept copy sits where it was seen last
            linked[key] = (resource, link)

    records = {
        key: PatientRecord(patient, aliases=aliases, by_key=by_key)
        for key, patient in patients.items()
    }
    grouped: dict[str, dict[str, list[Resource]]] = {key: defaultdict(list) for key in records}
    for resource, link in [*linked.values(), *unkeyed]:
        owner = reference_key(link, aliases)
        if owner in grouped:
            grouped[owner][resource["resourceType"]].append(resource)
    for key, record in records.items():
        record.resources = dict(grouped[key])
    return list(records.values())


def _with_id_from_full_url(resource: Resource, full_url: str | None) -> Resource:
    """``resource``, or a copy with the id its fullUrl implies when it has none."""
    if resource.get("id") not in (None, "") or not full_url:
        return resource
    for prefix in ("urn:uuid:", "urn:oid:"):
        if full_url.startswith(prefix):
            candidate: str | None = full_url[len(prefix) :]
            break
    else:
        match = _TYPED_REFERENCE.search(full_url)
        candidate = match.group(2) if match else None
    if candidate is None or not _FHIR_ID.fullmatch(candidate):
        return resource
    return {**resource, "id": candidate}


def _patient_link(resource: Resource) -> str | None:
    for name in PATIENT_LINKS:
        value = resource.get(name)
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            return value["reference"]
    return None


def records_from_bundle(bundle: Resource) -> list[PatientRecord]:
    """Patients in a transaction, searchset or collection Bundle."""
    return records_from_resources(entries_of(bundle))


def record_from_prefetch(prefetch: Mapping[str, Resource | None]) -> PatientRecord | None:
    """The patient of a hook call, from its resolved prefetch (resources or searchset Bundles)."""
    items: list[tuple[str | None, Resource]] = []
    for value in prefetch.values():
        if not isinstance(value, dict):
            continue
        if value.get("resourceType") == "Bundle":
            items.extend(entries_of(value))
        else:
            items.append((None, value))
    records = records_from_resources(items)
    return records[0] if len(records) == 1 else None


def read_ndjson_folder(
    folder: Path,
    resource_types: Collection[str] | None = None,
    code_filters: Mapping[str, Collection[str]] | None = None,
) -> Iterator[tuple[str | None, Resource]]:
    """Resources of a FHIR Bulk Data export folder (``Type.ndjson`` or ``Type.N.ndjson``).

    With ``resource_types`` only those files are read (what Bulk Data's ``_type`` would ask for).
    ``code_filters`` maps a type to the codes worth parsing: a line that does not contain any of
    them as a JSON string cannot match and is skipped unparsed (a cheap bytes search).
    """
    for path in sorted(folder.glob("*.ndjson")):
        resource_type = path.name.split(".")[0]
        if resource_types is not None and resource_type not in resource_types:
            continue
        wanted = _code_pattern((code_filters or {}).get(resource_type))
        with path.open("rb") as lines:
            for line in lines:
                if not line.strip() or (wanted is not None and wanted.search(line) is None):
                    continue
                resource = orjson.loads(line)
                if isinstance(resource, dict) and "resourceType" in resource:
                    yield None, resource


def _code_pattern(codes: Collection[str] | None) -> re.Pattern[bytes] | None:
    """Finds lines holding one of the codes as a ``"code": "…"`` value (a superset of matches)."""
    if not codes:
        return None
    alternatives = b"|".join(re.escape(code.encode()) for code in sorted(codes))
    return re.compile(rb'"code"\s*:\s*"(?:' + alternatives + rb')"')


def records_from_ndjson(
    folder: Path,
    resource_types: Collection[str] | None = None,
    code_filters: Mapping[str, Collection[str]] | None = None,
) -> list[PatientRecord]:
    """Patients of a Bulk Data export folder (see :func:`read_ndjson_folder`)."""
    with gc_paused():
        return records_from_resources(read_ndjson_folder(folder, resource_types, code_filters))
