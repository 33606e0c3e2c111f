"""The CDS services this instance offers. Several services may share a hook."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cds_hooks.auth.identity import ClientIdentity
from cds_hooks.contexts import HookContext
from cds_hooks.models import HookRequest, HookResponse, ServiceDescription


@dataclass(frozen=True)
class HookCall:
    """Everything a service handler gets: the validated request and its resolved prefetch.

    ``prefetch`` maps each template key to a FHIR resource (searchsets with every page merged)
    or ``None`` when the EHR has no such data; optional keys that could not be obtained are absent.
    """

    service: CdsService
    request: HookRequest
    context: HookContext
    prefetch: dict[str, dict[str, Any] | None]
    client: ClientIdentity


Handler = Callable[[HookCall], Awaitable[HookResponse]]


@dataclass(frozen=True)
class CdsService:
    """One CDS service: its discovery entry, the prefetch keys it needs, and its handler."""

    id: str
    hook: str
    title: str
    description: str
    handler: Handler
    prefetch: dict[str, str] = field(default_factory=dict)
    required_prefetch: frozenset[str] | None = None
    usage_requirements: str | None = None

    @property
    def required_keys(self) -> frozenset[str]:
        """Keys without which the service answers 412 (all of them unless said otherwise)."""
        if self.required_prefetch is None:
            return frozenset(self.prefetch)
        return self.required_prefetch

    def description_entry(self) -> ServiceDescription:
        return ServiceDescription(
            hook=self.hook,
            title=self.title,
            description=self.description,
            id=self.id,
            prefetch=self.prefetch,
            usage_requirements=self.usage_requirements,
        )


class ServiceRegistry:
    """Services by id; registering an id twice is an error, never a silent replacement."""

    def __init__(self, services: list[CdsService] | None = None) -> None:
        self._services: dict[str, CdsService] = {}
        for service in services or []:
            self.register(service)

    def register(self, service: CdsService) -> None:
        ServiceDescription(  # validates the id and the discovery entry up front
            hook=service.hook, description=service.description, id=service.id
        )
        unknown = (service.required_prefetch or frozenset()) - set(service.prefetch)
        if unknown:
            raise ValueError(f"required prefetch keys without a template: {sorted(unknown)}")
        if service.id in self._services:
            raise ValueError(f"a CDS service with id {service.id!r} is already registered")
        self._services[service.id] = service

    def get(self, service_id: str) -> CdsService | None:
        return self._services.get(service_id)

    def __iter__(self) -> Iterator[CdsService]:
        return iter(self._services.values())

    def __len__(self) -> int:
        return len(self._services)
