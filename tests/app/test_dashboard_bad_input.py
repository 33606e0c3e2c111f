"""Broken and hostile input to the dashboard, which the OpenAPI fuzz never reaches (its routes
are not in the document): sign-in form bodies, session cookies and the report pages' query
strings get a 4xx (the sign-in page with its message for an unusable token), never a 5xx.

Each test runs a real Bedside (uvicorn on loopback) serving the bundled model package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from app.access.tokens import create_token
from app.factory import BUNDLED_MODELS
from app.models.package import ModelPackage, load_packages
from tests.support.api_tokens import bearer

RunBedside = Callable[..., Any]
MODEL = "readmission-30d"
MAX_BODY = 64 * 1024
FORM = "application/x-www-form-urlencoded"
UNKNOWN_TOKEN = "That token is unknown or has been revoked."
MULTIPART = "multipart/form-data; boundary=x"


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    """One multipart/form-data part (boundary ``x``), the closing boundary not included."""
    named = f'name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--x\r\nContent-Disposition: form-data; {named}\r\n\r\n".encode() + value + b"\r\n"


# body → (content type, body, expected status); 401 is the sign-in page saying UNKNOWN_TOKEN
SIGN_IN_BODIES: dict[str, tuple[str | None, bytes, int]] = {
    "empty": (FORM, b"", 401),
    "separators only": (FORM, b"&&&=&==", 401),
    "no token": (FORM, b"next=%2Fdashboard%2F", 401),
    "malformed percent escapes": (FORM, b"token=%zz%&next=%", 401),
    "non-UTF-8 bytes": (FORM, b"token=bds_\xff\xfe&next=\xc3", 401),
    "non-UTF-8 escapes": (FORM, b"token=bds_%ff%fe&next=%c3%28", 401),
    "a NUL character": (FORM, b"token=bds_%00x", 401),
    "a token of 600 characters": (FORM, b"token=bds_" + b"x" * 600, 400),
    "a token of 60 kB": (FORM, b"token=bds_" + b"x" * 60_000, 400),
    "a body over the limit": (FORM, b"token=" + b"x" * MAX_BODY, 413),
    "a next of 3000 characters": (FORM, b"next=%2Fdashboard%2F" + b"a" * 3000, 400),
    "5000 fields": (FORM, b"&".join(b"f%d=1" % i for i in range(5000)), 400),
    "an unknown charset": (f"{FORM}; charset=nonsense", b"token=bds_x", 401),
    "JSON": ("application/json", b'{"token": "bds_x"}', 401),
    "plain text": ("text/plain", b"token=bds_x", 401),
    "XML": ("application/xml", b"<token>bds_x</token>", 401),
    "no content type": (None, b"token=bds_x", 401),
    "multipart without a boundary": ("multipart/form-data", b"--x\r\n", 400),
    "multipart garbage": (MULTIPART, b"garbage", 400),
    "multipart cut short": (MULTIPART, part("token", b"bds_x")[:-2], 401),
    "a file as the token": (MULTIPART, part("token", b"bds_x", "token.txt") + b"--x--\r\n", 400),
}


@pytest.fixture(scope="module")
def packages() -> list[ModelPackage]:
    return load_packages(BUNDLED_MODELS)


@pytest.fixture
def dashboard(
    run_bedside: RunBedside, engine: Any, packages: list[ModelPackage]
) -> Iterator[tuple[httpx.Client, str]]:
    """A client of a Bedside with a 64 kB body limit, and a live safety officer's token."""
    officer = create_token(engine, "s.officer", "safety_officer")
    with (
        run_bedside(packages=packages, max_body_bytes=MAX_BODY) as bedside,
        httpx.Client(base_url=bedside.base_url, timeout=60, follow_redirects=False) as http,
    ):
        yield http, officer


def sign_in(http: httpx.Client, content: bytes, content_type: str | None) -> httpx.Response:
    headers = {} if content_type is None else {"Content-Type": content_type}
    return http.post("/dashboard/sign-in", content=content, headers=headers)


def test_broken_sign_in_bodies_are_refused_never_a_server_error(
    dashboard: tuple[httpx.Client, str],
) -> None:
    http, officer = dashboard
    answers = {
        case: sign_in(http, content, content_type)
        for case, (content_type, content, _) in SIGN_IN_BODIES.items()
    }
    good = sign_in(http, f"token={officer}".encode(), FORM)
    for case, answer in answers.items():
        expected = SIGN_IN_BODIES[case][2]
        assert answer.status_code == expected, f"{case}: {answer.status_code} {answer.text[:300]}"
        assert "set-cookie" not in answer.headers, case
        assert "x" * 600 not in answer.text, f"{case}: the token is echoed"
        if expected == 401:
            assert UNKNOWN_TOKEN in answer.text and 'name="token"' in answer.text, case
        else:  # refused before the form is read: an OperationOutcome, as everywhere else
            outcome = answer.json()
            assert outcome["resourceType"] == "OperationOutcome", f"{case}: {outcome}"
            assert outcome["issue"][0]["diagnostics"], case
    assert good.status_code == 303 and "set-cookie" in good.headers


def test_a_live_token_signs_in_only_from_the_form(dashboard: tuple[httpx.Client, str]) -> None:
    """A token in JSON, plain text or the URL is not read: no cookie, whatever it holds."""
    http, officer = dashboard
    answers = [
        sign_in(http, f'{{"token": "{officer}"}}'.encode(), "application/json"),
        sign_in(http, f"token={officer}".encode(), "text/plain"),
        http.post("/dashboard/sign-in", params={"token": officer}),
    ]
    for answer in answers:
        assert answer.status_code == 401 and UNKNOWN_TOKEN in answer.text
        assert "set-cookie" not in answer.headers and officer not in answer.text


HOSTILE_COOKIES: dict[str, bytes] = {
    "an unknown token": b"bds_" + b"x" * 43,
    "an 8 kB token": b"bds_" + b"x" * 8000,
    "UTF-8 bytes": "bds_ключ".encode(),
    "invalid UTF-8 bytes": b"bds_\xff\xfe",
    "quotes and separators": b'"";;,=',
    "empty": b"",
}


def test_hostile_session_cookies_are_sent_to_sign_in(dashboard: tuple[httpx.Client, str]) -> None:
    http, _ = dashboard
    for case, value in HOSTILE_COOKIES.items():
        answer = http.get("/dashboard/fairness", headers={"Cookie": b"bedside_dashboard=" + value})
        assert answer.status_code == 303, f"{case}: {answer.status_code} {answer.text[:300]}"
        assert answer.headers["location"].startswith("/dashboard/sign-in?next="), case


# (path, query) → status; the report pages show the reason on the page
BAD_QUERIES: dict[tuple[str, str], int] = {
    ("/dashboard/", "model=nope&start=garbage&end=%ff"): 200,  # the overview reads no report
    ("/dashboard/sign-in", "next=%ff%fe&next=" + "a" * 10_000): 200,
    ("/dashboard/fairness", "start=garbage"): 400,
    ("/dashboard/fairness", "start=2026-13-45"): 400,
    ("/dashboard/fairness", "end=%ff%fe"): 400,
    ("/dashboard/fairness", "start=%00"): 400,
    ("/dashboard/fairness", "start=2026-01-01T25:00"): 400,
    ("/dashboard/fairness", "start=2026-01-01T00:00:00%2B24:00"): 400,
    ("/dashboard/fairness", "start=0001-01-01T00:00:00%2B05:00"): 400,
    ("/dashboard/fairness", "end=9999-12-31T23:59:59-05:00"): 400,
    ("/dashboard/fairness", "start=2026-05-01&end=2026-01-01"): 400,
    ("/dashboard/fairness", "threshold=nan"): 400,
    ("/dashboard/fairness", "threshold=inf"): 400,
    ("/dashboard/fairness", "threshold=1e999"): 400,
    ("/dashboard/fairness", "threshold=-1"): 400,
    ("/dashboard/fairness", "threshold=abc"): 400,
    ("/dashboard/fairness", "group_by=nope"): 400,
    ("/dashboard/fairness", "group_by=" + ",".join(["sex"] * 50)): 400,
    ("/dashboard/fairness", "label=BAD%20LABEL"): 400,
    ("/dashboard/fairness", "label=" + "a" * 500): 400,
    ("/dashboard/fairness", "model=" + "m" * 5000): 400,
    ("/dashboard/fairness", "model=%3Cscript%3Ealert(1)%3C/script%3E"): 400,
    ("/dashboard/agreement", "group_by=nope"): 400,
    ("/dashboard/agreement", "group_by=%00"): 400,
    ("/dashboard/agreement", "label=x%20y"): 400,
    ("/dashboard/drift", "window=nope"): 400,
    ("/dashboard/drift", "window="): 400,
    ("/dashboard/drift", "missing_difference=nan"): 400,
    ("/dashboard/drift", "missing_difference=abc"): 400,
    ("/dashboard/drift", "feature_share=0"): 400,
    ("/dashboard/drift", "feature_share=inf"): 400,
    ("/dashboard/explanations", ""): 400,
    ("/dashboard/explanations", "card=nope"): 400,
    ("/dashboard/explanations/not-a-uuid", ""): 400,
    ("/dashboard/explanations/00000000-0000-0000-0000-000000000000", ""): 404,
    ("/dashboard/models/" + "n" * 3000, ""): 404,
    ("/dashboard/models/%00", ""): 404,
    ("/dashboard/assets/" + "a" * 100, ""): 400,
    ("/dashboard/assets/%00", ""): 404,
}


def test_bad_query_values_are_a_4xx_with_the_reason_on_the_page(
    dashboard: tuple[httpx.Client, str],
) -> None:
    http, officer = dashboard
    http.cookies.set("bedside_dashboard", officer)
    for (path, query), expected in BAD_QUERIES.items():
        answer = http.get(f"{path}?{query}" if query else path)
        where = f"{path[:60]}?{query[:60]}: {answer.status_code} {answer.text[:300]}"
        assert answer.status_code == expected, where
        if path.removeprefix("/dashboard/") in ("fairness", "agreement", "drift"):
            assert 'class="error"' in answer.text, where
        assert "<script>alert" not in answer.text, where


def test_a_drift_report_of_a_window_without_predictions_is_empty_not_a_server_error(
    dashboard: tuple[httpx.Client, str],
) -> None:
    """It was a 500 on the page and the JSON report alike (an empty store, any window)."""
    http, officer = dashboard
    http.cookies.set("bedside_dashboard", officer)
    page = http.get("/dashboard/drift", params={"start": "0001-01-01", "end": "9999-12-31"})
    window = {"model": MODEL, "start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}
    report = http.get("/reports/drift", params=window, headers=bearer(officer))
    assert page.status_code == 200, page.text[:300]
    assert report.status_code == 200, report.text[:300]
    assert [row["bucket"] for row in report.json()["report"]["flag_rate"]] == ["all"]
