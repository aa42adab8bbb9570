"""`make run`'s first start resolves Kafka with Maven: deploy/local/maven_progress.awk turns
Maven's output into progress lines a log can keep, with no terminal escape codes."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "local" / "maven_progress.awk"
CENTRAL = "https://repo.maven.apache.org/maven2"
# As Maven 3.8 writes it in batch mode with colours off: resets included.
MAVEN_OUTPUT = "\n".join(
    [
        "\x1b[0m\x1b[0m[INFO] Scanning for projects...",
        f"[INFO] Downloading from central: {CENTRAL}/org/apache/kafka/kafka_2.13/4.1.1/"
        "kafka_2.13-4.1.1.pom",
        f"[INFO] Downloaded from central: {CENTRAL}/org/apache/kafka/kafka_2.13/4.1.1/"
        "kafka_2.13-4.1.1.pom (3.2 kB at 80 kB/s)",
        *[
            f"[INFO] Downloaded from central: {CENTRAL}/g/a{n}/1/a{n}-1.pom (1 kB at 9 kB/s)"
            for n in range(60)
        ],
        f"\x1b[1m[INFO] Downloaded from central: {CENTRAL}/org/apache/kafka/kafka_2.13/4.1.1/"
        "kafka_2.13-4.1.1.jar (2.1 MB at 4.0 MB/s)\x1b[m",
        "\x1b[1;33m[WARNING]\x1b[m checksum failed for x.pom",
        "[INFO] BUILD SUCCESS",
    ]
)


def test_downloads_become_progress_lines_without_escape_codes() -> None:
    shown = subprocess.run(
        ["awk", "-f", str(SCRIPT)], input=MAVEN_OUTPUT, capture_output=True, text=True, check=True
    ).stdout.splitlines()

    assert shown == [
        "kafka: 50 files downloaded",
        "kafka: downloaded kafka_2.13-4.1.1.jar (2.1 MB)",
        "kafka: maven: [WARNING] checksum failed for x.pom",
        "kafka: 62 files downloaded from Maven Central",
    ]
    assert not any("\x1b" in line for line in shown)
