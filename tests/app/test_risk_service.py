"""End to end: an EHR's hook request with prefetch → features → prediction → a valid risk card."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.app.conftest import TrainedModel
from tests.support.cds_client import CdsTestClient
from tests.support.fhir_builders import searchset
from tests.support.hook_requests import hook_request

# The first test pays for generating a cohort and training on it (a session fixture).
pytestmark = pytest.mark.timeout(600)

DISCHARGE = "readmission-30d-encounter-discharge"
PATIENT_VIEW = "readmission-30d-patient-view"


def test_discovery_lists_the_package_services_with_derived_prefetch(
    run_bedside: Callable[..., Any], trained_model: TrainedModel
) -> None:
    with run_bedside(packages=[trained_model.package]) as client:
        services = {s["id"]: s for s in client.discovery().json()["services"]}
    assert set(services) == {DISCHARGE, PATIENT_VIEW}
    assert services[DISCHARGE]["hook"] == "encounter-discharge"
    assert services[DISCHARGE]["prefetch"]["encounter"] == "Encounter/{{context.encounterId}}"
    assert "code=" in services[DISCHARGE]["prefetch"]["observations"]


def _card(client: CdsTestClient, service: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.call(service, body)
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    return card


def test_high_risk_discharge_gets_a_warning_card_with_drivers_and_a_suggestion(
    run_bedside: Callable[..., Any], trained_model: TrainedModel, stays_by_risk: list
) -> None:
    _, record, encounter = stays_by_risk[-1]
    with run_bedside(packages=[trained_model.package]) as client:
        card = _card(client, DISCHARGE, hook_request("encounter-discharge", record, encounter))
    assert card["summary"].endswith("(high)")
    assert card["indicator"] == "warning"
    assert "**Main factors**" in card["detail"] and "risk" in card["detail"]
    assert card["selectionBehavior"] == "at-most-one"
    assert card["suggestions"][0]["actions"][0]["resource"]["resourceType"] == "ServiceRequest"
    codes = {reason["code"] for reason in card["overrideReasons"]}
    assert {"risk-overestimated", "already-addressed"} <= codes
    assert any("/explanations/" in link["url"] for link in card["links"])


def test_low_risk_discharge_gets_an_info_card_without_a_suggestion(
    run_bedside: Callable[..., Any], trained_model: TrainedModel, stays_by_risk: list
) -> None:
    _, record, encounter = stays_by_risk[0]
    with run_bedside(packages=[trained_model.package]) as client:
        card = _card(client, DISCHARGE, hook_request("encounter-discharge", record, encounter))
    assert card["summary"].endswith("(low)")
    assert card["indicator"] == "info"
    assert "suggestions" not in card


def test_patient_view_scores_only_during_an_inpatient_stay(
    run_bedside: Callable[..., Any], trained_model: TrainedModel, stays_by_risk: list
) -> None:
    _, record, encounter = stays_by_risk[len(stays_by_risk) // 2]
    ongoing = copy.deepcopy(encounter)
    ongoing["status"] = "in-progress"
    ongoing["period"].pop("end")
    with run_bedside(packages=[trained_model.package]) as client:
        during = client.call(PATIENT_VIEW, hook_request("patient-view", record, ongoing))
        after = client.call(PATIENT_VIEW, hook_request("patient-view", record, encounter))
    assert during.status_code == 200 and len(during.json()["cards"]) == 1
    assert after.status_code == 200 and after.json()["cards"] == []


def test_prefetch_for_another_patient_is_refused_with_400(
    run_bedside: Callable[..., Any], trained_model: TrainedModel, stays_by_risk: list
) -> None:
    _, record, encounter = stays_by_risk[0]
    body = hook_request("encounter-discharge", record, encounter)
    body["context"]["patientId"] = "someone-else"
    with run_bedside(packages=[trained_model.package]) as client:
        response = client.call(DISCHARGE, body)
    assert response.status_code == 400


def test_card_links_open_the_explanation_and_the_model_card(
    run_bedside: Callable[..., Any], trained_model: TrainedModel, stays_by_risk: list
) -> None:
    _, record, encounter = stays_by_risk[-1]
    with run_bedside(packages=[trained_model.package]) as client:
        card = _card(client, DISCHARGE, hook_request("encounter-discharge", record, encounter))
        links = {link["label"]: link["url"] for link in card["links"]}
        explanation = client.http.get(links["Why this risk? (explanation)"])
        model_card = client.http.get(links["About this model (model card)"])
        unknown = client.http.get(f"{client.base_url}/explanations/{uuid.uuid4()}")
    assert explanation.status_code == 200
    percent = card["summary"].split(": ")[1].split("%")[0]
    assert f"Why {percent}% (high)?" in explanation.text
    assert explanation.text.count("<rect") >= 5  # the waterfall's bars
    assert f"this patient: {percent}% after calibration" in explanation.text  # one risk, not two
    assert model_card.status_code == 200 and "Intended use" in model_card.text
    assert "LACE AUROC (baseline)" in model_card.text
    assert unknown.status_code == 404


def test_unobtainable_optional_searches_make_their_features_unknown_not_zero(
    run_bedside: Callable[..., Any], trained_model: TrainedModel, stays_by_risk: list
) -> None:
    _, record, encounter = stays_by_risk[-1]
    body = hook_request("encounter-discharge", record, encounter)
    for key in ("conditions", "encounters", "medications"):
        del body["prefetch"][key]  # not sent, and no fhirServer to fetch them from
    with run_bedside(packages=[trained_model.package]) as client:
        card = _card(client, DISCHARGE, body)
    not_available = card["detail"].split("**Not available:**")[1]
    for label in ("Charlson comorbidity index", "Admissions in past 12 months"):
        assert label in not_available
    assert "Charlson comorbidity index 0" not in card["detail"]


def test_discharge_without_its_encounter_is_a_412(
    run_bedside: Callable[..., Any], trained_model: TrainedModel, stays_by_risk: list
) -> None:
    _, record, encounter = stays_by_risk[0]
    body = hook_request("encounter-discharge", record, encounter)
    body["prefetch"]["encounter"] = None
    body["prefetch"]["encounters"] = searchset([])
    with run_bedside(packages=[trained_model.package]) as client:
        response = client.call(DISCHARGE, body)
    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"


def _memo_lookups(client: CdsTestClient) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = client.request("GET", "/metrics", sign=False, validate=False).text
    return {
        sample.labels["result"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "bedside_validation_memo_lookups_total"
    }


def test_a_patient_sent_again_is_not_validated_again_and_gets_the_same_card(
    run_bedside: Callable[..., Any], trained_model: TrainedModel, stays_by_risk: list
) -> None:
    _, record, encounter = stays_by_risk[-1]
    body = hook_request("encounter-discharge", record, encounter)
    with run_bedside(packages=[trained_model.package]) as client:
        first = _card(client, DISCHARGE, body)
        after_first = _memo_lookups(client)
        second = _card(client, DISCHARGE, {**body, "hookInstance": str(uuid.uuid4())})
        after_second = _memo_lookups(client)
    assert after_first["miss"] > 0 and after_first["hit"] == 0
    assert after_second["miss"] == after_first["miss"]
    assert after_second["hit"] == after_first["miss"]
    assert second["summary"] == first["summary"] and second["detail"] == first["detail"]
    with run_bedside(packages=[trained_model.package], validation_memo_entries=0) as client:
        unmemoised = _card(client, DISCHARGE, {**body, "hookInstance": str(uuid.uuid4())})
        assert _memo_lookups(client) == {}
    assert unmemoised["detail"] == first["detail"]
