"""The supply-chain gate in CI (.ci/pip_audit.py): what fails, what only warns."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

GATE = Path(__file__).resolve().parents[1] / ".ci" / "pip_audit.py"


def load_gate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pip_audit_gate", GATE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report(*dependencies: dict[str, Any]) -> str:
    """A report in pip-audit's JSON format (``--format json``)."""
    return json.dumps({"dependencies": list(dependencies), "fixes": []})


CLEAN = {"name": "orjson", "version": "3.13.0", "vulns": []}
VULNERABLE = {
    "name": "jinja2",
    "version": "2.10",
    "vulns": [{"id": "PYSEC-2019-217", "fix_versions": ["2.10.1"], "aliases": []}],
}
NOT_FOUND = {
    "name": "numpy",
    "version": "2.4.6",
    "skip_reason": "Dependency not found on PyPI and could not be audited: numpy (2.4.6)",
}


def test_a_vulnerable_package_fails_and_is_named_with_its_fix() -> None:
    code, lines = load_gate().verdict(report(CLEAN, VULNERABLE, NOT_FOUND), required=False)
    assert code == 1
    assert lines == ["ci: VULNERABLE jinja2 2.10: PYSEC-2019-217 (fixed in: 2.10.1)"]


def test_a_clean_audit_passes_and_counts_what_it_could_not_audit() -> None:
    code, lines = load_gate().verdict(report(CLEAN, NOT_FOUND), required=True)
    assert code == 0
    assert lines == ["ci: pip-audit: 1 packages audited, none vulnerable (1 skipped)"]


def test_an_audit_of_nothing_warns_unless_an_audit_is_required() -> None:
    gate = load_gate()
    nothing = report(NOT_FOUND, {**NOT_FOUND, "name": "scipy"})
    assert gate.verdict(nothing, required=False)[0] == 0
    code, lines = gate.verdict(nothing, required=True)
    assert code == 1
    assert "audited none of 2 packages" in lines[0]
    assert gate.verdict(None, required=False)[0] == 0
    assert gate.verdict("not json", required=True)[0] == 1
