"""The CDS Hooks 2.0 wire models: what they refuse, and what they never put on the wire."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cds_hooks.models import (
    Action,
    Card,
    Coding,
    DiscoveryResponse,
    DisplayedCoding,
    FeedbackEntry,
    HookRequest,
    HookResponse,
    Link,
    ServiceDescription,
    Source,
    Suggestion,
)
from tests.support.cds_validator import assert_no_empty_values, validate_hook_response

HOOK_INSTANCE = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"
ACCESS_TOKEN = "fhir-token-SECRET-456"
CARD_UUID = "4e0a3a1e-3283-4575-ab82-028d55fe2719"
SOURCE = Source(label="Bedside")


def card(**fields: Any) -> Card:
    """A valid info card, with ``fields`` overriding the defaults."""
    return Card.model_validate({"summary": "Risk", "indicator": "info", "source": SOURCE, **fields})


def hook_request(**fields: Any) -> HookRequest:
    body = {
        "hook": "patient-view",
        "hookInstance": HOOK_INSTANCE,
        "context": {"userId": "Practitioner/1", "patientId": "p1"},
        **fields,
    }
    return HookRequest.model_validate(body)


def fhir_authorization(**fields: Any) -> dict[str, Any]:
    return {
        "access_token": ACCESS_TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "cds-service",
        **fields,
    }


def feedback(**fields: Any) -> dict[str, Any]:
    return {
        "card": CARD_UUID,
        "outcome": "overridden",
        "outcomeTimestamp": "2021-12-11T10:05:31Z",
        **fields,
    }


# --- serialisation -------------------------------------------------------------------------

JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.sampled_from(["", "x", "Patient/1"])
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)
MAYBE_TEXT = st.none() | st.text(min_size=1, max_size=20)
MAYBE_URL = st.none() | st.sampled_from(["https://example.org", "http://127.0.0.1:8080/a?b=c"])


@st.composite
def actions(draw: st.DrawFn) -> Action:
    kind = draw(st.sampled_from(["create", "update", "delete"]))
    if kind == "delete":
        return Action(type=kind, description="Remove", resourceId="MedicationRequest/1")
    extra = draw(st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3))
    resource = {**extra, "resourceType": "ServiceRequest"}
    return Action(type=kind, description="Order", resource=resource)


@st.composite
def cards(draw: st.DrawFn) -> Card:
    """Cards with every optional field present or absent, and lists empty or not."""
    suggestions = draw(
        st.lists(
            st.builds(
                Suggestion,
                label=st.just("Do it"),
                isRecommended=st.none() | st.booleans(),
                actions=st.lists(actions(), max_size=2),
            ),
            max_size=2,
        )
    )
    behaviour = draw(st.sampled_from(["at-most-one", "any"]))
    return Card(
        summary=draw(st.text(min_size=1, max_size=139)),
        detail=draw(MAYBE_TEXT),
        indicator=draw(st.sampled_from(["info", "warning", "critical"])),
        source=Source(
            label="Bedside",
            url=draw(MAYBE_URL),
            icon=draw(MAYBE_URL),
            topic=draw(st.none() | st.just(Coding(code="risk", system=None, display=None))),
        ),
        suggestions=suggestions,
        selectionBehavior=behaviour if suggestions or draw(st.booleans()) else None,
        overrideReasons=draw(
            st.lists(
                st.builds(DisplayedCoding, code=st.just("c"), display=st.just("Reason")), max_size=2
            )
        ),
        links=draw(
            st.lists(
                st.builds(
                    Link,
                    label=st.just("More"),
                    url=st.just("https://example.org/more"),
                    type=st.just("smart"),
                    appContext=MAYBE_TEXT,
                ),
                max_size=2,
            )
        ),
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(cards(), max_size=3), st.lists(actions(), max_size=2))
def test_wire_output_never_holds_empty_values(cards: list[Card], system_actions: list[Action]):
    wire = HookResponse(cards=cards, systemActions=system_actions).to_wire()
    validate_hook_response(json.loads(json.dumps(wire)))
    assert_no_empty_values(wire, allow_empty_cards=True)


def test_empty_response_keeps_only_the_required_empty_cards_list() -> None:
    assert HookResponse().to_wire() == {"cards": []}
    assert HookResponse(cards=[], systemActions=[]).to_wire() == {"cards": []}


def test_empty_discovery_keeps_the_services_list() -> None:
    assert DiscoveryResponse().to_wire() == {"services": []}


def test_nested_empty_values_in_a_resource_are_pruned() -> None:
    action = Action(
        type="create",
        description="Order",
        resource={"resourceType": "ServiceRequest", "note": [{"text": ""}], "code": {}, "x": None},
    )
    assert action.to_wire()["resource"] == {"resourceType": "ServiceRequest"}


def test_action_whose_resource_is_empty_once_pruned_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs a resource"):
        Action(type="update", description="Order", resource={"note": [], "id": ""})


# --- cards ---------------------------------------------------------------------------------


def test_summary_of_139_characters_is_accepted() -> None:
    assert card(summary="a" * 139).to_wire()["summary"] == "a" * 139


@pytest.mark.parametrize("summary", ["a" * 140, ""])
def test_summary_of_140_characters_or_empty_is_refused(summary: str) -> None:
    with pytest.raises(ValidationError, match="summary"):
        card(summary=summary)


def test_cards_get_distinct_uuid4_ids_by_default() -> None:
    ids = [UUID(card().to_wire()["uuid"]) for _ in range(50)]
    assert len(set(ids)) == 50
    assert {uuid.version for uuid in ids} == {4}


def test_suggestions_get_uuid4_ids_by_default() -> None:
    first, second = Suggestion(label="a"), Suggestion(label="b")
    assert first.uuid != second.uuid
    assert first.uuid.version == 4


def test_a_given_card_uuid_is_kept() -> None:
    assert card(uuid=CARD_UUID).to_wire()["uuid"] == CARD_UUID


def test_response_with_the_same_card_twice_is_refused() -> None:
    duplicated = card()
    with pytest.raises(ValidationError, match="unique"):
        HookResponse(cards=[duplicated, duplicated])


def test_suggestions_without_selection_behavior_are_refused() -> None:
    with pytest.raises(ValidationError, match="selectionBehavior is required"):
        card(suggestions=[Suggestion(label="Order a test")])


def test_suggestions_with_selection_behavior_serialise() -> None:
    wire = card(suggestions=[Suggestion(label="Order")], selectionBehavior="at-most-one").to_wire()
    assert wire["selectionBehavior"] == "at-most-one"
    assert wire["suggestions"][0]["label"] == "Order"


def test_unknown_indicator_is_refused() -> None:
    with pytest.raises(ValidationError, match="indicator"):
        card(indicator="hard-stop")


def test_app_context_on_an_absolute_link_is_refused() -> None:
    with pytest.raises(ValidationError, match="appContext is only allowed on smart links"):
        Link(label="App", url="https://app.example.org", type="absolute", appContext="{}")


def test_app_context_on_a_smart_link_is_kept() -> None:
    link = Link(label="App", url="https://app.example.org/launch", type="smart", appContext="x=1")
    assert link.to_wire() == {
        "label": "App",
        "url": "https://app.example.org/launch",
        "type": "smart",
        "appContext": "x=1",
    }


def test_autolaunchable_hint_is_kept() -> None:
    link = Link(label="App", url="https://a.example.org/", type="smart", autolaunchable=True)
    assert link.to_wire()["autolaunchable"] is True


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "file:///etc/passwd", "mailto:a@example.org", "/relative"]
)
def test_link_and_source_urls_must_be_absolute_http(url: str) -> None:
    with pytest.raises(ValidationError, match="url"):
        Link(label="x", url=url, type="absolute")
    with pytest.raises(ValidationError, match="url"):
        Source(label="x", url=url)
    with pytest.raises(ValidationError, match="icon"):
        Source(label="x", icon=url)


def test_override_reasons_need_a_display() -> None:
    with pytest.raises(ValidationError, match="display"):
        card(overrideReasons=[{"code": "patient-refused", "system": "http://example.org"}])


def test_override_reasons_with_display_serialise() -> None:
    reason = {"code": "patient-refused", "display": "Patient refused"}
    assert card(overrideReasons=[reason]).to_wire()["overrideReasons"] == [reason]


@pytest.mark.parametrize("kind", ["create", "update"])
def test_create_and_update_actions_need_a_resource(kind: str) -> None:
    with pytest.raises(ValidationError, match=f"a {kind} action needs a resource"):
        Action(type=kind, description="x", resourceId="Task/1")


def test_delete_action_needs_a_resource_id() -> None:
    with pytest.raises(ValidationError, match="needs a resourceId"):
        Action(type="delete", description="x", resource={"resourceType": "Task"})
    assert Action(type="delete", description="x", resourceId="Task/1").to_wire() == {
        "type": "delete",
        "description": "x",
        "resourceId": "Task/1",
    }


def test_real_specification_cards_parse_and_stay_valid() -> None:
    """The cards example of the CDS Hooks documentation, through the model and back."""
    body = {
        "cards": [
            {
                "uuid": CARD_UUID,
                "summary": "Example Card",
                "indicator": "info",
                "detail": "This is an example card.",
                "source": {
                    "label": "Static CDS Service Example",
                    "url": "https://example.com",
                    "icon": "https://example.com/img/icon-100px.png",
                },
                "links": [
                    {
                        "label": "SMART Example App",
                        "url": "https://smart.example.com/launch",
                        "type": "smart",
                        "appContext": '{"session":3456356}',
                    }
                ],
            }
        ]
    }
    wire = HookResponse.model_validate(body).to_wire()
    validate_hook_response(wire)
    assert wire["cards"][0]["uuid"] == CARD_UUID
    assert wire["cards"][0]["links"][0]["appContext"] == '{"session":3456356}'


# --- requests ------------------------------------------------------------------------------


@pytest.mark.parametrize("instance", ["not-a-uuid", "", "1234"])
def test_hook_instance_must_be_a_uuid(instance: str) -> None:
    with pytest.raises(ValidationError, match="hookInstance"):
        hook_request(hookInstance=instance)


def test_hook_instance_is_parsed_as_uuid() -> None:
    assert hook_request().hook_instance == UUID(HOOK_INSTANCE)


def test_fhir_authorization_requires_fhir_server() -> None:
    with pytest.raises(ValidationError, match="fhirServer is required"):
        hook_request(fhirAuthorization=fhir_authorization())


@pytest.mark.parametrize("server", ["ftp://ehr.example.org/fhir", "file:///fhir", "fhir"])
def test_fhir_server_must_be_http(server: str) -> None:
    with pytest.raises(ValidationError, match="fhirServer"):
        hook_request(fhirServer=server)


def test_fhir_authorization_token_type_must_be_bearer() -> None:
    with pytest.raises(ValidationError, match="token_type"):
        hook_request(
            fhirServer="https://ehr.example.org/fhir",
            fhirAuthorization=fhir_authorization(token_type="MAC"),
        )


def test_access_token_is_hidden_unless_revealed() -> None:
    request = hook_request(
        fhirServer="https://ehr.example.org/fhir", fhirAuthorization=fhir_authorization()
    )
    for rendering in (
        repr(request),
        str(request),
        repr(request.fhir_authorization),
        request.model_dump_json(),
        json.dumps(request.model_dump(mode="json")),
        json.dumps(request.to_wire()),
        str(request.model_dump()),
    ):
        assert ACCESS_TOKEN not in rendering
    assert request.fhir_authorization is not None
    assert request.fhir_authorization.access_token.get_secret_value() == ACCESS_TOKEN


def test_request_from_the_specification_is_accepted() -> None:
    request = hook_request(
        fhirServer="http://hooks.smarthealthit.org:9080",
        fhirAuthorization=fhir_authorization(patient="1288992"),
        prefetch={"patient": {"resourceType": "Patient", "id": "1288992"}, "missing": None},
    )
    assert request.fhir_server is not None
    assert request.fhir_server.host == "hooks.smarthealthit.org"
    assert request.prefetch == {
        "patient": {"resourceType": "Patient", "id": "1288992"},
        "missing": None,
    }


def test_context_is_required() -> None:
    with pytest.raises(ValidationError, match="context"):
        HookRequest.model_validate({"hook": "patient-view", "hookInstance": HOOK_INSTANCE})


# --- feedback ------------------------------------------------------------------------------


def test_feedback_with_override_reason_is_accepted() -> None:
    entry = FeedbackEntry.model_validate(
        feedback(
            overrideReason={
                "reason": {"code": "d", "system": "http://example.org", "display": "Declined"},
                "userComment": "Discussed with patient",
            }
        )
    )
    assert entry.override_reason is not None
    assert entry.override_reason.reason is not None
    assert entry.override_reason.reason.display == "Declined"


def test_plain_dismiss_without_reason_is_accepted() -> None:
    assert FeedbackEntry.model_validate(feedback()).override_reason is None


@pytest.mark.parametrize("outcome", ["ignored", "Accepted", ""])
def test_feedback_outcome_must_be_accepted_or_overridden(outcome: str) -> None:
    with pytest.raises(ValidationError, match="outcome"):
        FeedbackEntry.model_validate(feedback(outcome=outcome))


def test_feedback_timestamp_needs_a_timezone() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        FeedbackEntry.model_validate(feedback(outcomeTimestamp="2021-12-11T10:05:31"))
    stamp = FeedbackEntry.model_validate(feedback(outcomeTimestamp="2021-12-11T11:05:31+01:00"))
    assert stamp.outcome_timestamp.utcoffset() is not None
    assert stamp.outcome_timestamp.utcoffset().total_seconds() == 3600  # type: ignore[union-attr]


def test_override_reason_coding_needs_a_display() -> None:
    with pytest.raises(ValidationError, match="display"):
        FeedbackEntry.model_validate(feedback(overrideReason={"reason": {"code": "d"}}))


def test_feedback_card_must_be_a_uuid() -> None:
    with pytest.raises(ValidationError, match="card"):
        FeedbackEntry.model_validate(feedback(card="card-1"))


def test_accepted_suggestions_are_kept() -> None:
    entry = FeedbackEntry.model_validate(
        feedback(outcome="accepted", acceptedSuggestions=[{"id": HOOK_INSTANCE}])
    )
    assert [suggestion.id for suggestion in entry.accepted_suggestions] == [HOOK_INSTANCE]


# --- discovery -----------------------------------------------------------------------------


@pytest.mark.parametrize("service_id", ["readmission-risk", "risk_v2.1", "A9"])
def test_url_safe_service_ids_are_accepted(service_id: str) -> None:
    entry = ServiceDescription(hook="patient-view", description="d", id=service_id)
    assert entry.to_wire() == {"hook": "patient-view", "description": "d", "id": service_id}


@pytest.mark.parametrize(
    "service_id", ["", "has space", "a/b", "a?b", "a#b", "%2e", "caf\u00e9", ".", "..", "a\n"]
)
def test_service_ids_that_are_not_url_safe_are_refused(service_id: str) -> None:
    with pytest.raises(ValidationError, match="id"):
        ServiceDescription(hook="patient-view", description="d", id=service_id)


def test_discovery_entry_drops_empty_prefetch_and_keeps_templates() -> None:
    bare = ServiceDescription(hook="patient-view", description="d", id="a", prefetch={})
    assert "prefetch" not in bare.to_wire()
    templates = {"patient": "Patient/{{context.patientId}}"}
    full = ServiceDescription(hook="patient-view", description="d", id="a", prefetch=templates)
    assert full.to_wire()["prefetch"] == templates


# --- real examples -------------------------------------------------------------------------


def cds_examples(pattern: str) -> list[Path]:
    """Files of the shared CDS Hooks examples (skips when BEDSIDE_FHIR_SAMPLES is unset)."""
    root = os.environ.get("BEDSIDE_FHIR_SAMPLES")
    if not root:
        pytest.skip("BEDSIDE_FHIR_SAMPLES is not set")
    files = sorted((Path(root) / "cds-hooks-examples").glob(pattern))
    if not files:
        pytest.skip(f"no {pattern} under {root}")
    return files


def test_hook_requests_of_the_specification_are_accepted() -> None:
    requests = [
        json.loads(path.read_text(encoding="utf-8"))
        for path in cds_examples("*.json")
        if "hookInstance" in path.read_text(encoding="utf-8")
    ]
    assert requests
    for body in requests:
        request = HookRequest.model_validate(body)
        assert request.hook_instance.version == 4
        if request.fhir_authorization is not None:
            assert body["fhirAuthorization"]["access_token"] not in repr(request)
