"""``bedside demo`` end to end: a real subprocess, its store, and the URL and token it prints."""

from __future__ import annotations

import contextlib
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.support.bedside_process import REPO_ROOT
from tests.support.servers import free_port

pytestmark = pytest.mark.timeout(300)
PATIENTS = 20
REPLAY_TIMEOUT = 180.0


def demo_command(folder: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "app.cli", "demo",
        "--patients", str(PATIENTS), "--dir", str(folder), "--port", str(port), *extra,
    ]  # fmt: skip


def printed(output: str, prefix: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith(prefix)]
    return line.removeprefix(prefix).strip()


def count(database: Path, sql: str) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute(sql).fetchone()[0])


def agreement(base_url: str, token: str) -> httpx.Response:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    params = {
        "model": "readmission-30d",
        "start": today.isoformat(),
        "end": (today + timedelta(days=2)).isoformat(),
    }
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{base_url}/reports/agreement", params=params, headers=headers, timeout=30)


def test_demo_replays_a_day_into_the_store_and_exits(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    done = subprocess.run(
        demo_command(folder, free_port(), "--exit-after-replay"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=REPLAY_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    discharges = int(printed(done.stdout, "cohort:").split()[0])
    assert 0 < discharges <= PATIENTS
    summary = printed(done.stdout, "discharges:")
    assert summary.startswith(f"{discharges} (HTTP 200: {discharges});")
    without_prefetch = int(summary.split("; ")[1].split()[0])
    assert without_prefetch == discharges // 4 > 0  # every fourth call fetched from FHIR
    assert printed(done.stdout, "Token:").startswith("bds_")

    database = folder / "bedside.db"
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


def _lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def test_demo_serves_the_printed_dashboard_and_token_until_interrupted(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        demo_command(tmp_path / "demo", port),
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
