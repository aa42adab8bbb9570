"""Ports for the servers tests start (an API, an ops port, the Stripe fake): the one way to get one.

Not the kernel's `bind(0)`: that hands out a port of the ephemeral range (32768-60999 on Linux),
the range every outgoing connection (Kafka, PostgreSQL clients) takes its local port from, so
between the test choosing a port and the server binding it, a client's connection could take it
("address already in use": seen in the fault tests). These ports come from below that range,
away from the private stack's (tests/faults/private_stack.py: 19092-19093, 25433) and the SASL
broker's (9492-9494), and are never handed out twice in one test process.
"""

from __future__ import annotations

import random
import socket
import threading

LOW_PORT = 27000
HIGH_PORT = 32000  # below the ephemeral range
MAX_TRIES = 200

_given: set[int] = set()
_lock = threading.Lock()


def free_port() -> int:
    """A port nothing listens on now, not given before in this process."""
    with _lock:
        for _ in range(MAX_TRIES):
            port = random.randrange(LOW_PORT, HIGH_PORT)
            if port in _given:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _given.add(port)
            return port
    raise RuntimeError(f"no free port in {LOW_PORT}-{HIGH_PORT} after {MAX_TRIES} tries")
