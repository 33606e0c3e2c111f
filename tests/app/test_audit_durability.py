"""Audit store durability: concurrent writer processes, tampering, a server killed mid-load."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from app.audit.ledger import table_of, verify_chain
from app.cli import main
from app.store.database import make_engine
from app.store.migrate import upgrade_engine
from tests.conftest import TEST_AUDIT_KEY
from tests.support.bedside_process import BedsideServer, write_concurrently, writer_iss
from tests.support.servers import free_port

CHAIN_NAMES = ("prediction", "feedback")
WRITERS = 4
RECORDS_PER_WRITER = 40
TOTAL = WRITERS * RECORDS_PER_WRITER
WRITERS_TIMEOUT_SECONDS = 90.0
# Tampered in the middle of the chain: records k - 1, k + 1 and later ones exist.
TAMPERED = TOTAL // 2
CONTENT_EDITS = {
    "prediction": "probability = probability + 0.25",
    "feedback": "user_comment = 'edited afterwards'",
}

DISCHARGE_SERVICE = "readmission-30d-encounter-discharge"
READY_TIMEOUT_SECONDS = 60.0
CARDS_BEFORE_KILL = 30
LOAD_CLIENTS = 3
LOAD_DEADLINE_SECONDS = 30.0
REQUESTS_AFTER_RESTART = 5


# --- several writer processes, one chain --------------------------------------------------


@pytest.fixture
def written_chains(database_url: str) -> Iterator[Engine]:
    """The migrated test database, both chains freshly written by concurrent processes."""
    engine = make_engine(database_url)
    try:
        upgrade_engine(engine)
        exit_codes = write_concurrently(
            database_url, CHAIN_NAMES, WRITERS, RECORDS_PER_WRITER, WRITERS_TIMEOUT_SECONDS
        )
        assert exit_codes == [0] * WRITERS, "a writer process failed or hung (see its stderr)"
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def cli_environment(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    """What ``bedside audit verify`` reads: the test database and the audit key."""
    monkeypatch.setenv("BEDSIDE_DATABASE_URL", database_url)
    monkeypatch.setenv("BEDSIDE_AUDIT_HMAC_KEY", TEST_AUDIT_KEY)


def sequences(engine: Engine, chain: str) -> list[int]:
    table = table_of(chain)
    with engine.connect() as connection:
        statement = select(table.c.sequence).order_by(table.c.sequence)
        return list(connection.execute(statement).scalars())


def writers_in_order(engine: Engine, chain: str) -> list[str]:
    """The writer (``client_iss``) of each record, in chain order."""
    table = table_of(chain)
    with engine.connect() as connection:
        statement = select(table.c.client_iss).order_by(table.c.sequence)
        return list(connection.execute(statement).scalars())


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("cli_environment")
def test_concurrent_writer_processes_extend_one_intact_chain(
    written_chains: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    expected_writers = Counter({writer_iss(w): RECORDS_PER_WRITER for w in range(WRITERS)})
    for chain in CHAIN_NAMES:
        report = verify_chain(written_chains, chain)
        assert report.broken is None, (chain, report.broken)
        assert (report.records, report.head.sequence) == (TOTAL, TOTAL)
        assert sequences(written_chains, chain) == list(range(1, TOTAL + 1))
        writers = writers_in_order(written_chains, chain)
        assert Counter(writers) == expected_writers
        turns = 1 + sum(a != b for a, b in itertools.pairwise(writers))
        assert turns > WRITERS, "the writers did not overlap: no concurrency was tested"

    capsys.readouterr()
    assert main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    for chain in CHAIN_NAMES:
        assert f"{chain}: intact, {TOTAL} records, head {TOTAL} " in out


@dataclass(frozen=True)
class Tamper:
    """SQL run behind the store's back, and where verification must say the chain broke."""

    statements: Callable[[str, str], list[str]]
    sequence: int
    reason: str


def edit_content(table: str, edit: str) -> list[str]:
    return [f"UPDATE {table} SET {edit} WHERE sequence = {TAMPERED}"]


def delete_record(table: str, _edit: str) -> list[str]:
    return [f"DELETE FROM {table} WHERE sequence = {TAMPERED}"]


def swap_records(table: str, _edit: str) -> list[str]:
    parked = -TAMPERED  # no record has it, so the unique constraint holds at every step
    return [
        f"UPDATE {table} SET sequence = {parked} WHERE sequence = {TAMPERED}",
        f"UPDATE {table} SET sequence = {TAMPERED} WHERE sequence = {TAMPERED + 1}",
        f"UPDATE {table} SET sequence = {TAMPERED + 1} WHERE sequence = {parked}",
    ]


def delete_last_record(table: str, _edit: str) -> list[str]:
    return [f"DELETE FROM {table} WHERE sequence = {TOTAL}"]


TAMPERS = {
    "content-edited": Tamper(edit_content, TAMPERED, "content does not match its hash"),
    # The first record out of place is the one after the gap; the reason names the missing one.
    "record-deleted": Tamper(delete_record, TAMPERED + 1, f"expected record {TAMPERED} here"),
    "records-swapped": Tamper(swap_records, TAMPERED, "does not follow the previous record"),
    "last-record-deleted": Tamper(
        delete_last_record,
        TOTAL,
        f"the chain head is record {TOTAL}; the records end at {TOTAL - 1}",
    ),
}


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("cli_environment")
@pytest.mark.parametrize("case", list(TAMPERS))
def test_tampering_with_a_chain_is_reported_at_the_tampered_record(
    written_chains: Engine, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper = TAMPERS[case]
    with written_chains.begin() as connection:
        for chain in CHAIN_NAMES:
            for statement in tamper.statements(table_of(chain).name, CONTENT_EDITS[chain]):
                assert connection.execute(text(statement)).rowcount == 1, statement

    for chain in CHAIN_NAMES:
        broken = verify_chain(written_chains, chain).broken
        assert broken is not None, f"{chain}: tampering not detected"
        assert (broken.sequence, broken.reason) == (tamper.sequence, tamper.reason)

    capsys.readouterr()
    assert main(["audit", "verify"]) == 1
    lines = capsys.readouterr().out.splitlines()
    for chain in CHAIN_NAMES:
        assert f"{chain}: BROKEN at record {tamper.sequence}: {tamper.reason}" in lines
    assert any(line.startswith("outcome: intact, 0 records") for line in lines)


# --- a real server killed mid-load ---------------------------------------------------------


def discharge_request(number: int) -> dict[str, Any]:
    """A discharge call for a distinct patient and stay (the demo model mostly says moderate)."""
    patient, encounter = f"load-p{number}", f"load-e{number}"
    admitted = datetime(2026, 11, 1, 8, tzinfo=UTC) + timedelta(hours=number % 500)
    return {
        "hook": "encounter-discharge",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/1", "patientId": patient, "encounterId": encounter},
        "prefetch": {
            "patient": {
                "resourceType": "Patient",
                "id": patient,
                "gender": "female" if number % 2 else "male",
                "birthDate": f"{1930 + number % 30}-0{1 + number % 9}-1{number % 10}",
            },
            "encounter": {
                "resourceType": "Encounter",
                "id": encounter,
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "IMP",
                },
                "subject": {"reference": f"Patient/{patient}"},
                "period": {
                    "start": admitted.isoformat(),
                    "end": (admitted + timedelta(days=3 + number % 5)).isoformat(),
                },
            },
            "observations": None,
            "conditions": None,
            "encounters": None,
            "medications": None,
        },
    }


def card_uuids(response: httpx.Response) -> list[uuid.UUID]:
    return [uuid.UUID(card["uuid"]) for card in response.json()["cards"]]


@dataclass
class LoadRun:
    """Discharge calls from several threads until stopped; the card uuids of every 200."""

    url: str
    cards: list[uuid.UUID] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    sent: int = 0

    def card_count(self) -> int:
        with self.lock:
            return len(self.cards)

    def _number(self) -> int:
        with self.lock:
            self.sent += 1
            return self.sent

    def client(self) -> None:
        deadline = time.monotonic() + LOAD_DEADLINE_SECONDS
        with httpx.Client(timeout=10.0) as http:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    response = http.post(self.url, json=discharge_request(self._number()))
                except httpx.TransportError:  # the server is gone (or going)
                    time.sleep(0.05)
                    continue
                if response.status_code == 200:
                    received = card_uuids(response)
                    with self.lock:
                        self.cards += received


def server_for(database_url: str, log_path: Path) -> BedsideServer:
    environment = {
        "BEDSIDE_DATABASE_URL": database_url,
        "BEDSIDE_INSECURE_DEV_AUTH": "true",
        "BEDSIDE_AUDIT_HMAC_KEY": TEST_AUDIT_KEY,
        "BEDSIDE_LOG_LEVEL": "WARNING",
    }
    return BedsideServer(free_port(), environment, log_path)


@pytest.mark.timeout(180)
def test_server_killed_mid_load_loses_no_acknowledged_prediction(
    database_url: str, tmp_path: Path
) -> None:
    first = server_for(database_url, tmp_path / "first.log")
    second = server_for(database_url, tmp_path / "second.log")
    load = LoadRun(f"{first.base_url}/cds-services/{DISCHARGE_SERVICE}")
    clients = [threading.Thread(target=load.client, daemon=True) for _ in range(LOAD_CLIENTS)]
    after_restart: list[uuid.UUID] = []
    try:
        first.start(READY_TIMEOUT_SECONDS)
        for client in clients:
            client.start()
        deadline = time.monotonic() + LOAD_DEADLINE_SECONDS
        while load.card_count() < CARDS_BEFORE_KILL and time.monotonic() < deadline:
            time.sleep(0.005)
        first.kill()  # while the clients keep firing
        load.stop.set()
        for client in clients:
            client.join(15)
        assert not any(client.is_alive() for client in clients)
        acknowledged = list(load.cards)
        assert len(acknowledged) >= CARDS_BEFORE_KILL, first.output()

        second.start(READY_TIMEOUT_SECONDS)
        with httpx.Client(timeout=10.0) as http:
            url = f"{second.base_url}/cds-services/{DISCHARGE_SERVICE}"
            for number in range(REQUESTS_AFTER_RESTART):
                response = http.post(url, json=discharge_request(10_000 + number))
                assert response.status_code == 200, response.text
                after_restart += card_uuids(response)
    finally:
        load.stop.set()
        first.kill()
        first.stop()
        second.stop()

    assert len(set(acknowledged)) == len(acknowledged)
    assert after_restart, "the restarted server served no cards"
    engine = make_engine(database_url)
    try:
        table = table_of("prediction")
        with engine.connect() as connection:
            stored = set(connection.execute(select(table.c.card_uuid)).scalars())
        assert set(acknowledged) - stored == set(), "acknowledged cards without a prediction"
        assert set(after_restart) <= stored
        report = verify_chain(engine, "prediction")
        assert report.broken is None, report.broken
        assert report.records == report.head.sequence == len(stored)
        assert report.records >= len(acknowledged) + len(after_restart)
    finally:
        engine.dispose()
