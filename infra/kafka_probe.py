"""Does a Kafka broker answer? One ApiVersions request, stdlib only.

A TCP connect is not enough: the socket opens before the broker serves clients. The local
provisioning script (`deploy/local/kafka.sh`, before any virtualenv exists) and the `/healthz`
endpoint both use this file, so "Kafka answers" means the same thing everywhere.
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys

_API_VERSIONS_KEY = 18
_CLIENT_ID = b"credits-probe"


def broker_answers(
    host: str, port: int, timeout_seconds: float = 2.0, tls: ssl.SSLContext | None = None
) -> bool:
    """`tls`: for a TLS listener (SSL, SASL_SSL). A SASL listener answers ApiVersions before
    any authentication, so the probe needs no credentials."""
    correlation_id = 1
    body = struct.pack(">hhih", _API_VERSIONS_KEY, 0, correlation_id, len(_CLIENT_ID)) + _CLIENT_ID
    try:
        with socket.create_connection((host, port), timeout=timeout_seconds) as raw:
            conn = raw if tls is None else tls.wrap_socket(raw, server_hostname=host)
            conn.settimeout(timeout_seconds)
            conn.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", _read_exactly(conn, 4))[0]
            # A v0 response is small; a bound keeps a confused peer from making us read forever.
            if not 6 <= size <= 1 << 20:
                return False
            response = _read_exactly(conn, size)
    except (OSError, struct.error, ConnectionError):
        return False
    (answered_correlation_id, error_code) = struct.unpack(">ih", response[:6])
    return answered_correlation_id == correlation_id and error_code == 0


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed by the broker")
        data += chunk
    return data


if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    sys.exit(0 if broker_answers(host, port) else 1)
