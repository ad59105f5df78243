"""deploy/ agrees with the code: every command exists, every environment name is a real
setting, every probe asks a real endpoint or command, and the image is built as promised.
Fast and offline: no Docker, no cluster (`kubectl kustomize` runs when kubectl is there)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.cli import parser
from api.routes import health, metrics
from models.settings import DEFAULT_MAX_TIMEOUT_S, Settings
from tests.deploy.common import DEPLOY, K8S, procfile, settings_aliases

# Environment names the deploy files may set that are not passthru settings: the postgres
# image's own. Keep this list short.
NOT_SETTINGS = frozenset({"POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"})
# Settings that are secrets: never written into a deploy file with a value.
SECRETS = frozenset(
    {
        "PASSTHRU_ENCRYPTION_KEYS",
        "FLOWER_BASIC_AUTH",
        "PASSTHRU_OAUTH_CLIENTS",
        "PASSTHRU_METRICS_TOKEN",
    }
)
API_PATHS = frozenset(
    getattr(route, "path", "") for r in (health.router, metrics.router) for route in r.routes
)
# Flower's own endpoint that answers without its basic auth (checked against Flower below).
FLOWER_PATHS = frozenset({"/healthcheck"})
# Which paths each Procfile process serves.
PATHS_BY_PROCESS = {"web": API_PATHS, "flower": FLOWER_PATHS}
NON_ROOT_UID = 10001

COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
ENV_EXAMPLE = DEPLOY / ".env.example"
README = DEPLOY / "README.md"
BASE = K8S / "base"
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job"})
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


# --- reading the files ---------------------------------------------------------------------


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def passthru_services() -> dict[str, dict[str, Any]]:
    """Compose services that run the passthru image (the others are Postgres and Redis)."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if "build" in service or str(service.get("image", "")).startswith("passthru")
    }


def kustomization(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return data


def kustomization_dirs() -> list[Path]:
    return sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


def referenced_files(k: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(files, directories) a kustomization names."""
    files: set[str] = set()
    dirs: set[str] = set()
    for entry in k.get("resources", []) + k.get("components", []):
        (dirs if not Path(entry).suffix else files).add(entry)
    for patch in k.get("patches", []):
        if "path" in patch:
            files.add(patch["path"])
    files.update(k.get("patchesStrategicMerge", []))
    for generator in k.get("configMapGenerator", []) + k.get("secretGenerator", []):
        files.update(generator.get("envs", []))
        files.update(entry.split("=", 1)[-1] for entry in generator.get("files", []))
    return files, dirs


def k8s_resources() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every full manifest the kustomizations list as a resource (patches excluded)."""
    for directory in kustomization_dirs():
        files, _ = referenced_files(kustomization(directory))
        for name in sorted(kustomization(directory).get("resources", [])):
            if name in files:
                for doc in load_all(directory / name):
                    yield directory / name, doc


def workloads() -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["name"]: doc for _, doc in k8s_resources() if doc["kind"] in WORKLOAD_KINDS
    }


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def k8s_containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload name, pod spec, container) for every container of every workload."""
    for name, doc in workloads().items():
        pod = pod_spec(doc)
        for container in pod.get("initContainers", []) + pod["containers"]:
            yield name, pod, container


def config_map_keys() -> set[str]:
    """Keys of the ConfigMaps: generator env files and literals, and ConfigMap manifests."""
    keys: set[str] = set()
    for directory in kustomization_dirs():
        for generator in kustomization(directory).get("configMapGenerator", []):
            for env_file in generator.get("envs", []):
                keys |= set(env_file_values(directory / env_file))
            keys |= {literal.split("=", 1)[0] for literal in generator.get("literals", [])}
    for _, doc in k8s_resources():
        if doc["kind"] == "ConfigMap":
            keys |= set(doc.get("data", {}))
    return keys


def env_file_values(path: Path, *, commented: bool = False) -> dict[str, str]:
    """NAME=value lines of an env file (also `# NAME=value` ones when `commented`)."""
    pattern = re.compile(r"^(#\s*)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = pattern.match(line.strip())
        if match and (commented or not match.group(1)):
            values[match.group(2)] = match.group(3)
    return values


def argv_of(command: Any) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def container_argv(container: dict[str, Any]) -> list[str]:
    return argv_of(container.get("command", [])) + argv_of(container.get("args", []))


@cache
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            instructions.append((instruction.upper(), rest.strip()))
    return instructions


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction, rest in dockerfile():
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, rest))
    return stages


def exec_form(rest: str) -> list[str]:
    """The JSON array of CMD/HEALTHCHECK CMD, as the Dockerfile writes it."""
    parsed = yaml.safe_load(rest)
    assert isinstance(parsed, list), f"not exec form: {rest}"
    return [str(part) for part in parsed]


def seconds(value: Any) -> float:
    """A Compose duration (`150s`, `2m30s`, `90`) in seconds."""
    if isinstance(value, int | float):
        return float(value)
    units = {"h": 3600, "m": 60, "s": 1}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)([hms])", value):
        total += float(number) * units[unit]
    return total


# --- what the code accepts -------------------------------------------------------------------

DEFAULT_VAR = re.compile(r"\$\{(\w+):-([^}]*)\}")


def _token_matches(got: str, want: str) -> bool:
    match = DEFAULT_VAR.fullmatch(want)
    if not match:
        return got == want
    name, default = match.groups()
    # As written (a shell or Compose expands it), its default, or Kubernetes' $(NAME).
    return got in {want, default, f"$({name})"}


def procfile_process(argv: list[str]) -> str | None:
    """The Procfile process `argv` runs (after `sh -c "exec ..."` is unwrapped), if any."""
    if len(argv) == 3 and argv[0] in {"sh", "/bin/sh"} and argv[1] == "-c":
        argv = shlex.split(argv[2])
        argv = argv[1:] if argv[:1] == ["exec"] else argv
    for name, want in procfile().items():
        if len(argv) == len(want) and all(map(_token_matches, argv, want)):
            return name
    return None


def passthru_command_ok(argv: list[str]) -> bool:
    """`passthru <subcommand> ...` that `api.cli.parser()` accepts (never `dev`)."""
    if argv[:1] != ["passthru"] or argv[1:2] == ["dev"]:
        return False
    try:
        parser().parse_args(argv[1:])
    except SystemExit:
        return False
    return True


def command_problem(argv: list[str]) -> str | None:
    if procfile_process(argv) or passthru_command_ok(argv):
        return None
    return f"{argv} is neither a Procfile line nor a `passthru` command"


def urls_paths(code: str) -> list[str]:
    return re.findall(r"http://(?:127\.0\.0\.1|localhost)[^/'\"]*(/[\w/.-]*)", code)


# --- every file ------------------------------------------------------------------------------


def test_there_are_deploy_files() -> None:
    for path in (COMPOSE, DOCKERFILE, DOCKERIGNORE, ENV_EXAMPLE, README, BASE):
        assert path.exists(), path
    assert len(yaml_files()) >= 10
    # (the tests parametrized by kustomization would be skipped, not failed, without any)
    assert [str(d.relative_to(K8S)) for d in kustomization_dirs()] == [
        "base",
        "overlays/production",
    ]


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    assert load_all(path), f"{path} is empty"


# --- commands --------------------------------------------------------------------------------


def test_the_command_matcher_refuses_what_it_should() -> None:
    assert procfile_process(["celery", "-A", "worker.app", "beat", "--loglevel", "INFO"]) == "beat"
    assert command_problem(["celery", "-A", "worker.app", "beat"]) is not None
    assert command_problem(["passthru", "no-such-command"]) is not None
    assert command_problem(["passthru", "dev"]) is not None
    assert command_problem(["passthru", "worker-alive", "--max-age", "30"]) is None


def test_procfile_defaults_are_the_settings_defaults() -> None:
    aliases = settings_aliases()
    checked = set()
    for name, argv in procfile().items():
        for token in argv:
            for var, default in DEFAULT_VAR.findall(token):
                assert var in aliases, f"Procfile {name}: ${{{var}}} is not a setting"
                field = Settings.model_fields[aliases[var]]
                assert default == str(field.get_default()), f"Procfile {name}: {var}"
                checked.add(var)
    assert checked >= {"PORT", "PASSTHRU_WORKER_CONCURRENCY"}, checked


def test_compose_commands_are_procfile_lines_or_passthru_commands() -> None:
    services = passthru_services()
    assert set(services) >= {"migrate", "web", "worker", "beat", "flower"}
    ran = set()
    for name, service in services.items():
        assert "entrypoint" not in service, name
        assert "command" in service, f"{name} relies on the image's default command"
        argv = argv_of(service["command"])
        assert command_problem(argv) is None, f"compose {name}: {command_problem(argv)}"
        ran.add(procfile_process(argv))
    assert ran >= set(procfile()), f"Procfile processes not in compose: {set(procfile()) - ran}"


def test_k8s_commands_are_procfile_lines_or_passthru_commands() -> None:
    ran = set()
    for name, _, container in k8s_containers():
        argv = container_argv(container)
        assert argv, f"{name}/{container['name']} relies on the image's default command"
        assert command_problem(argv) is None, f"{name}: {command_problem(argv)}"
        ran.add(procfile_process(argv))
    assert ran >= set(procfile()), f"Procfile processes not deployed: {set(procfile()) - ran}"


def test_k8s_command_variables_are_defined() -> None:
    config = config_map_keys()
    checked = set()
    for name, _, container in k8s_containers():
        env = {item["name"] for item in container.get("env", [])}
        from_config = config if container.get("envFrom") else set()
        for token in container_argv(container):
            for var in re.findall(r"\$\((\w+)\)", token):
                assert var in env | from_config, f"{name}: $({var}) is not in its environment"
                checked.add(var)
    assert "PASSTHRU_WORKER_CONCURRENCY" in checked, "the worker's concurrency is not a $(VAR)"


def test_dockerfile_cmd_is_the_web_line() -> None:
    cmd = [rest for instruction, rest in dockerfile_stages()[-1] if instruction == "CMD"]
    assert cmd, "the final stage has no CMD"
    assert procfile_process(exec_form(cmd[-1])) == "web"


# --- environment names -------------------------------------------------------------------------


def test_compose_environment_names_are_settings() -> None:
    allowed = set(settings_aliases()) | NOT_SETTINGS
    checked = set()
    for name, service in compose()["services"].items():
        environment = service.get("environment", {})
        names = (
            {item.split("=", 1)[0] for item in environment}
            if isinstance(environment, list)
            else set(environment)
        )
        assert names <= allowed, f"compose {name}: not settings: {names - allowed}"
        checked |= names
    assert checked >= {"DATABASE_URL", "REDIS_URL", "POSTGRES_PASSWORD"}, checked


def test_compose_takes_secrets_from_the_env_file() -> None:
    text = COMPOSE.read_text()
    for name, service in passthru_services().items():
        assert service.get("env_file") in (".env", [".env"]), name
        environment = service.get("environment", {})
        assert not SECRETS & set(environment), f"compose {name} writes a secret"
        assert {"DATABASE_URL", "REDIS_URL"} <= set(environment), name
        assert "${POSTGRES_PASSWORD" in environment["DATABASE_URL"], name
    postgres = compose()["services"]["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD"), "hard-coded password"
    required = set(re.findall(r"\$\{(\w+):\?", text))
    interpolated = set(re.findall(r"\$\{(\w+)", text))
    assert interpolated <= set(settings_aliases()) | NOT_SETTINGS, interpolated
    assert required <= set(env_file_values(ENV_EXAMPLE)), "required but not in .env.example"


def test_env_example_names_are_settings() -> None:
    names = set(env_file_values(ENV_EXAMPLE, commented=True))
    allowed = set(settings_aliases()) | NOT_SETTINGS
    assert names <= allowed, f".env.example: not settings: {names - allowed}"
    active = set(env_file_values(ENV_EXAMPLE))
    assert {"PASSTHRU_ENCRYPTION_KEYS", "FLOWER_BASIC_AUTH", "POSTGRES_PASSWORD"} <= active


def test_configmap_keys_are_non_secret_settings() -> None:
    keys = config_map_keys()
    assert keys, "no ConfigMap"
    assert keys <= set(settings_aliases()), (
        f"ConfigMap: not settings: {keys - set(settings_aliases())}"
    )
    assert not keys & (SECRETS | {"DATABASE_URL", "REDIS_URL"}), "a secret in the ConfigMap"


def test_configmap_values_are_valid_settings() -> None:
    values: dict[str, str] = {}
    for directory in kustomization_dirs():
        for generator in kustomization(directory).get("configMapGenerator", []):
            for env_file in generator.get("envs", []):
                values |= env_file_values(directory / env_file)
            values |= dict(literal.split("=", 1) for literal in generator.get("literals", []))
    for _, doc in k8s_resources():
        if doc["kind"] == "ConfigMap":
            values |= doc.get("data", {})
    # every key of every ConfigMap is validated (and there are some)
    assert set(values) == config_map_keys()
    assert "PASSTHRU_LEASE_S" in values
    Settings.model_validate(values)  # raises on a bad value (e.g. a lease below the timeouts)


def test_k8s_env_names_are_settings_and_secrets_are_not_defined() -> None:
    aliases = set(settings_aliases())
    documented = set(re.findall(r"create secret generic (\S+)", README.read_text()))
    literals = set(re.findall(r"--from-literal=(\w+)=", README.read_text()))
    assert documented, "deploy/README.md shows no `kubectl create secret`"
    assert literals <= aliases, f"README secrets: not settings: {literals - aliases}"
    referenced = set()  # the Secrets the containers take values from
    for name, _, container in k8s_containers():
        for item in container.get("env", []):
            assert item["name"] in aliases, f"{name}: {item['name']} is not a setting"
            assert item["name"] not in SECRETS or "valueFrom" in item, f"{name}: secret value"
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] in documented, f"{name}: secret {ref['name']} undocumented"
                assert ref["key"] in literals, f"{name}: key {ref['key']} undocumented"
                referenced.add(ref["name"])
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                assert source["secretRef"]["name"] in documented, name
                referenced.add(source["secretRef"]["name"])
    assert referenced >= {"passthru-secrets", "passthru-flower"}, referenced
    kinds = {doc["kind"] for _, doc in k8s_resources()}
    assert "Secret" not in kinds, "a Secret is defined with values in deploy/k8s"
    for directory in kustomization_dirs():
        assert "secretGenerator" not in kustomization(directory), directory


# --- probes and health -------------------------------------------------------------------------


def test_flower_serves_its_unauthenticated_paths() -> None:
    from flower.urls import handlers

    patterns = {(h.regex.pattern if hasattr(h, "regex") else h[0]).rstrip("$") for h in handlers}
    assert patterns >= FLOWER_PATHS


def test_k8s_probes_reference_existing_endpoints_and_commands() -> None:
    checked: set[tuple[str, str]] = set()
    for name, pod, container in k8s_containers():
        process = procfile_process(container_argv(container))
        ports = {p.get("name") for p in container.get("ports", [])} | {
            p["containerPort"] for p in container.get("ports", [])
        }
        for kind in PROBES:
            probe = container.get(kind)
            if probe is None:
                continue
            if "httpGet" in probe:
                path = probe["httpGet"]["path"]
                assert path in PATHS_BY_PROCESS.get(process or "", ()), f"{name} {kind}: {path}"
                assert probe["httpGet"]["port"] in ports, f"{name} {kind}: no such port"
            elif "exec" in probe:
                assert passthru_command_ok(probe["exec"]["command"]), f"{name} {kind}"
            else:
                raise AssertionError(f"{name} {kind}: only httpGet and exec probes are checked")
            checked.add((name, kind))
        pre_stop = container.get("lifecycle", {}).get("preStop")
        if pre_stop:
            argv = pre_stop["exec"]["command"]
            assert argv[0] == "sleep", f"{name} preStop: {argv}"
            assert argv[1].isdigit(), f"{name} preStop: {argv}"
            assert int(argv[1]) < pod["terminationGracePeriodSeconds"], name
            checked.add((name, "preStop"))
    assert checked >= {
        ("passthru-web", "startupProbe"),
        ("passthru-web", "readinessProbe"),
        ("passthru-web", "livenessProbe"),
        ("passthru-web", "preStop"),
        ("passthru-worker", "startupProbe"),
        ("passthru-worker", "livenessProbe"),
        ("passthru-flower", "readinessProbe"),
        ("passthru-flower", "livenessProbe"),
    }, checked


def test_k8s_probes_are_the_intended_ones() -> None:
    web = pod_spec(workloads()["passthru-web"])["containers"][0]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["lifecycle"]["preStop"], "web needs a preStop sleep"
    worker = pod_spec(workloads()["passthru-worker"])["containers"][0]
    assert worker["livenessProbe"]["exec"]["command"][:2] == ["passthru", "worker-alive"]


def test_compose_healthchecks_reference_existing_endpoints_and_commands() -> None:
    services = compose()["services"]
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
    tested: dict[str, list[str]] = {}
    for name, service in passthru_services().items():
        check = service.get("healthcheck", {})
        if check.get("disable"):
            continue
        test = check["test"]
        assert test[0] == "CMD", f"{name}: use the exec form"
        argv = test[1:]
        process = procfile_process(argv_of(service["command"]))
        if argv[:2] == ["python", "-c"]:
            paths = urls_paths(argv[2])
            assert paths, f"{name}: no URL in {argv[2]}"
            for path in paths:
                assert path in PATHS_BY_PROCESS.get(process or "", ()), f"{name}: {path}"
        else:
            assert passthru_command_ok(argv), f"{name}: {argv}"
        tested[name] = argv
    assert "/readyz" in tested["web"][-1]
    assert tested["worker"][:2] == ["passthru", "worker-alive"]
    assert "flower" in tested


def test_dockerfile_healthcheck_asks_healthz() -> None:
    checks = [rest for instruction, rest in dockerfile_stages()[-1] if instruction == "HEALTHCHECK"]
    assert checks, "no HEALTHCHECK"
    argv = exec_form(checks[-1].split(" CMD ", 1)[1])
    assert argv[:2] == ["python", "-c"], "slim has no curl: use python"
    paths = set(urls_paths(argv[2])) | set(re.findall(r"['\"](/[\w/.-]*)['\"]", argv[2]))
    assert "/healthz" in paths
    assert paths <= API_PATHS, paths


# --- the image -------------------------------------------------------------------------------


def test_dockerfile_final_stage_is_slim_and_not_root() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "not multi-stage"
    args = {}
    for instruction, rest in dockerfile():
        if instruction == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            args[key] = value

    def base(stage: list[tuple[str, str]]) -> str:
        image = stage[0][1].split()[0]
        return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)

    # The same base for both: the venv's interpreter and its wheels' markers must match.
    assert {base(stage) for stage in stages} == {"python:3.11-slim"}
    final = stages[-1]
    users = [rest for instruction, rest in final if instruction == "USER"]
    assert users, "the final stage runs as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users[-1]
    assert user == str(NON_ROOT_UID), "the manifests run as uid 10001"
    for instruction, rest in final:
        if instruction == "RUN":
            assert not re.search(r"\b(gcc|g\+\+|build-essential|clang|make|python3-dev)\b", rest)
        if instruction == "COPY":
            assert rest.startswith("--from="), f"the final stage copies from the context: {rest}"
    assert ("WORKDIR", "/app") in final
    assert ("EXPOSE", "8000") in final
    assert any(i == "ENV" and "PYTHONUNBUFFERED=1" in rest for i, rest in final)


def test_dockerignore_lets_in_what_the_dockerfile_copies() -> None:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert "**" in lines, "the ignore file should be an allow-list"
    copied = set()
    for instruction, rest in dockerfile():
        if instruction == "COPY" and not rest.startswith("--from="):
            for source in rest.split()[:-1]:
                assert source.rstrip("/") in allowed, f"{source} is excluded from the context"
                copied.add(source.rstrip("/"))
    assert copied >= {"pyproject.toml", "api", "worker", "models"}, copied


# --- Kubernetes shape --------------------------------------------------------------------------


@pytest.mark.parametrize("directory", kustomization_dirs(), ids=lambda p: str(p.relative_to(K8S)))
def test_kustomization_lists_every_file(directory: Path) -> None:
    files, dirs = referenced_files(kustomization(directory))
    present = {p.name for p in directory.iterdir() if p.is_file()} - {"kustomization.yaml"}
    assert present - files == set(), f"not in {directory}/kustomization.yaml"
    assert {f for f in files if not (directory / f).is_file()} == set(), "listed, missing"
    for d in dirs:
        assert (directory / d / "kustomization.yaml").is_file(), d


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("directory", kustomization_dirs(), ids=lambda p: str(p.relative_to(K8S)))
def test_kustomize_builds(directory: Path) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(out.stdout) if doc]
    assert "ConfigMap" in kinds
    assert kinds.count("Deployment") == 4


def test_workloads_and_their_companions() -> None:
    docs = [doc for _, doc in k8s_resources()]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    deployments = {d["metadata"]["name"]: d for d in by_kind["Deployment"]}
    assert set(deployments) == {
        "passthru-web",
        "passthru-worker",
        "passthru-beat",
        "passthru-flower",
    }
    assert deployments["passthru-web"]["spec"]["replicas"] == 2
    beat = deployments["passthru-beat"]["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"]["type"] == "Recreate"
    assert "replicas" not in deployments["passthru-worker"]["spec"], "the HPA owns it"
    (hpa,) = by_kind["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "passthru-worker"
    (job,) = by_kind["Job"]
    assert container_argv(pod_spec(job)["containers"][0]) == ["passthru", "migrate"]
    templates = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]
    for deployment in deployments.values():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    for doc in by_kind["Service"] + by_kind["PodDisruptionBudget"]:
        spec = doc["spec"]
        selector = spec.get("selector", {})
        selector = selector.get("matchLabels", selector)
        assert any(selector.items() <= labels.items() for labels in templates), doc["metadata"]
    budgets = {d["metadata"]["name"] for d in by_kind["PodDisruptionBudget"]}
    assert budgets == {"passthru-web", "passthru-worker"}


def test_pods_run_as_the_images_user_with_a_read_only_root() -> None:
    for name, pod, container in k8s_containers():
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert security["runAsUser"] == NON_ROOT_UID, name
        csc = container["securityContext"]
        assert csc["readOnlyRootFilesystem"] is True, name
        assert csc["allowPrivilegeEscalation"] is False, name
        assert csc["capabilities"]["drop"] == ["ALL"], name
        resources = container["resources"]
        assert resources["requests"], name
        assert resources["limits"], name


def writable_paths(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    return [
        m["mountPath"]
        for m in container.get("volumeMounts", [])
        if not m.get("readOnly") and "emptyDir" in volumes.get(m["name"], {})
    ]


def test_what_the_processes_write_is_writable() -> None:
    config = {**env_file_values(BASE / "config.env")}
    heartbeat = config.get("PASSTHRU_HEARTBEAT_FILE") or str(
        Settings.model_fields["heartbeat_file"].get_default()
    )
    # Every root is read-only (test_pods_run_as_the_images_user_with_a_read_only_root).
    checked = set()
    for name, pod, container in k8s_containers():
        writable = writable_paths(pod, container)
        process = procfile_process(container_argv(container))
        if process == "worker":
            assert str(Path(heartbeat).parent) in writable, f"{name}: heartbeat not writable"
            checked.add("worker")
        if process == "beat":
            assert container.get("workingDir") in writable, f"{name}: beat's schedule file"
            checked.add("beat")
    # (a worker or beat no longer recognised by its command is not a pass)
    assert checked == {"worker", "beat"}, checked
    assert compose()["services"]["beat"].get("working_dir") == "/tmp", "beat needs a writable cwd"


def test_grace_periods_cover_the_work_in_flight() -> None:
    values = env_file_values(BASE / "config.env")
    timeout = values.get("PASSTHRU_MAX_TIMEOUT_S", DEFAULT_MAX_TIMEOUT_S)
    # A warm shutdown finishes the attempts it runs: each ends by its deadline.
    deadline = Settings(PASSTHRU_MAX_TIMEOUT_S=timeout).attempt_deadline_s  # type: ignore[call-arg]
    worker = pod_spec(workloads()["passthru-worker"])
    assert worker["terminationGracePeriodSeconds"] >= deadline + 10
    assert seconds(compose()["services"]["worker"]["stop_grace_period"]) >= deadline + 10
    web = pod_spec(workloads()["passthru-web"])
    sleep = int(web["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][1])
    assert web["terminationGracePeriodSeconds"] >= sleep + 60, "a `Prefer: wait` lasts 60 s"


def test_compose_shape() -> None:
    services = compose()["services"]
    redis_argv = argv_of(services["redis"]["command"])
    assert redis_argv[redis_argv.index("--appendonly") + 1] == "yes"
    policy = redis_argv[redis_argv.index("--maxmemory-policy") + 1]
    assert policy == "noeviction"
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["migrate"]["restart"] == "no"
    assert services["beat"]["deploy"]["replicas"] == 1
    conditions = {
        "migrate": {"postgres": "service_healthy"},
        "web": {
            "migrate": "service_completed_successfully",
            "postgres": "service_healthy",
            "redis": "service_healthy",
        },
        "worker": {
            "migrate": "service_completed_successfully",
            "postgres": "service_healthy",
            "redis": "service_healthy",
        },
    }
    for name, wanted in conditions.items():
        got = {k: v["condition"] for k, v in services[name]["depends_on"].items()}
        assert got == wanted, name


def _setting(config: dict[str, str], env: str, field: str) -> int:
    return int(config.get(env, Settings.model_fields[field].get_default()))


def test_metrics_ports_are_exposed_and_annotated() -> None:
    config = env_file_values(BASE / "config.env")
    api_port = _setting(config, "PASSTHRU_METRICS_PORT", "metrics_port")
    worker_port = _setting(config, "PASSTHRU_WORKER_METRICS_PORT", "worker_metrics_port")
    assert api_port, "the API's metrics are off in the manifests"
    assert worker_port, "the workers' metrics are off in the manifests"
    expected = {"passthru-web": api_port, "passthru-worker": worker_port}
    for name, port in expected.items():
        template = workloads()[name]["spec"]["template"]
        (container,) = template["spec"]["containers"]
        assert port in {p["containerPort"] for p in container["ports"]}, name
        annotations = template["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/port") == str(port), name
        assert annotations.get("prometheus.io/path") == "/metrics", name


def test_the_public_port_is_not_the_metrics_port() -> None:
    # /metrics on the API port needs PASSTHRU_METRICS_TOKEN: Prometheus scrapes the other
    web = workloads()["passthru-web"]["spec"]["template"]
    assert web["metadata"]["annotations"]["prometheus.io/port"] != "8000"
    for service in ("web", "worker"):
        published = [str(p) for p in compose()["services"][service].get("ports", [])]
        assert not any("9300" in p or "9400" in p for p in published), service
