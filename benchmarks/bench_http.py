"""End-to-end HTTP benchmark: ``bedside serve --workers 2`` called the way an EHR calls it.

For the smallest, median and largest Synthea bundle of ``$BEDSIDE_FHIR_SAMPLES/synthea`` (by file
size) it builds the encounter-discharge and patient-view requests an EHR would send (prefetch
filled from the package's templates: Observations filtered by the templates' codes, Conditions,
Encounters, MedicationRequests; patient-view during an ongoing inpatient stay, so that it scores),
signs every call with an ES384 JWT of a client pinned in ``BEDSIDE_CLIENTS_FILE`` (``aud`` = the
URL, a fresh ``jti`` each), and measures, against SQLite and PostgreSQL:

- closed loop at concurrency 1, 8 and 32: p50/p95/p99 and throughput per hook and patient;
- the floor, in this process without HTTP: parse and validate the same body, resolve the
  prefetch, map, predict with SHAP, build and serialise the card (no JWT, no audit write);
  the HTTP p50 at concurrency 1 is reported as a ratio to it;
- open loop at 50 requests/s (median patient, discharge): p50/p99 from the scheduled send time;
- the maximum sustained throughput (median patient, discharge, concurrency 16, closed loop);
- an RSS soak: the sum of the two workers' RSS, sampled every 5 s while an open loop runs over
  every patient and hook (``BENCH_SOAK_SECONDS``, default 600; at ``BENCH_SOAK_RATE`` (50/s) or
  60% of the maximum measured, whichever is lower; on ``BENCH_SOAK_DATABASE``, default the last
  of ``BENCH_DATABASES``). Growth: median of the last 10% of samples against the first 10%.

The server is started as ``python -c "from app.cli import main; ..." serve --workers 2``: the
same ``bedside serve``, but spawned workers do not re-import the entry module before answering
uvicorn's 5-second health check (with ``python -m app.cli`` they take longer than that to import
on a busy 2-core machine and are killed and restarted in a loop).

The load generator (asyncio, this process, raw HTTP/1.1 on kept-alive connections:
``benchmarks/loopback_http.py``) shares the machine's cores with the server (and with
PostgreSQL): its CPU use is printed next to each result. Tokens are signed before the timed part,
except in the soak (longer than a token lives), which signs each request when it sends it.

PostgreSQL runs in a private schema dropped at the end; nothing is left in ``public``.
"""

from __future__ import annotations

import asyncio
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from sqlalchemy import create_engine, text

from app.demo.client_keys import TOKEN_LIFETIME_SECONDS, DemoClientKey
from app.demo.service import SERVE_UNDER_C, BedsideProcess
from app.demo.threaded_server import free_port
from app.factory import BUNDLED_MODELS
from app.models.card import risk_card
from app.models.package import ModelPackage, load_packages
from app.models.service import PackageService
from benchmarks.loopback_http import LoopbackClient
from cds_hooks.contexts import validate_context
from cds_hooks.models import HookRequest, HookResponse
from cds_hooks.registry import HookCall
from fhir_mappers.fhirtime import parse_fhir_datetime
from fhir_mappers.prefetch import PrefetchPlan, resolve_prefetch
from fhir_mappers.templates import prefetch_templates, required_keys

HOOKS = ("encounter-discharge", "patient-view")
CONCURRENCY = (1, 8, 32)
CELL_REQUESTS = int(os.environ.get("BENCH_HTTP_REQUESTS", "300"))
CELL_SECONDS = float(os.environ.get("BENCH_HTTP_CELL_SECONDS", "8"))
FLOOR_REPEATS = int(os.environ.get("BENCH_FLOOR_REPEATS", "200"))
OPEN_RATE = float(os.environ.get("BENCH_OPEN_RATE", "50"))
OPEN_SECONDS = float(os.environ.get("BENCH_OPEN_SECONDS", "30"))
MAX_CONCURRENCY = int(os.environ.get("BENCH_MAX_CONCURRENCY", "16"))
MAX_SECONDS = float(os.environ.get("BENCH_MAX_SECONDS", "20"))
SOAK_SECONDS = float(os.environ.get("BENCH_SOAK_SECONDS", "600"))
SOAK_RATE = float(os.environ.get("BENCH_SOAK_RATE", "50"))
SOAK_SAMPLE_SECONDS = 5.0
DATABASES = tuple(os.environ.get("BENCH_DATABASES", "sqlite,postgresql").split(","))
POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PHASES = frozenset(os.environ.get("BENCH_PHASES", "sweep,open,max,soak").split(","))
WORKERS = 2
PLACEHOLDER = b"00000000-0000-4000-8000-000000000000"
# The patient's id in a body, replaced when sent: by the patient's own id, or, with
# BENCH_DISTINCT_PATIENTS=1, by a new one per call, so that no resource's content repeats (the
# subject of every resource names the patient) and the validation memo never helps.
PATIENT_PLACEHOLDER = b"00000000-0000-4000-8000-0000000000aa"
DISTINCT_PATIENTS = os.environ.get("BENCH_DISTINCT_PATIENTS", "0") == "1"
TARGETS = {"open_p50_ms": 10.0, "open_p99_ms": 40.0, "max_rps": 300.0, "rss_growth_pct": 5.0}


# --- requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One Synthea patient and the request bodies an EHR would send for it, per hook."""

    label: str
    name: str
    bundle_bytes: int
    bodies: dict[str, bytes]
    observations: int


def _relative(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The bundle's resources, ``urn:uuid:`` references as ``Type/id`` (as a server holds them)."""
    names = {
        entry["fullUrl"]: f"{entry['resource']['resourceType']}/{entry['resource']['id']}"
        for entry in bundle.get("entry", [])
        if "fullUrl" in entry and "id" in entry["resource"]
    }

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: names.get(v, v) if k == "reference" else rewrite(v) for k, v in value.items()
            }
        if isinstance(value, list):
            return [rewrite(item) for item in value]
        return value

    return [rewrite(entry["resource"]) for entry in bundle.get("entry", [])]


def _index_encounter(encounters: list[dict[str, Any]]) -> dict[str, Any]:
    """The last finished inpatient stay; else the last finished encounter, made inpatient."""
    finished = [
        (parse_fhir_datetime((e.get("period") or {}).get("end", "")), e) for e in encounters
    ]
    finished = [(end, e) for end, e in finished if end is not None]
    inpatient = [(end, e) for end, e in finished if (e.get("class") or {}).get("code") == "IMP"]
    _, encounter = max(inpatient or finished, key=lambda pair: pair[0])
    act_code = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    return {**encounter, "status": "finished", "class": {"system": act_code, "code": "IMP"}}


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r} for r in resources],
    }


def _codes(template: str) -> set[str]:
    return set(",".join(parse_qs(urlsplit(template).query).get("code", [])).split(","))


def _body(hook: str, templates: dict[str, str], resources: list[dict[str, Any]]) -> bytes:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    [patient] = by_type["Patient"]
    encounter = _index_encounter(by_type.get("Encounter", []))
    if hook == "patient-view":  # the stay is ongoing: the chart is opened during it
        period = {"start": encounter["period"]["start"]}
        encounter = {**encounter, "status": "in-progress", "period": period}
    encounters = [encounter if e["id"] == encounter["id"] else e for e in by_type["Encounter"]]
    wanted = _codes(templates["observations"])
    observations = [
        o
        for o in by_type.get("Observation", [])
        if any(f"{c.get('system')}|{c.get('code')}" in wanted for c in o["code"].get("coding", []))
    ]
    prefetch = {
        "patient": patient,
        "encounter": encounter,
        "observations": _searchset(observations),
        "conditions": _searchset(by_type.get("Condition", [])),
        "encounters": _searchset(encounters),
        "medications": _searchset(by_type.get("MedicationRequest", [])),
    }
    body = {
        "hook": hook,
        "hookInstance": PLACEHOLDER.decode(),
        "context": {
            "userId": "Practitioner/bench-1",
            "patientId": patient["id"],
            "encounterId": encounter["id"],
        },
        "prefetch": {key: prefetch[key] for key in templates},
    }
    return orjson.dumps(body).replace(patient["id"].encode(), PATIENT_PLACEHOLDER)


def load_samples(folder: Path, package: ModelPackage) -> list[Sample]:
    """Smallest, median and largest Synthea bundle (by file size)."""
    paths = sorted(folder.glob("*.json"), key=lambda path: path.stat().st_size)
    picked = {"small": paths[0], "median": paths[len(paths) // 2], "large": paths[-1]}
    samples = []
    for label, path in picked.items():
        resources = _relative(orjson.loads(path.read_bytes()))
        bodies = {
            hook: _body(hook, prefetch_templates(package.spec, hook), resources) for hook in HOOKS
        }
        [patient] = [r for r in resources if r["resourceType"] == "Patient"]
        own_id = patient["id"].encode()
        bodies = {hook: _with_patient_id(body, own_id) for hook, body in bodies.items()}
        prefetch = orjson.loads(bodies["encounter-discharge"])["prefetch"]
        samples.append(
            Sample(
                label,
                path.stem.rsplit("_", 1)[0],
                path.stat().st_size,
                bodies,
                len(prefetch["observations"]["entry"]),
            )
        )
    return samples


def _with_patient_id(body: bytes, patient_id: bytes) -> bytes:
    """The body whose patient id ``fresh`` renews with BENCH_DISTINCT_PATIENTS=1."""
    if not DISTINCT_PATIENTS:
        return body.replace(PATIENT_PLACEHOLDER, patient_id)
    return body


def fresh(body: bytes) -> bytes:
    """The body with a new hookInstance (unique per event, as the spec requires) and, with
    BENCH_DISTINCT_PATIENTS=1, a new patient id."""
    body = body.replace(PLACEHOLDER, str(uuid.uuid4()).encode(), 1)
    if DISTINCT_PATIENTS:
        body = body.replace(PATIENT_PLACEHOLDER, str(uuid.uuid4()).encode())
    return body


# --- statistics ----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def rss_growth(rss: list[int]) -> tuple[float, float, float]:
    """Median of the first and of the last 10% of the samples (one at least), and growth in %."""
    tenth = max(1, len(rss) // 10)
    head, tail = statistics.median(rss[:tenth]), statistics.median(rss[-tenth:])
    return head, tail, (tail - head) / head * 100


@dataclass
class Result:
    """Latencies (ms) of one run, its wall time, statuses and the CPU each side used."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    wall: float = 0.0
    client_cpu: float = 0.0
    worker_cpu: list[float] = field(default_factory=list)

    @property
    def server_cpu(self) -> float:
        return sum(self.worker_cpu)

    def line(self) -> str:
        ok = self.statuses.get(200, 0)
        errors = {code: n for code, n in sorted(self.statuses.items()) if code != 200}
        lat = self.latencies or [float("nan")]
        return (
            f"p50 {statistics.median(lat):7.1f}  p95 {percentile(lat, 0.95):7.1f}  "
            f"p99 {percentile(lat, 0.99):7.1f} ms  {ok / self.wall:6.1f} req/s  "
            f"n {ok}{f' ERRORS {errors}' if errors else ''}  "
            f"cores: client {self.client_cpu / self.wall:.2f} "
            f"server {self.server_cpu / self.wall:.2f} "
            f"({' + '.join(f'{cpu / self.wall:.2f}' for cpu in self.worker_cpu)})"
        )


# --- the server and its workers ------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        text_ = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text_.split()]


def worker_pids(master: int) -> list[int]:
    """The uvicorn worker processes (multiprocessing spawn children) of ``bedside serve``."""
    workers = []
    for child in _children(master):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            workers.append(child)
    return workers


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def cpu_seconds(pids: list[int]) -> list[float]:
    """CPU seconds (user + system) each process has used so far (0 for one that is gone)."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = []
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            seconds.append(0.0)
            continue
        seconds.append((int(fields[11]) + int(fields[12])) / ticks)
    return seconds


def cpu_used(before: list[float], pids: list[int]) -> list[float]:
    """CPU seconds each process used since ``before`` (from :func:`cpu_seconds`)."""
    return [now - then for then, now in zip(before, cpu_seconds(pids), strict=True)]


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh SQLite file, or a private PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-http-") as folder:
            yield f"sqlite:///{folder}/bedside.db"
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def bedside(database_url: str, key: DemoClientKey, folder: Path) -> Iterator[BedsideProcess]:
    environment = {
        "BEDSIDE_DATABASE_URL": database_url,
        "BEDSIDE_CLIENTS_FILE": str(key.write_clients_file(folder / "clients.json")),
        "BEDSIDE_AUDIT_HMAC_KEY": secrets.token_hex(32),
        "BEDSIDE_INSECURE_DEV_AUTH": "false",
        "BEDSIDE_LOG_LEVEL": "WARNING",
        # One client sends everything: the per-client limit (default 6,000/min per worker) would
        # cap the throughput measured at 200 req/s. The service is measured, not the limiter.
        "BEDSIDE_RATE_LIMIT_PER_MINUTE": "0",
    }
    arguments = ["--workers", str(WORKERS)]
    log = folder / "bedside.log"
    server = BedsideProcess(free_port(), environment, log, arguments, SERVE_UNDER_C)
    try:
        server.start(ready_timeout=120)
        deadline = time.monotonic() + 60
        while len(worker_pids(server.process.pid)) < WORKERS:  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not start")
            time.sleep(0.2)
        yield server
    except Exception:
        print(log.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        server.stop()


# --- load ----------------------------------------------------------------------------------


async def _send(http: LoopbackClient, url: str, body: bytes, token: str) -> int:
    """The status (204: answered without a card; 0: no answer within the client's timeout)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    status, answer = await http.post(url, fresh(body), headers)
    if status == 200 and not orjson.loads(answer).get("cards"):
        return 204  # answered without a card: counted apart
    return status


async def closed_loop(
    http: LoopbackClient,
    url: str,
    body: bytes,
    key: DemoClientKey,
    concurrency: int,
    requests: int,
    seconds: float,
    workers: list[int],
) -> Result:
    """``concurrency`` callers back to back, until ``requests`` are done or ``seconds`` pass."""
    await http.aclose()  # new connections for every run (an idle one belongs to some worker)
    tokens = [key.token(url) for _ in range(requests)]  # signed before the clock starts
    result = Result()
    cpu0, server0, started = time.process_time(), cpu_seconds(workers), time.perf_counter()
    stop = started + seconds

    async def caller() -> None:
        while tokens and time.perf_counter() < stop:
            token = tokens.pop()
            sent = time.perf_counter()
            status = await _send(http, url, body, token)
            result.latencies.append((time.perf_counter() - sent) * 1000)
            result.statuses[status] += 1

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    result.wall = time.perf_counter() - started
    result.client_cpu = time.process_time() - cpu0
    result.worker_cpu = cpu_used(server0, workers)
    return result


async def open_loop(
    http: LoopbackClient,
    targets: list[tuple[str, bytes]],
    key: DemoClientKey,
    rate: float,
    seconds: float,
    workers: list[int],
    on_tick: Callable[[], None] | None = None,
) -> Result:
    """Requests sent on a fixed schedule whatever the answers; latency from the scheduled time."""
    await http.aclose()  # new connections for every run
    result = Result()
    loop = asyncio.get_running_loop()
    count = int(rate * seconds)
    pending: set[asyncio.Task[None]] = set()

    # Signed before the clock starts when they stay valid throughout (signing an ES384 token
    # takes the client ≈ 0.6 ms: the EHR's cost, not the service's); a soak signs as it sends.
    presigned = None
    if seconds < TOKEN_LIFETIME_SECONDS - 60:
        presigned = [key.token(targets[index % len(targets)][0]) for index in range(count)]

    async def one(index: int, scheduled: float) -> None:
        url, body = targets[index % len(targets)]
        token = presigned[index] if presigned is not None else key.token(url)
        status = await _send(http, url, body, token)
        result.latencies.append((loop.time() - scheduled) * 1000)
        result.statuses[status] += 1

    cpu0, server0, started = time.process_time(), cpu_seconds(workers), time.perf_counter()
    origin = loop.time() + 0.05
    next_tick = origin
    for index in range(count):
        scheduled = origin + index / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        task = asyncio.create_task(one(index, scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
        if on_tick is not None and loop.time() >= next_tick:
            on_tick()
            next_tick += SOAK_SAMPLE_SECONDS
    await asyncio.gather(*pending)
    result.wall = time.perf_counter() - started
    result.client_cpu = time.process_time() - cpu0
    result.worker_cpu = cpu_used(server0, workers)
    return result


def server_side(database_url: str) -> str:
    """Medians of the handler's own timings, as the prediction records hold them."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT map_ms, score_ms, total_ms FROM prediction")
            ).all()
    finally:
        engine.dispose()
    if not rows:
        return "server side: no prediction records"
    medians = [statistics.median(row[column] for row in rows) for column in range(3)]
    return (
        f"server side ({len(rows)} prediction records): map p50 {medians[0]:.1f} ms, "
        f"score p50 {medians[1]:.1f} ms, handler before the audit write p50 {medians[2]:.1f} ms"
    )


# --- the floor -----------------------------------------------------------------------------


def floor_ms(package: ModelPackage, hook: str, body: bytes) -> list[float]:
    """In-process: parse, validate, resolve the prefetch, map, predict, card (no HTTP, no audit)."""
    service = PackageService(package, hook, "http://127.0.0.1", audit=None)  # type: ignore[arg-type]
    definition = service.definition()
    plan = PrefetchPlan(templates=service.templates, required=required_keys(hook))
    loop = asyncio.new_event_loop()
    times = []
    try:
        for _ in range(FLOOR_REPEATS):
            started = time.perf_counter()
            request = HookRequest.model_validate(orjson.loads(fresh(body)))
            context = validate_context(request.hook, request.context)
            prefetch = loop.run_until_complete(
                resolve_prefetch(plan, request.prefetch, request.context, None)
            )
            call = HookCall(definition, request, context, prefetch, None)  # type: ignore[arg-type]
            scored = service._score(call)
            assert scored is not None, "the floor must score"
            card = risk_card(package, scored.prediction, service.public_base, uuid.uuid4())
            orjson.dumps(HookResponse(cards=[card]).to_wire())
            times.append((time.perf_counter() - started) * 1000)
    finally:
        loop.close()
    return times


# --- the run -------------------------------------------------------------------------------


def machine() -> list[str]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return [
        f"machine: {os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
        f"load average at start {os.getloadavg()[0]:.2f}",
        "the load generator (raw HTTP/1.1 + asyncio, one process) runs on the same cores as "
        "the two workers (and PostgreSQL); its CPU use is shown as 'client' cores",
    ]


async def run_database(
    kind: str,
    samples: list[Sample],
    key: DemoClientKey,
    floors: dict[tuple[str, str], float],
    summary: dict[str, Any],
    soak: bool,
) -> None:
    with (
        database(kind) as url,
        tempfile.TemporaryDirectory(prefix="bench-http-") as folder,
        bedside(url, key, Path(folder)) as server,
    ):
        workers = worker_pids(server.process.pid)  # type: ignore[union-attr]
        http = LoopbackClient(server.base_url, timeout=30.0)
        try:
            await _measure(kind, url, server, samples, key, floors, summary, soak, http, workers)
        finally:
            await http.aclose()


def _url(server: BedsideProcess, hook: str) -> str:
    return f"{server.base_url}/cds-services/readmission-30d-{hook}"


async def _measure(
    kind: str,
    url: str,
    server: BedsideProcess,
    samples: list[Sample],
    key: DemoClientKey,
    floors: dict[tuple[str, str], float],
    summary: dict[str, Any],
    soak: bool,
    http: LoopbackClient,
    workers: list[int],
) -> None:
    print(
        f"\n## {kind}: bedside serve --workers {WORKERS} (load average {os.getloadavg()[0]:.2f})",
        flush=True,
    )
    for sample in samples:  # warm-up: every body through both workers
        for hook in HOOKS:
            await closed_loop(http, _url(server, hook), sample.bodies[hook], key, 4, 20, 30, [])
    for hook in HOOKS if "sweep" in PHASES else ():
        for sample in samples:
            for concurrency in CONCURRENCY:
                result = await closed_loop(
                    http,
                    _url(server, hook),
                    sample.bodies[hook],
                    key,
                    concurrency,
                    CELL_REQUESTS,
                    CELL_SECONDS,
                    workers,
                )
                ratio = ""
                if concurrency == 1:
                    p50 = statistics.median(result.latencies)
                    floor = floors[(hook, sample.label)]
                    ratio = f"  ×{p50 / floor:.1f} floor"
                    summary[f"{kind} {hook} {sample.label} c1"] = (p50, floor)
                print(
                    f"{hook:20} {sample.label:6} c={concurrency:<3} {result.line()}{ratio}",
                    flush=True,
                )
    print(server_side(url))
    median = next(sample for sample in samples if sample.label == "median")
    discharge = _url(server, "encounter-discharge")
    target = [(discharge, median.bodies["encounter-discharge"])]
    if "open" in PHASES:
        result = await open_loop(http, target, key, OPEN_RATE, OPEN_SECONDS, workers)
        summary[f"{kind} open"] = result
        print(
            f"open loop {OPEN_RATE:.0f}/s {OPEN_SECONDS:.0f} s, median discharge: {result.line()}"
        )
    if "max" in PHASES:
        await _maximum(kind, discharge, median, key, summary, http, workers)
    if soak and "soak" in PHASES:
        await _soak(kind, server, samples, key, summary, http, workers)


async def _maximum(
    kind: str,
    discharge: str,
    median: Sample,
    key: DemoClientKey,
    summary: dict[str, Any],
    http: LoopbackClient,
    workers: list[int],
) -> None:
    result = await closed_loop(
        http,
        discharge,
        median.bodies["encounter-discharge"],
        key,
        MAX_CONCURRENCY,
        int(MAX_SECONDS * 600),  # more tokens than 600 req/s could use
        MAX_SECONDS,
        workers,
    )
    summary[f"{kind} max"] = result
    print(
        f"max throughput c={MAX_CONCURRENCY} {MAX_SECONDS:.0f} s, median discharge: {result.line()}"
    )


async def _soak(
    kind: str,
    server: BedsideProcess,
    samples: list[Sample],
    key: DemoClientKey,
    summary: dict[str, Any],
    http: LoopbackClient,
    workers: list[int],
) -> None:
    targets = [(_url(server, h), s.bodies[h]) for s in samples for h in HOOKS]
    rate = SOAK_RATE
    if f"{kind} max" in summary:
        # A rate the server sustains here: an open loop above it only measures a growing queue.
        maximum = summary[f"{kind} max"]
        rate = min(SOAK_RATE, round(0.6 * maximum.statuses.get(200, 0) / maximum.wall))
    if rate < 1:
        summary["soak"] = None
        print(f"soak not run: the maximum phase on {kind} answered with no card")
        return
    rss: list[int] = []
    started = time.monotonic()

    def sample_rss() -> None:
        rss.append(rss_bytes(workers))
        minute = (time.monotonic() - started) / 60
        if len(rss) % 12 == 1:
            print(f"  soak {minute:5.1f} min: workers' RSS {rss[-1] / 2**20:.1f} MiB", flush=True)

    result = await open_loop(http, targets, key, rate, SOAK_SECONDS, workers, sample_rss)
    sample_rss()
    head, tail, growth = rss_growth(rss)
    summary["soak"] = (kind, head, tail, growth, result, max(rss))
    print(
        f"soak {SOAK_SECONDS:.0f} s at {rate:.0f}/s (min of {SOAK_RATE:.0f} and 60% of the "
        f"maximum; all patients and hooks): {result.line()}"
    )
    print(
        f"  workers' RSS first 10% {head / 2**20:.1f} MiB, last 10% {tail / 2**20:.1f} MiB, "
        f"max {max(rss) / 2**20:.1f} MiB: growth {growth:+.2f}% ({len(rss)} samples)"
    )


def _met(value: float, limit: float, at_most: bool = True) -> str:
    """The verdict on ``value`` as printed (one decimal), so that the line reads true."""
    shown = round(value, 1)
    ok = shown <= limit if at_most else shown >= limit
    return "met" if ok else "MISSED"


def verdicts(summary: dict[str, Any]) -> list[str]:
    lines = ["\n## targets"]
    p50_limit, p99_limit = TARGETS["open_p50_ms"], TARGETS["open_p99_ms"]
    rps_limit, growth_limit = TARGETS["max_rps"], TARGETS["rss_growth_pct"]
    for kind in DATABASES:
        if f"{kind} open" in summary:
            latencies = summary[f"{kind} open"].latencies
            if not latencies:
                lines.append(f"{kind}: open loop answered nothing (p50 ≤ {p50_limit:g}: MISSED)")
            else:
                p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
                lines.append(
                    f"{kind}: open loop p50 {p50:.1f} ms (≤ {p50_limit:g}: {_met(p50, p50_limit)}),"
                    f" p99 {p99:.1f} ms (≤ {p99_limit:g}: {_met(p99, p99_limit)})"
                )
        if f"{kind} max" in summary:
            rps = summary[f"{kind} max"].statuses.get(200, 0) / summary[f"{kind} max"].wall
            verdict = _met(rps, rps_limit, at_most=False)
            lines.append(f"{kind}: max {rps:.1f} req/s (≥ {rps_limit:g}: {verdict})")
    if "soak" in summary:
        if summary["soak"] is None:
            lines.append(
                f"RSS growth not measured: the soak did not run (< {growth_limit:g}%: MISSED)"
            )
        else:
            kind, _, _, growth, _, _ = summary["soak"]
            met = "met" if round(growth, 2) < growth_limit else "MISSED"
            lines.append(
                f"{kind}: RSS growth {growth:+.2f}% over {SOAK_SECONDS:.0f} s"
                f" (< {growth_limit:g}%: {met})"
            )
    return lines


def main() -> int:
    samples_root = os.environ.get("BEDSIDE_FHIR_SAMPLES")
    if not samples_root:
        print("set BEDSIDE_FHIR_SAMPLES to the fhir-samples folder", file=sys.stderr)
        return 2
    [package] = load_packages(Path(os.environ.get("BEDSIDE_MODEL_DIR", BUNDLED_MODELS)))
    samples = load_samples(Path(samples_root) / "synthea", package)
    print("\n".join(machine()))
    print(
        f"{package.name} v{package.version}; JWT ES384 per call; closed-loop cells: "
        f"{CELL_REQUESTS} requests or {CELL_SECONDS:.0f} s, whichever first"
    )
    floors: dict[tuple[str, str], float] = {}
    print("\n## floor (in-process: parse + validate + prefetch + map + predict + card)")
    for sample in samples:
        sizes = ", ".join(
            f"{hook} {len(body) / 1000:.0f} kB" for hook, body in sample.bodies.items()
        )
        print(
            f"{sample.label:6} {sample.name} (bundle {sample.bundle_bytes / 1e6:.2f} MB, "
            f"{sample.observations} observations in prefetch; bodies {sizes})"
        )
        for hook in HOOKS:
            times = floor_ms(package, hook, sample.bodies[hook])
            floors[(hook, sample.label)] = statistics.median(times)
            print(
                f"  {hook:20} p50 {statistics.median(times):6.2f} ms  "
                f"p99 {percentile(times, 0.99):6.2f} ms"
            )
    key = DemoClientKey(issuer="https://ehr.bench.invalid/cds-client")
    soak_on = os.environ.get("BENCH_SOAK_DATABASE", DATABASES[-1])
    summary: dict[str, Any] = {}
    for kind in DATABASES:
        asyncio.run(
            run_database(
                kind, samples, key, floors, summary, soak=kind == soak_on and SOAK_SECONDS > 0
            )
        )
    print("\n".join(verdicts(summary)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
