"""Serving an ASGI app with uvicorn inside a component, until the component's stop is set.

uvicorn's own signal handling is switched off: the runner owns SIGINT and SIGTERM for every
component of the process (`services/cli/supervisor.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import Any, Literal

import uvicorn

# In-flight requests get this long to finish once the stop is set.
GRACEFUL_SHUTDOWN_SECONDS = 10
# Longer than a client's or load balancer's idle timeout (60 s is common): the side that closes
# an idle connection should be the one that reuses it, else a request sent as the server closes
# it fails (uvicorn's 5 s default did: 1-2 reads in 2,000 under load).
KEEP_ALIVE_SECONDS = 75


class CannotListen(RuntimeError):
    """The port is taken, or the address is not this host's: a setting to fix.

    Not an OSError on purpose: components retry OSErrors as outages, and waiting would not free
    the port.
    """


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound and listening on host:port, or CannotListen saying which and why.

    Bound here rather than by uvicorn: uvicorn logs a bind error and calls sys.exit inside its
    task, which ends a component with a traceback about SystemExit instead of the reason.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise CannotListen(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.set_inheritable(True)
    return sock


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve_until_stopped(
    app: Any, *, host: str, port: int, stop: asyncio.Event, lifespan: Literal["on", "off"] = "on"
) -> None:
    """Serves `app` on host:port until `stop` is set; raises CannotListen if it could not."""
    sock = listening_socket(host, port)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # our structured logging, not uvicorn's
        access_log=False,  # an access log would be one more place a credential could leak
        lifespan=lifespan,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    server = _EmbeddedServer(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        await serving
        sock.close()
    if not server.started and not stop.is_set():
        raise CannotListen(f"could not serve on {host}:{port}")
