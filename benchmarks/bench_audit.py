"""Audit store benchmark: what every CDS call writes — one prediction record committed, one JWT
id remembered (wall time and this process's CPU per write) — and chain verification speed.

Run with ``make bench`` (SQLite in a temporary folder; set BENCH_AUDIT_DATABASE_URL to measure a
PostgreSQL database, which should be empty). Reports medians and p99; this machine is noisy.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.audit.ledger import locked_chain, verify_chain
from app.store.database import make_engine
from app.store.migrate import upgrade
from app.store.replay import SqlReplayGuard, replay_engine
from benchmarks.bench_mapping import percentile
from tests.support.bedside_process import record_for

APPENDS = int(os.environ.get("BENCH_AUDIT_APPENDS", "2000"))


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = os.environ.get("BENCH_AUDIT_DATABASE_URL") or f"sqlite:///{Path(folder) / 'a.db'}"
        upgrade(url)
        engine = make_engine(url)
        rows = [record_for("prediction", 0, index) for index in range(APPENDS)]
        times = []
        cpu_started = time.process_time()
        for row in rows:
            started = time.perf_counter()
            with locked_chain(engine, "prediction", 5.0) as chain:
                chain.append(row)
            times.append((time.perf_counter() - started) * 1000)
        append_cpu = (time.process_time() - cpu_started) / APPENDS * 1000
        replay = replay_engine(engine)
        remember_times, remember_cpu = asyncio.run(_remember(SqlReplayGuard(replay)))
        replay.dispose()
        started = time.perf_counter()
        report = verify_chain(engine, "prediction")
        seconds = time.perf_counter() - started
        engine.dispose()
    assert report.broken is None and report.records == APPENDS
    print(f"audit store ({engine.dialect.name}), {APPENDS} prediction records")
    print(
        f"  commit one record: p50 {statistics.median(times):.2f} ms, "
        f"p99 {percentile(times, 0.99):.2f} ms, CPU {append_cpu:.2f} ms"
    )
    print(
        f"  remember a JWT id: p50 {statistics.median(remember_times):.2f} ms, "
        f"p99 {percentile(remember_times, 0.99):.2f} ms, CPU {remember_cpu:.2f} ms"
    )
    print(f"  verify the chain: {APPENDS / seconds:,.0f} records/s")


async def _remember(guard: SqlReplayGuard) -> tuple[list[float], float]:
    """One token id at a time, as a call alone does: wall times (ms) and CPU per id (ms)."""
    until = datetime.now(UTC) + timedelta(minutes=5)
    times = []
    cpu_started = time.process_time()
    for _ in range(APPENDS):
        started = time.perf_counter()
        assert await guard.first_use("bench", uuid.uuid4().hex, until)
        times.append((time.perf_counter() - started) * 1000)
    return times, (time.process_time() - cpu_started) / APPENDS * 1000


if __name__ == "__main__":
    main()
