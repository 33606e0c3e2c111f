"""A hash chain over audit records: each record's hash covers its canonical content and the
previous record's hash, so altering, deleting or re-ordering any record breaks every later link.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

GENESIS = "0" * 64


def canonical(content: Mapping[str, Any]) -> bytes:
    """Deterministic JSON: sorted keys, UTC ISO timestamps, no NaN (written as null), and -0.0
    written as 0.0 (SQLite reads it back so)."""
    return orjson.dumps(_plain(content), option=orjson.OPT_SORT_KEYS)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("audit timestamps must be timezone-aware")
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return value + 0.0  # -0.0 + 0.0 is 0.0
    return value


def link_hash(previous_hash: str, content: Mapping[str, Any]) -> str:
    """SHA-256 over the previous hash and the canonical content."""
    return link_canonical(previous_hash, canonical(content))


def link_canonical(previous_hash: str, canonical_content: bytes) -> str:
    """:func:`link_hash` of content already in its :func:`canonical` form."""
    digest = hashlib.sha256(previous_hash.encode("ascii"))
    digest.update(b"\n")
    digest.update(canonical_content)
    return digest.hexdigest()


@dataclass(frozen=True)
class ChainedRecord:
    sequence: int
    content: Mapping[str, Any]
    previous_hash: str
    record_hash: str


@dataclass(frozen=True)
class BrokenLink:
    sequence: int
    reason: str


def verify(
    records: Iterable[ChainedRecord], base_sequence: int = 0, base_hash: str = GENESIS
) -> BrokenLink | None:
    """The first broken link of a chain read in sequence order, or None when it is intact.

    ``base_sequence`` and ``base_hash`` name the record the chain continues from (the genesis,
    or the last record a retention purge removed).
    """
    expected_previous = base_hash
    expected_sequence = base_sequence + 1
    for record in records:
        if record.sequence != expected_sequence:
            return BrokenLink(record.sequence, f"expected record {expected_sequence} here")
        if record.previous_hash != expected_previous:
            return BrokenLink(record.sequence, "does not follow the previous record")
        if link_hash(record.previous_hash, record.content) != record.record_hash:
            return BrokenLink(record.sequence, "content does not match its hash")
        expected_previous = record.record_hash
        expected_sequence += 1
    return None
