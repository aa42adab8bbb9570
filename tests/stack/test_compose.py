"""compose.yaml runs the same stack as `make run` (same Kafka release, same settings names), one
service per component as production runs them, each with a healthcheck on its ops port."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.settings import PROJECT_DIR, Settings
from services.cli.supervisor import COMPONENTS

# The URL a healthcheck's command asks (both compose.yaml's and the Dockerfile's).
PROBED_URL = re.compile(r"http://127\.0\.0\.1:(?P<port>[^/]+)(?P<path>/[a-z]+)")


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((PROJECT_DIR / "compose.yaml").read_text())
    return loaded


def test_compose_runs_kafka_postgres_and_each_component_built_here() -> None:
    services = _compose()["services"]

    assert {"kafka", "postgres", "topics", *COMPONENTS} <= set(services)
    assert (PROJECT_DIR / "Dockerfile").is_file()
    for name in ["topics", *COMPONENTS]:
        assert services[name]["build"] == "."
    assert services["topics"]["command"] == ["credits", "topics", "create"]
    for name in COMPONENTS:
        service = services[name]
        assert service["command"] == ["credits", "run", name]
        depends = service["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["kafka"]["condition"] == "service_healthy"
        assert depends["topics"]["condition"] == "service_completed_successfully"
    assert "8080:8080" in services["api"]["ports"]


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_each_component_has_a_healthcheck_on_its_ops_port(name: str) -> None:
    service = _compose()["services"][name]
    test = service["healthcheck"]["test"]
    match = PROBED_URL.search(" ".join(test))

    assert test[0] == "CMD"
    assert match is not None
    assert match["port"] == service["environment"]["CREDITS_OPS_PORT"]
    assert match["path"] == "/healthz"
    # Published ports lead to the ops port inside the container.
    for published in service["ports"]:
        assert published.rsplit(":", 1)[1] in {
            service["environment"]["CREDITS_OPS_PORT"],
            service["environment"]["CREDITS_HTTP_PORT"],
        }


def test_the_image_healthcheck_asks_the_ops_port_every_component_serves() -> None:
    dockerfile = (PROJECT_DIR / "Dockerfile").read_text()
    healthcheck = dockerfile[dockerfile.index("HEALTHCHECK") :].split("\nCMD ")[0]
    match = PROBED_URL.search(healthcheck)

    assert match is not None
    assert match["path"] == "/healthz"
    # The port is CREDITS_OPS_PORT, defaulting as the setting does; never the API's port.
    assert match["port"] == "{port}"
    assert f"os.environ.get('CREDITS_OPS_PORT', '{Settings().ops_port}')" in healthcheck
    assert str(Settings().http_port) not in healthcheck


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="no docker-compose client (make lint says so)"
)
def test_docker_compose_config_accepts_it() -> None:
    result = subprocess.run(
        ["docker-compose", "config", "--services"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert {"kafka", "postgres", "topics", *COMPONENTS} <= set(result.stdout.split())


def test_compose_kafka_is_the_release_the_local_stack_resolves() -> None:
    pom = (PROJECT_DIR / "deploy" / "local" / "kafka" / "pom.xml").read_text()
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    assert match is not None

    image = _compose()["services"]["kafka"]["image"]

    assert image == f"apache/kafka:{match.group(1)}"


def test_compose_service_settings_are_real_setting_names() -> None:
    services = _compose()["services"]
    known = {f"CREDITS_{name.upper()}" for name in Settings.model_fields}

    for name in ["topics", *COMPONENTS]:
        environment = services[name]["environment"]
        assert set(environment) <= known
        assert environment["CREDITS_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert environment["CREDITS_PG_HOST"] == "postgres"


def test_every_setting_is_listed_in_the_readme() -> None:
    readme = Path(PROJECT_DIR / "README.md").read_text()
    missing = [
        f"CREDITS_{name.upper()}"
        for name in Settings.model_fields
        if f"`CREDITS_{name.upper()}`" not in readme
    ]

    assert missing == []
