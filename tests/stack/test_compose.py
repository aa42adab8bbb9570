"""compose.yaml runs the same stack as `make run`: same Kafka release, same settings names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from infra.settings import PROJECT_DIR, Settings


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((PROJECT_DIR / "compose.yaml").read_text())
    return loaded


def test_compose_runs_kafka_postgres_and_the_service_built_here() -> None:
    services = _compose()["services"]

    assert {"kafka", "postgres", "credits"} <= set(services)
    assert services["credits"]["build"] == "."
    assert (PROJECT_DIR / "Dockerfile").is_file()
    assert services["credits"]["command"] == ["credits", "run", "all"]
    depends = services["credits"]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["kafka"]["condition"] == "service_healthy"


def test_compose_kafka_is_the_release_the_local_stack_resolves() -> None:
    pom = (PROJECT_DIR / "deploy" / "local" / "kafka" / "pom.xml").read_text()
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    assert match is not None

    image = _compose()["services"]["kafka"]["image"]

    assert image == f"apache/kafka:{match.group(1)}"


def test_compose_service_settings_are_real_setting_names() -> None:
    environment = _compose()["services"]["credits"]["environment"]
    known = {f"CREDITS_{name.upper()}" for name in Settings.model_fields}

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
