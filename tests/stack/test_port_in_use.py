"""A process whose port is taken stops at once with one line that names the port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from tests.kit.ports import free_port

STOP_TIMEOUT_SECONDS = 60


def test_a_taken_ops_port_ends_the_run_with_one_clear_line() -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen(1)
        env = {**os.environ, "CREDITS_OPS_HOST": "127.0.0.1", "CREDITS_OPS_PORT": str(port)}
        ran = subprocess.run(
            [sys.executable, "-m", "services.cli", "run", "projector"],
            env=env,
            capture_output=True,
            text=True,
            timeout=STOP_TIMEOUT_SECONDS,
        )

    assert ran.returncode == 2
    assert f"credits run: cannot listen on 127.0.0.1:{port}: Address already in use" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert "SystemExit" not in ran.stderr
