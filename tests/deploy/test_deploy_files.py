"""The deployment files, checked where no Docker engine or cluster runs: against their schemas (the compose
specification vendored by check-jsonschema, the Kubernetes API schemas bundled by kubernetes-validate; both
offline), with hadolint and `nginx -t`, and against each other and the code, so that they cannot drift
apart. test_compose_stack.py runs what can be run."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.stack import (
    COMPOSE_FILE,
    DOCKERFILE,
    K8S_DIR,
    ROOT,
    VENV_BIN,
    adapt_nginx_conf,
    dashboard_metrics,
    depends_on,
    dockerfile_stages,
    dockerignore_admits,
    dockerignore_patterns,
    environment_of,
    final_stage,
    last,
    load_compose,
    nginx_config_test,
    nginx_mount,
    option,
    published_container_port,
    replicas,
    seconds,
    start_order,
)
from tokentail.redis_server import free_port
from tokentail.shared.plumbing.redis_urls import sentinel_setup
from tokentail.shared.plumbing.settings import Settings

OLDEST_KUBERNETES = "1.30.0"  # the oldest minor still commonly offered by managed clusters
PROVIDER_KEYS = ["OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"]


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = load_compose()["services"]
    return services


def _container_port(service: str) -> int:
    return int(option(_services()[service]["command"], "--port"))


# --- docker-compose.yml -------------------------------------------------------------------------------


def test_the_compose_file_matches_the_compose_specification() -> None:
    check = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)]
    result = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_redis_keeps_every_event_across_restarts() -> None:
    redis = _services()["redis"]
    assert option(redis["command"], "--appendonly") == "yes"
    assert option(redis["command"], "--maxmemory-policy") == "noeviction"  # the queue and streams are no cache
    assert any(str(volume).endswith(":/data") for volume in redis["volumes"]), "AOF on a volume"


def test_services_start_once_what_they_need_is_healthy() -> None:
    services = _services()
    assert depends_on(services["gateway"]) == {"redis": "service_healthy"}
    assert depends_on(services["worker"]) == {"redis": "service_healthy"}
    assert depends_on(services["nginx"]) == {"gateway": "service_healthy"}
    running = {name: spec for name, spec in services.items() if not spec.get("profiles")}
    for name, spec in running.items():
        for dependency, condition in depends_on(spec).items():
            assert condition == "service_healthy", f"{name} starts before {dependency} is ready"
            assert services[dependency].get("healthcheck"), f"{name} waits for {dependency}, which has no healthcheck"
    assert start_order(running) == ["redis", "gateway", "worker", "nginx"]


def test_gateways_and_workers_scale_and_stop_gracefully() -> None:
    services = _services()
    for name in ("gateway", "worker"):
        spec = services[name]
        assert spec["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}
        assert "container_name" not in spec and "ports" not in spec, f"{name}: replicas would clash over them"
        assert spec["healthcheck"]["test"][:2] == ["CMD", "tokentail"], "the image has no curl"
    assert replicas(services["gateway"]) >= 2
    assert replicas(services["worker"]) >= 2
    # A stopping worker hands its runs over; a stopping gateway ends its streams within its grace period.
    assert seconds(services["worker"]["stop_grace_period"]) >= 30
    grace = environment_of(services["gateway"])["TOKENTAIL_SHUTDOWN_GRACE_SECONDS"]
    assert grace is not None and seconds(services["gateway"]["stop_grace_period"]) >= float(grace) + 5
    published = [name for name, spec in services.items() if spec.get("ports") and not spec.get("profiles")]
    assert published == ["nginx"], "clients reach the gateways only through nginx"


def test_secrets_come_from_the_environment_and_provider_keys_only_reach_workers() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())["services"]  # before interpolation
    for name, spec in raw.items():
        for key, value in environment_of(spec).items():
            if re.search(r"_(KEY|KEYS|SECRET|PASSWORD|TOKEN)$", key):
                assert value is None or "${" in value, f"{name}: {key} has a literal value"
    worker, gateway = environment_of(raw["worker"]), environment_of(raw["gateway"])
    for key in PROVIDER_KEYS:
        assert key in worker and worker[key] is None, f"{key}: passed through to the workers when set"
        assert key not in gateway
    for key in ("TOKENTAIL_API_KEYS", "TOKENTAIL_SECRET"):
        assert key in gateway and gateway[key] is None  # an empty value would fail validation: unset instead


def _tokentail_variables() -> set[str]:
    """Every TOKENTAIL_* variable tokentail reads: the settings, and the CLI's own options."""
    settings = {f"TOKENTAIL_{name.upper()}" for name in Settings.model_fields}
    return settings | set(re.findall(r'envvar="(TOKENTAIL_[A-Z_]+)"', (ROOT / "tokentail" / "cli.py").read_text()))


def test_every_variable_the_deployment_sets_is_one_tokentail_reads() -> None:
    services = _services()
    used = {key for name in ("gateway", "worker") for key in environment_of(services[name])}
    for manifest in _manifests().values():
        for doc in manifest:
            if doc["kind"] == "ConfigMap":
                used |= set(doc["data"])
            for container in _containers(doc):
                used |= {item["name"] for item in container.get("env", [])}
    unknown = {name for name in used if name.startswith("TOKENTAIL_")} - _tokentail_variables()
    assert not unknown, f"tokentail reads no such variable: {sorted(unknown)}"


# --- deploy/Dockerfile --------------------------------------------------------------------------------


def test_the_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([str(VENV_BIN / "hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_multi_stage_slim_and_runs_as_a_user() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "build in one stage, run from another"
    final = stages[-1]
    assert "-slim" in final[0].args
    assert not any(i.keyword == "RUN" and "apt-get install" in i.args for i in final), "nothing installed at run time"
    copies = [i.args for i in final if i.keyword in ("COPY", "ADD")]
    assert copies and all(args.startswith("--from=") for args in copies), (
        "the final stage takes only the build's output"
    )
    user = last(final, "USER").args.split(":")[0]
    assert user.isdigit() and int(user) != 0, "a numeric non-root user (Kubernetes' runAsNonRoot checks it)"
    entrypoint = last(final, "ENTRYPOINT").json_args()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint[0] in scripts, f"ENTRYPOINT {entrypoint}: not a console script of the package"
    exposed = {int(port) for i in final if i.keyword == "EXPOSE" for port in i.args.split()}
    assert {_container_port("gateway"), _container_port("worker")} <= exposed


def test_the_build_context_holds_what_pip_install_needs_and_nothing_private() -> None:
    patterns = dockerignore_patterns()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    # The folders the packages are built from: tokentail/, and the ones package-dir maps into it.
    packages = {setuptools["package-dir"].get(name, name).split(".")[0] for name in setuptools["packages"]}
    needed = ["pyproject.toml", project["project"]["readme"]]
    for package in packages:
        needed += [
            str(path.relative_to(ROOT))
            for path in (ROOT / package).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        ]
    assert [path for path in needed if not dockerignore_admits(path, patterns)] == []
    for private in (
        ".venv/bin/python",
        ".git/config",
        ".env",
        "tests/conftest.py",
        "shared/__pycache__/x.pyc",
        "shared/x.pyo",
    ):
        assert not dockerignore_admits(private, patterns), private
    (build, *_) = dockerfile_stages()
    sources = {i.args.split()[0] for i in build if i.keyword == "COPY"} | {
        source for i in build if i.keyword == "COPY" for source in i.args.split()[1:-1]
    }
    assert {"pyproject.toml", project["project"]["readme"], *packages} <= sources, "the build copies every package"


# --- deploy/nginx.conf --------------------------------------------------------------------------------


def _block(text: str, header: str) -> str:
    """The inside of the first `header { ... }` block (comments removed)."""
    text = re.sub(r"#[^\n]*", "", text)
    match = re.search(re.escape(header) + r"\s*\{", text)
    assert match, f"no `{header} {{` block"
    depth, start = 1, match.end()
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start:index]
    raise AssertionError(f"unbalanced braces after {header}")


def _directives(block: str) -> dict[str, list[str]]:
    """The directives directly in a block (not in nested blocks): name -> the arguments of each use."""
    flat = block
    while re.search(r"\{[^{}]*\}", flat):
        flat = re.sub(r"[^;{}]*\{[^{}]*\}", "", flat)
    found: dict[str, list[str]] = {}
    for statement in flat.split(";"):
        if statement.strip():
            name, _, args = statement.strip().partition(" ")
            found.setdefault(name, []).append(" ".join(args.split()))
    return found


def _nginx_seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h)?", value)
    assert match, f"not an nginx time: {value}"
    return float(match[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match[2]]


def test_nginx_streams_without_buffering_and_fails_over() -> None:
    services = _services()
    conf = nginx_mount(services["nginx"]).read_text()
    location = _directives(_block(conf, "location /"))
    assert location["proxy_buffering"] == ["off"]
    assert location["gzip"] == ["off"]
    assert location["proxy_http_version"] == ["1.1"]
    headers = dict(value.split(" ", 1) for value in location["proxy_set_header"])
    assert headers["Upgrade"] == "$http_upgrade" and headers["Connection"] == "$connection_upgrade"
    assert headers["Last-Event-ID"] == "$http_last_event_id"
    heartbeat = Settings.model_fields["sse_heartbeat_seconds"].default
    assert _nginx_seconds(location["proxy_read_timeout"][0]) >= 4 * heartbeat, "a quiet stream outlives its heartbeat"
    assert {"error", "timeout"} <= set(location["proxy_next_upstream"][0].split())
    (upstream_name,) = re.findall(r"proxy_pass http://([\w.-]+);", _block(conf, "location /"))
    upstream = _directives(_block(conf, f"upstream {upstream_name}"))
    assert "keepalive" not in upstream, "a pooled connection to a stopped gateway would fail a POST"
    (server,) = upstream["server"]
    assert server.split()[0] == f"gateway:{_container_port('gateway')}"
    server_block = _directives(_block(conf, "server"))
    assert server_block["listen"] == [str(published_container_port(services["nginx"]))]
    body = server_block["client_max_body_size"][0]
    assert int(body.rstrip("m")) * 2**20 > Settings.model_fields["max_request_bytes"].default, "the gateway's 413"
    metrics = re.search(r"location\s+~\s+(\S+)\s*\{([^}]*)\}", conf)
    assert metrics and "deny all" in metrics[2], "no location denies /metrics"
    assert all(re.search(metrics[1], path) for path in ("/metrics", "/metrics/", "/metrics/x"))
    assert not re.search(metrics[1], "/v1/sessions/s_metrics/events")


def test_nginx_accepts_the_config(nginx: str, tmp_path: Path) -> None:
    services = _services()
    conf = nginx_mount(services["nginx"]).read_text()
    local = adapt_nginx_conf(
        conf, {"gateway": [free_port(), free_port()]}, published_container_port(services["nginx"]), free_port()
    )
    result = nginx_config_test(nginx, tmp_path, local)
    assert result.returncode == 0 and "test is successful" in result.stderr, result.stderr


# --- deploy/k8s ---------------------------------------------------------------------------------------


def _manifests() -> dict[str, list[dict[str, Any]]]:
    return {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for path in sorted(K8S_DIR.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] not in ("Deployment", "StatefulSet"):
        return []
    containers: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
    return containers


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, kubernetes_validate.latest_version()])
def test_the_kubernetes_manifests_match_the_api_schemas(version: str) -> None:
    failures = []
    for name, docs in _manifests().items():
        for doc in docs:
            where = f"{name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                failures.append(f"{where}: {'.'.join(map(str, error.path))}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError as error:
                failures.append(f"{where}: {error.message}")
    assert not failures, "\n".join(failures)


def test_kustomization_applies_every_manifest_but_the_trial_redis() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(set(_manifests()) - {"redis.yaml"})
    images = {image["name"] for image in kustomization["images"]}
    for docs in _manifests().values():
        for doc in docs:
            for container in _containers(doc):
                assert container["image"] in images or doc["metadata"]["name"] == "redis"


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_the_kubernetes_objects_fit_together_and_match_compose() -> None:
    objects = {(doc["kind"], doc["metadata"]["name"]): doc for docs in _manifests().values() for doc in docs}
    deployments = {name: doc for (kind, name), doc in objects.items() if kind == "Deployment"}
    services = _services()
    uid = int(last(final_stage(), "USER").args.split(":")[0])
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        assert _selects(deployment["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"]), name
        component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
        (container,) = pod["spec"]["containers"]
        # The same processes as docker-compose.yml runs, on the same ports, as the image's user.
        assert container["args"] == services[component]["command"], name
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert list(ports.values()) == [_container_port(component)]
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(_container_port(component))
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["port"] in ports, f"{name}: {probe}"
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["securityContext"]["runAsUser"] == uid
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        grace = pod["spec"]["terminationGracePeriodSeconds"]
        assert grace >= seconds(services[component]["stop_grace_period"]), f"{name}: less grace than compose gives"
        for source in container.get("envFrom", []):
            assert ("ConfigMap", source["configMapRef"]["name"]) in objects
    assert "OPENAI_API_KEY" not in str(deployments["tokentail-gateway"]), "provider keys reach the workers only"
    for (kind, name), doc in objects.items():
        if kind in ("Service", "PodDisruptionBudget"):
            selector = doc["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            matched = [
                d for d in deployments.values() if _selects(selector, d["spec"]["template"]["metadata"]["labels"])
            ]
            assert len(matched) == 1 or doc["metadata"]["name"] == "redis", f"{kind}/{name} selects {len(matched)}"
    autoscaler = objects["HorizontalPodAutoscaler", "tokentail-worker"]
    target = deployments[autoscaler["spec"]["scaleTargetRef"]["name"]]
    assert "replicas" not in target["spec"], "the autoscaler owns the workers' replicas: apply would reset them"
    gateway_service = objects["Service", "tokentail-gateway"]
    for rule in objects["Ingress", "tokentail"]["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            routes_metrics = "/metrics".startswith(path["path"]) and path["pathType"] != "Exact"
            assert not routes_metrics and path["path"] != "/metrics", f"the Ingress routes /metrics: {path}"
            backend = path["backend"]["service"]
            assert backend["name"] == gateway_service["metadata"]["name"]
            assert backend["port"]["name"] in {port["name"] for port in gateway_service["spec"]["ports"]}


# --- Prometheus and Grafana ---------------------------------------------------------------------------


def _mounted(service: dict[str, Any], source: str) -> str:
    for volume in service["volumes"]:
        host, _, rest = str(volume).partition(":")
        if host == source:
            return rest.split(":")[0]
    raise AssertionError(f"{source} is not mounted")


def test_prometheus_scrapes_every_replica_where_it_serves_metrics() -> None:
    services = _services()
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for service in ("gateway", "worker"):
        (discovery,) = jobs[f"tokentail-{service}"]["dns_sd_configs"]
        assert discovery["names"] == [service] and discovery["type"] == "A"  # every replica's address
        assert discovery["port"] == _container_port(service)
    prometheus = services["prometheus"]
    assert f"--config.file={_mounted(prometheus, './deploy/prometheus/prometheus.yml')}" in prometheus["command"]
    kubernetes = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus-kubernetes.yml").read_text())
    keep = next(r for r in kubernetes["scrape_configs"][0]["relabel_configs"] if "container_port_name" in str(r))
    declared = {
        port["name"]
        for docs in _manifests().values()
        for doc in docs
        for container in _containers(doc)
        if doc["metadata"]["name"].startswith("tokentail-")
        for port in container["ports"]
    }
    assert set(keep["regex"].split("|")) == declared


def _defined_metrics() -> set[str]:
    """Sample names of every metric the code declares with prometheus_client."""
    suffixes = {"Counter": ["_total"], "Histogram": ["_bucket", "_sum", "_count"], "Summary": ["_sum", "_count"]}
    names: set[str] = set()
    for package in ("tokentail", "gateway", "worker", "shared"):
        for path in (ROOT / package).rglob("*.py"):
            for kind, name in re.findall(
                r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"(tokentail_\w+)\"", path.read_text()
            ):
                base = name.removesuffix("_total") if kind == "Counter" else name
                names.update(base + suffix for suffix in suffixes.get(kind, [""]))
    return names


def test_grafana_provisions_the_dashboard_whose_queries_use_metrics_the_code_defines() -> None:
    grafana = _services()["grafana"]
    provisioning = _mounted(grafana, "./deploy/grafana/provisioning")
    dashboards_dir = _mounted(grafana, "./deploy/grafana/dashboards")
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/tokentail.yml").read_text())
    assert provisioning == "/etc/grafana/provisioning"
    assert provider["providers"][0]["options"]["path"] == dashboards_dir
    (datasource,) = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090" and "prometheus" in _services()
    queried = dashboard_metrics()
    assert queried and queried <= _defined_metrics(), f"not defined in the code: {sorted(queried - _defined_metrics())}"
    dashboard_text = (ROOT / "deploy/grafana/dashboards/tokentail.json").read_text()
    jobs = set(re.findall(r'job=\\"([\w-]+)\\"', dashboard_text))
    assert jobs == {"tokentail-gateway", "tokentail-worker"}  # the job names of both scrape configs


def test_the_sentinel_override_matches_the_compose_specification_and_names_its_sentinels() -> None:
    override = COMPOSE_FILE.parent / "deploy" / "compose.sentinel.yml"
    check = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(override)]
    result = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    services = yaml.safe_load(override.read_text())["services"]
    setup = sentinel_setup(services["worker"]["environment"]["TOKENTAIL_QUEUE_REDIS_URL"])
    assert setup is not None and {host for host, _ in setup.sentinels} == {"sentinel-1", "sentinel-2", "sentinel-3"}
    assert services["gateway"]["environment"] == services["worker"]["environment"]
