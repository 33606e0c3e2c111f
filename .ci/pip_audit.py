"""Known vulnerabilities in the installed environment (pip-audit, PyPI's advisory data).

A vulnerable package fails (exit 1). Advisory data that cannot be had (no network, or a registry
mirror without per-version data: every package "not found") only warns, loudly, unless
``PIP_AUDIT_REQUIRED=true``: then an audit of nothing fails too (set it where PyPI is reachable).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def verdict(report: str | None, required: bool) -> tuple[int, list[str]]:
    """Exit code and lines to print for a pip-audit JSON report (None: no report at all)."""
    try:
        dependencies = json.loads(report or "")["dependencies"]
    except (ValueError, KeyError, TypeError):
        return (1 if required else 0), ["ci: WARNING: pip-audit could not audit: no report"]
    audited = [d for d in dependencies if "skip_reason" not in d]
    lines = [
        f"ci: VULNERABLE {d['name']} {d['version']}: {vuln['id']} "
        f"(fixed in: {', '.join(vuln.get('fix_versions', [])) or 'no fixed version'})"
        for d in audited
        for vuln in d.get("vulns", [])
    ]
    if lines:
        return 1, lines
    if not audited:
        return (1 if required else 0), [
            f"ci: WARNING: pip-audit audited none of {len(dependencies)} packages: the advisory"
            " service has no data for them (unreachable, or a mirror without per-version data)"
        ]
    skipped = len(dependencies) - len(audited)
    return 0, [
        f"ci: pip-audit: {len(audited)} packages audited, none vulnerable ({skipped} skipped)"
    ]


def main() -> int:
    pip_audit = Path(sys.executable).with_name("pip-audit")
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "report.json"
        options = ["--skip-editable", "--progress-spinner", "off", "--desc", "on"]
        finished = subprocess.run(
            [str(pip_audit), *options, "--format", "json", "--output", str(output)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        report = output.read_text() if output.exists() else None
    code, lines = verdict(report, os.environ.get("PIP_AUDIT_REQUIRED") == "true")
    if report is None and finished.stderr.strip():
        lines.append(f"ci: pip-audit said: {finished.stderr.strip().splitlines()[-1]}")
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())
