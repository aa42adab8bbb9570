"""Kafka security settings: read from the environment, applied by `connection_options` to every
client, refused when half-configured, and the secrets never shown."""

from __future__ import annotations

import ssl
import string
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from infra.kafka_clients import connection_options, tls_context
from infra.settings import Settings


@pytest.fixture(scope="module")
def pem_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A self-signed certificate and its key (PEM), as a CA file and as a client's own."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"]
    subprocess.run(
        [*request, "-days", "1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    yield {"cert": cert, "key": key}


def _settings(**fields: object) -> Settings:
    # Validated as the environment would be, without reading this process's environment.
    return Settings.model_validate(fields)


def test_plaintext_by_default_with_no_credentials_and_no_tls() -> None:
    options = connection_options(_settings())
    assert options["security_protocol"] == "PLAINTEXT"
    assert not {k for k in options if k.startswith(("sasl", "ssl"))}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_settings_reach_every_client(mechanism: str) -> None:
    options = connection_options(
        _settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism=mechanism,
            kafka_sasl_username="ledger",
            kafka_sasl_password="s3cret-pass",
        )
    )
    assert (
        options["security_protocol"],
        options["sasl_mechanism"],
        options["sasl_plain_username"],
        options["sasl_plain_password"],
    ) == ("SASL_PLAINTEXT", mechanism, "ledger", "s3cret-pass")
    assert "ssl_context" not in options


def test_tls_checks_the_brokers_against_the_ca_file_and_presents_the_client_certificate(
    pem_files: dict[str, Path],
) -> None:
    settings = _settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="ledger",
        kafka_sasl_password="s3cret-pass",
        kafka_ssl_ca_file=str(pem_files["cert"]),
        kafka_ssl_cert_file=str(pem_files["cert"]),
        kafka_ssl_key_file=str(pem_files["key"]),
    )
    options = connection_options(settings)
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "localhost"),),)]
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    unchecked = _settings(kafka_security_protocol="SSL", kafka_ssl_check_hostname=False)
    plain_tls = tls_context(unchecked)
    assert plain_tls is not None and not plain_tls.check_hostname
    assert plain_tls.verify_mode == ssl.CERT_REQUIRED


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITS_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("CREDITS_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("CREDITS_KAFKA_SASL_USERNAME", "relay")
    monkeypatch.setenv("CREDITS_KAFKA_SASL_PASSWORD", "from-the-env")
    options = connection_options(Settings())
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "relay",
        "from-the-env",
    )


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "CREDITS_KAFKA_SASL_USERNAME"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_password": "p4ssword-x"},
            "CREDITS_KAFKA_SASL_USERNAME",
        ),
        ({"kafka_sasl_username": "u", "kafka_sasl_password": "p4ssword-x"}, "does not use SASL"),
        ({"kafka_ssl_ca_file": "/etc/hostname"}, "CREDITS_KAFKA_SSL_CA_FILE is set"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_ca_file": "/no/such/ca.pem"},
            "CREDITS_KAFKA_SSL_CA_FILE: no such file",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_key_file": "/etc/hostname"},
            "CREDITS_KAFKA_SSL_KEY_FILE needs CREDITS_KAFKA_SSL_CERT_FILE",
        ),
        ({"kafka_security_protocol": "SASL"}, "kafka_security_protocol"),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "GSSAPI",
                "kafka_sasl_username": "u",
                "kafka_sasl_password": "p4ssword-x",
            },
            "kafka_sasl_mechanism",
        ),
    ],
)
def test_half_configured_security_is_refused_naming_what_is_missing(
    fields: dict[str, object], names: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        _settings(**fields)
    assert names in str(refused.value)
    assert "p4ssword-x" not in str(refused.value)


@given(
    password=st.text(string.ascii_letters + string.digits + "!#%&*+-./:;<=>?@^_~", min_size=12),
    username=st.sampled_from(["", "ledger"]),
    protocol=st.sampled_from(["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"]),
)
def test_the_password_shows_in_no_repr_dump_or_error(
    password: str, username: str, protocol: str
) -> None:
    try:
        settings = _settings(
            kafka_security_protocol=protocol,
            kafka_sasl_username=username,
            kafka_sasl_password=password,
            kafka_ssl_key_password=password,
        )
    except ValidationError as refused:
        assert password not in str(refused) and password not in repr(refused)
        return
    assert password not in repr(settings) and password not in str(settings)
    assert password not in settings.model_dump_json()
    assert password not in repr(settings.model_dump())
    assert settings.kafka_sasl_password == SecretStr(password)
