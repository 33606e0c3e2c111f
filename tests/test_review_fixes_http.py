"""Regressions from review, through Bedside in uvicorn: extreme dates must never be a 500."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from app.factory import BUNDLED_MODELS
from app.models.package import load_packages
from tests.support.cds_client import CdsTestClient
from tests.support.db import feedback_rows
from tests.support.fhir_builders import encounter, patient, searchset

DISCHARGE = "readmission-30d-encounter-discharge"


def discharge_request(index: dict[str, Any]) -> dict[str, Any]:
    return {
        "hook": "encounter-discharge",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/u1", "patientId": "p1", "encounterId": index["id"]},
        "prefetch": {
            "patient": patient(),
            "encounter": index,
            "observations": searchset([]),
            "conditions": searchset([]),
            "encounters": searchset([index]),
            "medications": searchset([]),
        },
    }


def feedback_entry(timestamp: str) -> dict[str, Any]:
    return {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": timestamp}


def issues(response: httpx.Response) -> list[tuple[str, list[str]]]:
    return [(entry["severity"], entry.get("expression", [])) for entry in response.json()["issue"]]


def test_discharge_with_a_year_one_period_end_is_scored_like_one_without_an_end(
    run_bedside: Callable[..., Any],
) -> None:
    """A period.end of 0001-03-01 is not a usable discharge time: the request time is the index."""
    year_one = encounter("e1", "2024-03-01T08:00:00Z", "0001-03-01")
    open_ended = copy.deepcopy(year_one)
    del open_ended["period"]["end"]
    with run_bedside(packages=load_packages(BUNDLED_MODELS)) as client:
        extreme = client.call(DISCHARGE, discharge_request(year_one))
        without_end = client.call(DISCHARGE, discharge_request(open_ended))
    assert extreme.status_code == 200, extreme.text
    assert without_end.status_code == 200, without_end.text
    [card] = extreme.json()["cards"]
    [reference] = without_end.json()["cards"]
    assert card["summary"] == reference["summary"]
    assert card["summary"].startswith("Readmission risk: ")


def test_feedback_timestamp_beyond_utc_range_rejects_that_entry_only(
    bedside: CdsTestClient, database_url: str
) -> None:
    batch = {
        "feedback": [
            feedback_entry("2024-01-01T00:00:00Z"),
            feedback_entry("0001-01-01T00:00:00+01:00"),
            feedback_entry("9999-12-31T23:59:59-01:00"),
        ]
    }
    response = bedside.feedback("test-discharge", batch)
    assert response.status_code == 200, response.text
    assert issues(response) == [
        ("information", []),
        ("warning", []),  # the test service keeps no predictions: the entry is an orphan
        ("error", ["feedback[1].outcomeTimestamp"]),
        ("error", ["feedback[2].outcomeTimestamp"]),
    ]
    assert [entry["diagnostics"] for entry in response.json()["issue"]] == [
        "stored 1 of 3 feedback entries (0 already on record, 2 rejected)",
        "1 stored entries refer to cards with no prediction on record",
        "Value error, outcomeTimestamp is out of range in UTC",
        "Value error, outcomeTimestamp is out of range in UTC",
    ]
    assert feedback_rows(database_url) == 1


def test_feedback_batch_of_only_out_of_range_timestamps_is_400(
    bedside: CdsTestClient, database_url: str
) -> None:
    response = bedside.feedback(
        "test-discharge", {"feedback": [feedback_entry("0001-01-01T00:00:00+01:00")]}
    )
    assert response.status_code == 400
    assert issues(response) == [("error", ["feedback[0].outcomeTimestamp"])]
    assert feedback_rows(database_url) == 0
