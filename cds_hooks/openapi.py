"""Request bodies for the OpenAPI document, generated from the models the handlers validate with.

The handlers read their raw bodies themselves (orjson, for speed), so FastAPI does not see them:
routes declare them with ``openapi_extra={"requestBody": …}``. Each schema is self-contained
(its ``$defs`` inlined), as a ``$ref`` in an operation resolves against the whole document.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from cds_hooks.contexts import CONTEXT_MODELS
from cds_hooks.models import FeedbackEntry, HookRequest

DEFS = "#/$defs/"

HOOK_REQUEST_EXAMPLE = {
    "hook": "encounter-discharge",
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "context": {"userId": "Practitioner/123", "patientId": "1288992", "encounterId": "89284"},
    "prefetch": {
        "patient": {"resourceType": "Patient", "id": "1288992", "gender": "female"},
        "encounter": {"resourceType": "Encounter", "id": "89284", "status": "finished"},
    },
}
FEEDBACK_EXAMPLE = {
    "feedback": [
        {
            "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
            "outcome": "overridden",
            "overrideReason": {
                "reason": {"code": "reason-code-provided-by-service", "display": "Not relevant"},
                "userComment": "Discussed with the patient",
            },
            "outcomeTimestamp": "2026-01-31T10:00:00Z",
        }
    ]
}


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema (wire names, validation mode) with its definitions inlined."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return _inline(schema, schema.pop("$defs", {}))


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(DEFS):
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        node = {**definitions[ref.removeprefix(DEFS)], **siblings}
    return {key: _inline(value, definitions) for key, value in node.items()}


def hook_request_schema() -> dict[str, Any]:
    """A CDS Hooks request, with the context each standard hook must carry."""
    schema = model_schema(HookRequest)
    schema["allOf"] = [
        {
            "if": {"required": ["hook"], "properties": {"hook": {"const": hook}}},
            "then": {"properties": {"context": model_schema(model)}},
        }
        for hook, model in CONTEXT_MODELS.items()
    ]
    return schema


def feedback_schema() -> dict[str, Any]:
    """A feedback body: entries are validated one by one, a bad one does not spoil the others."""
    entries = {"type": "array", "items": model_schema(FeedbackEntry)}
    return {"type": "object", "required": ["feedback"], "properties": {"feedback": entries}}


def json_request_body(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads a required JSON body itself."""
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"requestBody": {"required": True, "content": {"application/json": media}}}
