"""How fast this machine runs Python right now: the yardstick for every CPU row beside it.

The bench machine is shared: the same code measured 182 and 461 CPU-µs per command on two
afternoons, and a plain Python loop was 2.5 times slower on the second. A CPU figure read
beside this one compares across runs; read alone, it compares nothing.
"""

from __future__ import annotations

import time

from bench.rows import BenchRow

LOOP_ITERATIONS = 2_000_000
# The fastest of a few: the others measure the neighbours as well.
REPEATS = 5


def _loop_ns() -> float:
    best = float("inf")
    for _ in range(REPEATS):
        started = time.process_time_ns()
        total = 0
        for n in range(LOOP_ITERATIONS):
            total += n
        best = min(best, (time.process_time_ns() - started) / LOOP_ITERATIONS)
    assert total == LOOP_ITERATIONS * (LOOP_ITERATIONS - 1) // 2
    return best


def machine_speed_row(when: str) -> BenchRow:
    return BenchRow(
        f"machine speed, {when}",
        _loop_ns(),
        "ns",
        f"one iteration of a Python loop adding integers (fastest of {REPEATS} runs of "
        f"{LOOP_ITERATIONS:,}); a higher figure inflates every CPU row alike",
    )
