"""Validation results remembered by resource content, across hook calls.

An EHR sends the same resources again and again: every chart opening (patient-view) and the
discharge carry the patient's unchanged Observations, Conditions and Encounters. Validation is a
pure function of the elements it checks (:func:`~fhir_mappers.validation.consumed_part`), so its
result is remembered under a digest of their canonical JSON: a resource whose checked elements
changed in any way gets a new digest and is validated afresh. Bounded, least recently used first.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

DIGEST_BYTES = 16  # 128 bits: a collision between two different contents is not a concern
_UNKNOWN = object()


def content_digest(part: dict[str, Any]) -> bytes | None:
    """A digest of ``part``'s canonical JSON (sorted keys); None when it cannot be written."""
    try:
        canonical = orjson.dumps(part, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None
    return hashlib.blake2b(canonical, digest_size=DIGEST_BYTES).digest()


class ValidationMemo:
    """``error(part)`` = ``validate(part)``, computed once per distinct content while remembered.

    Safe to share between threads; at most ``capacity`` results are kept (about 200 bytes each).
    """

    def __init__(self, capacity: int, validate: Callable[[dict[str, Any]], str | None]) -> None:
        if capacity < 1:
            raise ValueError("a validation memo needs room for at least one result")
        self.capacity = capacity
        self._validate = validate
        self._results: OrderedDict[bytes, str | None] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def error(self, part: dict[str, Any]) -> str | None:
        digest = content_digest(part)
        if digest is None:
            return self._validate(part)
        with self._lock:
            known = self._results.get(digest, _UNKNOWN)
            if known is not _UNKNOWN:
                self._results.move_to_end(digest)
                self.hits += 1
                return known  # type: ignore[return-value]
            self.misses += 1
        result = self._validate(part)
        with self._lock:
            self._results[digest] = result
            if len(self._results) > self.capacity:
                self._results.popitem(last=False)
        return result

    def __len__(self) -> int:
        return len(self._results)
