"""What the mapper produces: a feature row with provenance and data-quality notes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Provenance:
    """Where a feature value came from."""

    sources: tuple[str, ...]
    raw_value: float | None = None
    raw_unit: str | None = None
    unit: str | None = None
    converted: bool = False
    preliminary: bool = False
    time: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": list(self.sources),
            "raw_value": self.raw_value,
            "raw_unit": self.raw_unit,
            "unit": self.unit,
            "converted": self.converted,
            "preliminary": self.preliminary,
            "time": self.time.isoformat() if self.time else None,
        }


@dataclass(frozen=True)
class QualityNote:
    """Something in the data that made a value missing or doubtful."""

    code: str
    detail: str
    feature: str | None = None
    resource: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "detail": self.detail,
            "feature": self.feature,
            "resource": self.resource,
        }


@dataclass
class FeatureRow:
    """Feature values (NaN when missing) in spec order, with provenance and notes."""

    index_time: datetime
    values: dict[str, float]
    missing: frozenset[str]
    provenance: dict[str, Provenance] = field(default_factory=dict)
    notes: list[QualityNote] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    validated_resources: int = 0

    def vector(self) -> list[float]:
        return list(self.values.values())

    def is_finite_or_nan(self) -> bool:
        """True when no value is ±inf (NaN is how missing values are written)."""
        return all(not math.isinf(value) for value in self.values.values())
