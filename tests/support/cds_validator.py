"""One validator, written from the CDS Hooks 2.0 rules, for every response in the suite.

It checks the wire bytes, not our models, so it catches what serialisation would hide.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

INDICATORS = {"info", "warning", "critical"}
ACTION_TYPES = {"create", "update", "delete"}
LINK_TYPES = {"absolute", "smart"}
SELECTION_BEHAVIORS = {"at-most-one", "any"}


class SpecViolation(AssertionError):
    pass


def check(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise SpecViolation(f"{where}: {message}")


def assert_no_empty_values(value: Any, where: str = "$", allow_empty_cards: bool = False) -> None:
    """No null, "", [] or {} anywhere (except the top-level ``cards: []``)."""
    if isinstance(value, dict):
        check(value != {} or where == "$", where, "empty object")
        for key, item in value.items():
            path = f"{where}.{key}"
            if allow_empty_cards and path == "$.cards" and item == []:
                continue
            assert_no_empty_values(item, path)
    elif isinstance(value, list):
        check(len(value) > 0, where, "empty array")
        for index, item in enumerate(value):
            assert_no_empty_values(item, f"{where}[{index}]")
    else:
        check(value is not None, where, "null")
        check(value != "", where, "empty string")


def _is_absolute_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


def validate_coding(coding: Any, where: str, display_required: bool = False) -> None:
    check(isinstance(coding, dict), where, "a Coding must be an object")
    check(isinstance(coding.get("code"), str), where, "Coding.code is required")
    if display_required:
        check(isinstance(coding.get("display"), str), where, "display is required here")


def validate_action(action: Any, where: str) -> None:
    check(isinstance(action, dict), where, "an action must be an object")
    check(action.get("type") in ACTION_TYPES, where, f"bad action type {action.get('type')!r}")
    check(isinstance(action.get("description"), str), where, "description is required")
    if action["type"] in ("create", "update"):
        check(isinstance(action.get("resource"), dict), where, "resource is required")
    else:
        check(isinstance(action.get("resourceId"), str), where, "resourceId is required")


def validate_card(card: Any, where: str) -> None:
    check(isinstance(card, dict), where, "a card must be an object")
    check(_is_uuid(card.get("uuid")), where, "uuid must be a UUID")
    summary = card.get("summary")
    check(isinstance(summary, str) and 0 < len(summary) < 140, where, "summary must be <140 chars")
    check(card.get("indicator") in INDICATORS, where, f"bad indicator {card.get('indicator')!r}")
    if "detail" in card:
        check(isinstance(card["detail"], str), where, "detail must be markdown text")
        check("<script" not in card["detail"].lower(), where, "detail must not carry raw HTML")
    source = card.get("source")
    check(isinstance(source, dict) and isinstance(source.get("label"), str), where, "source.label")
    for key in ("url", "icon"):
        if key in source:
            check(_is_absolute_url(source[key]), f"{where}.source.{key}", "absolute URL")
    if "topic" in source:
        validate_coding(source["topic"], f"{where}.source.topic")
    suggestions = card.get("suggestions", [])
    for index, suggestion in enumerate(suggestions):
        path = f"{where}.suggestions[{index}]"
        check(isinstance(suggestion.get("label"), str), path, "label is required")
        if "uuid" in suggestion:
            check(_is_uuid(suggestion["uuid"]), path, "uuid must be a UUID")
        if "isRecommended" in suggestion:
            check(isinstance(suggestion["isRecommended"], bool), path, "isRecommended is boolean")
        for action_index, action in enumerate(suggestion.get("actions", [])):
            validate_action(action, f"{path}.actions[{action_index}]")
    if suggestions:
        check(
            card.get("selectionBehavior") in SELECTION_BEHAVIORS,
            where,
            "selectionBehavior is required with suggestions",
        )
    for index, reason in enumerate(card.get("overrideReasons", [])):
        validate_coding(reason, f"{where}.overrideReasons[{index}]", display_required=True)
    for index, link in enumerate(card.get("links", [])):
        path = f"{where}.links[{index}]"
        check(isinstance(link.get("label"), str), path, "label is required")
        check(_is_absolute_url(link.get("url")), path, "url must be absolute")
        check(link.get("type") in LINK_TYPES, path, "type must be absolute or smart")
        if "appContext" in link:
            check(link["type"] == "smart", path, "appContext only on smart links")


def validate_hook_response(body: Any) -> None:
    """A 200 answer to a service call."""
    check(isinstance(body, dict), "$", "the response must be an object")
    check(isinstance(body.get("cards"), list), "$", "cards is required (a list)")
    assert_no_empty_values(body, allow_empty_cards=True)
    uuids = [card.get("uuid") for card in body["cards"]]
    check(len(set(uuids)) == len(uuids), "$.cards", "card uuids must be unique")
    for index, card in enumerate(body["cards"]):
        validate_card(card, f"$.cards[{index}]")
    for index, action in enumerate(body.get("systemActions", [])):
        validate_action(action, f"$.systemActions[{index}]")


def validate_discovery(body: Any) -> None:
    check(isinstance(body, dict) and isinstance(body.get("services"), list), "$", "services")
    if body["services"]:
        assert_no_empty_values(body)
    ids = set()
    for index, service in enumerate(body["services"]):
        where = f"$.services[{index}]"
        for key in ("hook", "description", "id"):
            check(isinstance(service.get(key), str), where, f"{key} is required")
        check(service["id"] not in ids, where, "service ids must be unique")
        ids.add(service["id"])
        for key, template in service.get("prefetch", {}).items():
            check(isinstance(template, str), f"{where}.prefetch.{key}", "templates are strings")


def validate_operation_outcome(body: Any) -> None:
    check(isinstance(body, dict), "$", "an OperationOutcome must be an object")
    check(body.get("resourceType") == "OperationOutcome", "$", "resourceType OperationOutcome")
    check(isinstance(body.get("issue"), list) and body["issue"], "$", "at least one issue")
    for index, entry in enumerate(body["issue"]):
        where = f"$.issue[{index}]"
        check(entry.get("severity") in {"fatal", "error", "warning", "information"}, where, "sev")
        check(isinstance(entry.get("code"), str), where, "code is required")
    assert_no_empty_values(body)


def validate_response(path: str, method: str, status: int, body: bytes, headers: Any) -> None:
    """Check any response of a CDS endpoint by the rules that apply to its status and route."""
    import orjson

    if status == 401:
        check(body == b"", "$", "a 401 must not say why")
        return
    if method == "OPTIONS" or status in (204, 304):
        return
    parsed = orjson.loads(body)
    if status != 200:
        check(400 <= status < 600, "$", f"unexpected status {status}")
        validate_operation_outcome(parsed)
    elif method == "GET" and path.rstrip("/").endswith("/cds-services"):
        validate_discovery(parsed)
    elif path.rstrip("/").endswith("/feedback"):
        validate_operation_outcome(parsed)
    else:
        validate_hook_response(parsed)
