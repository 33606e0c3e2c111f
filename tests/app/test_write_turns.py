"""Turns to write an SQLite file: one writer at a time, across threads and across processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.store.database import StoreUnavailable, make_engine
from app.store.write_turns import write_turn

WAIT = 10.0

HOLDER = """
import sys, time
from app.store.database import make_engine
from app.store.write_turns import write_turn
engine = make_engine(sys.argv[1])
with write_turn(engine, 5.0):
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_threads_of_one_process_write_one_at_a_time(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/bedside.db")
    inside, most = [0], [0]
    counter = threading.Lock()

    def writer() -> None:
        for _ in range(20):
            with write_turn(engine, WAIT):
                with counter:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.001)
                with counter:
                    inside[0] -= 1

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert most[0] == 1
    assert (tmp_path / "bedside.db.writers").exists()


def test_a_turn_held_by_another_process_is_waited_for_and_bounded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bedside.db"
    engine = make_engine(url)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, "1.5"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(StoreUnavailable, match="no turn to write"), write_turn(engine, 0.2):
            pass
        started = time.monotonic()
        with write_turn(engine, WAIT):
            waited = time.monotonic() - started
    finally:
        holder.wait(WAIT)
    assert holder.returncode == 0
    assert 0.5 < waited < WAIT  # it waited for the other process, then went in


def test_an_in_memory_database_takes_turns_without_a_lock_file(tmp_path: Path) -> None:
    engine = make_engine("sqlite://")
    with write_turn(engine, 1.0), write_turn(make_engine(f"sqlite:///{tmp_path}/x.db"), 1.0):
        pass
    assert sorted(path.name for path in tmp_path.iterdir()) == ["x.db.writers"]
