"""The client partitions account ids exactly as the Java client does (DESIGN §8).

Runs the real `Utils.murmur2` / `BuiltInPartitioner.partitionForKey` from the kafka-clients jar
of the local Kafka (Murmur.java, a single-file Java 17 program) over varied keys and partition
counts and compares with what the client's partitioner picks.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from aiokafka.partitioner import murmur2
from credits_client import partition_for

# Needs the jars `make stack` installs, as the other tests need its servers.
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KAFKA_LIBS = ROOT / ".local" / "kafka" / "libs"
PARTITION_COUNTS = [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 31, 32, 50, 64, 100, 256, 1000, 4096]
JAVA_TIMEOUT_SECONDS = 60


def varied_keys() -> list[str]:
    rng = random.Random(20240611)  # fixed: a failure must be reproducible
    allowed = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:@-"
    multibyte = "éßø€中文字한국어ありがとう🙂🚀𝄞"
    keys = ["a", "ab", "abc", "abcd", "acct-1", "user@example.com", "tenant:42:user.7", "-"]
    # Every length 1..40 hits each of murmur2's tail cases (0-3 leftover bytes) many times.
    keys += ["".join(rng.choice(allowed) for _ in range(n)) for n in range(1, 41)]
    keys += ["".join(rng.choice(allowed) for _ in range(rng.randint(1, 128))) for _ in range(200)]
    keys += ["x" * 128, "Z" * 127, "9" * 1000]
    # Not valid account ids, but the hash must agree on any UTF-8: bytes >= 0x80 are where a
    # port that forgets Java's signed bytes would differ.
    keys += [
        "".join(rng.choice(allowed + multibyte) for _ in range(rng.randint(1, 60)))
        for _ in range(100)
    ]
    keys += [*multibyte, multibyte, multibyte * 40]
    return sorted(set(keys))


def java_partitions(keys: list[str]) -> list[list[int]]:
    """Per key: [murmur2 as Java's signed int, partition for each PARTITION_COUNTS]."""
    java = shutil.which("java")
    assert java is not None, "java (17+) is needed to run the Java client's partitioner"
    assert any(KAFKA_LIBS.glob("kafka-clients-*.jar")), f"no kafka-clients jar in {KAFKA_LIBS}"
    stdin = "".join(key.encode().hex() + "\n" for key in keys)
    done = subprocess.run(
        [java, "-cp", f"{KAFKA_LIBS}/*", str(Path(__file__).with_name("Murmur.java"))]
        + [str(count) for count in PARTITION_COUNTS],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=JAVA_TIMEOUT_SECONDS,
        check=True,
    )
    return [[int(field) for field in line.split()] for line in done.stdout.splitlines()]


def test_the_client_picks_the_java_clients_partition_for_every_key_and_count() -> None:
    keys = varied_keys()
    assert len(keys) > 300
    assert any(len(k.encode()) != len(k) for k in keys), "multibyte keys are in the sample"

    from_java = java_partitions(keys)

    assert len(from_java) == len(keys)
    compared = 0
    for key, (java_hash, *java_picks) in zip(keys, from_java, strict=True):
        assert murmur2(key.encode()) == java_hash & 0xFFFFFFFF, key
        picks = [partition_for(key, count) for count in PARTITION_COUNTS]
        assert picks == java_picks, key
        compared += len(picks)
    assert compared == len(keys) * len(PARTITION_COUNTS)
