"""CPU time and memory of the processes a benchmark runs on, read from Linux's /proc.

CPU seconds (user + system, all threads) are read before and after a phase; divided by the
commands of the phase they give CPU microseconds per command, a figure that other work on the
machine does not move much (unlike a rate, which it halves when it takes half the cores).
PostgreSQL backends are told apart by the database their command line names, so only the
benchmark's own connections count (not those of other work on a shared server).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (every thread); 0 once it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) may hold spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])
    return (user_ticks + system_ticks) / CLOCK_TICKS_PER_SECOND


def peak_rss_bytes(pid: int) -> int:
    """The largest resident set the process has had (VmHWM); 0 when unknown."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _command_line(pid: str) -> str:
    try:
        return (PROC / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def pids_where(matches: Callable[[str], bool]) -> list[int]:
    """The processes whose command line `matches`."""
    return [
        int(p.name) for p in PROC.iterdir() if p.name.isdigit() and matches(_command_line(p.name))
    ]


def kafka_broker_pids() -> list[int]:
    return pids_where(lambda line: "kafka.Kafka" in line and line.startswith("java"))


def postgres_backend_pids(database: str) -> list[int]:
    """Backends connected to `database` (their title: `postgres: user database host ...`)."""
    return pids_where(lambda line: line.startswith("postgres: ") and f" {database} " in line)


@dataclass
class CpuMeter:
    """CPU seconds of named groups of processes between `start` and `stop`.

    Groups are looked up again at `stop`: a backend that connected during the phase counts
    from its start (its CPU before the phase is then counted too, a small overstatement).
    """

    groups: dict[str, Callable[[], list[int]]]

    def start(self) -> None:
        self._before = {
            name: {pid: cpu_seconds(pid) for pid in find()} for name, find in self.groups.items()
        }

    def stop(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for name, find in self.groups.items():
            before = self._before.get(name, {})
            pids = set(find()) | set(before)
            used[name] = sum(max(0.0, cpu_seconds(p) - before.get(p, 0.0)) for p in pids)
            # A process gone during the phase reads 0 now: what it used is lost, not negative.
        return used
