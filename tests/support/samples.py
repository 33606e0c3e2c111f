"""The real FHIR samples (``$BEDSIDE_FHIR_SAMPLES``), read in place and never copied."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def samples_folder(name: str) -> Path:
    """A folder of ``$BEDSIDE_FHIR_SAMPLES``; skips the test when the samples are not there."""
    root = os.environ.get("BEDSIDE_FHIR_SAMPLES")
    if not root:
        pytest.skip("BEDSIDE_FHIR_SAMPLES is not set")
    folder = Path(root) / name
    if not folder.is_dir():
        pytest.skip(f"no {name} folder in BEDSIDE_FHIR_SAMPLES")
    return folder
