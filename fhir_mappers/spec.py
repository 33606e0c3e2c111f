"""The declarative feature spec: which FHIR data becomes which model feature, and how.

A spec is YAML shipped inside a model package and validated here. Features read FHIR resources
selected by a code group, convert units, keep a lookback window before the index time, aggregate,
check plausibility and apply a missing-value policy; derived features (age, length of stay, prior
admissions, Charlson index, …) are computed by named functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SourceType = Literal["Observation", "Condition", "MedicationRequest", "Procedure", "Encounter"]
ReadMode = Literal["quantity", "component", "concept", "presence", "count"]
Aggregation = Literal["last", "first", "min", "max", "mean", "count", "slope", "days_since_last"]
DerivedName = Literal[
    "age_years",
    "sex_female",
    "length_of_stay_days",
    "inpatient_admissions",
    "emergency_visits",
    "charlson_index",
    "active_medication_count",
]
MissingPolicy = Literal["nan", "zero"]
DERIVED_SOURCES = {
    "length_of_stay_days": "Encounter",
    "inpatient_admissions": "Encounter",
    "emergency_visits": "Encounter",
    "charlson_index": "Condition",
    "active_medication_count": "MedicationRequest",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CodeSet(_Strict):
    """Codes of one system (e.g. LOINC synonyms of one analyte)."""

    system: str = Field(min_length=1)
    codes: tuple[str, ...] = Field(min_length=1)


class FeatureDefinition(_Strict):
    """One model input."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str | None = Field(default=None, description="How a clinician calls it, for cards.")
    description: str | None = None
    # Features read from resources:
    source: SourceType | None = None
    codes: str | None = Field(default=None, description="Name of a code group selecting resources.")
    read: ReadMode | None = None
    component: str | None = Field(default=None, description="Code group of the component to read.")
    concept_values: dict[str, float] | None = Field(
        default=None, description="For read=concept: 'system|code' → numeric value."
    )
    unit: str | None = Field(default=None, description="Target UCUM unit.")
    molar_mass: float | None = Field(default=None, gt=0, description="g/mol, for mg/dL ↔ mmol/L.")
    valence: int | None = Field(default=None, ge=1, description="Charge, for mEq/L ↔ mmol/L.")
    window_days: float | None = Field(default=None, gt=0, description="Lookback before index.")
    aggregation: Aggregation | None = None
    plausible: tuple[float, float] | None = None
    # Derived features:
    derived: DerivedName | None = None
    missing: MissingPolicy = "nan"

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if (self.derived is None) == (self.source is None):
            raise ValueError(f"{self.name}: give exactly one of 'source' or 'derived'")
        if self.source is not None:
            if self.codes is None or self.read is None:
                raise ValueError(f"{self.name}: a sourced feature needs 'codes' and 'read'")
            if self.read in ("quantity", "component") and self.unit is None:
                raise ValueError(f"{self.name}: reading a quantity needs a target 'unit'")
            if self.read == "component" and self.component is None:
                raise ValueError(f"{self.name}: read=component needs a 'component' code group")
            if self.read == "concept" and not self.concept_values:
                raise ValueError(f"{self.name}: read=concept needs 'concept_values'")
            if self.read in ("quantity", "component", "concept") and self.aggregation is None:
                raise ValueError(f"{self.name}: a value feature needs an 'aggregation'")
        if self.plausible is not None and self.plausible[0] >= self.plausible[1]:
            raise ValueError(f"{self.name}: plausible range must be (low, high) with low < high")
        return self

    @property
    def source_type(self) -> str | None:
        """The searched resource type this feature is computed from (None: patient or stay)."""
        if self.source is not None:
            return self.source
        if self.derived == "length_of_stay_days":
            return None  # the index encounter, its own prefetch key
        return DERIVED_SOURCES.get(str(self.derived))

    @property
    def display_name(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    @property
    def missing_fill(self) -> float:
        return 0.0 if self.missing == "zero" else float("nan")


class FeatureSpec(_Strict):
    """A named, versioned list of features with the code groups they refer to."""

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    code_groups: dict[str, tuple[CodeSet, ...]] = Field(default_factory=dict)
    features: tuple[FeatureDefinition, ...] = Field(min_length=1)

    @field_validator("features")
    @classmethod
    def _unique_names(
        cls, features: tuple[FeatureDefinition, ...]
    ) -> tuple[FeatureDefinition, ...]:
        names = [feature.name for feature in features]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"feature names must be unique: {duplicates}")
        return features

    @model_validator(mode="after")
    def _groups_exist(self) -> Self:
        for feature in self.features:
            for group in (feature.codes, feature.component):
                if group is not None and group not in self.code_groups:
                    raise ValueError(f"{feature.name}: unknown code group {group!r}")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @property
    def resource_types(self) -> frozenset[str]:
        """Every resource type the spec reads (Patient and Medication always)."""
        types = {"Patient", "Medication"} | self._derived_types
        types.update(feature.source for feature in self.features if feature.source is not None)
        return frozenset(types)

    @property
    def code_filters(self) -> dict[str, frozenset[str]]:
        """Codes per resource type, for types that only code-selecting features read."""
        codes: dict[str, set[str]] = {}
        for feature in self.features:
            if feature.source is None or feature.source in self._derived_types:
                continue
            for group in (feature.codes, feature.component):
                if group is not None:
                    codes.setdefault(feature.source, set()).update(
                        code for _, code in self.codes_of(group)
                    )
        return {source: frozenset(values) for source, values in codes.items()}

    @property
    def _derived_types(self) -> set[str]:
        return {
            DERIVED_SOURCES[feature.derived]
            for feature in self.features
            if feature.derived in DERIVED_SOURCES
        }

    def codes_of(self, group: str) -> frozenset[tuple[str, str]]:
        """(system, code) pairs of a code group."""
        return frozenset(
            (code_set.system, code)
            for code_set in self.code_groups[group]
            for code in code_set.codes
        )


def load_spec(path: Path) -> FeatureSpec:
    """Read and validate a YAML feature spec."""
    return FeatureSpec.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
