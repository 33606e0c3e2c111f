"""Hook contexts: the shape each CDS Hooks 2.0 hook definition requires."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cds_hooks.contexts import (
    AppointmentBookContext,
    EncounterContext,
    HookContext,
    OrderSelectContext,
    OrderSignContext,
    PatientViewContext,
    validate_context,
)
from cds_hooks.errors import validation_issues

USER = "Practitioner/example"
DRAFT_ORDERS = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [{"resource": {"resourceType": "MedicationRequest", "id": "103"}}],
}
APPOINTMENTS = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [{"resource": {"resourceType": "Appointment", "id": "apt1", "status": "proposed"}}],
}


def error_fields(hook: str, context: dict[str, Any]) -> set[str]:
    """The context fields named by the validation errors of ``context`` for ``hook``."""
    with pytest.raises(ValidationError) as caught:
        validate_context(hook, context)
    return {str(error["loc"][0]) for error in caught.value.errors()}


# --- patient-view --------------------------------------------------------------------------


def test_patient_view_with_optional_encounter() -> None:
    context = validate_context("patient-view", {"userId": USER, "patientId": "1288992"})
    assert isinstance(context, PatientViewContext)
    assert (context.user_id, context.patient_id, context.encounter_id) == (USER, "1288992", None)
    with_encounter = validate_context(
        "patient-view", {"userId": USER, "patientId": "1288992", "encounterId": "89284"}
    )
    assert isinstance(with_encounter, PatientViewContext)
    assert with_encounter.encounter_id == "89284"


@pytest.mark.parametrize(
    "user_id",
    ["Practitioner/1", "PractitionerRole/a-b.c", "Patient/p1", "RelatedPerson/r1"],
)
def test_patient_view_user_id_is_a_typed_reference(user_id: str) -> None:
    context = validate_context("patient-view", {"userId": user_id, "patientId": "p1"})
    assert isinstance(context, PatientViewContext)
    assert context.user_id == user_id


@pytest.mark.parametrize(
    "user_id",
    ["example", "Organization/1", "Practitioner/", "Practitioner/a/b", "http://x/Practitioner/1"],
)
def test_patient_view_user_id_that_is_not_a_user_reference_is_refused(user_id: str) -> None:
    assert error_fields("patient-view", {"userId": user_id, "patientId": "p1"}) == {"userId"}


@pytest.mark.parametrize(
    "patient_id", ["Patient/123", "", "a b", "x" * 65, "123\n", "p1/_history/2"]
)
def test_patient_id_must_be_a_bare_fhir_id(patient_id: str) -> None:
    assert error_fields("patient-view", {"userId": USER, "patientId": patient_id}) == {"patientId"}


def test_patient_view_without_patient_or_user_is_refused() -> None:
    assert error_fields("patient-view", {}) == {"userId", "patientId"}


def test_bare_ids_of_64_characters_are_accepted() -> None:
    long_id = "A-z.0" * 12 + "abcd"
    context = validate_context("patient-view", {"userId": USER, "patientId": long_id})
    assert isinstance(context, PatientViewContext)
    assert context.patient_id == long_id


# --- encounter-start / encounter-discharge -------------------------------------------------


@pytest.mark.parametrize("hook", ["encounter-start", "encounter-discharge"])
def test_encounter_hooks_carry_user_patient_and_encounter(hook: str) -> None:
    context = validate_context(hook, {"userId": USER, "patientId": "p1", "encounterId": "e1"})
    assert isinstance(context, EncounterContext)
    assert (context.user_id, context.patient_id, context.encounter_id) == (USER, "p1", "e1")


@pytest.mark.parametrize("hook", ["encounter-start", "encounter-discharge"])
@pytest.mark.parametrize("missing", ["userId", "patientId", "encounterId"])
def test_encounter_hooks_require_all_three_fields(hook: str, missing: str) -> None:
    context = {"userId": USER, "patientId": "p1", "encounterId": "e1"}
    del context[missing]
    assert error_fields(hook, context) == {missing}


def test_encounter_id_must_be_a_bare_id() -> None:
    context = {"userId": USER, "patientId": "p1", "encounterId": "Encounter/e1"}
    assert error_fields("encounter-discharge", context) == {"encounterId"}


# --- order-sign / order-select / appointment-book ------------------------------------------


def test_order_sign_carries_draft_orders() -> None:
    context = validate_context(
        "order-sign",
        {"userId": "PractitionerRole/123", "patientId": "p1", "draftOrders": DRAFT_ORDERS},
    )
    assert isinstance(context, OrderSignContext)
    assert context.draft_orders == DRAFT_ORDERS
    assert context.encounter_id is None


@pytest.mark.parametrize(
    "draft_orders", [None, [], {"resourceType": "MedicationRequest", "id": "1"}, "Bundle/1"]
)
def test_order_sign_draft_orders_must_be_a_bundle(draft_orders: Any) -> None:
    context = {"userId": USER, "patientId": "p1", "draftOrders": draft_orders}
    assert error_fields("order-sign", context) == {"draftOrders"}


def test_order_sign_without_draft_orders_is_refused() -> None:
    assert error_fields("order-sign", {"userId": USER, "patientId": "p1"}) == {"draftOrders"}


def test_order_select_carries_selections_and_draft_orders() -> None:
    context = validate_context(
        "order-select",
        {
            "userId": USER,
            "patientId": "p1",
            "encounterId": "e1",
            "selections": ["MedicationRequest/103"],
            "draftOrders": DRAFT_ORDERS,
        },
    )
    assert isinstance(context, OrderSelectContext)
    assert context.selections == ["MedicationRequest/103"]
    assert context.encounter_id == "e1"


@pytest.mark.parametrize("selections", [[], None, ["103"], ["MedicationRequest/"]])
def test_order_select_selections_must_be_order_references(selections: Any) -> None:
    context = {"userId": USER, "patientId": "p1", "selections": selections}
    assert error_fields("order-select", {**context, "draftOrders": DRAFT_ORDERS}) == {"selections"}


def test_appointment_book_carries_appointments() -> None:
    context = validate_context(
        "appointment-book",
        {"userId": "Patient/p1", "patientId": "p1", "appointments": APPOINTMENTS},
    )
    assert isinstance(context, AppointmentBookContext)
    assert context.appointments == APPOINTMENTS


def test_appointment_book_without_appointments_is_refused() -> None:
    assert error_fields("appointment-book", {"userId": USER, "patientId": "p1"}) == {"appointments"}


# --- leniency ------------------------------------------------------------------------------


def test_extra_context_fields_are_kept() -> None:
    context = validate_context(
        "patient-view",
        {"userId": USER, "patientId": "p1", "com.example.specialty": "cardiology", "n": 3},
    )
    assert context.model_extra == {"com.example.specialty": "cardiology", "n": 3}


def test_unknown_hook_is_accepted_leniently() -> None:
    raw = {"someField": "foo", "anotherField": 123, "moreObjects": []}
    context = validate_context("com.example.custom-hook", raw)
    assert type(context) is HookContext
    assert context.model_extra == raw


# --- real examples -------------------------------------------------------------------------


def example_contexts(pattern: str) -> list[dict[str, Any]]:
    """``context`` objects of the shared CDS Hooks examples (skips without BEDSIDE_FHIR_SAMPLES)."""
    root = os.environ.get("BEDSIDE_FHIR_SAMPLES")
    if not root:
        pytest.skip("BEDSIDE_FHIR_SAMPLES is not set")
    paths = sorted((Path(root) / "cds-hooks-examples").glob(pattern))
    if not paths:
        pytest.skip(f"no {pattern} under {root}")
    bodies = [json.loads(path.read_text(encoding="utf-8")) for path in paths]
    return [body["context"] for body in bodies if isinstance(body, dict) and "context" in body]


def test_patient_view_contexts_of_the_specification_are_accepted() -> None:
    for raw in example_contexts("cdshooks-docs-patient-view-*-context.json"):
        context = validate_context("patient-view", raw)
        assert isinstance(context, PatientViewContext)
        assert context.patient_id == raw["patientId"]
        assert context.encounter_id == raw.get("encounterId")


def test_order_sign_contexts_of_the_specification_are_accepted() -> None:
    contexts = [
        raw for raw in example_contexts("hl7-cdshooks2-spec-*.json") if "draftOrders" in raw
    ]
    assert contexts
    for raw in contexts:
        context = validate_context("order-sign", raw)
        assert isinstance(context, OrderSignContext)
        assert context.draft_orders["entry"]


def test_custom_contexts_of_the_specification_are_kept_whole() -> None:
    for raw in example_contexts("*-spec-*-context.json"):
        if "someField" in raw:
            assert validate_context("example-hook", raw).model_extra == raw


# --- error locations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "expressions"),
    [
        ({"userId": USER}, ["context.patientId"]),
        (
            {"userId": USER, "patientId": "p1", "selections": ["x"], "draftOrders": DRAFT_ORDERS},
            ["context.selections[0]"],
        ),
    ],
)
def test_invalid_context_is_reported_at_its_field_path(
    context: dict[str, Any], expressions: list[str]
) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_context("order-select" if "selections" in context else "patient-view", context)
    issues = validation_issues(caught.value, prefix="context.")
    assert [entry["expression"] for entry in issues] == [[path] for path in expressions]
    assert all(entry["severity"] == "error" and entry["code"] == "invalid" for entry in issues)


def test_invalid_values_are_not_echoed_in_issues() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_context("patient-view", {"userId": USER, "patientId": "Patient/pat-SECRET-123"})
    assert "pat-SECRET-123" not in str(validation_issues(caught.value, prefix="context."))
