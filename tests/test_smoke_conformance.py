from tests.support.cds_client import CdsTestClient


def test_discovery_lists_every_registered_service(bedside: CdsTestClient) -> None:
    response = bedside.discovery()
    assert response.status_code == 200
    ids = sorted(service["id"] for service in response.json()["services"])
    assert ids == ["test-discharge", "test-discharge-quiet", "test-patient-view"]
