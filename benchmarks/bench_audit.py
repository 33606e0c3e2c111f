"""Audit store benchmark: time to commit one prediction record, and chain verification speed.

Run with ``make bench`` (SQLite in a temporary folder; set BENCH_AUDIT_DATABASE_URL to measure a
PostgreSQL database, which should be empty). Reports medians and p99; this machine is noisy.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from app.audit.ledger import locked_chain, verify_chain
from app.store.database import make_engine
from app.store.migrate import upgrade
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
        for row in rows:
            started = time.perf_counter()
            with locked_chain(engine, "prediction", 5.0) as chain:
                chain.append(row)
            times.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        report = verify_chain(engine, "prediction")
        seconds = time.perf_counter() - started
        engine.dispose()
    assert report.broken is None and report.records == APPENDS
    print(f"audit store ({engine.dialect.name}), {APPENDS} prediction records")
    print(
        f"  commit one record: p50 {statistics.median(times):.2f} ms, "
        f"p99 {percentile(times, 0.99):.2f} ms"
    )
    print(f"  verify the chain: {APPENDS / seconds:,.0f} records/s")


if __name__ == "__main__":
    main()
