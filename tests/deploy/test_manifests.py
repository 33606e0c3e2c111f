"""deploy/ is checked offline: schemas, the Dockerfile's shape, and consistency with the app.

No Docker engine and no cluster are needed (nor used): the Kubernetes manifests are validated
against the JSON schemas bundled with ``kubernetes-validate``, the compose file against the
Compose Specification's schema vendored in ``tests/deploy/schemas/``, and the Dockerfile is
parsed here. Each checker returns a list of problems; the last tests feed them broken inputs to
show that they do find problems.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Container, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import anyio
import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml
from fastapi import FastAPI

from app.cli import build_parser
from app.factory import create_app
from app.settings import DEFAULT_SECRETS_DIR, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
DOCS = ROOT / "docs" / "deploy.md"
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "schemas" / "compose-spec.json"
COMPOSE_SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"

# The oldest Kubernetes release the manifests claim to support, and the newest schemas bundled.
KUBERNETES_VERSIONS = ("1.28", kubernetes_validate.latest_version())
# Applied on its own before each rollout (its pod template is immutable), not by kustomize.
APPLIED_SEPARATELY = {"migrate-job.yaml"}
SECRET_SETTINGS = {"BEDSIDE_AUDIT_HMAC_KEY", "BEDSIDE_DATABASE_URL"}
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|clang|make|cmake|build-essential|git|curl|wget|python3?-dev|libpq-dev)\b"
)
TEST_AUDIT_KEY = "deploy-test-audit-key-0123456789abcdef0123456789"


# ---------------------------------------------------------------------------------------------
# Facts about the application the deployment must agree with


SETTING_NAMES = frozenset(f"BEDSIDE_{name.upper()}" for name in Settings.model_fields)


class ServedPaths:
    """``path in served`` when the app answers a GET of ``path`` with anything but 404.

    Asking the app itself (rather than listing its routes) holds however FastAPI nests routers.
    """

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._answers: dict[str, bool] = {}

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        if path not in self._answers:
            self._answers[path] = anyio.run(self._status, path) != 404
        return self._answers[path]

    async def _status(self, path: str) -> int:
        transport = httpx.ASGITransport(app=self._app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bedside") as client:
            return (await client.get(path)).status_code


@pytest.fixture(scope="module")
def app_routes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedPaths]:
    """The app, built but not started (no lifespan): enough to tell which paths it serves."""
    folder = tmp_path_factory.mktemp("deploy-app")
    settings = Settings(
        database_url=f"sqlite:///{folder / 'bedside.db'}", audit_hmac_key=TEST_AUDIT_KEY
    )
    app = create_app(settings)
    served = ServedPaths(app)
    assert "/no-such-path" not in served, "the app answers every path: the check means nothing"
    yield served
    app.state.engine.dispose()


def bedside_command(argv: list[str]) -> tuple[Any, list[str]]:
    """``argv`` parsed as the arguments of the ``bedside`` command, and any problems."""
    try:
        return build_parser().parse_args(argv), []
    except SystemExit:
        return None, [f"not a valid bedside command line: {argv}"]


def command_name(args: Any) -> str:
    action = getattr(args, "action", None)
    return f"{args.command} {action}" if action else args.command


def setting_problems(names: list[str], where: str) -> list[str]:
    return [
        f"{where}: {name} is not a setting (app.settings.Settings)"
        for name in names
        if name.startswith("BEDSIDE_") and name not in SETTING_NAMES
    ]


def image_problems(image: str, where: str) -> list[str]:
    """An image reference must name a tag other than ``latest``, or a digest."""
    if "@sha256:" in image:
        return []
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return [f"{where}: image {image!r} has no tag (that means latest)"]
    if tag == "latest":
        return [f"{where}: image {image!r} uses the latest tag"]
    return []


# ---------------------------------------------------------------------------------------------
# Dockerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with line continuations joined; comments and blank lines dropped."""
    instructions: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also inside a continuation, as Docker does
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, value = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), value.strip(), start))
        pending = ""
    if pending:
        keyword, _, value = pending.partition(" ")
        instructions.append(Instruction(keyword.upper(), value.strip(), start))
    return instructions


def dockerfile_stages(instructions: list[Instruction]) -> list[Stage]:
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = [word for word in instruction.value.split() if not word.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(words[0], name, []))
        elif stages:
            stages[-1].instructions.append(instruction)
    return stages


def exec_form(value: str) -> list[str] | None:
    """The JSON array of an exec-form instruction; None for the shell form."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, list) and all(isinstance(a, str) for a in parsed) else None


def env_names(value: str) -> list[str]:
    words = shlex.split(value)
    if words and "=" not in words[0]:
        return [words[0]]  # legacy ``ENV NAME value``
    return [word.split("=", 1)[0] for word in words]


def healthcheck_command(value: str) -> list[str] | None:
    match = re.search(r"(?:^|\s)CMD\s+(.*)$", value)
    return exec_form(match.group(1)) if match else None


def url_paths(text: str) -> list[str]:
    return re.findall(r"https?://[^/'\"\s]+(/[^'\"\s?]*)", text)


def the(instructions: list[Instruction], keyword: str) -> Instruction | None:
    """The instruction that counts (the last one) of a kind, if any."""
    found = [instruction for instruction in instructions if instruction.keyword == keyword]
    return found[-1] if found else None


def dockerfile_problems(text: str, routes: Container[str]) -> list[str]:
    stages = dockerfile_stages(parse_dockerfile(text))
    if len(stages) < 2:
        return ["not a multi-stage build (fewer than two FROM)"]
    problems: list[str] = []
    names = {stage.name for stage in stages if stage.name}
    for stage in stages:
        if stage.image not in names:
            problems += image_problems(stage.image, f"FROM {stage.image}")
    final = stages[-1]
    steps = final.instructions
    if not re.fullmatch(r"python:3\.11[.\d]*-slim(-\w+)?(@sha256:\w+)?", final.image):
        problems.append(f"the runtime stage is not a slim Python 3.11 image: {final.image}")
    copied_from = {
        match[1]
        for i in steps
        if i.keyword == "COPY" and (match := re.search(r"--from=(\S+)", i.value))
    }
    if not copied_from & names:
        problems.append("the runtime stage copies nothing from an earlier stage")
    for instruction in steps:
        if instruction.keyword == "RUN":
            if BUILD_TOOLS.search(instruction.value):
                problems.append(f"line {instruction.line}: build tools in the runtime stage")
            if re.search(r"\bpip\b.*\binstall\b", instruction.value):
                problems.append(f"line {instruction.line}: pip install in the runtime stage")
        if instruction.keyword == "ENV":
            names_set = env_names(instruction.value)
            problems += setting_problems(names_set, f"line {instruction.line}")
            problems += [
                f"line {instruction.line}: the secret {name} is baked into the image"
                for name in names_set
                if name in SECRET_SETTINGS
            ]
    user = the(steps, "USER")
    if user is None:
        problems.append("the runtime stage sets no USER (it would run as root)")
    else:
        uid = user.value.split(":")[0]
        if uid in {"root", "0"} or not uid.isdigit():
            problems.append(f"USER {user.value}: not a fixed non-root numeric UID")
        if any(i.keyword == "RUN" and i.line > user.line for i in steps):
            problems.append("RUN after USER in the runtime stage (expected root-only setup)")
    health = the(steps, "HEALTHCHECK")
    probe = healthcheck_command(health.value) if health else None
    if probe is None:
        problems.append("no exec-form HEALTHCHECK CMD in the runtime stage")
    else:
        if probe[0] not in {"python", "python3"} or any(
            tool in " ".join(probe) for tool in ("curl", "wget")
        ):
            problems.append(f"HEALTHCHECK must be a python one-liner: {probe}")
        paths = url_paths(" ".join(probe))
        if paths != ["/healthz"] or "/healthz" not in routes:
            problems.append(f"HEALTHCHECK probes {paths}, not the /healthz route")
    entrypoint = the(steps, "ENTRYPOINT")
    if entrypoint is None or exec_form(entrypoint.value) != ["bedside"]:
        problems.append('ENTRYPOINT must be ["bedside"] (exec form)')
    cmd = the(steps, "CMD")
    argv = exec_form(cmd.value) if cmd else None
    if argv is None:
        problems.append("no exec-form CMD")
    else:
        args, bad = bedside_command(argv)
        problems += bad
        if args is not None:
            if args.command != "serve" or args.host != "0.0.0.0":
                problems.append(f"CMD {argv} is not `serve --host 0.0.0.0`")
            expose = the(steps, "EXPOSE")
            exposed = expose.value.split("/")[0] if expose else None
            if exposed != str(args.port):
                problems.append(f"EXPOSE {exposed} differs from the served port {args.port}")
    return problems


def dockerfile_facts() -> dict[str, Any]:
    stages = dockerfile_stages(parse_dockerfile(DOCKERFILE.read_text()))
    steps = stages[-1].instructions
    cmd = exec_form(the(steps, "CMD").value)  # type: ignore[union-attr]
    args, _ = bedside_command(cmd or [])
    return {"port": args.port, "user": the(steps, "USER").value}  # type: ignore[union-attr]


def test_dockerfile(app_routes: ServedPaths) -> None:
    assert dockerfile_problems(DOCKERFILE.read_text(), app_routes) == []


def test_dockerignore_keeps_the_context_small_without_hiding_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for required in (".git", ".venv", "var", ".pytest_cache", "test-artifacts", "deploy/*.env"):
        assert required in patterns, f".dockerignore should exclude {required}"
    builder = dockerfile_stages(parse_dockerfile(DOCKERFILE.read_text()))[0]
    copied = [
        word
        for instruction in builder.instructions
        if instruction.keyword == "COPY" and "--from" not in instruction.value
        for word in instruction.value.split()[:-1]
    ]
    assert copied, "the builder stage copies nothing from the context"
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        excluded = [p for p in patterns if not p.startswith("!") and Path(source).match(p)]
        assert not excluded, f"COPY {source} is excluded by .dockerignore {excluded}"


# ---------------------------------------------------------------------------------------------
# Compose


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}`` with the defaults (NAME unset); ``${NAME}`` is empty."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?[-?]([^}]*))?\}", lambda m: m[1] or "", value)


@cache
def compose_validator() -> jsonschema.protocols.Validator:
    raw = COMPOSE_SCHEMA.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == COMPOSE_SCHEMA_SHA256, "schema changed: see README"
    schema = json.loads(raw)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_problems(validator: jsonschema.protocols.Validator, data: Any, where: str) -> list[str]:
    return [
        f"{where}: {'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(data)
    ]


def environment_names(environment: Any) -> list[str]:
    if isinstance(environment, dict):
        return list(environment)
    return [str(item).split("=", 1)[0] for item in environment or []]


def env_file_names(path: Path) -> list[str]:
    return [
        line.split("=", 1)[0].strip()
        for line in path.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    ]


def compose_problems(data: dict[str, Any], port: int) -> list[str]:
    problems = schema_problems(compose_validator(), data, "compose")
    if problems:
        return problems
    services = data.get("services", {})
    for name, service in services.items():
        where = f"service {name}"
        if "image" in service:
            problems += image_problems(interpolate(service["image"]), where)
        names = environment_names(service.get("environment"))
        problems += setting_problems(names, where)
        problems += [
            f"{where}: secret {secret} written inline (use env_file or secrets)"
            for secret in names
            if secret in SECRET_SETTINGS | {"POSTGRES_PASSWORD"}
        ]
        for env_file in service.get("env_file", []):
            path = env_file if isinstance(env_file, str) else env_file["path"]
            example = DEPLOY / f"{path}.example"
            if not example.exists():
                problems.append(f"{where}: env_file {path} has no {example.name} to start from")
            else:
                problems += setting_problems(env_file_names(example), str(example.name))
    postgres, migrate, bedside = (services.get(n) for n in ("postgres", "migrate", "bedside"))
    if not (postgres and migrate and bedside):
        return [*problems, "services postgres, migrate and bedside are all needed"]
    if not re.fullmatch(r"postgres:1[56](\.\d+)?(-\w+)?", interpolate(postgres["image"])):
        problems.append(f"postgres image {postgres['image']} is not PostgreSQL 15 or 16")
    if "pg_isready" not in json.dumps(postgres.get("healthcheck", {})):
        problems.append("postgres has no pg_isready healthcheck")
    volumes = data.get("volumes") or {}
    mounts = [str(v).split(":") for v in postgres.get("volumes", [])]
    if not any(m[0] in volumes and m[1] == "/var/lib/postgresql/data" for m in mounts):
        problems.append("postgres keeps its data in no named volume")
    args, bad = bedside_command(migrate.get("command", []))
    problems += bad
    if args is not None and command_name(args) != "db upgrade":
        problems.append(f"migrate runs {migrate.get('command')}, not `db upgrade`")
    if (migrate.get("depends_on") or {}).get("postgres", {}).get("condition") != (
        "service_healthy"
    ):
        problems.append("migrate does not wait for a healthy postgres")
    if (bedside.get("depends_on") or {}).get("migrate", {}).get("condition") != (
        "service_completed_successfully"
    ):
        problems.append("bedside does not wait for the migration to complete successfully")
    argv = [interpolate(str(a)) for a in bedside.get("command", [])]
    args, bad = bedside_command(argv)
    problems += bad
    if args is not None and (args.command != "serve" or args.host != "0.0.0.0"):
        problems.append("bedside does not run `serve --host 0.0.0.0`")
    if args is not None and args.port != port:
        problems.append(f"bedside serves on {args.port}, the image exposes {port}")
    targets = [str(p).rsplit(":", 1)[-1].split("/")[0] for p in bedside.get("ports", [])]
    if targets and targets != [str(port)] * len(targets):
        problems.append(f"bedside publishes container ports {targets}, not {port}")
    build = migrate.get("build") or bedside.get("build") or {}
    if (COMPOSE.parent / build.get("context", ".") / build.get("dockerfile", "Dockerfile")) != (
        COMPOSE.parent / ".." / "deploy" / "Dockerfile"
    ) or not DOCKERFILE.exists():
        problems.append("the compose build does not use deploy/Dockerfile from the repository")
    return problems


def test_compose_file() -> None:
    (data,) = load_yaml(COMPOSE)
    assert compose_problems(data, dockerfile_facts()["port"]) == []


def test_compose_schema_is_the_vendored_one() -> None:
    assert compose_validator().schema["title"] == "Compose Specification"


# ---------------------------------------------------------------------------------------------
# Kubernetes


def manifest_files() -> list[Path]:
    return sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")


def manifests() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, doc) for path in manifest_files() for doc in load_yaml(path)]


def kubernetes_schema_problems(doc: dict[str, Any], version: str) -> list[str]:
    where = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')} (k8s {version})"
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(map(str, error.path)) or "<root>"
        return [f"{where}: {path}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"{where}: {error.message}"]
    return []


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        doc
        for _, doc in manifests()
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    ("file", "index"),
    [(path.name, i) for path in manifest_files() for i, _ in enumerate(load_yaml(path))],
)
def test_kubernetes_manifest_matches_the_schema(file: str, index: int, version: str) -> None:
    doc = load_yaml(KUBERNETES / file)[index]
    assert kubernetes_schema_problems(doc, version) == []


def test_every_kind_is_there_and_in_the_namespace_and_no_secret_is_shipped() -> None:
    kinds = {(doc["apiVersion"], doc["kind"]) for _, doc in manifests()}
    for expected in [
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("apps/v1", "Deployment"),
        ("batch/v1", "Job"),
        ("v1", "Service"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("policy/v1", "PodDisruptionBudget"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
    ]:
        assert expected in kinds, f"missing {expected}"
    assert not any(doc["kind"] == "Secret" for _, doc in manifests()), "secret values shipped"
    namespace = one("Namespace")["metadata"]["name"]
    for file, doc in manifests():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace, f"{file}: {doc['kind']}"


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = load_yaml(KUBERNETES / "kustomization.yaml")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in manifest_files()} - APPLIED_SEPARATELY
    assert kustomization["namespace"] == one("Namespace")["metadata"]["name"]
    images = {image["name"] for image in kustomization.get("images", [])}
    workload_images = {
        c["image"].rsplit(":", 1)[0]
        for kind in ("Deployment", "Job")
        for c in pod_spec(one(kind))["containers"]
    }
    assert workload_images <= images


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomization_builds_with_kubectl_when_available() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert len(built) == sum(
        len(load_yaml(KUBERNETES / name))
        for name in load_yaml(KUBERNETES / "kustomization.yaml")[0]["resources"]
    )


def container_problems(container: dict[str, Any], where: str) -> list[str]:
    problems = []
    security = container.get("securityContext", {})
    if security.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if security.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: the root filesystem is writable")
    if security.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append(f"{where}: capabilities are not all dropped")
    resources = container.get("resources", {})
    for part in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(resources.get(part, {})):
            problems.append(f"{where}: resources.{part} lacks cpu or memory")
    problems += image_problems(container["image"], where)
    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
    if "/tmp" not in mounts:
        problems.append(f"{where}: no writable /tmp (emptyDir)")
    return problems


def secrets_folder_of(container: dict[str, Any]) -> str:
    """Where the container's Bedside reads secret files: BEDSIDE_SECRETS_DIR, else the default."""
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config = one("ConfigMap", source["configMapRef"]["name"])
            if "BEDSIDE_SECRETS_DIR" in config["data"]:
                return config["data"]["BEDSIDE_SECRETS_DIR"]
    return str(DEFAULT_SECRETS_DIR)


def secret_sources(workload: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each setting the first container takes from a Secret: name -> (Secret, key), whether as
    an environment variable or as a file of a Secret volume mounted at its secrets folder."""
    spec = pod_spec(workload)
    container = spec["containers"][0]
    sources = {
        entry["name"]: (ref["name"], ref["key"])
        for entry in container.get("env", [])
        if (ref := entry.get("valueFrom", {}).get("secretKeyRef"))
    }
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    folder = secrets_folder_of(container)
    for mount in container.get("volumeMounts", []):
        secret = volumes.get(mount["name"], {}).get("secret")
        if secret and mount["mountPath"] == folder:
            for item in secret.get("items", []):
                sources[item["path"].upper()] = (secret["secretName"], item["key"])
    return sources


def pod_problems(workload: dict[str, Any], image_user: str) -> list[str]:
    spec = pod_spec(workload)
    where = f"{workload['kind']}/{workload['metadata']['name']}"
    problems = []
    security = spec.get("securityContext", {})
    if security.get("runAsNonRoot") is not True:
        problems.append(f"{where}: runAsNonRoot is not set")
    if str(security.get("runAsUser")) != image_user.split(":")[0]:
        problems.append(f"{where}: runAsUser differs from the image's USER {image_user}")
    if security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: seccomp profile is not RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: the service account token is mounted")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for container in spec["containers"]:
        problems += container_problems(container, f"{where} {container['name']}")
        for mount in container.get("volumeMounts", []):
            if mount["name"] not in volumes:
                problems.append(f"{where}: volume {mount['name']} is mounted but not defined")
            elif mount["mountPath"] == "/tmp" and "emptyDir" not in volumes[mount["name"]]:
                problems.append(f"{where}: /tmp is not an emptyDir")
        names = [e["name"] for e in container.get("env", [])]
        problems += setting_problems(names, where)
        for entry in container.get("env", []):
            if entry["name"] in SECRET_SETTINGS and "secretKeyRef" not in entry.get(
                "valueFrom", {}
            ):
                problems.append(f"{where}: {entry['name']} is not taken from a Secret")
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                config = one("ConfigMap", source["configMapRef"]["name"])
                problems += setting_problems(list(config["data"]), f"ConfigMap {where}")
    for volume in volumes.values():
        for item in volume.get("secret", {}).get("items", []):
            problems += setting_problems([item["path"].upper()], f"{where} secret file")
    needed = SECRET_SETTINGS if workload["kind"] == "Deployment" else {"BEDSIDE_DATABASE_URL"}
    problems += [
        f"{where}: {name} reaches the pod from no Secret"
        for name in sorted(needed - set(secret_sources(workload)))
    ]
    return problems


def test_workloads_are_locked_down(app_routes: ServedPaths) -> None:
    user = dockerfile_facts()["user"]
    for kind in ("Deployment", "Job"):
        assert pod_problems(one(kind), user) == []


def test_config_maps_hold_only_settings_and_no_secrets() -> None:
    config = one("ConfigMap", "bedside-config")
    assert set(config["data"]) <= SETTING_NAMES
    assert not set(config["data"]) & SECRET_SETTINGS
    assert config["data"].get("BEDSIDE_INSECURE_DEV_AUTH", "false") == "false"
    assert config["data"]["BEDSIDE_PUBLIC_URL"].startswith("https://")
    clients_path = Path(config["data"]["BEDSIDE_CLIENTS_FILE"])
    deployment = pod_spec(one("Deployment"))
    (container,) = deployment["containers"]
    mount = next(
        m for m in container["volumeMounts"] if clients_path.is_relative_to(m["mountPath"])
    )
    volume = next(v for v in deployment["volumes"] if v["name"] == mount["name"])
    clients = one("ConfigMap", volume["configMap"]["name"])
    entries = yaml.safe_load(clients["data"][clients_path.name])
    assert entries and all("iss" in entry for entry in entries)


def test_deployment_probes_ports_and_command(app_routes: ServedPaths) -> None:
    deployment = one("Deployment")
    assert deployment["spec"]["replicas"] >= 2
    (container,) = pod_spec(deployment)["containers"]
    probes = {name: container[name]["httpGet"] for name in ("startupProbe", "livenessProbe")}
    probes["readinessProbe"] = container["readinessProbe"]["httpGet"]
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    for name, probe in probes.items():
        assert probe["path"] in app_routes, f"{name} probes {probe['path']}, not a route"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    port = dockerfile_facts()["port"]
    for probe in probes.values():
        assert ports.get(probe["port"], probe["port"]) == port
    args, bad = bedside_command(container["args"])
    assert bad == []
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", port)
    assert list(ports.values()) == [port]
    assert "command" not in container, "the image's ENTRYPOINT (bedside) must stay"

    job = one("Job")
    (migration,) = pod_spec(job)["containers"]
    args, bad = bedside_command(migration["args"])
    assert bad == []
    assert command_name(args) == "db upgrade"
    assert migration["image"] == container["image"]
    assert pod_spec(job)["restartPolicy"] == "Never"


def test_service_hpa_pdb_and_network_policy_point_at_the_pods() -> None:
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], labels)
    (container,) = pod_spec(deployment)["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    service = one("Service")
    assert selects(service["spec"]["selector"], labels)
    for port in service["spec"]["ports"]:
        target = port["targetPort"]
        assert ports.get(target, target) in ports.values(), f"targetPort {target} is no port"

    hpa = one("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]

    pdb = one("PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"], labels)

    api = one("NetworkPolicy", "bedside-api")
    assert selects(api["spec"]["podSelector"]["matchLabels"], labels)
    assert set(api["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    for rule in api["spec"]["ingress"]:
        assert rule.get("from"), "an ingress rule open to every peer"
        assert [p["port"] for p in rule["ports"]] == list(ports.values())
    egress_ports = {p["port"] for rule in api["spec"]["egress"] for p in rule["ports"]}
    assert {53, 5432, 443} <= egress_ports

    job_labels = one("Job")["spec"]["template"]["metadata"]["labels"]
    migration = one("NetworkPolicy", "bedside-migration")
    assert selects(migration["spec"]["podSelector"]["matchLabels"], job_labels)
    assert not migration["spec"].get("ingress")


def test_the_guide_documents_the_secret_the_manifests_read() -> None:
    guide = DOCS.read_text()
    refs = {ref for kind in ("Deployment", "Job") for ref in secret_sources(one(kind)).values()}
    assert refs
    for name, key in refs:
        assert f"kubectl create secret generic {name}" in guide
        assert f"--from-literal={key}=" in guide or f"--from-file={key}=" in guide
    for path in ("deploy/compose.yaml", "deploy/Dockerfile", "deploy/kubernetes"):
        assert path in guide
    assert "What was not exercised here" in guide


# ---------------------------------------------------------------------------------------------
# The checkers find problems (a validator that accepts everything would pass the tests above)


BROKEN_DOCKERFILE = """\
FROM python:latest
RUN apt-get update && apt-get install -y gcc
RUN pip install bedside
ENV BEDSIDE_AUDIT_HMAC_KEY=secret BEDSIDE_NO_SUCH_SETTING=1
HEALTHCHECK CMD curl -f http://localhost:8000/health
CMD bedside serve
"""


def test_the_dockerfile_checker_finds_problems(app_routes: ServedPaths) -> None:
    assert dockerfile_problems(BROKEN_DOCKERFILE, app_routes) == [
        "not a multi-stage build (fewer than two FROM)"
    ]
    text = "FROM python:3.11-slim AS builder\nRUN true\n" + BROKEN_DOCKERFILE
    problems = "\n".join(dockerfile_problems(text, app_routes))
    for expected in (
        "uses the latest tag",
        "not a slim Python 3.11 image",
        "copies nothing",
        "build tools",
        "pip install",
        "BEDSIDE_NO_SUCH_SETTING is not a setting",
        "secret BEDSIDE_AUDIT_HMAC_KEY is baked",
        "sets no USER",
        "no exec-form HEALTHCHECK",
        "ENTRYPOINT",
        "no exec-form CMD",
    ):
        assert expected in problems
    good = DOCKERFILE.read_text()
    for old, new, expected in [
        ("USER 10001:10001", "USER root", "not a fixed non-root"),
        ("/healthz", "/healthy", "not the /healthz route"),
        ('"--port", "8000"', '"--port", "9000"', "EXPOSE 8000 differs"),
        ('"serve",', '"server",', "not a valid bedside command line"),
        ("COPY --from=builder /opt/bedside", "COPY app /opt/bedside", "copies nothing"),
    ]:
        assert old in good
        problems = "\n".join(dockerfile_problems(good.replace(old, new, 1), app_routes))
        assert expected in problems, (old, new)


def test_the_compose_checker_finds_problems() -> None:
    (good,) = load_yaml(COMPOSE)
    port = dockerfile_facts()["port"]

    def broken(change: Any) -> str:
        data = copy.deepcopy(good)
        change(data)
        return "\n".join(compose_problems(data, port))

    assert "was unexpected" in broken(
        lambda d: d["services"]["bedside"].update(restart_policy="always")
    )
    assert "is not of type" in broken(lambda d: d["services"]["postgres"].update(ports=8000))
    assert "no tag" in broken(lambda d: d["services"]["postgres"].update(image="postgres"))
    assert "latest tag" in broken(
        lambda d: d["services"]["postgres"].update(image="postgres:latest")
    )
    assert "not PostgreSQL 15 or 16" in broken(
        lambda d: d["services"]["postgres"].update(image="postgres:13")
    )
    assert "written inline" in broken(
        lambda d: d["services"]["bedside"]["environment"].update(BEDSIDE_AUDIT_HMAC_KEY="k" * 32)
    )
    assert "not a setting" in broken(
        lambda d: d["services"]["bedside"]["environment"].update(BEDSIDE_PUBLIC_URLS="x")
    )
    assert "complete successfully" in broken(
        lambda d: d["services"]["bedside"]["depends_on"].pop("migrate")
    )
    assert "not `db upgrade`" in broken(
        lambda d: d["services"]["migrate"].update(command=["audit", "head"])
    )
    assert "not a valid bedside command line" in broken(
        lambda d: d["services"]["migrate"].update(command=["db", "migrate"])
    )


def test_the_kubernetes_checkers_find_problems() -> None:
    version = KUBERNETES_VERSIONS[-1]
    deployment = one("Deployment")

    def broken(change: Any) -> list[str]:
        doc = copy.deepcopy(deployment)
        change(pod_spec(doc)["containers"][0])
        return kubernetes_schema_problems(doc, version)

    assert broken(lambda c: c.update(imagePullPolicyy="Always"))  # unknown field (strict)
    assert broken(lambda c: c["ports"][0].update(containerPort="http"))  # wrong type
    assert broken(lambda c: c.pop("name"))  # required field
    hpa = copy.deepcopy(one("HorizontalPodAutoscaler"))
    hpa["apiVersion"] = "autoscaling/v3"
    assert kubernetes_schema_problems(hpa, version)  # no such API version

    user = dockerfile_facts()["user"]
    for change, expected in [
        (lambda c: c["securityContext"].update(readOnlyRootFilesystem=False), "writable"),
        (lambda c: c["securityContext"]["capabilities"].update(drop=["NET_RAW"]), "dropped"),
        (lambda c: c["resources"].pop("limits"), "resources.limits"),
        (lambda c: c.update(image="registry.hospital.example/bedside"), "no tag"),
        (
            lambda c: c.setdefault("env", []).append({"name": "BEDSIDE_NOPE", "value": "1"}),
            "not a setting",
        ),
        (
            lambda c: c.setdefault("env", []).append(
                {"name": "BEDSIDE_AUDIT_HMAC_KEY", "value": "k" * 32}
            ),
            "not taken from a Secret",
        ),
        (
            lambda c: next(m for m in c["volumeMounts"] if m["name"] == "secrets").update(
                mountPath="/etc/secrets"
            ),
            "BEDSIDE_AUDIT_HMAC_KEY reaches the pod from no Secret",
        ),
    ]:
        doc = copy.deepcopy(deployment)
        change(pod_spec(doc)["containers"][0])
        assert expected in "\n".join(pod_problems(doc, user))
    doc = copy.deepcopy(deployment)
    (volume,) = [v for v in pod_spec(doc)["volumes"] if "secret" in v]
    volume["secret"]["items"][-1]["path"] = "bedside_audit_key"
    problems = "\n".join(pod_problems(doc, user))
    assert "BEDSIDE_AUDIT_KEY is not a setting" in problems
    assert "BEDSIDE_AUDIT_HMAC_KEY reaches the pod from no Secret" in problems
