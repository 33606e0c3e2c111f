"""Where accepted feedback goes: an interface the protocol layer writes to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cds_hooks.auth.identity import ClientIdentity
from cds_hooks.models import FeedbackEntry


@dataclass(frozen=True)
class FeedbackReceipt:
    stored: int
    duplicates: int
    orphans: int = 0  # stored entries for a card the store has no record of


class FeedbackStore(Protocol):
    async def store(
        self, service_id: str, entries: list[FeedbackEntry], client: ClientIdentity
    ) -> FeedbackReceipt:
        """Persist valid entries durably; an entry received before counts as a duplicate."""
        ...
