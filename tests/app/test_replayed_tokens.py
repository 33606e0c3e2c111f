"""A replayed token gets a bare 401 and has no effect: nothing recorded, nothing fetched from
the EHR's FHIR server, whatever else is wrong with the call, and its client's rate budget
untouched (the properties any reordering of the token check must keep; decision 0013)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.audit.tables import PredictionRecord
from tests.app.conftest import TrainedModel
from tests.app.test_fhir_faults import without
from tests.support.cds_client import CdsTestClient
from tests.support.fhir_server import FhirTestServer
from tests.support.hook_requests import hook_request

DISCHARGE = "readmission-30d-encounter-discharge"
RunBedside = Callable[..., Any]
# The first test to ask for the session's trained model trains it (a minute or two).
pytestmark = pytest.mark.timeout(300)


def twice(client: CdsTestClient, bodies: tuple[Any, Any]) -> list[httpx.Response]:
    """Both bodies sent with one and the same token."""
    path = f"/cds-services/{DISCHARGE}"
    token = client.token(client.base_url + path)
    headers = {"Authorization": f"Bearer {token}"}
    return [
        client.request("POST", path, json=body, headers=headers, validate=False) for body in bodies
    ]


def predictions(engine: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(PredictionRecord)).scalar())


def bare_401(response: httpx.Response) -> bool:
    return response.status_code == 401 and response.content == b""


def test_a_replayed_token_gets_401_and_records_nothing(
    run_bedside: RunBedside, trained_model: TrainedModel, stays_by_risk: list, engine: Any
) -> None:
    _, record, encounter = stays_by_risk[-1]
    body = hook_request("encounter-discharge", record, encounter)
    with run_bedside(packages=[trained_model.package]) as client:
        first, replayed = twice(client, (body, body))
    assert first.status_code == 200 and len(first.json()["cards"]) == 1
    assert bare_401(replayed)
    assert predictions(engine) == 1


@pytest.mark.parametrize(
    "broken",
    [
        {"hook": "encounter-discharge"},  # no context
        {"hook": "patient-view", "hookInstance": "x", "context": {}},  # another service's hook
    ],
)
def test_a_replayed_token_gets_401_whatever_else_is_wrong(
    run_bedside: RunBedside,
    trained_model: TrainedModel,
    stays_by_risk: list,
    broken: dict[str, Any],
) -> None:
    _, record, encounter = stays_by_risk[0]
    body = hook_request("encounter-discharge", record, encounter)
    with run_bedside(packages=[trained_model.package]) as client:
        first, replayed = twice(client, (body, broken))
        fresh = client.call(DISCHARGE, broken, validate=False)
    assert first.status_code == 200
    assert bare_401(replayed)
    assert fresh.status_code == 400  # the same body with a new token: the body's own error


def test_a_replayed_token_fetches_nothing_from_the_fhir_server(
    run_bedside: RunBedside,
    trained_model: TrainedModel,
    stays_by_risk: list,
    fhir_server: FhirTestServer,
    engine: Any,
) -> None:
    _, record, encounter = stays_by_risk[-1]
    complete = hook_request("encounter-discharge", record, encounter)
    lacking = without(complete, ("patient", "encounter"), fhir_server.base_url)
    with run_bedside(packages=[trained_model.package]) as client:
        first, replayed = twice(client, (complete, lacking))
    assert first.status_code == 200
    assert bare_401(replayed)
    assert fhir_server.calls == []
    assert predictions(engine) == 1


def test_a_replayed_token_spends_no_rate_budget(
    run_bedside: RunBedside, trained_model: TrainedModel, stays_by_risk: list
) -> None:
    _, record, encounter = stays_by_risk[0]
    body = hook_request("encounter-discharge", record, encounter)
    with run_bedside(
        packages=[trained_model.package], rate_limit_per_minute=3, rate_limit_burst=3
    ) as client:
        answers = [*twice(client, (body, body)), *twice(client, (body, body))]
        answers += [client.call(DISCHARGE, body, validate=False) for _ in range(2)]
    # Three admitted calls spend the budget of three; the replays spent none of it.
    assert [a.status_code for a in answers] == [200, 401, 200, 401, 200, 429]
