"""The Helm chart (deploy/helm/credits): `helm lint`, then `helm template` and its objects.

helm is built by `deploy/local/helm.sh up` (`make test` runs it first); without it these tests
fail rather than skip, so a chart nobody rendered never passes as tested.
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from infra.settings import PROJECT_DIR, Settings
from services.cli.supervisor import COMPONENTS

CHART = PROJECT_DIR / "deploy" / "helm" / "credits"
CATALOG = PROJECT_DIR / "domain" / "catalogs" / "demo.toml"
RELEASE = "ci"
FULLNAME = f"{RELEASE}-credits"
# What `helm template` assumes of the cluster: a current Kubernetes, with the Prometheus Operator.
CLUSTER = ["--kube-version", "1.30.0", "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"]
# Settings whose values are secrets, by name, or by type (SecretStr).
SECRET_NAME = re.compile(r"password|secret|api_key")


def _secret_settings() -> list[str]:
    return sorted(
        f"CREDITS_{name.upper()}"
        for name, field in Settings.model_fields.items()
        if SECRET_NAME.search(name) or field.annotation is SecretStr
    )


# A distinct value per secret setting, to be looked for wherever it must not be.
SECRET_VALUES = {name: f"test-secret-{name.lower()}-7f3a9c" for name in _secret_settings()}


@pytest.fixture(scope="module")
def helm() -> Path:
    where = subprocess.run(
        [PROJECT_DIR / "deploy" / "local" / "helm.sh", "path"],
        capture_output=True,
        text=True,
        check=True,
    )
    path = Path(where.stdout.strip())
    if not path.is_file():
        pytest.fail(f"helm is not installed at {path}: run `make helm` (make test does)")
    return path


@pytest.fixture(scope="module")
def values_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("chart") / "values.yaml"
    values = {
        "secrets": {"values": SECRET_VALUES},
        "config": {
            "CREDITS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CREDITS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "CREDITS_KAFKA_SASL_USERNAME": "credits",
        },
    }
    path.write_text(yaml.safe_dump(values))
    return path


def _helm(helm: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)


def _template(helm: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return _helm(
        helm, "template", RELEASE, CHART, *CLUSTER, "--set-file", f"catalog.toml={CATALOG}", *args
    )


@pytest.fixture(scope="module")
def rendered_text(helm: Path, values_file: Path) -> str:
    result = _template(helm, "-f", values_file)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def objects(rendered_text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered_text) if doc]


def _named(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def _settings_map(objects: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = _named(objects, "ConfigMap")[f"{FULLNAME}-settings"]["data"]
    return data


def test_helm_lint_passes(helm: Path, values_file: Path) -> None:
    result = _helm(
        helm, "lint", "--strict", CHART, "-f", values_file, "--set-file", f"catalog.toml={CATALOG}"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_every_component_runs_as_its_own_deployment(objects: list[dict[str, Any]]) -> None:
    deployments = _named(objects, "Deployment")

    assert set(deployments) == {f"{FULLNAME}-{name}" for name in COMPONENTS}
    for name in COMPONENTS:
        deployment = deployments[f"{FULLNAME}-{name}"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert _container(deployment)["command"] == ["credits", "run", name]
        assert labels["app.kubernetes.io/component"] == name
        assert _container(deployment)["resources"]["requests"]["memory"]
        assert _container(deployment)["resources"]["limits"]["memory"]


def test_probes_hit_the_ops_port_the_process_listens_on(objects: list[dict[str, Any]]) -> None:
    ops_port = int(_settings_map(objects)["CREDITS_OPS_PORT"])

    for name, deployment in _named(objects, "Deployment").items():
        container = _container(deployment)
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        for probe, path in [
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ]:
            get = container[probe]["httpGet"]
            assert get["path"] == path, (name, probe)
            assert ports[get["port"]] == ops_port, (name, probe)
    assert _settings_map(objects)["CREDITS_OPS_HOST"] == "0.0.0.0"


def test_settings_are_real_settings_and_secrets_only_in_secrets(
    objects: list[dict[str, Any]],
) -> None:
    known = {f"CREDITS_{name.upper()}" for name in Settings.model_fields}
    settings_map = _settings_map(objects)
    secrets = _named(objects, "Secret")
    secret_data = {
        key: base64.b64decode(value).decode()
        for secret in secrets.values()
        for key, value in secret.get("data", {}).items()
    }
    outside_secrets = yaml.safe_dump_all([o for o in objects if o["kind"] != "Secret"])

    assert set(settings_map) <= known
    assert not set(settings_map) & set(SECRET_VALUES)
    for workload in [*_named(objects, "Deployment").values(), *_named(objects, "Job").values()]:
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        assert {e["name"] for e in container.get("env", [])} <= known
    # Every secret reaches the pods, through the Secret the Deployments read.
    assert {k: secret_data[k] for k in SECRET_VALUES} == SECRET_VALUES
    for deployment in _named(objects, "Deployment").values():
        refs = _container(deployment)["envFrom"]
        assert {"secretRef": {"name": f"{FULLNAME}-secrets"}} in refs
        assert {"configMapRef": {"name": f"{FULLNAME}-settings"}} in refs
    for value in SECRET_VALUES.values():
        encoded = base64.b64encode(value.encode()).decode()
        assert value not in outside_secrets
        assert encoded not in outside_secrets
        for config_map in _named(objects, "ConfigMap").values():
            assert value not in yaml.safe_dump(config_map)


@pytest.mark.parametrize("name", sorted(SECRET_VALUES))
def test_a_secret_put_in_the_config_is_refused(helm: Path, values_file: Path, name: str) -> None:
    result = _template(helm, "-f", values_file, "--set", f"config.{name}=leaked")

    assert result.returncode != 0
    assert f"config.{name} is a secret" in result.stderr


def test_required_secrets_are_required(helm: Path) -> None:
    result = _template(helm)

    assert result.returncode != 0
    assert "secrets.values.CREDITS_PG_PASSWORD is required" in result.stderr


def test_an_existing_secret_replaces_the_charts(helm: Path, values_file: Path) -> None:
    result = _template(helm, "-f", values_file, "--set", "secrets.existingSecret=ops-made")
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    assert result.returncode == 0, result.stderr
    assert _named(rendered, "Secret") == {}
    for deployment in _named(rendered, "Deployment").values():
        assert {"secretRef": {"name": "ops-made"}} in _container(deployment)["envFrom"]


def test_the_catalog_comes_from_a_configmap(objects: list[dict[str, Any]]) -> None:
    catalog_map = _named(objects, "ConfigMap")[f"{FULLNAME}-catalog"]
    catalog_path = Path(_settings_map(objects)["CREDITS_CATALOG_PATH"])

    assert catalog_map["data"][catalog_path.name] == CATALOG.read_text()
    for deployment in _named(objects, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        (mount,) = [
            m
            for m in _container(deployment)["volumeMounts"]
            if Path(m["mountPath"]) == catalog_path.parent
        ]
        assert volumes[mount["name"]]["configMap"]["name"] == f"{FULLNAME}-catalog"


def test_ledgers_and_payment_consumers_are_capped_by_partitions(
    helm: Path, values_file: Path, objects: list[dict[str, Any]]
) -> None:
    partitions = int(_settings_map(objects)["CREDITS_TOPIC_PARTITIONS"])
    deployments = _named(objects, "Deployment")

    for name in ["ledger", "payments"]:
        assert deployments[f"{FULLNAME}-{name}"]["spec"]["replicas"] <= partitions
        result = _template(
            helm, "-f", values_file, "--set", f"components.{name}.replicas={partitions + 1}"
        )
        assert result.returncode != 0
        assert f"components.{name}.replicas ({partitions + 1}) exceeds" in result.stderr


def test_disruption_budgets_cover_every_component(objects: list[dict[str, Any]]) -> None:
    budgets = _named(objects, "PodDisruptionBudget")
    deployments = _named(objects, "Deployment")

    assert set(budgets) == set(deployments)
    for name, budget in budgets.items():
        selector = deployments[name]["spec"]["selector"]["matchLabels"]
        assert budget["spec"]["selector"]["matchLabels"] == selector
        assert budget["spec"]["maxUnavailable"] >= 1


def test_the_api_scales_with_an_hpa_behind_its_service(objects: list[dict[str, Any]]) -> None:
    (hpa,) = _named(objects, "HorizontalPodAutoscaler").values()
    api = _named(objects, "Deployment")[f"{FULLNAME}-api"]
    service = _named(objects, "Service")[f"{FULLNAME}-api"]
    http_port = int(_settings_map(objects)["CREDITS_HTTP_PORT"])
    ports = {p["name"]: p["containerPort"] for p in _container(api)["ports"]}

    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"{FULLNAME}-api",
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" not in api["spec"]  # the HPA owns it
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    (port,) = service["spec"]["ports"]
    assert ports[port["targetPort"]] == http_port


def test_a_job_creates_the_topics_before_install_and_upgrade(
    objects: list[dict[str, Any]],
) -> None:
    (job,) = _named(objects, "Job").values()
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}

    assert container["command"] == ["credits", "topics", "create"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert (
        env["CREDITS_TOPIC_PARTITIONS"]["value"]
        == _settings_map(objects)["CREDITS_TOPIC_PARTITIONS"]
    )
    # Its Kafka password from a Secret (one of its own: it runs before the release's exists).
    reference = env["CREDITS_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    hook_secret = _named(objects, "Secret")[reference["name"]]
    assert hook_secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )


def test_a_servicemonitor_scrapes_every_ops_port(objects: list[dict[str, Any]]) -> None:
    (monitor,) = _named(objects, "ServiceMonitor").values()
    ops_port = int(_settings_map(objects)["CREDITS_OPS_PORT"])
    (endpoint,) = monitor["spec"]["endpoints"]
    services = [
        s
        for s in _named(objects, "Service").values()
        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]

    assert endpoint["path"] == "/metrics"
    (service,) = services
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    assert port["port"] == ops_port
    for deployment in _named(objects, "Deployment").values():
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        ports = {p["name"]: p["containerPort"] for p in _container(deployment)["ports"]}
        assert ports[port["targetPort"]] == ops_port


def test_no_servicemonitor_where_the_cluster_has_no_prometheus_operator(
    helm: Path, values_file: Path
) -> None:
    result = _helm(
        helm,
        "template",
        RELEASE,
        CHART,
        "--kube-version",
        "1.30.0",
        "-f",
        values_file,
        "--set-file",
        f"catalog.toml={CATALOG}",
    )

    assert result.returncode == 0, result.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc}
    assert "ServiceMonitor" not in kinds
    assert "Deployment" in kinds
