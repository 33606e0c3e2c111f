"""FHIR OperationOutcome error bodies, as CDS clients expect them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import ValidationError

Severity = Literal["fatal", "error", "warning", "information"]


def issue(
    diagnostics: str,
    *,
    code: str = "invalid",
    severity: Severity = "error",
    expression: str | None = None,
) -> dict[str, Any]:
    """One OperationOutcome.issue entry."""
    entry: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        entry["expression"] = [expression]
    return entry


def operation_outcome(issues: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """An OperationOutcome resource holding ``issues``."""
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


def validation_issues(error: ValidationError, prefix: str = "") -> list[dict[str, Any]]:
    """Turn pydantic errors into issues whose expression is the offending field path.

    The input value is never echoed back: it may carry patient data or a token.
    """
    return [
        issue(detail["msg"], code="invalid", expression=_expression(prefix, detail["loc"]) or None)
        for detail in error.errors(include_input=False, include_url=False)
    ]


def _expression(prefix: str, loc: Iterable[int | str]) -> str:
    """A FHIRPath-like location: ``prefix`` ("context." or "feedback[2].") then the field path."""
    path = prefix.rstrip(".")
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path.lstrip(".")


class ProtocolError(Exception):
    """A request the service refuses, with the HTTP status and OperationOutcome issues."""

    def __init__(self, status_code: int, issues: list[dict[str, Any]]) -> None:
        super().__init__(issues[0]["diagnostics"] if issues else str(status_code))
        self.status_code = status_code
        self.issues = issues

    @classmethod
    def single(cls, status_code: int, diagnostics: str, *, code: str = "invalid") -> ProtocolError:
        return cls(status_code, [issue(diagnostics, code=code)])
