"""``bedside demo`` end to end: a real subprocess, its store, and the URL and token it prints."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from app.demo.cli import DEFAULT_PATIENTS
from tests.support.bedside_process import REPO_ROOT
from tests.support.servers import free_port

pytestmark = pytest.mark.timeout(300)
PATIENTS = 20  # the serving test's day; the replay test runs the default day a new user sees
REPLAY_TIMEOUT = 180.0


@dataclass(frozen=True)
class Day:
    """A finished ``bedside demo --exit-after-replay`` run: its folder and what it printed."""

    folder: Path
    stdout: str


def demo_command(folder: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "app.cli", "demo", "--dir", str(folder), "--port", str(port), *extra,
    ]  # fmt: skip


def printed(output: str, prefix: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith(prefix)]
    return line.removeprefix(prefix).strip()


def count(database: Path, sql: str) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute(sql).fetchone()[0])


def answers(text: str) -> dict[str, int]:
    """``accepted 3, overridden 1, unanswered 2`` as a mapping."""
    pairs = (part.rsplit(" ", 1) for part in text.split(", "))
    return {name: int(number) for name, number in pairs}


def agreement_by_age_band(day: Day, out: Path) -> dict[str, Any]:
    """The agreement report grouped by age band, from ``bedside report`` on the demo's store,
    with the default small-cell threshold."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_")}
    environment["BEDSIDE_DATABASE_URL"] = f"sqlite:///{day.folder / 'bedside.db'}"
    command = [sys.executable, "-m", "app.cli", "report", "--out", str(out), "--days", "1"]
    command += ["--group-by", "age_band", "--agreement-group-by", "age_band"]
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=120
    )
    assert done.returncode in (0, 3), done.stdout + done.stderr  # 3: alerts raised
    return json.loads((out / "readmission-30d" / "agreement.json").read_text())


def agreement(base_url: str, token: str) -> httpx.Response:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    params = {
        "model": "readmission-30d",
        "start": today.isoformat(),
        "end": (today + timedelta(days=2)).isoformat(),
    }
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{base_url}/reports/agreement", params=params, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def default_day(tmp_path_factory: pytest.TempPathFactory) -> Day:
    """The demo at its default size, run once for the tests that read its store."""
    folder = tmp_path_factory.mktemp("default-day") / "demo"
    done = subprocess.run(
        demo_command(folder, free_port(), "--exit-after-replay"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=REPLAY_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return Day(folder, done.stdout)


def test_demo_replays_a_day_into_the_store_and_exits(default_day: Day) -> None:
    output = default_day.stdout
    discharges = int(printed(output, "cohort:").split()[0])
    assert printed(output, "cohort:").endswith(f"of {DEFAULT_PATIENTS} synthetic patients")
    assert 0 < discharges <= DEFAULT_PATIENTS
    summary = printed(output, "discharges:")
    assert summary.startswith(f"{discharges} (HTTP 200: {discharges});")
    without_prefetch = int(summary.split("; ")[1].split()[0])
    assert without_prefetch == discharges // 4 > 0  # every fourth call fetched from FHIR
    assert printed(output, "Token:").startswith("bds_")

    database = default_day.folder / "bedside.db"
    assert count(database, "SELECT count(*) FROM prediction") == discharges
    assert count(database, "SELECT count(DISTINCT encounter_key) FROM prediction") == discharges
    answered = count(database, "SELECT count(DISTINCT card_uuid) FROM feedback")
    overridden = count(database, "SELECT count(*) FROM feedback WHERE outcome = 'overridden'")
    assert 0 < overridden < answered <= discharges
    assert count(database, "SELECT count(*) FROM outcome") == discharges
    orphans = (
        "SELECT count(*) FROM feedback WHERE card_uuid NOT IN (SELECT card_uuid FROM prediction)"
    )
    assert count(database, orphans) == 0
    roles = "SELECT count(*) FROM api_token WHERE role IN ('ingest', 'safety_officer')"
    assert count(database, roles) == 2


def test_demo_agreement_by_age_band_shows_the_planted_overrides(
    default_day: Day, tmp_path: Path
) -> None:
    """What the README points a new user at: every age band's override rate clears small-cell
    suppression, and the 75+ band's is clearly above the others'."""
    body = agreement_by_age_band(default_day, tmp_path)
    report = body["report"]
    assert report["thresholds"]["min_cell"] == 10
    rows = {row["age_band"]: row for row in report["groups"]}
    discharges = int(printed(default_day.stdout, "cohort:").split()[0])
    assert sum(row["cards"] for row in rows.values()) == discharges  # no row suppressed
    assert all(isinstance(row["override_rate"], float) for row in rows.values()), rows
    planted = rows.pop("75+")
    clinicians = printed(default_day.stdout, "clinicians:")
    group = answers(clinicians.split("overrides): ")[1].split(" (feedback")[0])
    shown = {"accepted": planted["accepted"], "overridden": planted["overridden"]}
    assert shown | {"unanswered": planted["no_response"]} == group  # what the clinicians did
    assert set(rows) == {"18-44", "45-64", "65-74"}  # synthetic patients are 19 to 95
    for band, row in rows.items():
        assert planted["override_rate_low"] > row["override_rate_high"], (band, planted, row)
        assert planted["override_rate"] > 2 * row["override_rate"], (band, planted, row)


def _lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def test_demo_serves_the_printed_dashboard_and_token_until_interrupted(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        demo_command(tmp_path / "demo", port, "--patients", str(PATIENTS)),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True).start()
    output = ""
    try:
        deadline = time.monotonic() + REPLAY_TIMEOUT
        while "Serving until Ctrl-C" not in output:
            remaining = deadline - time.monotonic()
            assert remaining > 0 and process.poll() is None, output
            with contextlib.suppress(queue.Empty):
                output += lines.get(timeout=min(remaining, 1.0))
        url, token = printed(output, "Dashboard:"), printed(output, "Token:")
        assert url == f"http://127.0.0.1:{port}/dashboard/"
        base_url = url.removesuffix("/dashboard/")
        report = agreement(base_url, token)
        assert report.status_code == 200, report.text
        discharges = int(printed(output, "cohort:").split()[0])
        assert report.json()["report"]["overall"]["cards"] == discharges
        assert agreement(base_url, "bds_not-a-token").status_code == 401
        with httpx.Client(base_url=base_url, timeout=30) as browser:
            signed_in = browser.post("/dashboard/sign-in", data={"token": token})
            assert signed_in.status_code == 303, signed_in.text
            page = browser.get("/dashboard/", follow_redirects=True)
            assert page.status_code == 200 and "sign-in" not in str(page.url)

        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base_url}/healthz", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
