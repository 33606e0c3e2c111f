"""The model package: a folder whose every file is listed, with its SHA-256, in a manifest.

Loading recomputes every hash; one modified byte, a missing or an extra file refuses the load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import yaml

from fhir_mappers.spec import FeatureSpec

MANIFEST = "manifest.json"
BOOSTER = "booster.txt"
SPEC = "feature_spec.yaml"
CALIBRATION = "calibration.json"
THRESHOLDS = "thresholds.json"
REFERENCE = "reference.json"
FINGERPRINT = "fingerprint.json"
EVALUATION = "evaluation.json"
CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"
SERVICE = "service.json"
PACKAGE_FILES = (
    BOOSTER,
    SPEC,
    CALIBRATION,
    THRESHOLDS,
    REFERENCE,
    FINGERPRINT,
    EVALUATION,
    CARD_JSON,
    CARD_MD,
    SERVICE,
)


class PackageIntegrityError(Exception):
    """The package on disk is not the package that was written (tampered or incomplete)."""


@dataclass(frozen=True)
class RiskBand:
    name: str  # "low" | "moderate" | "high"
    lower: float  # calibrated probability at which the band starts
    indicator: str  # card indicator: info | warning | critical


@dataclass(frozen=True)
class ModelPackage:
    """A loaded, verified package."""

    path: Path
    name: str
    version: str
    package_hash: str
    booster: lgb.Booster
    spec: FeatureSpec
    calibration: dict[str, float]
    bands: tuple[RiskBand, ...]
    reference: dict[str, Any]
    fingerprint: dict[str, Any]
    evaluation: dict[str, Any]
    card: dict[str, Any]
    card_markdown: str
    service: dict[str, Any]

    def band_for(self, probability: float) -> RiskBand:
        """The highest band whose lower bound the probability reaches."""
        chosen = self.bands[0]
        for band in self.bands:
            if probability >= band.lower:
                chosen = band
        return chosen


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(folder: Path, name: str, version: str) -> str:
    """Hash every package file into the manifest; returns the package hash."""
    files = {file_name: file_sha256(folder / file_name) for file_name in PACKAGE_FILES}
    package_hash = _package_hash(files)
    manifest = {"name": name, "version": version, "files": files, "package_hash": package_hash}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return package_hash


def _package_hash(files: dict[str, str]) -> str:
    canonical = "\n".join(f"{name}:{digest}" for name, digest in sorted(files.items()))
    return hashlib.sha256(canonical.encode()).hexdigest()


def verify(folder: Path) -> dict[str, Any]:
    """The manifest, after checking that every file is exactly as listed."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise PackageIntegrityError(f"{folder}: unreadable manifest ({error})") from None
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(PACKAGE_FILES):
        raise PackageIntegrityError(f"{folder}: the manifest does not list the package files")
    present = {path.name for path in folder.iterdir() if path.is_file()} - {MANIFEST}
    if present != set(PACKAGE_FILES):
        raise PackageIntegrityError(
            f"{folder}: unexpected or missing files {sorted(present ^ set(PACKAGE_FILES))}"
        )
    for file_name, expected in files.items():
        if file_sha256(folder / file_name) != expected:
            raise PackageIntegrityError(f"{folder}: {file_name} does not match its hash")
    if _package_hash(files) != manifest.get("package_hash"):
        raise PackageIntegrityError(f"{folder}: the package hash does not match its files")
    return manifest


def load_package(folder: Path) -> ModelPackage:
    """Verify and load a package folder."""
    manifest = verify(folder)

    def read_json(name: str) -> Any:
        return json.loads((folder / name).read_text())

    thresholds = read_json(THRESHOLDS)
    bands = tuple(
        RiskBand(name=band["name"], lower=float(band["lower"]), indicator=band["indicator"])
        for band in sorted(thresholds["bands"], key=lambda band: band["lower"])
    )
    return ModelPackage(
        path=folder,
        name=manifest["name"],
        version=manifest["version"],
        package_hash=manifest["package_hash"],
        booster=lgb.Booster(model_str=(folder / BOOSTER).read_text()),
        spec=FeatureSpec.model_validate(yaml.safe_load((folder / SPEC).read_text())),
        calibration=read_json(CALIBRATION),
        bands=bands,
        reference=read_json(REFERENCE),
        fingerprint=read_json(FINGERPRINT),
        evaluation=read_json(EVALUATION),
        card=read_json(CARD_JSON),
        card_markdown=(folder / CARD_MD).read_text(),
        service=read_json(SERVICE),
    )


def load_packages(model_dir: Path) -> list[ModelPackage]:
    """Every package folder directly below ``model_dir`` (or ``model_dir`` itself)."""
    if (model_dir / MANIFEST).exists():
        return [load_package(model_dir)]
    return [
        load_package(child) for child in sorted(model_dir.iterdir()) if (child / MANIFEST).exists()
    ]
