"""Pydantic models of the CDS Hooks 2.0 wire format.

Responses serialise through :meth:`SpecModel.to_wire`, which never emits ``null``, ``""``,
``[]`` or ``{}`` (a null ``links`` has broken real EHRs); the one exception is the required
``"cards": []`` of an empty :class:`HookResponse`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self
from uuid import UUID, uuid4

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    Secret,
    StringConstraints,
    field_validator,
    model_validator,
)

NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
# RFC 6750 b64token: what an ``Authorization: Bearer`` header to the FHIR server can carry.
BearerToken = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9\-._~+/]+=*$")]
SUMMARY_MAX_CHARS = 139


def prune_empty(value: Any) -> Any:
    """Drop ``None``, empty strings, empty lists and empty objects, recursively."""
    if isinstance(value, dict):
        pruned = {key: prune_empty(item) for key, item in value.items()}
        return {key: item for key, item in pruned.items() if not _is_empty(item)}
    if isinstance(value, list):
        pruned_items = [prune_empty(item) for item in value]
        return [item for item in pruned_items if not _is_empty(item)]
    return value


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and len(value) == 0)


class SpecModel(BaseModel):
    """Base of every protocol model: camelCase on the wire, pruned output."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    def to_wire(self) -> dict[str, Any]:
        """JSON-ready dict with every empty value removed."""
        return prune_empty(self.model_dump(mode="json", by_alias=True, exclude_none=True))


class Coding(SpecModel):
    system: NonEmptyStr | None = None
    code: NonEmptyStr
    display: NonEmptyStr | None = None


class DisplayedCoding(Coding):
    """A Coding whose ``display`` is required (override reasons)."""

    display: NonEmptyStr


class Source(SpecModel):
    label: NonEmptyStr
    url: HttpUrl | None = None
    icon: HttpUrl | None = None
    topic: Coding | None = None


class Action(SpecModel):
    type: Literal["create", "update", "delete"]
    description: NonEmptyStr
    resource: dict[str, Any] | None = None
    resource_id: NonEmptyStr | None = Field(default=None, alias="resourceId")

    @model_validator(mode="after")
    def _target_given(self) -> Self:
        if self.type in ("create", "update") and not prune_empty(self.resource):
            raise ValueError(f"a {self.type} action needs a resource")
        if self.type == "delete" and not self.resource_id:
            raise ValueError("a delete action needs a resourceId")
        return self


class Suggestion(SpecModel):
    label: NonEmptyStr
    uuid: UUID = Field(default_factory=uuid4)
    is_recommended: bool | None = Field(default=None, alias="isRecommended")
    actions: list[Action] = Field(default_factory=list)


class Link(SpecModel):
    """A link on a card; its URL opens in the clinician's browser, so only http(s)."""

    label: NonEmptyStr
    url: HttpUrl
    type: Literal["absolute", "smart"]
    app_context: NonEmptyStr | None = Field(default=None, alias="appContext")
    autolaunchable: bool | None = None

    @model_validator(mode="after")
    def _app_context_only_on_smart(self) -> Self:
        if self.app_context is not None and self.type != "smart":
            raise ValueError("appContext is only allowed on smart links")
        return self


class Card(SpecModel):
    uuid: UUID = Field(default_factory=uuid4)
    summary: Annotated[str, StringConstraints(min_length=1, max_length=SUMMARY_MAX_CHARS)]
    detail: NonEmptyStr | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] = Field(default_factory=list)
    selection_behavior: Literal["at-most-one", "any"] | None = Field(
        default=None, alias="selectionBehavior"
    )
    override_reasons: list[DisplayedCoding] = Field(default_factory=list, alias="overrideReasons")
    links: list[Link] = Field(default_factory=list)

    @model_validator(mode="after")
    def _selection_behavior_with_suggestions(self) -> Self:
        if self.suggestions and self.selection_behavior is None:
            raise ValueError("selectionBehavior is required when suggestions are present")
        return self


class HookResponse(SpecModel):
    cards: list[Card] = Field(default_factory=list)
    system_actions: list[Action] = Field(default_factory=list, alias="systemActions")

    @model_validator(mode="after")
    def _unique_card_uuids(self) -> Self:
        if len({card.uuid for card in self.cards}) != len(self.cards):
            raise ValueError("card uuids must be unique within a response")
        return self

    def to_wire(self) -> dict[str, Any]:
        body = super().to_wire()
        body.setdefault("cards", [])
        return body


class ServiceDescription(SpecModel):
    """One entry of the discovery response."""

    hook: NonEmptyStr
    title: NonEmptyStr | None = None
    description: NonEmptyStr
    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9\-_.]+$")]
    prefetch: dict[str, str] = Field(default_factory=dict)
    usage_requirements: NonEmptyStr | None = Field(default=None, alias="usageRequirements")

    @field_validator("id")
    @classmethod
    def _not_a_dot_segment(cls, value: str) -> str:
        if value.strip(".") == "":
            raise ValueError("a service id cannot be made of dots only (a URL dot-segment)")
        return value


class DiscoveryResponse(SpecModel):
    services: list[ServiceDescription] = Field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        body = super().to_wire()
        body.setdefault("services", [])
        return body


class FhirAuthorization(SpecModel):
    """The EHR's access token for its FHIR server: transient, never stored or logged."""

    access_token: Secret[BearerToken]
    token_type: Literal["Bearer"]
    expires_in: int = Field(ge=0)
    scope: NonEmptyStr
    subject: NonEmptyStr
    patient: NonEmptyStr | None = None


class HookRequest(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={"dependentRequired": {"fhirAuthorization": ["fhirServer"]}}
    )

    hook: NonEmptyStr
    hook_instance: UUID = Field(alias="hookInstance")
    fhir_server: HttpUrl | None = Field(default=None, alias="fhirServer")
    fhir_authorization: FhirAuthorization | None = Field(default=None, alias="fhirAuthorization")
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _server_with_authorization(self) -> Self:
        if self.fhir_authorization is not None and self.fhir_server is None:
            raise ValueError("fhirServer is required when fhirAuthorization is present")
        return self


class OverrideReason(SpecModel):
    reason: DisplayedCoding | None = None
    user_comment: NonEmptyStr | None = Field(default=None, alias="userComment")


class AcceptedSuggestion(SpecModel):
    id: NonEmptyStr


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


class FeedbackEntry(SpecModel):
    card: UUID
    outcome: Literal["accepted", "overridden"]
    accepted_suggestions: list[AcceptedSuggestion] = Field(
        default_factory=list, alias="acceptedSuggestions"
    )
    override_reason: OverrideReason | None = Field(default=None, alias="overrideReason")
    outcome_timestamp: datetime = Field(alias="outcomeTimestamp")

    @model_validator(mode="before")
    @classmethod
    def _no_nul_characters(cls, data: Any) -> Any:
        """Text with NUL characters cannot be stored (PostgreSQL refuses it): a 400, not a 503."""
        if _has_nul(data):
            raise ValueError("text must not contain NUL characters")
        return data

    @field_validator("outcome_timestamp")
    @classmethod
    def _timezone_required(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("outcomeTimestamp must carry a timezone")
        try:
            value.astimezone(UTC)  # stored in UTC: an instant beyond year 1..9999 cannot be
        except OverflowError:
            raise ValueError("outcomeTimestamp is out of range in UTC") from None
        return value
